// Conformance of the GPU transformer ops (backend/cuda/ops.h) with CPU references: RMSNorm (and its
// fusion with the residual add, and of fp16 rows in place), per-head Q/K RMSNorm, SwiGLU, GeGLU
// (GELU-tanh), embedding (scaled), fp16 → fp32, argmax, RoPE + KV-cache store.
// Inputs are fp16-exact; tolerances come from fp16 output rounding (kHalfUlp) plus the fp32 error
// of the computation, stated next to each check.
#include <gtest/gtest.h>

#include <cmath>
#include <limits>
#include <numbers>
#include <numeric>
#include <random>
#include <vector>

#include "backend/cpu/ops.h"
#include "backend/cuda/ops.h"
#include "device_buffer.h"
#include "model/rope.h"
#include "test_util.h"

namespace marlin::test {
namespace {

// fp16 output: ≤ 2^-11 relative from the final rounding; the fp32 arithmetic before it (sums of
// squares by a tree over ≤ 2^14 values, rsqrtf, two products) adds well under 2^-16 relative, so
// 2^-10 bounds the total. 2^-24 covers fp16's subnormal spacing near zero.
double fp16_output_tolerance(double ref) { return 2 * kHalfUlp * std::abs(ref) + 0x1p-24; }

std::vector<float> random_rows(int64_t rows, int64_t n, std::mt19937& rng) {
  std::uniform_real_distribution<float> dist(-3.0f, 3.0f);
  std::vector<float> x(size_t(rows * n));
  for (int64_t r = 0; r < rows; ++r) {
    const float scale = r % 3 == 0 ? 1.0f : (r % 3 == 1 ? 1e3f : 1e-3f);  // norms of very different size
    for (int64_t i = 0; i < n; ++i) x[size_t(r * n + i)] = dist(rng) * scale;
  }
  return x;
}

void check_rms_norm(int64_t rows, int64_t n, bool fused) {
  SCOPED_TRACE(testing::Message() << "rows " << rows << " n " << n << (fused ? " fused" : ""));
  std::mt19937 rng(uint32_t(rows * 7919 + n));
  std::vector<float> x = random_rows(rows, n, rng);
  std::vector<float> weight(static_cast<size_t>(n));
  std::uniform_real_distribution<float> wdist(0.5f, 1.5f);
  for (auto& w : weight) w = wdist(rng);
  const std::vector<uint16_t> delta = random_halves(size_t(rows * n), -2.0f, 2.0f, rng);
  const float eps = 1e-5f;

  DeviceBuffer<float> dx(x), dw(weight);
  DeviceBuffer<uint16_t> ddelta(delta), dout(size_t(rows * n));
  if (fused)
    cuda::add_rms_norm(dx.get(), as_half(ddelta), dw.get(), eps, rows, n, as_half(dout), nullptr);
  else
    cuda::rms_norm(dx.get(), dw.get(), eps, rows, n, as_half(dout), nullptr);
  const std::vector<float> got = to_float(dout.download());
  const std::vector<float> x_after = dx.download();

  std::vector<float> expected_x = x;
  if (fused)
    for (size_t i = 0; i < x.size(); ++i) expected_x[i] = x[i] + fp16_to_fp32(delta[i]);  // one fp32 add
  EXPECT_EQ(x_after, expected_x) << "the residual stream after the op";

  std::vector<double> ref(x.size());
  std::vector<float> row(static_cast<size_t>(n));
  for (int64_t r = 0; r < rows; ++r) {
    cpu::rms_norm(expected_x.data() + r * n, weight.data(), eps, n, row.data());
    for (int64_t i = 0; i < n; ++i) ref[size_t(r * n + i)] = row[size_t(i)];
  }
  expect_within(got, ref, [&](size_t i) { return fp16_output_tolerance(ref[i]); }, "rms_norm");
}

TEST(CudaOps, RmsNorm) {
  MARLIN_REQUIRE_GPU();
  for (auto [rows, n] : {std::pair<int64_t, int64_t>{1, 8}, {3, 576}, {17, 4096}, {2, 8200}, {5, 16384}})
    check_rms_norm(rows, n, false);
}

TEST(CudaOps, AddRmsNorm) {
  MARLIN_REQUIRE_GPU();
  for (auto [rows, n] : {std::pair<int64_t, int64_t>{1, 8}, {7, 576}, {33, 2048}, {3, 8200}})
    check_rms_norm(rows, n, true);
}

// Per-head norms of q and k in a qkv row (Qwen3, Gemma 3); v and the padding after it stay as they were.
TEST(CudaOps, QkNorm) {
  MARLIN_REQUIRE_GPU();
  struct Shape {
    int64_t rows;
    int q_heads, k_heads, head_dim;
  };
  for (const Shape s : {Shape{1, 4, 1, 256}, Shape{5, 16, 8, 128}, Shape{3, 3, 1, 64}, Shape{2, 2, 2, 8}}) {
    SCOPED_TRACE(testing::Message() << "rows " << s.rows << " heads " << s.q_heads << "/" << s.k_heads << " dim "
                                    << s.head_dim);
    const int64_t stride = int64_t(s.q_heads + 2 * s.k_heads) * s.head_dim + 8;  // v and 8 more values after k
    std::mt19937 rng(uint32_t(s.rows * 31 + s.head_dim));
    std::vector<uint16_t> qkv = random_halves(size_t(s.rows * stride), -4.0f, 4.0f, rng);
    for (int i = 0; i < s.head_dim; ++i) qkv[size_t(i)] = fp32_to_fp16(1e-3f * float(i % 7));  // a tiny head
    std::vector<float> qw(size_t(s.head_dim)), kw(size_t(s.head_dim));
    std::uniform_real_distribution<float> wdist(0.5f, 1.5f);
    for (auto& w : qw) w = wdist(rng);
    for (auto& w : kw) w = -wdist(rng);
    DeviceBuffer<uint16_t> dqkv(qkv);
    DeviceBuffer<float> dqw(qw), dkw(kw);
    const float eps = 1e-6f;
    cuda::qk_norm(as_half(dqkv), s.rows, stride, s.q_heads, s.k_heads, s.head_dim, dqw.get(), dkw.get(), eps, nullptr);
    const std::vector<float> got = to_float(dqkv.download());
    std::vector<double> ref(got.size());
    std::vector<float> head(size_t(s.head_dim)), normed(size_t(s.head_dim));
    for (int64_t r = 0; r < s.rows; ++r) {
      for (int64_t i = 0; i < stride; ++i) ref[size_t(r * stride + i)] = fp16_to_fp32(qkv[size_t(r * stride + i)]);
      for (int h = 0; h < s.q_heads + s.k_heads; ++h) {
        const int64_t at = r * stride + int64_t(h) * s.head_dim;
        for (int i = 0; i < s.head_dim; ++i) head[size_t(i)] = fp16_to_fp32(qkv[size_t(at + i)]);
        cpu::rms_norm(head.data(), h < s.q_heads ? qw.data() : kw.data(), eps, s.head_dim, normed.data());
        for (int i = 0; i < s.head_dim; ++i) ref[size_t(at + i)] = normed[size_t(i)];
      }
    }
    expect_within(got, ref, [&](size_t i) { return fp16_output_tolerance(ref[i]); }, "qk_norm");
  }
}

// In place on fp16 rows (Gemma's norms of a block's outputs), rows of very different sizes.
TEST(CudaOps, RmsNormHalf) {
  MARLIN_REQUIRE_GPU();
  for (auto [rows, n] : {std::pair<int64_t, int64_t>{1, 8}, {4, 640}, {3, 4104}}) {
    SCOPED_TRACE(testing::Message() << "rows " << rows << " n " << n);
    std::mt19937 rng(uint32_t(rows * 13 + n));
    std::vector<uint16_t> a = random_halves(size_t(rows * n), -3.0f, 3.0f, rng);
    for (int64_t i = 0; i < n; ++i) a[size_t(i)] = fp32_to_fp16(fp16_to_fp32(a[size_t(i)]) * 1e3f);  // a large row
    std::vector<float> weight(static_cast<size_t>(n));
    std::uniform_real_distribution<float> wdist(0.5f, 1.5f);
    for (auto& w : weight) w = wdist(rng);
    DeviceBuffer<uint16_t> da(a);
    DeviceBuffer<float> dw(weight);
    const float eps = 1e-6f;
    cuda::rms_norm_half(as_half(da), dw.get(), eps, rows, n, nullptr);
    const std::vector<float> got = to_float(da.download());
    std::vector<double> ref(got.size());
    std::vector<float> row(static_cast<size_t>(n)), normed(static_cast<size_t>(n));
    for (int64_t r = 0; r < rows; ++r) {
      for (int64_t i = 0; i < n; ++i) row[size_t(i)] = fp16_to_fp32(a[size_t(r * n + i)]);
      cpu::rms_norm(row.data(), weight.data(), eps, n, normed.data());
      for (int64_t i = 0; i < n; ++i) ref[size_t(r * n + i)] = normed[size_t(i)];
    }
    expect_within(got, ref, [&](size_t i) { return fp16_output_tolerance(ref[i]); }, "rms_norm_half");
  }
}

TEST(CudaOps, SiluMul) {
  MARLIN_REQUIRE_GPU();
  for (auto [rows, f] : {std::pair<int64_t, int64_t>{1, 8}, {3, 1536}, {5, 8200}}) {
    SCOPED_TRACE(testing::Message() << "rows " << rows << " f " << f);
    std::mt19937 rng(uint32_t(rows + f));
    std::vector<uint16_t> gate_up = random_halves(size_t(rows * 2 * f), -8.0f, 8.0f, rng);
    // Saturated regions of silu: large positive and negative gates.
    gate_up[0] = fp32_to_fp16(-30.0f);
    gate_up[1] = fp32_to_fp16(30.0f);
    gate_up[2] = fp32_to_fp16(-1000.0f);
    DeviceBuffer<uint16_t> din(gate_up), dout(size_t(rows * f));
    cuda::silu_mul(as_half(din), rows, f, as_half(dout), nullptr);
    const std::vector<float> got = to_float(dout.download());
    std::vector<double> ref(got.size());
    for (int64_t r = 0; r < rows; ++r)
      for (int64_t i = 0; i < f; ++i) {
        const double g = fp16_to_fp32(gate_up[size_t(r * 2 * f + i)]);
        const double u = fp16_to_fp32(gate_up[size_t(r * 2 * f + f + i)]);
        ref[size_t(r * f + i)] = g / (1.0 + std::exp(-g)) * u;
      }
    // fp16 output rounding; expf, the division and the product in fp32 add < 2^-18 relative.
    expect_within(got, ref, [&](size_t i) { return fp16_output_tolerance(ref[i]); }, "silu_mul");
  }
}

TEST(CudaOps, GeluTanhMul) {
  MARLIN_REQUIRE_GPU();
  for (auto [rows, f] : {std::pair<int64_t, int64_t>{1, 8}, {3, 2048}, {5, 8200}}) {
    SCOPED_TRACE(testing::Message() << "rows " << rows << " f " << f);
    std::mt19937 rng(uint32_t(rows * 3 + f));
    std::vector<uint16_t> gate_up = random_halves(size_t(rows * 2 * f), -8.0f, 8.0f, rng);
    gate_up[0] = fp32_to_fp16(-30.0f);  // saturated: gelu → 0 and → g
    gate_up[1] = fp32_to_fp16(30.0f);
    gate_up[2] = fp32_to_fp16(-1000.0f);
    DeviceBuffer<uint16_t> din(gate_up), dout(size_t(rows * f));
    cuda::gelu_tanh_mul(as_half(din), rows, f, as_half(dout), nullptr);
    const std::vector<float> got = to_float(dout.download());
    std::vector<double> ref(got.size());
    for (int64_t r = 0; r < rows; ++r)
      for (int64_t i = 0; i < f; ++i) {
        const double g = fp16_to_fp32(gate_up[size_t(r * 2 * f + i)]);
        const double u = fp16_to_fp32(gate_up[size_t(r * 2 * f + f + i)]);
        ref[size_t(r * f + i)] = 0.5 * g * (1 + std::tanh(std::sqrt(2 / std::numbers::pi) * (g + 0.044715 * g * g * g))) * u;
      }
    // fp16 output rounding; tanhf and the fp32 products add a few 2^-23 relative, and near
    // gelu's zero crossing (g ≈ -3…-5, where 1 + tanh cancels) at most 2^-22·|g·u| absolute.
    expect_within(got, ref, [&](size_t i) {
      const double g = fp16_to_fp32(gate_up[(i / size_t(f)) * size_t(2 * f) + i % size_t(f)]);
      const double u = fp16_to_fp32(gate_up[(i / size_t(f)) * size_t(2 * f) + size_t(f) + i % size_t(f)]);
      return fp16_output_tolerance(ref[i]) + 0x1p-22 * std::abs(g * u);
    }, "gelu_tanh_mul");
  }
}

TEST(CudaOps, Embed) {
  MARLIN_REQUIRE_GPU();
  const int64_t vocab = 1000, d = 576;
  std::mt19937 rng(5);
  const std::vector<uint16_t> table = random_halves(size_t(vocab * d), -1.0f, 1.0f, rng);
  std::vector<int32_t> tokens = {0, 999, 17, 17, 500, 3, 998};
  DeviceBuffer<uint16_t> dtable(table);
  DeviceBuffer<int32_t> dtokens(tokens);
  DeviceBuffer<float> dx(tokens.size() * size_t(d));
  for (const float scale : {1.0f, std::sqrt(640.0f)}) {  // Gemma scales embeddings by sqrt(d_model)
    cuda::embed(as_half(dtable), d, dtokens.get(), int64_t(tokens.size()), scale, dx.get(), nullptr);
    const std::vector<float> x = dx.download();
    for (size_t t = 0; t < tokens.size(); ++t)
      for (int64_t i = 0; i < d; ++i)
        ASSERT_EQ(x[t * size_t(d) + size_t(i)], fp16_to_fp32(table[size_t(tokens[t] * d + i)]) * scale)
            << "token " << t << " element " << i << " scale " << scale;
  }
}

TEST(CudaOps, HalfToFloat) {
  MARLIN_REQUIRE_GPU();
  for (int64_t count : {1, 7, 8, 1001, 3 * 49152 + 5}) {
    std::mt19937 rng(static_cast<uint32_t>(count));
    std::vector<uint16_t> in = random_halves(size_t(count) + 1, -100.0f, 100.0f, rng);
    in[0] = 0x7c00;  // +inf
    DeviceBuffer<uint16_t> din(in);
    DeviceBuffer<float> dout(size_t(count) + 1);
    // Aligned, then both pointers one element off (the unvectorized path).
    for (int64_t offset : {0, 1}) {
      cuda::half_to_float(as_half(din) + offset, count, dout.get() + offset, nullptr);
      const std::vector<float> out = dout.download();
      for (int64_t i = 0; i < count; ++i)
        ASSERT_EQ(out[size_t(i + offset)], fp16_to_fp32(in[size_t(i + offset)]))
            << "count " << count << " offset " << offset << " element " << i;
    }
  }
}

int32_t reference_argmax(const float* row, int64_t vocab) {
  int32_t best = -1;
  for (int64_t i = 0; i < vocab; ++i)
    if (!std::isnan(row[i]) && (best < 0 || row[i] > row[best])) best = int32_t(i);
  return best < 0 ? 0 : best;
}

TEST(CudaOps, Argmax) {
  MARLIN_REQUIRE_GPU();
  const float inf = std::numeric_limits<float>::infinity(), nan = std::numeric_limits<float>::quiet_NaN();
  for (int64_t vocab : {1, 1001, 49152, 128256}) {
    SCOPED_TRACE(testing::Message() << "vocab " << vocab);
    const int batch = 7;
    std::mt19937 rng(static_cast<uint32_t>(vocab));
    std::uniform_real_distribution<float> dist(-20.0f, 20.0f);
    std::vector<float> logits(size_t(batch * vocab));
    for (auto& v : logits) v = dist(rng);
    auto row = [&](int b) { return logits.data() + b * vocab; };
    std::uniform_int_distribution<int64_t> pick(0, vocab - 1);
    // Row 1: the maximum twice (ties go to the lower index), far apart.
    const int64_t lo = pick(rng) / 2, hi = std::max(lo, vocab - 1 - pick(rng) / 2);
    row(1)[lo] = row(1)[hi] = 50.0f;
    // Row 2: all equal; row 3: all -inf but one; row 4: NaNs around a maximum; row 5: every value -inf.
    std::fill(row(2), row(2) + vocab, 1.5f);
    std::fill(row(3), row(3) + vocab, -inf);
    row(3)[pick(rng)] = -1e30f;
    row(4)[pick(rng)] = 60.0f;
    for (int k = 0; k < 5; ++k) row(4)[pick(rng)] = nan;
    std::fill(row(5), row(5) + vocab, -inf);
    row(6)[vocab - 1] = 1e30f;

    DeviceBuffer<float> dlogits(logits);
    DeviceBuffer<int32_t> dtokens(static_cast<size_t>(batch));
    cuda::argmax(dlogits.get(), batch, vocab, dtokens.get(), nullptr);
    const std::vector<int32_t> tokens = dtokens.download();
    for (int b = 0; b < batch; ++b) EXPECT_EQ(tokens[size_t(b)], reference_argmax(row(b), vocab)) << "row " << b;
  }
}

// --- RoPE + KV-cache store ---

struct RopeCase {
  int n_heads, n_kv_heads, head_dim, rotary_dim;
  bool half_split;
  int page_size;
  RopeScaling scaling;
};

void check_rope_store_kv(const RopeCase& c) {
  SCOPED_TRACE(testing::Message() << "heads " << c.n_heads << "/" << c.n_kv_heads << " hd " << c.head_dim << " rd "
                                  << c.rotary_dim << (c.half_split ? " half-split" : " adjacent") << " page "
                                  << c.page_size);
  cuda::AttentionGeometry g;
  g.n_heads = c.n_heads;
  g.n_kv_heads = c.n_kv_heads;
  g.head_dim = c.head_dim;
  g.rotary_dim = c.rotary_dim;
  g.rope_half_split = c.half_split;
  g.page_size = c.page_size;
  RopeConfig rc;
  rc.theta = 500000.0f;
  rc.dim = c.rotary_dim;
  rc.pairing = c.half_split ? RopePairing::kHalfSplit : RopePairing::kAdjacent;
  rc.scaling = c.scaling;
  rc.factor = 4.0f;
  rc.original_context = 2048;
  const Rope rope(rc, c.head_dim);

  const int rows = 37, max_pos = 5000, pages = 24;
  const int64_t row_len = int64_t(c.n_heads + 2 * c.n_kv_heads) * c.head_dim;
  std::mt19937 rng(uint32_t(c.head_dim * 31 + c.rotary_dim));
  const std::vector<uint16_t> qkv = random_halves(size_t(rows * row_len), -2.0f, 2.0f, rng);
  std::vector<int32_t> positions(rows), slots(size_t(pages * c.page_size));
  std::uniform_int_distribution<int32_t> pos_dist(0, max_pos - 1);
  for (auto& p : positions) p = pos_dist(rng);
  positions[0] = 0;
  positions[1] = max_pos - 1;
  std::iota(slots.begin(), slots.end(), 0);
  std::shuffle(slots.begin(), slots.end(), rng);
  slots.resize(size_t(rows));
  slots[3] = -1;  // a padding row: rotated, not stored
  std::vector<float> cos_sin(size_t(max_pos) * size_t(c.rotary_dim));
  for (int p = 0; p < max_pos; ++p) rope.angles(p, cos_sin.data() + size_t(p) * size_t(c.rotary_dim));

  const size_t cache_len = size_t(pages) * size_t(c.n_kv_heads) * size_t(c.page_size) * size_t(c.head_dim);
  const uint16_t poison = 0xfe00;  // a NaN: any slot written by mistake shows
  DeviceBuffer<uint16_t> dqkv(qkv), dkeys(std::vector<uint16_t>(cache_len, poison)),
      dvalues(std::vector<uint16_t>(cache_len, poison));
  DeviceBuffer<int32_t> dpos(positions), dslots(slots);
  DeviceBuffer<float> dcs(cos_sin);
  cuda::rope_store_kv(as_half(dqkv), rows, dpos.get(), dslots.get(), dcs.get(), g,
                      {as_half(dkeys), as_half(dvalues)}, nullptr);
  const std::vector<uint16_t> out = dqkv.download(), keys = dkeys.download(), values = dvalues.download();

  // Reference: Rope::rotate on the fp32 values of the q and k heads.
  const int rotated_heads = c.n_heads + c.n_kv_heads;
  std::vector<float> ref_heads, in_heads;
  std::vector<double> ref;
  std::vector<float> got;
  std::vector<double> tol;
  for (int t = 0; t < rows; ++t) {
    in_heads.assign(size_t(rotated_heads * c.head_dim), 0.0f);
    for (size_t i = 0; i < in_heads.size(); ++i) in_heads[i] = fp16_to_fp32(qkv[size_t(t * row_len) + i]);
    ref_heads = in_heads;
    rope.rotate(ref_heads.data(), rotated_heads, cos_sin.data() + size_t(positions[size_t(t)]) * size_t(c.rotary_dim));
    for (int h = 0; h < rotated_heads; ++h)
      for (int d = 0; d < c.head_dim; ++d) {
        const size_t i = size_t(h * c.head_dim + d);
        // The partner value that enters this one's rotation (for the fp32 error bound).
        const int half = c.rotary_dim / 2;
        int partner = d;
        if (d < c.rotary_dim) partner = c.half_split ? (d < half ? d + half : d - half) : (d ^ 1);
        ref.push_back(ref_heads[i]);
        got.push_back(fp16_to_fp32(out[size_t(t * row_len) + i]));
        // fp16 rounding of the result, plus fp32 products and a sum (fused or not) of terms
        // bounded by |a| + |b| (|cos|, |sin| ≤ mscale ≤ 1.2).
        tol.push_back(2 * kHalfUlp * std::abs(ref_heads[i]) +
                      0x1p-21 * (std::abs(in_heads[i]) + std::abs(in_heads[size_t(h * c.head_dim + partner)])) +
                      0x1p-24);
      }
    // v passes through untouched.
    for (int64_t i = int64_t(rotated_heads) * c.head_dim; i < row_len; ++i)
      ASSERT_EQ(out[size_t(t * row_len + i)], qkv[size_t(t * row_len + i)]) << "token " << t << " v element " << i;
  }
  expect_within(got, ref, [&](size_t i) { return tol[i]; }, "rotated q/k");

  // The cache holds exactly the rotated k (as left in qkv) and v at each token's slot, nothing else.
  std::vector<char> written(cache_len, 0);
  for (int t = 0; t < rows; ++t) {
    const int slot = slots[size_t(t)];
    if (slot < 0) continue;
    const int page = slot / c.page_size, in_page = slot % c.page_size;
    for (int kvh = 0; kvh < c.n_kv_heads; ++kvh)
      for (int d = 0; d < c.head_dim; ++d) {
        const size_t at = ((size_t(page) * size_t(c.n_kv_heads) + size_t(kvh)) * size_t(c.page_size) + size_t(in_page)) *
                              size_t(c.head_dim) + size_t(d);
        const size_t k_in_row = size_t(t * row_len) + size_t((c.n_heads + kvh) * c.head_dim + d);
        const size_t v_in_row = k_in_row + size_t(c.n_kv_heads * c.head_dim);
        ASSERT_EQ(keys[at], out[k_in_row]) << "token " << t << " kv head " << kvh << " dim " << d;
        ASSERT_EQ(values[at], qkv[v_in_row]) << "token " << t << " kv head " << kvh << " dim " << d;
        written[at] = 1;
      }
  }
  for (size_t i = 0; i < cache_len; ++i) {
    if (!written[i]) {
      ASSERT_TRUE(keys[i] == poison && values[i] == poison) << "cache element " << i << " overwritten";
    }
  }
}

// qk_norm inside rope_store_kv gives the bits of qk_norm, then rope_store_kv (each checked
// against its reference above), in qkv and in the cache.
void check_fused_qk_norm(int n_heads, int n_kv_heads, int head_dim, bool half_split) {
  SCOPED_TRACE(testing::Message() << "heads " << n_heads << "/" << n_kv_heads << " hd " << head_dim);
  cuda::AttentionGeometry g;
  g.n_heads = n_heads;
  g.n_kv_heads = n_kv_heads;
  g.head_dim = head_dim;
  g.rotary_dim = head_dim;
  g.rope_half_split = half_split;
  g.page_size = 16;
  const int rows = 11, max_pos = 64, pages = 2;
  const int64_t row_len = int64_t(n_heads + 2 * n_kv_heads) * head_dim;
  std::mt19937 rng(uint32_t(head_dim + n_heads));
  const std::vector<uint16_t> qkv = random_halves(size_t(rows * row_len), -3.0f, 3.0f, rng);
  std::vector<float> qw(static_cast<size_t>(head_dim)), kw(qw.size()), cos_sin(static_cast<size_t>(max_pos * head_dim));
  std::uniform_real_distribution<float> weight(0.5f, 1.5f), angle(-1.0f, 1.0f);
  for (auto& w : qw) w = weight(rng);
  for (auto& w : kw) w = weight(rng);
  for (auto& v : cos_sin) v = angle(rng);
  std::vector<int32_t> positions(rows), slots(rows);
  for (int t = 0; t < rows; ++t) positions[size_t(t)] = (t * 7) % max_pos, slots[size_t(t)] = (t * 5) % (pages * 16);
  DeviceBuffer<int32_t> dpos(positions), dslots(slots);
  DeviceBuffer<float> dcs(cos_sin), dqw(qw), dkw(kw);
  const size_t cache_len = size_t(pages * n_kv_heads * 16 * head_dim);
  std::vector<std::vector<uint16_t>> results;
  for (bool fused : {false, true}) {
    DeviceBuffer<uint16_t> dqkv(qkv), dkeys(std::vector<uint16_t>(cache_len, 0)),
        dvalues(std::vector<uint16_t>(cache_len, 0));
    const float eps = 1e-6f;
    if (!fused) cuda::qk_norm(as_half(dqkv), rows, row_len, n_heads, n_kv_heads, head_dim, dqw.get(), dkw.get(), eps, nullptr);
    cuda::rope_store_kv(as_half(dqkv), rows, dpos.get(), dslots.get(), dcs.get(), g, {as_half(dkeys), as_half(dvalues)},
                        nullptr, fused ? cuda::HeadNorm{dqw.get(), dkw.get(), eps} : cuda::HeadNorm{});
    results.push_back(dqkv.download());
    results.push_back(dkeys.download());
    results.push_back(dvalues.download());
  }
  EXPECT_EQ(results[3], results[0]) << "qkv";
  EXPECT_EQ(results[4], results[1]) << "keys";
  EXPECT_EQ(results[5], results[2]) << "values";
}

TEST(CudaOps, QkNormInsideRopeStoreKvMatchesTwoLaunches) {
  MARLIN_REQUIRE_GPU();
  check_fused_qk_norm(32, 4, 128, true);  // Qwen3
  check_fused_qk_norm(4, 1, 256, true);   // Gemma 3
  check_fused_qk_norm(6, 2, 64, false);
}

TEST(CudaOps, RopeStoreKv) {
  MARLIN_REQUIRE_GPU();
  check_rope_store_kv({9, 3, 64, 64, true, 16, RopeScaling::kNone});
  check_rope_store_kv({32, 8, 128, 128, false, 32, RopeScaling::kNone});
  check_rope_store_kv({8, 8, 128, 96, false, 16, RopeScaling::kYarn});
  check_rope_store_kv({4, 1, 256, 64, true, 64, RopeScaling::kLinear});
}

}  // namespace
}  // namespace marlin::test
