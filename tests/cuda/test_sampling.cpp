// Sampling on the GPU (cuda::sample_rows) against the CPU's sample_row: the same token for the same
// logits, request and random number. Both follow backend/sampling_rule.h with integer sums and an
// exp made of IEEE +, −, × only, so there is no rounding margin to allow: every token must match
// (no draw is excluded). Also: edge cases, a chi-square test of the draws against the exact
// distribution, the model path (Model::forward_sample / decode_batch_sample on CUDA against the
// CPU rule on the same logits) and timings.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <limits>
#include <random>
#include <vector>

#include "backend/cuda/ops.h"
#include "backend/sampling.h"
#include "device_buffer.h"
#include "model/model.h"
#include "model/synthetic_source.h"
#include "test_util.h"

namespace marlin {
namespace {

using test::DeviceBuffer;

constexpr uint64_t kDraws = uint64_t(1) << 53;

// Samples every row on the GPU and on the CPU (each from its own copy of the logits).
struct Both {
  std::vector<int32_t> gpu, cpu;
};

Both sample_both(const std::vector<float>& logits, int64_t vocab, const SampleBatch& batch) {
  const int rows = int(batch.rows.size());
  DeviceBuffer<float> dlogits(logits);
  DeviceBuffer<SampleRow> drows(batch.rows);
  DeviceBuffer<TokenCount> dpen(batch.penalties.empty() ? std::vector<TokenCount>(1) : batch.penalties);
  DeviceBuffer<int32_t> dtokens(static_cast<size_t>(rows));
  check_sample_batch(batch.rows, batch.penalties, vocab);
  cuda::sample_rows(dlogits.get(), rows, vocab, drows.get(), dpen.get(), dtokens.get(), nullptr);
  Both out;
  out.gpu = dtokens.download();
  std::vector<float> host = logits;
  SampleScratch scratch;
  for (int r = 0; r < rows; ++r)
    out.cpu.push_back(sample_row(&host[size_t(r) * size_t(vocab)], vocab, batch.rows[size_t(r)], batch.penalties, scratch));
  return out;
}

SampleRow make_row(float temperature, int top_k, float top_p, float min_p) {
  SampleRow r;
  r.temperature = temperature;
  r.top_k = top_k;
  r.top_p = top_p;
  r.log_min_p = min_p > 0 ? std::log(min_p) : -INFINITY;
  return r;
}

// Parameter sets: greedy, defaults, each filter alone, filters together, extremes.
std::vector<SampleRow> parameter_sets() {
  return {make_row(0.0f, 0, 1.0f, 0.0f),      make_row(0.8f, 40, 0.95f, 0.05f), make_row(1.0f, 0, 1.0f, 0.0f),
          make_row(1.0f, 0, 0.9f, 0.0f),      make_row(0.7f, 0, 1.0f, 0.1f),    make_row(1.3f, 1000, 1.0f, 0.0f),
          make_row(0.5f, 5000, 0.5f, 0.01f),  make_row(2.0f, 0, 0.99f, 0.0f),   make_row(1.0f, 1, 1.0f, 0.0f),
          make_row(0.05f, 0, 0.3f, 0.0f),     make_row(1.0f, 3, 1e-7f, 0.0f),   make_row(1.0f, 0, 1.0f, 1.0f)};
}

// Random logits of three kinds: smooth normal, wide normal, coarse values with many ties.
std::vector<float> random_logits(int64_t count, int kind, std::mt19937& rng) {
  std::normal_distribution<float> normal(0.0f, kind == 0 ? 2.0f : 6.0f);
  std::vector<float> v(static_cast<size_t>(count));
  for (auto& x : v) x = kind == 2 ? std::round(normal(rng) * 2) / 2 : normal(rng);
  return v;
}

TEST(CudaSampling, MatchesCpuOnRandomLogits) {
  MARLIN_REQUIRE_GPU();
  std::mt19937 rng(2024);
  std::mt19937_64 draws(7);
  const auto sets = parameter_sets();
  int compared = 0;
  for (int64_t vocab : {49152, 128256}) {
    for (int batch : {1, 8}) {
      for (size_t set = 0; set < sets.size(); ++set) {
        for (int kind = 0; kind < 3; ++kind) {
          SCOPED_TRACE(testing::Message() << "vocab " << vocab << " batch " << batch << " set " << set << " kind " << kind);
          const auto logits = random_logits(vocab * batch, kind, rng);
          SampleBatch b;
          for (int r = 0; r < batch; ++r) {
            SampleRow row = sets[(set + size_t(r)) % sets.size()];  // rows of one batch differ
            row.draw = draws() >> 11;
            if ((r + kind) % 2 == 1) {  // penalties on half the rows, including the row's maximum
              row.repetition_penalty = 1.3f;
              row.presence_penalty = 0.4f;
              row.frequency_penalty = 0.2f;
              row.penalty_begin = int32_t(b.penalties.size());
              const float* l = &logits[size_t(r) * size_t(vocab)];
              const auto top = int32_t(std::max_element(l, l + vocab) - l);
              b.penalties.push_back({top, 3});
              std::uniform_int_distribution<int32_t> token(0, int32_t(vocab - 1));
              for (int i = 0; i < 60; ++i) {
                const int32_t t = token(rng);
                if (std::none_of(b.penalties.begin() + row.penalty_begin, b.penalties.end(),
                                 [&](const TokenCount& tc) { return tc.token == t; }))
                  b.penalties.push_back({t, 1 + i % 4});
              }
              row.penalty_count = int32_t(b.penalties.size()) - row.penalty_begin;
            }
            b.rows.push_back(row);
          }
          const Both got = sample_both(logits, vocab, b);
          for (int r = 0; r < batch; ++r) EXPECT_EQ(got.gpu[size_t(r)], got.cpu[size_t(r)]) << "row " << r;
          compared += batch;
        }
      }
    }
  }
  std::printf("compared %d draws, excluded none\n", compared);
}

// Few rows are split over a cluster of blocks (each a slice of the row, merged), many rows are not:
// every cluster size (on 132 SMs: 8 ranks for 1 and 16 rows, 4 for 17, 2 for 34, none for 67), vocabularies that do not divide into the slices (7: fewer values than
// blocks), coarse logits with many ties, penalties on the first and last token of every slice and
// on the maximum, and top-k sets larger than the fast path's candidate list.
TEST(CudaSampling, MatchesCpuAcrossRowSplits) {
  MARLIN_REQUIRE_GPU();
  std::mt19937 rng(77);
  std::mt19937_64 draws(78);
  auto sets = parameter_sets();
  sets.push_back(make_row(1.0f, 3000, 0.98f, 0.0f));
  sets.push_back(make_row(0.9f, 2100, 1.0f, 0.001f));
  int compared = 0;
  for (int64_t vocab : {int64_t(7), int64_t(1001), int64_t(128257)}) {
    for (int batch : {1, 16, 17, 34, 67}) {
      for (int kind : {0, 2}) {
        SCOPED_TRACE(testing::Message() << "vocab " << vocab << ", batch " << batch << ", kind " << kind);
        const auto logits = random_logits(vocab * batch, kind, rng);
        SampleBatch b;
        for (int r = 0; r < batch; ++r) {
          SampleRow row = sets[size_t(r + kind) % sets.size()];
          row.draw = draws() >> 11;
          row.repetition_penalty = 1.2f;
          row.presence_penalty = 0.3f;
          row.penalty_begin = int32_t(b.penalties.size());
          const float* l = &logits[size_t(r) * size_t(vocab)];
          std::vector<int32_t> marked = {int32_t(std::max_element(l, l + vocab) - l)};
          const int64_t slice = (vocab + 31) / 32 * 4;  // the kernel's slice for 8 blocks
          for (int64_t edge = 0; edge < vocab; edge += slice) {
            marked.push_back(int32_t(edge));
            marked.push_back(int32_t(std::min(vocab, edge + slice) - 1));
          }
          std::sort(marked.begin(), marked.end());
          marked.erase(std::unique(marked.begin(), marked.end()), marked.end());
          for (size_t i = 0; i < marked.size(); ++i) b.penalties.push_back({marked[i], 1 + int32_t(i % 3)});
          row.penalty_count = int32_t(b.penalties.size()) - row.penalty_begin;
          b.rows.push_back(row);
        }
        const Both got = sample_both(logits, vocab, b);
        for (int r = 0; r < batch; ++r) EXPECT_EQ(got.gpu[size_t(r)], got.cpu[size_t(r)]) << "row " << r;
        compared += batch;
      }
    }
  }
  std::printf("compared %d draws\n", compared);
}

TEST(CudaSampling, EdgeCases) {
  MARLIN_REQUIRE_GPU();
  const float inf = std::numeric_limits<float>::infinity(), nan = std::numeric_limits<float>::quiet_NaN();
  for (int64_t vocab : {1001, 49152}) {
    SCOPED_TRACE(testing::Message() << "vocab " << vocab);
    struct Case {
      const char* what;
      SampleRow row;
      std::vector<float> logits;
      int32_t expected;  // -1: only compared with the CPU
    };
    auto filled = [&](float v) { return std::vector<float>(static_cast<size_t>(vocab), v); };
    auto with = [](std::vector<float> v, std::vector<std::pair<int64_t, float>> set) {
      for (auto [i, x] : set) v[size_t(i)] = x;
      return v;
    };
    const int64_t last = vocab - 1, mid = vocab / 2;
    auto drawn = [](SampleRow r, uint64_t d) {
      r.draw = d;
      return r;
    };
    const std::vector<Case> cases = {
        {"greedy ties go to the lowest id", make_row(0, 0, 1, 0), with(filled(0.0f), {{mid, 5.0f}, {last, 5.0f}, {3, 4.0f}}), int32_t(mid)},
        {"greedy over NaN", make_row(0, 0, 1, 0), with(filled(nan), {{last, -3.0f}}), int32_t(last)},
        {"greedy all -inf", make_row(0, 0, 1, 0), filled(-inf), 0},
        {"all equal: uniform, last draw", drawn(make_row(1, 0, 1, 0), kDraws - 1), filled(0.25f), int32_t(last)},
        {"all equal: first draw", drawn(make_row(1, 0, 1, 0), 0), filled(0.25f), 0},
        {"all equal, top-k 5", drawn(make_row(1, 5, 1, 0), kDraws - 1), filled(0.25f), 4},
        {"all equal, top-p tiny", drawn(make_row(1, 0, 1e-7f, 0), kDraws - 1), filled(0.25f), 0},
        {"all equal, min-p 1", drawn(make_row(1, 0, 1, 1), kDraws / 3), filled(0.25f),
         int32_t(static_cast<unsigned __int128>(vocab) * (kDraws / 3) >> 53)},
        {"top-k 1", drawn(make_row(1, 1, 1, 0), kDraws - 1), with(filled(0.0f), {{mid, 1.0f}, {7, 1.0f}}), 7},
        {"top-p tiny", drawn(make_row(1, 0, 1e-7f, 0), kDraws - 1), with(filled(0.0f), {{mid, 1.0f}, {7, 0.999f}}), int32_t(mid)},
        {"min-p 1 keeps the maxima", drawn(make_row(1, 0, 1, 1), kDraws - 1), with(filled(0.0f), {{9, 2.0f}, {mid, 2.0f}, {8, 1.9999f}}), int32_t(mid)},
        {"+inf takes everything", drawn(make_row(1, 0, 1, 0), kDraws - 1), with(filled(1.0f), {{mid, inf}}), int32_t(mid)},
        {"NaN never drawn", drawn(make_row(1, 0, 1, 0), kDraws / 2), with(filled(nan), {{2, 0.0f}, {last, 0.0f}}), -1},
        {"all -inf: uniform", drawn(make_row(1, 0, 1, 0), kDraws - 1), filled(-inf), int32_t(last)},
        {"tiny temperature", drawn(make_row(1e-4f, 0, 1, 0), kDraws - 1), with(filled(0.0f), {{mid, 0.01f}}), int32_t(mid)},
    };
    for (const Case& c : cases) {
      SCOPED_TRACE(c.what);
      SampleBatch b;
      b.rows = {c.row};
      const Both got = sample_both(c.logits, vocab, b);
      ASSERT_TRUE(got.gpu[0] >= 0 && got.gpu[0] < vocab) << got.gpu[0];
      EXPECT_EQ(got.gpu[0], got.cpu[0]);
      if (c.expected >= 0) {
        EXPECT_EQ(got.gpu[0], c.expected);
      }
      EXPECT_FALSE(std::isnan(c.logits[size_t(got.gpu[0])])) << "drew a NaN logit";
    }
  }
}

// Pearson's chi-square of GPU draws against probabilities computed independently in double
// (exp of (l − max)/T over the kept tokens), bins with fewer than 5 expected draws merged. The
// critical value is the 0.1% upper quantile (Wilson–Hilferty), so a correct sampler fails about
// once in a thousand seeds; the seed is fixed.
void chi_square_check(const std::vector<float>& logits, SampleRow row, const std::vector<int>& kept_ids, int rows,
                      int launches) {
  const int64_t vocab = int64_t(logits.size());
  double max = -INFINITY;
  for (int id : kept_ids) max = std::max(max, double(logits[size_t(id)]));
  std::vector<double> p;
  double total = 0;
  for (int id : kept_ids) total += p.emplace_back(std::exp((double(logits[size_t(id)]) - max) / row.temperature));
  for (double& x : p) x /= total;

  std::vector<float> batch_logits;
  for (int r = 0; r < rows; ++r) batch_logits.insert(batch_logits.end(), logits.begin(), logits.end());
  DeviceBuffer<float> dlogits(batch_logits.size());
  DeviceBuffer<TokenCount> dpen(1);
  DeviceBuffer<int32_t> dtokens(static_cast<size_t>(rows));
  std::mt19937_64 rng(12345);
  std::vector<double> observed(kept_ids.size(), 0);
  int outside = 0;
  for (int l = 0; l < launches; ++l) {
    dlogits.upload(batch_logits);
    std::vector<SampleRow> rs(static_cast<size_t>(rows), row);
    for (auto& r : rs) r.draw = rng() >> 11;
    DeviceBuffer<SampleRow> drows(rs);
    cuda::sample_rows(dlogits.get(), rows, vocab, drows.get(), dpen.get(), dtokens.get(), nullptr);
    for (int32_t t : dtokens.download()) {
      const auto it = std::find(kept_ids.begin(), kept_ids.end(), t);
      if (it == kept_ids.end()) ++outside;
      else observed[size_t(it - kept_ids.begin())] += 1;
    }
  }
  EXPECT_EQ(outside, 0) << "draws outside the kept set";
  const double n = double(rows) * launches;
  double chi2 = 0, merged_obs = 0, merged_exp = 0;
  int bins = 0;
  for (size_t i = 0; i < p.size(); ++i) {
    if (n * p[i] < 5) {
      merged_obs += observed[i];
      merged_exp += n * p[i];
      continue;
    }
    chi2 += (observed[i] - n * p[i]) * (observed[i] - n * p[i]) / (n * p[i]);
    ++bins;
  }
  if (merged_exp > 0) {
    chi2 += (merged_obs - merged_exp) * (merged_obs - merged_exp) / merged_exp;
    ++bins;
  }
  const double df = bins - 1, z = 3.090;  // z: the 0.999 normal quantile
  const double critical = df * std::pow(1 - 2 / (9 * df) + z * std::sqrt(2 / (9 * df)), 3);
  std::printf("chi-square %.1f over %d bins (critical %.1f), %.0f draws\n", chi2, bins, critical, n);
  EXPECT_LT(chi2, critical);
}

TEST(CudaSampling, DrawsFollowTheDistribution) {
  MARLIN_REQUIRE_GPU();
  std::mt19937 rng(5);
  const int64_t vocab = 49152;
  auto logits = random_logits(vocab, 0, rng);
  std::vector<int> order(static_cast<size_t>(vocab));
  for (int i = 0; i < int(vocab); ++i) order[size_t(i)] = i;
  std::sort(order.begin(), order.end(), [&](int a, int b) { return logits[size_t(a)] > logits[size_t(b)]; });
  {
    SCOPED_TRACE("top-k 64, T 1.2");
    chi_square_check(logits, make_row(1.2f, 64, 1.0f, 0.0f), std::vector<int>(order.begin(), order.begin() + 64), 64,
                     400);
  }
  {
    // min-p 0.2 at T 0.5 keeps the tokens within 0.5·ln 5 ≈ 0.80 of the maximum logit.
    SCOPED_TRACE("min-p 0.2, T 0.5");
    std::vector<int> kept;
    for (int id : order)
      if ((double(logits[size_t(id)]) - logits[size_t(order[0])]) / 0.5 >= std::log(0.2)) kept.push_back(id);
    chi_square_check(logits, make_row(0.5f, 0, 1.0f, 0.2f), kept, 64, 400);
  }
}

// Through the model: the CUDA backend samples (only ids come back) exactly what the CPU rule
// picks from the same device's logits, for one sequence and for a batch, over steps that run
// directly, get recorded and replay from a CUDA graph.
TEST(CudaSampling, ModelSamplesOnTheDevice) {
  MARLIN_REQUIRE_GPU();
  auto source = make_synthetic_source("tiny", TensorFormat::parse("int4-g128"));
  ThreadPool pool(1);
  auto gpu = load_model(*source, pool, DeviceKind::kCuda);
  const int vocab = gpu->config().vocab_size;
  std::mt19937_64 rng(3);
  auto request = [&](int rows) {
    SampleBatch b;
    for (int r = 0; r < rows; ++r) {
      SampleRow row = make_row(r % 3 == 0 ? 0.0f : 1.0f, r % 2 ? 20 : 0, 0.9f, 0.01f);
      row.draw = rng() >> 11;
      row.repetition_penalty = 1.2f;
      row.penalty_begin = int32_t(b.penalties.size());
      row.penalty_count = 1;
      b.penalties.push_back({int32_t((r * 31 + 5) % vocab), 2});
      b.rows.push_back(row);
    }
    return b;
  };
  SampleScratch scratch;
  // One sequence: the same steps on two caches, one returning logits, one sampling.
  auto with_logits = gpu->new_cache(64), sampled = gpu->new_cache(64);
  std::vector<float> logits(static_cast<size_t>(vocab));
  std::vector<int32_t> tokens = {1, 2, 3};
  for (int step = 0; step < 5; ++step) {
    const SampleBatch b = request(1);
    gpu->forward(tokens, *with_logits, logits.data(), false);
    const int32_t expected = sample_row(logits.data(), vocab, b.rows[0], b.penalties, scratch);
    EXPECT_EQ(gpu->forward_sample(tokens, *sampled, b), expected) << "step " << step;
    tokens = {expected};
  }
  // A batch of 5 sequences.
  const int batch = 5;
  auto batch_logits_cache = gpu->new_cache(64, batch), batch_sampled = gpu->new_cache(64, batch);
  std::vector<float> batch_logits(size_t(batch) * size_t(vocab));
  std::vector<int32_t> step_tokens = {4, 5, 6, 7, 8}, next(static_cast<size_t>(batch));
  for (int step = 0; step < 5; ++step) {
    const SampleBatch b = request(batch);
    gpu->decode_batch(step_tokens, *batch_logits_cache, batch_logits.data());
    gpu->decode_batch_sample(step_tokens, *batch_sampled, b, next.data());
    for (int r = 0; r < batch; ++r) {
      const int32_t expected = sample_row(&batch_logits[size_t(r) * size_t(vocab)], vocab, b.rows[size_t(r)],
                                          b.penalties, scratch);
      EXPECT_EQ(next[size_t(r)], expected) << "step " << step << " sequence " << r;
    }
    step_tokens = next;
  }
}

// Kernel time per call (cudaEvents over 50 calls), printed for the record.
TEST(CudaSampling, Timings) {
  MARLIN_REQUIRE_GPU();
  std::mt19937 rng(1);
  const int64_t vocab = 128256;
  for (int rows : {1, 8, 32}) {
    const auto logits = random_logits(vocab * rows, 0, rng);
    DeviceBuffer<float> dlogits(logits);
    DeviceBuffer<TokenCount> dpen(1);
    DeviceBuffer<int32_t> dtokens(static_cast<size_t>(rows));
    const std::pair<const char*, SampleRow> configs[] = {
        {"greedy", make_row(0, 0, 1, 0)},
        {"T 0.8, top-k 40, top-p 0.95, min-p 0.05", make_row(0.8f, 40, 0.95f, 0.05f)},
        {"T 1, top-p 0.9", make_row(1.0f, 0, 0.9f, 0.0f)},
        {"T 1, no filter", make_row(1.0f, 0, 1.0f, 0.0f)},
    };
    for (const auto& [what, row] : configs) {
      DeviceBuffer<SampleRow> drows(std::vector<SampleRow>(static_cast<size_t>(rows), row));
      cudaEvent_t start, stop;
      test::cuda_ok(cudaEventCreate(&start), "event");
      test::cuda_ok(cudaEventCreate(&stop), "event");
      cuda::sample_rows(dlogits.get(), rows, vocab, drows.get(), dpen.get(), dtokens.get(), nullptr);  // warm-up
      test::cuda_ok(cudaEventRecord(start), "record");
      for (int i = 0; i < 50; ++i)
        cuda::sample_rows(dlogits.get(), rows, vocab, drows.get(), dpen.get(), dtokens.get(), nullptr);
      test::cuda_ok(cudaEventRecord(stop), "record");
      test::cuda_ok(cudaEventSynchronize(stop), "sync");
      float ms = 0;
      test::cuda_ok(cudaEventElapsedTime(&ms, start, stop), "elapsed");
      std::printf("sample_rows %2d x %lld, %-40s %8.1f us\n", rows, (long long)vocab, what, 1000 * ms / 50);
      cudaEventDestroy(start);
      cudaEventDestroy(stop);
    }
  }
}

}  // namespace
}  // namespace marlin
