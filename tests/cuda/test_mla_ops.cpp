// Multi-head latent attention on the GPU (mla_store.cu, mla_attention.cu, cuda_mla.cpp) against the
// CPU backend and a float64 oracle written here, at GLM-4.7-Flash's shapes (20 heads, kv_lora 512,
// rope 64, nope 192, v 256) and at the tiny fixtures' (4 heads, 32, 8, 16, 24; kv_lora below one
// 64-column tile, adjacent RoPE pairs).
//
// Tolerances. The inputs (kv_a, q and kv_b_proj) are fp16 values on both backends, so what differs
// is the GPU's own rounding to fp16: the cache row (normalized latent and rotated key), the
// absorbed query, the probabilities of P·V, the latent sum and the output. The oracle runs once
// exactly and once rounding at exactly those points (in float64 otherwise); the GPU's relative
// rms distance from the CPU backend must stay within twice that emulated run's distance from the
// exact one (the flash-attention test rule), and the CPU backend (fp32) must sit within a small
// fraction of it from the exact oracle. The cache rows are checked one by one: one rounding each.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <memory>
#include <random>
#include <vector>

#include "backend/backend.h"
#include "backend/cuda/ops.h"
#include "core/error.h"
#include "core/half.h"
#include "core/thread_pool.h"
#include "device_buffer.h"
#include "model/rope.h"
#include "test_util.h"

