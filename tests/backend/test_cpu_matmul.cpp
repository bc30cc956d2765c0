#include <gtest/gtest.h>

#include <cmath>
#include <memory>
#include <random>

#include "backend/cpu/cpu_isa.h"
#include "backend/cpu/int8_layout.h"
#include "backend/cpu/matmul.h"
#include "core/error.h"
#include "matmul_test_data.h"

namespace marlin::cpu {
namespace {

using test::IsaGuard;
using test::kUnit;
using test::pool;
using test::supported_isas;

bool is_float_type(GgmlType t) { return t == GgmlType::F32 || t == GgmlType::F16 || t == GgmlType::BF16; }

// Per weight, the magnitude of the terms the int8 kernels add for it: |scale·u| + |min·factor|
// (the kernels sum these two parts separately, so they, not |w|, bound the rounding error).
std::vector<double> int8_term_magnitudes(GgmlType type, const std::vector<uint8_t>& bytes, int64_t rows,
                                         int64_t cols) {
  const Int8Format fmt = int8_format(type);
  const uint64_t row_bytes = *ggml_row_bytes(type, uint64_t(cols));
  std::vector<double> mag(size_t(rows * cols), 0.0);
  WeightGroup wg;
  for (int64_t r = 0; r < rows; ++r)
    for (int64_t g = 0; g < groups_for(cols); ++g) {
      unpack_group_scalar(type, bytes.data() + r * row_bytes, cols, g, wg);
      for (int p = 0; p < kGroup; ++p) {
        const int64_t k = g * kGroup + element_at(fmt.layout, p);
        if (k >= cols) continue;
        const double factor = fmt.asymmetric ? 1.0 : std::abs(fmt.offset);
        mag[size_t(r * cols + k)] = std::fabs(double(wg.scale[p / 4]) * wg.u[p]) + std::fabs(wg.min[p / 4]) * factor;
      }
    }
  return mag;
}

// Longest chain of fp32 roundings any product goes through before reaching y, per path:
// scalar kernels add every term into one float in sequence; SIMD kernels keep one chain per
// 4-value lane (AVX-512: at most 2 fmas per 128-value group in a chain; AVX2: 4, one per 32-value
// quarter sharing the 8-lane accumulator), plus the conversion, the mul by the activation scale,
// the combine of two chains and a ≤ 32-lane tree reduction — at most 10 more, rounded up to 16
// (scalar: the conversion and the two scale multiplies, 8).
// Two more cover the oracle's own rounding of dequantized weights.
double rounding_steps(CpuIsa isa, GgmlType type, int64_t cols) {
  if (is_float_type(type)) return isa == CpuIsa::Scalar ? double(cols) + 2 : double(cols) / 8.0 + 16;
  const double groups = double(groups_for(cols));
  const double per_group = isa == CpuIsa::Scalar ? 64.0 : has_avx512(isa) ? 2.0 : 4.0;
  return per_group * groups + (isa == CpuIsa::Scalar ? 8 : 16) + 2;
}

struct Case {
  GgmlType type;
  int64_t m, cols, rows;
  int threads;
};

QuantTensor ggml_tensor(GgmlType type, int64_t rows, int64_t cols, const uint8_t* data, uint64_t row_bytes) {
  QuantTensor t;
  t.format = format_of_ggml(type);
  t.rows = rows;
  t.cols = cols;
  t.codes = data;
  t.code_row_bytes = row_bytes;
  return t;
}

void check_case(const Case& c, std::mt19937& rng) {
  SCOPED_TRACE(::testing::Message() << ggml_type_info(c.type).name << " m=" << c.m << " K=" << c.cols
                                    << " rows=" << c.rows << " threads=" << c.threads);
  const auto bytes = test::random_weights(c.type, c.rows, c.cols, rng);
  const auto w = test::dequantized(c.type, bytes, c.rows, c.cols);
  const auto x = test::random_activations(c.m * c.cols, rng);
  const bool quantized = !is_float_type(c.type);
  std::vector<float> step;
  const auto xq = quantized ? test::q8_roundtrip(x, c.cols, step) : x;
  const auto mag = quantized ? int8_term_magnitudes(c.type, bytes, c.rows, c.cols) : std::vector<double>{};

  const QuantTensor mat = ggml_tensor(c.type, c.rows, c.cols, bytes.data(), *ggml_row_bytes(c.type, uint64_t(c.cols)));
  std::vector<float> y(size_t(c.m * c.rows));
  for (CpuIsa isa : supported_isas()) {
    SCOPED_TRACE(std::string(cpu_isa_name(isa)));
    IsaGuard guard(isa);
    std::fill(y.begin(), y.end(), std::nanf(""));
    matmul(mat, x.data(), c.m, y.data(), pool(c.threads));
    const double gamma = rounding_steps(isa, c.type, c.cols) * kUnit;
    int failures = 0;
    for (int64_t i = 0; i < c.m; ++i)
      for (int64_t r = 0; r < c.rows; ++r) {
        double exact = 0, exact_q = 0, magnitude = 0, act_error = 0;
        for (int64_t k = 0; k < c.cols; ++k) {
          const double wk = w[size_t(r * c.cols + k)];
          const size_t xi = size_t(i * c.cols + k);
          exact += wk * x[xi];
          exact_q += wk * xq[xi];
          magnitude += (quantized ? mag[size_t(r * c.cols + k)] : std::fabs(wk)) * std::fabs(xq[xi]);
          // Rounding x to the step d costs ≤ d/2, plus x·(127/max) itself is rounded (≤ 3 ulps of
          // a value ≤ 127 steps): ≤ d·(1/2 + 400·2^-24) per value.
          if (quantized) act_error += std::fabs(wk) * step[xi] * (0.5 + 400 * kUnit);
        }
        const double got = y[size_t(i * c.rows + r)];
        // The kernel computes exactly the oracle of the quantized activations, up to fp32 rounding.
        const double tol_q = gamma * magnitude + 1e-30;
        // Against unquantized activations the activation rounding adds at most act_error.
        const double tol = tol_q + act_error;
        if (!(std::fabs(got - exact_q) <= tol_q) || !(std::fabs(got - exact) <= tol)) {
          if (++failures <= 3)
            ADD_FAILURE() << "y[" << i << "," << r << "] = " << got << ", oracle(quantized x) " << exact_q
                          << " ±" << tol_q << ", oracle " << exact << " ±" << tol;
        }
      }
    EXPECT_EQ(failures, 0);
  }
}

class MatmulAllPaths : public ::testing::TestWithParam<GgmlType> {};

TEST_P(MatmulAllPaths, MatchesFp64Oracle) {
  const GgmlType type = GetParam();
  const GgmlTypeInfo& info = ggml_type_info(type);
  std::vector<int64_t> widths;
  if (info.block_elements == 256) widths = {256, 768, 1536};
  else if (info.block_elements == 32) widths = {32, 96, 160, 576, 1536};
  else widths = {1, 17, 64, 576, 1536};
  const int64_t ms[] = {1, 2, 3, 7, 17, 64};
  const int64_t rows[] = {1, 7, 49};
  std::mt19937 rng(1234 + uint32_t(type));
  int n = 0;
  for (int64_t cols : widths)
    for (int64_t m : ms) {
      check_case({type, m, cols, rows[n % 3], 1 + (n / 3) % 3}, rng);
      ++n;
    }
}

INSTANTIATE_TEST_SUITE_P(Types, MatmulAllPaths,
                         ::testing::Values(GgmlType::F32, GgmlType::F16, GgmlType::BF16, GgmlType::Q4_0,
                                           GgmlType::Q4_1, GgmlType::Q5_0, GgmlType::Q5_1, GgmlType::Q8_0,
                                           GgmlType::Q4_K, GgmlType::Q5_K, GgmlType::Q6_K),
                         [](const auto& p) { return std::string(ggml_type_info(p.param).name); });

// Decode-sized shapes of the default model run on 1..3 threads with a row count that does not
// divide evenly (odd chunking at the thread boundaries).
TEST(Matmul, ThreadCountsAgreeOnModelShapes) {
  std::mt19937 rng(7);
  for (int threads : {1, 2, 3}) {
    check_case({GgmlType::Q4_1, 1, 576, 193, threads}, rng);
    check_case({GgmlType::Q8_0, 1, 576, 301, threads}, rng);
    check_case({GgmlType::Q4_1, 5, 1536, 67, threads}, rng);
  }
}

TEST(Matmul, RejectsBadInput) {
  std::vector<uint8_t> bytes(4096);
  std::vector<float> x(1024), y(1024);
  ThreadPool& p = pool(1);
  EXPECT_THROW(matmul(ggml_tensor(GgmlType::Q4_1, 2, 48, bytes.data(), 40), x.data(), 1, y.data(), p), Error);
  EXPECT_THROW(matmul(ggml_tensor(GgmlType::Q4_1, 2, 64, bytes.data(), 39), x.data(), 1, y.data(), p), Error);
  EXPECT_THROW(matmul(ggml_tensor(GgmlType::Q2_K, 2, 256, bytes.data(), 84), x.data(), 1, y.data(), p), Error);
  EXPECT_THROW(matmul(ggml_tensor(GgmlType::Q4_1, -1, 64, bytes.data(), 40), x.data(), 1, y.data(), p), Error);
  EXPECT_THROW(matmul(ggml_tensor(GgmlType::Q4_1, 2, 64, nullptr, 40), x.data(), 1, y.data(), p), Error);
  EXPECT_NO_THROW(matmul(ggml_tensor(GgmlType::Q4_1, 2, 64, bytes.data(), 40), x.data(), 0, y.data(), p));
}

// A row stride larger than the packed row (a view into a wider tensor) is honoured.
TEST(Matmul, HonoursRowStride) {
  std::mt19937 rng(11);
  const int64_t rows = 9, cols = 96;
  const auto packed = test::random_weights(GgmlType::Q8_0, rows, cols, rng);
  const uint64_t row_bytes = packed.size() / rows, stride = row_bytes + 7;
  std::vector<uint8_t> strided(stride * rows, 0xff);
  for (int64_t r = 0; r < rows; ++r) std::copy_n(&packed[r * row_bytes], row_bytes, &strided[r * stride]);
  const auto x = test::random_activations(cols, rng);
  std::vector<float> a(rows), b(rows);
  matmul(ggml_tensor(GgmlType::Q8_0, rows, cols, packed.data(), row_bytes), x.data(), 1, a.data(), pool(1));
  matmul(ggml_tensor(GgmlType::Q8_0, rows, cols, strided.data(), stride), x.data(), 1, b.data(), pool(1));
  EXPECT_EQ(a, b);
}

TEST(CpuIsa, ParsesNamesAndRejectsUnsupported) {
  EXPECT_EQ(parse_cpu_isa("avx512"), CpuIsa::Avx512);
  EXPECT_EQ(parse_cpu_isa("avx512fp16"), CpuIsa::Avx512Fp16);
  EXPECT_EQ(parse_cpu_isa("scalar"), CpuIsa::Scalar);
  EXPECT_FALSE(parse_cpu_isa("sse9"));
  EXPECT_TRUE(cpu_supports(CpuIsa::Scalar));
  for (CpuIsa isa : {CpuIsa::Avx2, CpuIsa::Avx2Vnni, CpuIsa::Avx512, CpuIsa::Avx512Fp16})
    if (!cpu_supports(isa)) EXPECT_THROW(set_cpu_isa_override(isa), Error);
}

}  // namespace
}  // namespace marlin::cpu