namespace marlin {
namespace {

using test::kHalfUlp;

struct MlaShape {
  const char* name;
  int heads, nope, rope, kv_lora, v;
  RopePairing pairing;
  int width() const { return kv_lora + rope; }
  int q_cols() const { return heads * (nope + rope); }
};

const MlaShape kGlm{"glm-4.7-flash", 20, 192, 64, 512, 256, RopePairing::kHalfSplit};
const MlaShape kTiny{"tiny", 4, 16, 8, 32, 24, RopePairing::kAdjacent};

constexpr float kEps = 1e-6f;
constexpr int kLayers = 2;  // every step stores both layers (different rows) and attends in layer 1

ModelConfig mla_config(const MlaShape& s) {
  ModelConfig c;
  c.architecture = "mla-test";
  c.n_layers = kLayers;
  c.d_model = 64;
  c.n_heads = s.heads;
  c.n_kv_heads = s.heads;
  c.head_dim = s.rope;
  c.vocab_size = 16;
  c.context_length = 4096;
  c.rms_eps = kEps;
  c.rope.theta = 10000.0f;
  c.rope.dim = s.rope;
  c.rope.pairing = s.pairing;
  c.mla = {0, s.kv_lora, s.nope, s.rope, s.v, float(1.0 / std::sqrt(double(s.nope + s.rope)))};
  return c;
}

double r16(double x) { return fp16_to_fp32(fp32_to_fp16(float(x))); }

// fp16-representable values uniform in [-a, a].
std::vector<float> random_values(size_t n, float a, std::mt19937& rng) {
  return test::to_float(test::random_halves(n, -a, a, rng));
}

// Rotates the `rope` values at x (double) by the fp32 angles of `pos`, pairs as `pairing`.
void rotate(std::vector<double>& x, size_t offset, const MlaShape& s, const Rope& rope, int64_t pos) {
  std::vector<float> cs(static_cast<size_t>(s.rope));
  rope.angles(pos, cs.data());
  const int pairs = s.rope / 2;
  for (int j = 0; j < pairs; ++j) {
    const bool half = s.pairing == RopePairing::kHalfSplit;
    const size_t lo = offset + size_t(half ? j : 2 * j), hi = offset + size_t(half ? j + pairs : 2 * j + 1);
    const double a = x[lo], b = x[hi], c = cs[size_t(j)], sn = cs[size_t(pairs + j)];
    x[lo] = a * c - b * sn;
    x[hi] = b * c + a * sn;
  }
}

// The cache row of kv_a row `in` at position `pos`: [rms_norm(latent) · w | rope(k_pe)].
std::vector<double> cache_row(const MlaShape& s, const float* in, const std::vector<float>& w, const Rope& rope,
                              int64_t pos, bool round) {
  double sum = 0;
  for (int i = 0; i < s.kv_lora; ++i) sum += double(in[i]) * in[i];
  const double scale = 1.0 / std::sqrt(sum / s.kv_lora + double(kEps));
  std::vector<double> row(static_cast<size_t>(s.width()));
  for (int i = 0; i < s.kv_lora; ++i) row[size_t(i)] = in[i] * scale * w[size_t(i)];
  for (int i = 0; i < s.rope; ++i) row[size_t(s.kv_lora + i)] = in[s.kv_lora + i];
  rotate(row, size_t(s.kv_lora), s, rope, pos);
  if (round)
    for (double& v : row) v = r16(v);
  return row;
}

// One query row (heads × [q_nope | q_pe]) at position `pos` over cache rows [0, pos]; rounds where
// the GPU rounds when `round`. Returns heads × v outputs.
std::vector<double> attention_row(const MlaShape& s, float scale, const float* q, const std::vector<std::vector<double>>& rows,
                                  const std::vector<float>& kv_up, const Rope& rope, int64_t pos, bool round) {
  const auto rnd = [&](double x) { return round ? r16(x) : x; };
  const int64_t ctx = pos + 1;
  std::vector<double> out(size_t(s.heads) * size_t(s.v));
  for (int h = 0; h < s.heads; ++h) {
    const float* qh = q + h * (s.nope + s.rope);
    const float* w_uk = kv_up.data() + size_t(h) * size_t(s.nope + s.v) * size_t(s.kv_lora);
    const float* w_uv = w_uk + size_t(s.nope) * size_t(s.kv_lora);
    std::vector<double> query(static_cast<size_t>(s.width()), 0.0);
    for (int i = 0; i < s.nope; ++i)
      for (int c = 0; c < s.kv_lora; ++c) query[size_t(c)] += double(qh[i]) * w_uk[size_t(i) * size_t(s.kv_lora) + size_t(c)];
    for (int c = 0; c < s.kv_lora; ++c) query[size_t(c)] = rnd(query[size_t(c)]);
    for (int i = 0; i < s.rope; ++i) query[size_t(s.kv_lora + i)] = qh[s.nope + i];
    rotate(query, size_t(s.kv_lora), s, rope, pos);
    for (int i = 0; i < s.rope; ++i) query[size_t(s.kv_lora + i)] = rnd(query[size_t(s.kv_lora + i)]);
    std::vector<double> scores(static_cast<size_t>(ctx));
    double max = -INFINITY;
    for (int64_t j = 0; j < ctx; ++j) {
      double dot = 0;
      for (int c = 0; c < s.width(); ++c) dot += query[size_t(c)] * rows[size_t(j)][size_t(c)];
      scores[size_t(j)] = scale * dot;
      max = std::max(max, scores[size_t(j)]);
    }
    double sum = 0;
    std::vector<double> latent(static_cast<size_t>(s.kv_lora), 0.0);
    for (int64_t j = 0; j < ctx; ++j) {
      const double p = std::exp(scores[size_t(j)] - max);
      sum += p;
      for (int c = 0; c < s.kv_lora; ++c) latent[size_t(c)] += rnd(p) * rows[size_t(j)][size_t(c)];
    }
    for (double& v : latent) v = rnd(v / sum);
    for (int j = 0; j < s.v; ++j) {
      double acc = 0;
      for (int c = 0; c < s.kv_lora; ++c) acc += w_uv[size_t(j) * size_t(s.kv_lora) + size_t(c)] * latent[size_t(c)];
      out[size_t(h) * size_t(s.v) + size_t(j)] = rnd(acc);
    }
  }
  return out;
}

template <typename A, typename B>
double relative_rms(const std::vector<A>& got, const std::vector<B>& ref) {
  double err = 0, norm = 0;
  for (size_t i = 0; i < ref.size(); ++i) {
    err += (double(got[i]) - double(ref[i])) * (double(got[i]) - double(ref[i]));
    norm += double(ref[i]) * double(ref[i]);
  }
  return std::sqrt(err / norm);
}

// Both backends with one MLA cache each, fed the same steps; keeps every sequence's kv_a rows of
// layer 1 for the oracle.
class MlaRig {
 public:
  MlaRig(const MlaShape& s, int64_t capacity, int sequences, uint32_t seed)
      : s_(s), config_(mla_config(s)), rope_(config_.rope, s.rope), rng_(seed), history_(size_t(sequences)) {
    cpu_ = make_backend(DeviceKind::kCpu, pool_);
    gpu_ = make_backend(DeviceKind::kCuda, pool_);
    kv_norm_ = random_values(size_t(s.kv_lora), 1.0f, rng_);
    for (float& w : kv_norm_) w = 0.5f + std::abs(w);  // norm weights around 1
    // kv_b_proj at the scale of a trained model's (the scores come out of order 1).
    kv_up_ = random_values(size_t(s.heads) * size_t(s.nope + s.v) * size_t(s.kv_lora),
                           float(std::sqrt(3.0 / s.kv_lora)), rng_);
    for (Backend* be : {cpu_.get(), gpu_.get()}) {
      be->configure(config_);
      norms_.push_back(be->vector(kv_norm_));
      ups_.push_back(be->mla_kv_up(kv_up_));
      caches_.push_back(be->new_cache(capacity, sequences, {.block_size = 16}));
    }
  }

  // One step on both backends with fresh random kv_a and q rows; its tokens at `positions` of
  // `seqs` (one sequence: consecutive positions). Decode steps run through Backend::run (CUDA
  // graphs from the second step of a shape on). Checks every query row against the oracle.
  void step(const StepTokens& tokens, bool decode) {
    const auto n = int64_t(tokens.ids.size());
    for (auto& cache : caches_) {
      if (tokens.several()) {
        for (const int32_t seq : tokens.seqs) cache->make_room(1, seq);
      } else {
        cache->make_room(n, tokens.seq);
      }
    }
    std::vector<std::vector<float>> kv_a(kLayers);
    for (auto& rows : kv_a) rows = random_values(size_t(n) * size_t(s_.width()), 2.0f, rng_);
    const std::vector<float> q = random_values(size_t(n) * size_t(s_.q_cols()), 1.0f, rng_);
    std::vector<std::vector<float>> outs;
    for (int b = 0; b < 2; ++b) {
      Backend& be = b == 0 ? *cpu_ : *gpu_;
      KvCache& cache = *caches_[size_t(b)];
      be.begin_step(tokens, cache);
      std::vector<Act> kv_acts;
      for (int l = 0; l < kLayers; ++l) kv_acts.push_back(be.activations(l, n, s_.width(), ActType::kF16));
      const Act q_act = be.activations(kLayers, n, s_.q_cols(), ActType::kF16);
      const Act out = be.activations(kLayers + 1, n, int64_t(s_.heads) * s_.v, ActType::kF16);
      for (int l = 0; l < kLayers; ++l) fill(be, kv_acts[size_t(l)], kv_a[size_t(l)]);
      fill(be, q_act, q);
      const auto ops = [&] {
        for (int l = 0; l < kLayers; ++l) be.mla_store_kv(kv_acts[size_t(l)], *norms_[size_t(b)], kEps, cache, l);
        be.mla_attention(q_act, *ups_[size_t(b)], cache, kLayers - 1, out);
      };
      be.run(decode ? n : -1, ops);
      outs.push_back(read(be, out));
    }
    for (int64_t t = 0; t < n; ++t) {
      auto& rows = history_[size_t(tokens.sequence(t))];
      ASSERT_EQ(int64_t(rows.size()), tokens.position(t)) << "the rig feeds positions in order";
      rows.emplace_back(kv_a[kLayers - 1].begin() + t * s_.width(), kv_a[kLayers - 1].begin() + (t + 1) * s_.width());
      caches_[0]->advance(1, tokens.sequence(t));
      caches_[1]->advance(1, tokens.sequence(t));
    }
    const size_t out_cols = size_t(s_.heads) * size_t(s_.v);
    for (int64_t t = 0; t < n; ++t) {
      SCOPED_TRACE(testing::Message() << "sequence " << tokens.sequence(t) << " position " << tokens.position(t));
      const auto& rows = history_[size_t(tokens.sequence(t))];
      std::vector<std::vector<double>> exact_rows, rounded_rows;
      for (int64_t j = 0; j <= tokens.position(t); ++j) {
        exact_rows.push_back(cache_row(s_, rows[size_t(j)].data(), kv_norm_, rope_, j, false));
        rounded_rows.push_back(cache_row(s_, rows[size_t(j)].data(), kv_norm_, rope_, j, true));
      }
      const float* qt = q.data() + t * s_.q_cols();
      const float scale = config_.mla.softmax_scale;
      const auto exact = attention_row(s_, scale, qt, exact_rows, kv_up_, rope_, tokens.position(t), false);
      const auto emulated = attention_row(s_, scale, qt, rounded_rows, kv_up_, rope_, tokens.position(t), true);
      const std::vector<float> cpu(outs[0].begin() + t * std::ptrdiff_t(out_cols), outs[0].begin() + (t + 1) * std::ptrdiff_t(out_cols));
      const std::vector<float> gpu(outs[1].begin() + t * std::ptrdiff_t(out_cols), outs[1].begin() + (t + 1) * std::ptrdiff_t(out_cols));
      const double fp16_error = relative_rms(emulated, exact);
      EXPECT_LE(relative_rms(cpu, exact), 0.05 * fp16_error) << "the CPU backend and the oracle disagree";
      EXPECT_LE(relative_rms(gpu, cpu), 2 * fp16_error);
      ++checked_rows_;
    }
  }

  int checked_rows() const { return checked_rows_; }

 private:
  // Writes host values into an activation: fp32 on the CPU, fp16 on the GPU (after the GPU's
  // stream drained: the backend's stream does not order with these copies).
  void fill(Backend& be, const Act& a, const std::vector<float>& values) {
    if (be.kind() == DeviceKind::kCpu) {
      std::copy(values.begin(), values.end(), be.host_data(a));
      return;
    }
    std::vector<uint16_t> halves(values.size());
    for (size_t i = 0; i < values.size(); ++i) halves[i] = fp32_to_fp16(values[i]);
    test::cuda_ok(cudaDeviceSynchronize(), "cudaDeviceSynchronize");
    test::cuda_ok(cudaMemcpy(a.data, halves.data(), halves.size() * 2, cudaMemcpyHostToDevice), "cudaMemcpy");
    test::cuda_ok(cudaDeviceSynchronize(), "cudaDeviceSynchronize");
  }
  std::vector<float> read(Backend& be, const Act& a) {
    const size_t n = size_t(a.rows * a.cols);
    if (be.kind() == DeviceKind::kCpu) return std::vector<float>(be.host_data(a), be.host_data(a) + n);
    std::vector<uint16_t> halves(n);
    test::cuda_ok(cudaDeviceSynchronize(), "mla ops");
    test::cuda_ok(cudaMemcpy(halves.data(), a.data, n * 2, cudaMemcpyDeviceToHost), "cudaMemcpy");
    std::vector<float> values(n);
    for (size_t i = 0; i < n; ++i) values[i] = fp16_to_fp32(halves[i]);
    return values;
  }

  MlaShape s_;
  ModelConfig config_;
  Rope rope_;
  std::mt19937 rng_;
  ThreadPool pool_{2};
  std::unique_ptr<Backend> cpu_, gpu_;
  std::vector<float> kv_norm_, kv_up_;
  std::vector<std::unique_ptr<BackendTensor>> norms_, ups_;  // [cpu, gpu]
  std::vector<std::unique_ptr<KvCache>> caches_;
  std::vector<std::vector<std::vector<float>>> history_;  // per sequence, per position: layer 1's kv_a row
  int checked_rows_ = 0;
};

std::vector<int32_t> ids(int64_t n) { return std::vector<int32_t>(size_t(n), 1); }

// Prompts of 1, 13 and 50 positions (50 crosses three 16-position KV blocks) in sequences of
// their own, a second chunk of 30 continuing the 50 (pos0 > 0), then single-token decode steps
// (recorded into a CUDA graph and replayed).
TEST(CudaMla, PromptsAndDecodeStepsMatchCpu) {
  MARLIN_REQUIRE_GPU();
  for (const MlaShape& s : {kTiny, kGlm}) {
    SCOPED_TRACE(s.name);
    MlaRig rig(s, 128, 3, 7);
    const auto one = ids(1), thirteen = ids(13), fifty = ids(50), thirty = ids(30);
    rig.step(StepTokens::one_sequence(one, 0, 0), false);
    rig.step(StepTokens::one_sequence(thirteen, 0, 1), false);
    rig.step(StepTokens::one_sequence(fifty, 0, 2), false);
    rig.step(StepTokens::one_sequence(thirty, 50, 2), false);
    for (int i = 0; i < 5; ++i) rig.step(StepTokens::one_sequence(one, 80 + i, 2), true);
    EXPECT_EQ(rig.checked_rows(), 1 + 13 + 50 + 30 + 5);
  }
}

// Three sequences at different positions decode together (in a shuffled order) through the graph
// path; the cache is long enough that the decode kernel splits the context into chunks, and one
// sequence reaches past the first chunk.
TEST(CudaMla, BatchedDecodeOfThreeSequencesMatchesCpu) {
  MARLIN_REQUIRE_GPU();
  for (const MlaShape& s : {kTiny, kGlm}) {
    SCOPED_TRACE(s.name);
    MlaRig rig(s, 320, 3, 11);
    const std::vector<int64_t> prompt = {5, 40, 230};
    for (int q = 0; q < 3; ++q) {
      const auto prompt_ids = ids(prompt[size_t(q)]);
      rig.step(StepTokens::one_sequence(prompt_ids, 0, q), false);
    }
    const std::vector<int32_t> seqs = {2, 0, 1};
    const auto step_ids = ids(3);
    for (int step = 0; step < 5; ++step) {
      std::vector<int64_t> positions;
      for (const int32_t q : seqs) positions.push_back(prompt[size_t(q)] + step);
      rig.step(StepTokens::decode(step_ids, seqs, positions), true);
    }
    EXPECT_EQ(rig.checked_rows(), 5 + 40 + 230 + 15);
  }
}

// The cache rows themselves (ops.h mla_store_kv): each value within one fp16 rounding of the
// float64 oracle (plus fp32 arithmetic), the padding row not stored and other slots untouched.
TEST(CudaMla, StoredRowsAreTheNormalizedLatentAndTheRotatedKey) {
  MARLIN_REQUIRE_GPU();
  for (const MlaShape& s : {kTiny, kGlm}) {
    SCOPED_TRACE(s.name);
    std::mt19937 rng(3);
    const ModelConfig c = mla_config(s);
    const Rope rope(c.rope, s.rope);
    const int rows = 37, slots = 64, max_pos = 300;
    const std::vector<float> kv_a = random_values(size_t(rows) * size_t(s.width()), 2.0f, rng);
    std::vector<float> norm = random_values(size_t(s.kv_lora), 1.0f, rng);
    std::vector<int32_t> positions(rows), slot_of(rows);
    std::vector<int32_t> order(slots);
    for (int i = 0; i < slots; ++i) order[size_t(i)] = i;
    std::shuffle(order.begin(), order.end(), rng);
    for (int t = 0; t < rows; ++t) {
      positions[size_t(t)] = int32_t((t * 97 + 5) % max_pos);
      slot_of[size_t(t)] = t == 17 ? -1 : order[size_t(t)];  // row 17 is padding
    }
    std::vector<float> table(size_t(max_pos) * size_t(s.rope));
    for (int p = 0; p < max_pos; ++p) rope.angles(p, &table[size_t(p) * size_t(s.rope)]);
    std::vector<uint16_t> kv_a_halves(kv_a.size());
    for (size_t i = 0; i < kv_a.size(); ++i) kv_a_halves[i] = fp32_to_fp16(kv_a[i]);
    const uint16_t sentinel = 0x7e00;  // a NaN: no stored value has these bits
    test::DeviceBuffer<uint16_t> d_kv_a(kv_a_halves), d_cache(std::vector<uint16_t>(size_t(slots) * size_t(s.width()), sentinel));
    test::DeviceBuffer<float> d_norm(norm), d_table(table);
    test::DeviceBuffer<int32_t> d_positions(positions), d_slots(slot_of);
    cuda::MlaGeometry g{s.heads, s.nope, s.rope, s.kv_lora, s.v, s.pairing == RopePairing::kHalfSplit, 16};
    cuda::mla_store_kv(test::as_half(d_kv_a), rows, d_norm.get(), kEps, d_positions.get(), d_slots.get(),
                       d_table.get(), g, test::as_half(d_cache), nullptr);
    const std::vector<uint16_t> cache = d_cache.download();
    std::vector<bool> written(size_t(slots), false);
    for (int t = 0; t < rows; ++t) {
      if (slot_of[size_t(t)] < 0) continue;
      written[size_t(slot_of[size_t(t)])] = true;
      const auto ref = cache_row(s, &kv_a[size_t(t) * size_t(s.width())], norm, rope, positions[size_t(t)], false);
      std::vector<float> got(ref.size());
      for (size_t i = 0; i < ref.size(); ++i) got[i] = fp16_to_fp32(cache[size_t(slot_of[size_t(t)]) * size_t(s.width()) + i]);
      // One rounding to nearest (half an fp16 ulp, u·|x|) plus fp32 arithmetic on inputs of order 1.
      test::expect_within(got, ref, [&](size_t i) { return kHalfUlp * std::abs(ref[i]) + 1e-6; }, "cache row");
    }
    for (int slot = 0; slot < slots; ++slot) {
      if (written[size_t(slot)]) continue;
      for (int i = 0; i < s.width(); ++i)
        ASSERT_EQ(cache[size_t(slot) * size_t(s.width()) + size_t(i)], sentinel) << "slot " << slot << " was written";
    }
  }
}

// Shapes the kernels do not take are refused with the op's name, before any launch (host checks:
// this one runs without a GPU too).
TEST(CudaMla, UnsupportedShapesAreRefused) {
  cuda::MlaGeometry g{4, 16, 8, 1024, 24, true, 16};
  try {
    cuda::mla_attention_latent(nullptr, 1, 1, nullptr, nullptr, 1, 16, g, nullptr, 1.0f, nullptr, nullptr, nullptr);
    ADD_FAILURE() << "kv_lora 1024 was accepted";
  } catch (const Error& e) {
    EXPECT_EQ(std::string(e.what()), "mla_attention_latent: kv_lora must be a positive multiple of 8, at most 512 (got 1024)");
  }
  g.kv_lora = 36;
  EXPECT_THROW(cuda::mla_store_kv(nullptr, 1, nullptr, kEps, nullptr, nullptr, nullptr, g, nullptr, nullptr), Error);
}

}  // namespace
}  // namespace marlin
