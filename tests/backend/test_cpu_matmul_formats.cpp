// cpu::matmul on marlin's own weight formats (quant/format.h) against the fp64 oracle built from the
// reference dequantizer (quant/dequant.h), on every ISA path this machine has.
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <random>
#include <string>

#include "backend/cpu/cpu_isa.h"
#include "backend/cpu/int8_layout.h"
#include "backend/cpu/kernels.h"
#include "backend/cpu/matmul.h"
#include "backend/cpu/planar.h"
#include "core/error.h"
#include "matmul_test_data.h"

namespace marlin::cpu {
namespace {

using test::IsaGuard;
using test::kUnit;
using test::pool;
using test::supported_isas;

// Per stored weight, the magnitude of the terms the int8 kernels add for it: |scale·u| +
// |min·factor| (the two parts are summed separately, so they, not |w|, bound the rounding error;
// a dropped 2:4 column's parts cancel only in exact arithmetic). UnpackReproducesReference checks
// the unpacking these come from against the reference dequantizer.
std::vector<double> int8_term_magnitudes(const QuantTensor& t) {
  const PlanarGeometry geo = planar_geometry(t);
  const Int8Format form = planar_int8_format(t.format);
  const double factor = form.asymmetric ? 1.0 : std::abs(form.offset);
  std::vector<double> mag(size_t(t.rows * t.cols), 0.0);
  WeightGroup wg;
  for (int64_t r = 0; r < t.rows; ++r)
    for (int64_t g = 0; g < groups_for(t.cols); ++g) {
      unpack_planar_group_scalar(t, geo, r, g, wg);
      for (int p = 0; p < kGroup; ++p) {
        const int64_t k = g * kGroup + element_at(form.layout, p);
        if (k < t.cols)
          mag[size_t(r * t.cols + k)] = std::fabs(double(wg.scale[p / 4]) * wg.u[p]) + std::fabs(wg.min[p / 4]) * factor;
      }
    }
  return mag;
}

// Longest chain of fp32 roundings a product goes through (see test_cpu_matmul.cpp for the int8
// form). Float kernels (fp8, f16, ...): the scalar one adds every product into one float; SIMD ones
// keep 8- or 16-lane chains of at most cols/8 fmas, plus per group one add of the group's sum
// (AVX2) and a ≤ 16-lane tree reduction. The weights themselves are exact (fp8 value × fp16 scale
// fits in fp32). Two more cover the oracle's rounding of dequantized weights.
double rounding_steps(CpuIsa isa, const QuantTensor& t) {
  if (!is_planar_int8(t.format.kind)) {
    if (isa == CpuIsa::Scalar) return double(t.cols) + 2;
    const double groups = t.format.quantized() ? double(t.groups()) : 1.0;
    return double(t.cols) / 8.0 + groups + 16;
  }
  const double groups = double(groups_for(t.cols));
  const double per_group = isa == CpuIsa::Scalar ? 64.0 : has_avx512(isa) ? 2.0 : 4.0;
  return per_group * groups + (isa == CpuIsa::Scalar ? 8 : 16) + 2;
}

// Runs matmul on every ISA path and compares with the fp64 oracle of the reference dequantized
// weights: against the oracle of the kernels' quantized activations within the fp32 rounding
// bound, and against the unquantized activations within that plus the activation rounding. A NaN
// in the oracle (a NaN fp8 code or scale) must come out as NaN.
void check_tensor(const QuantBuffers& buffers, int64_t m, int threads, std::mt19937& rng) {
  const QuantTensor t = buffers.view();
  const TensorFormat& f = t.format;
  const int64_t rows = t.rows, cols = t.cols;
  const auto w = test::dequantized(t);
  const auto x = test::random_activations(m * cols, rng);
  // Stored column k multiplies x[perm[k]]: the oracle works on the permuted activations.
  std::vector<float> xs = x;
  if (f.act_order)
    for (int64_t i = 0; i < m; ++i)
      for (int64_t k = 0; k < cols; ++k) xs[size_t(i * cols + k)] = x[size_t(i * cols + t.perm[k])];
  const bool quantized = is_planar_int8(f.kind);
  std::vector<float> step;
  const auto xq = quantized ? test::q8_roundtrip(xs, cols, step) : xs;
  const auto mag = quantized ? int8_term_magnitudes(t) : std::vector<double>{};

  std::vector<float> y(size_t(m * rows));
  for (CpuIsa isa : supported_isas()) {
    SCOPED_TRACE(std::string(cpu_isa_name(isa)));
    IsaGuard guard(isa);
    std::fill(y.begin(), y.end(), std::nanf(""));
    matmul(t, x.data(), m, y.data(), pool(threads));
    const double steps = rounding_steps(isa, t);
    int failures = 0;
    for (int64_t i = 0; i < m; ++i)
      for (int64_t r = 0; r < rows; ++r) {
        double exact = 0, exact_q = 0, magnitude = 0, act_error = 0;
        for (int64_t k = 0; k < cols; ++k) {
          const double wk = w[size_t(r * cols + k)];
          const size_t xi = size_t(i * cols + k);
          exact += wk * xs[xi];
          exact_q += wk * xq[xi];
          magnitude += (quantized ? mag[size_t(r * cols + k)] : std::fabs(wk)) * std::fabs(xq[xi]);
          // Rounding x to the step d costs ≤ d/2, plus x·(127/max) itself is rounded (≤ 3 ulps of
          // a value ≤ 127 steps): ≤ d·(1/2 + 400·2^-24) per value.
          if (quantized) act_error += std::fabs(wk) * step[xi] * (0.5 + 400 * kUnit);
        }
        const double got = y[size_t(i * rows + r)];
        if (std::isnan(exact)) {
          if (!std::isnan(got) && ++failures <= 3) ADD_FAILURE() << "y[" << i << "," << r << "] = " << got << ", oracle NaN";
          continue;
        }
        // The kernel computes exactly the oracle of the quantized activations, up to fp32 rounding
        // (relative, and in the subnormal range at most 2^-150 absolute per operation).
        const double tol_q = steps * (kUnit * magnitude + 0x1p-149);
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

struct Case {
  std::string format;
  int64_t m, cols, rows;
  int threads;
};

void check_case(const Case& c, std::mt19937& rng) {
  SCOPED_TRACE(::testing::Message() << c.format << " m=" << c.m << " K=" << c.cols << " rows=" << c.rows
                                    << " threads=" << c.threads);
  check_tensor(test::random_tensor(TensorFormat::parse(c.format), c.rows, c.cols, rng), c.m, c.threads, rng);
}

// Widths: one group (per channel: 1 column, or 4 for 2:4), a partial last group, and the default
// model's K = 576 (4.5 groups of 128) and 1536.
std::vector<int64_t> widths_for(const TensorFormat& f) {
  if (f.group_size == 0) return {f.sparse_24 ? 4 : 1, f.sparse_24 ? 100 : 17, 576, 1536};
  const int64_t g = f.group_size;
  return {g, 3 * g + 4, 576, 1536};
}

class FormatMatmul : public ::testing::TestWithParam<const char*> {};

TEST_P(FormatMatmul, MatchesFp64Oracle) {
  const TensorFormat f = TensorFormat::parse(GetParam());
  const int64_t ms[] = {1, 2, 3, 7, 17, 64};
  const int64_t rows[] = {1, 7, 49};
  std::mt19937 rng(std::hash<std::string>{}(GetParam()) & 0xffff);
  int n = 0;
  for (int64_t cols : widths_for(f))
    for (int64_t m : ms) {
      check_case({GetParam(), m, cols, rows[n % 3], 1 + (n / 3) % 3}, rng);
      ++n;
    }
}

const char* const kFormats[] = {
    "int8-pc",        "int8-g32",        "int8-g128-asym",   "int8-g64-act",       "int4-g32",
    "int4-g64",       "int4-g128",       "int4-pc",          "int4-g32-asym",      "int4-g128-asym",
    "int4-pc-asym",   "int4-g128-act",   "int4-g64-asym-act", "int3-g32",          "int3-g128",
    "int3-pc",        "int3-g64-asym",   "int2-g32",         "int2-g128",          "int2-pc-asym",
    "fp8-pc",         "fp8-g32",         "fp8-g128",         "fp8-g128-act",       "fp4-g32",
    "fp4-g128",       "fp4-pc",          "mxfp4",            "nvfp4",              "mxfp4-act",
    "int4-g128-24",   "int4-g32-asym-24", "int4-pc-24",      "int4-g64-act-24",    "f32",
    "f16",            "bf16",
};

INSTANTIATE_TEST_SUITE_P(Formats, FormatMatmul, ::testing::ValuesIn(kFormats), [](const auto& p) {
  std::string name = p.param;
  for (char& ch : name)
    if (ch == '-') ch = '_';
  return name;
});

// Decode-sized shapes of the default model on 1..3 threads with row counts that split unevenly.
TEST(FormatMatmulShapes, ThreadCountsAgreeOnModelShapes) {
  std::mt19937 rng(17);
  for (int threads : {1, 2, 3}) {
    check_case({"int4-g128", 1, 576, 193, threads}, rng);
    check_case({"int8-pc", 1, 576, 301, threads}, rng);
    check_case({"fp8-g128", 1, 1536, 67, threads}, rng);
    check_case({"nvfp4", 5, 1536, 67, threads}, rng);
  }
}

// Every code and scale value decodes right: row r uses one value everywhere (fp8 / fp4 codes;
// mxfp4 / nvfp4 scales over their whole range, subnormal and NaN ones included), so each output is
// dominated by that value and a mis-decoded one cannot hide among the others.
TEST(FormatMatmulShapes, EveryCodeAndScaleValue) {
  std::mt19937 rng(23);
  struct Sweep {
    const char* format;
    int values;
    bool scales;  // sweep the scale entries (else the codes)
  };
  for (const Sweep& sweep : {Sweep{"fp8-pc", 256, false}, Sweep{"fp4-g32", 16, false}, Sweep{"mxfp4", 232, true},
                             Sweep{"nvfp4", 256, true}}) {
    SCOPED_TRACE(sweep.format);
    const TensorFormat f = TensorFormat::parse(sweep.format);
    const int64_t cols = 160;
    QuantBuffers b = test::random_tensor(f, sweep.values, cols, rng);
    const int64_t groups = b.view().groups();
    for (int64_t r = 0; r < sweep.values; ++r) {
      if (sweep.scales) {
        std::fill_n(&b.scales[size_t(r * groups)], groups, uint8_t(r));
      } else {
        const int per_byte = f.kind == FormatKind::kFp8E4M3 ? 1 : 2;
        std::fill_n(&b.codes[size_t(r * int64_t(b.code_row_bytes))], b.code_row_bytes,
                    uint8_t(per_byte == 1 ? r : r * 17));
      }
    }
    if (f.kind == FormatKind::kMxFp4) std::fill_n(&b.scales[size_t(231 * groups)], groups, uint8_t(0xff));  // NaN row
    for (int64_t m : {1, 5}) check_tensor(b, m, 2, rng);
  }
}

// The int8 form's unpacking reproduces the reference dequantizer: scale·u + min (asymmetric) or
// scale·(u + offset), within the reference's own fp32 rounding of s·(q − z) (nvfp4: of (t·e4m3)·v),
// ≤ 2 ulps of the larger part; padding past cols contributes nothing.
TEST(FormatMatmulUnpack, UnpackReproducesReference) {
  std::mt19937 rng(3);
  for (const char* name : kFormats) {
    const TensorFormat f = TensorFormat::parse(name);
    if (!is_planar_int8(f.kind)) continue;
    SCOPED_TRACE(name);
    const int64_t cols = widths_for(f)[1];
    const QuantBuffers b = test::random_tensor(f, 2, cols, rng);
    const QuantTensor t = b.view();
    const auto w = test::dequantized(t);
    const Int8Format form = planar_int8_format(f);
    const PlanarGeometry geo = planar_geometry(t);
    WeightGroup wg;
    for (int64_t r = 0; r < t.rows; ++r)
      for (int64_t g = 0; g < groups_for(cols); ++g) {
        unpack_planar_group_scalar(t, geo, r, g, wg);
        for (int p = 0; p < kGroup; ++p) {
          const int64_t k = g * kGroup + element_at(form.layout, p);
          const double scale = wg.scale[p / 4], min = wg.min[p / 4];
          if (k >= cols) {
            EXPECT_EQ(wg.u[p] * scale, 0.0) << "padding must not contribute";
            continue;
          }
          const double a = scale * wg.u[p], c = form.asymmetric ? min : min * form.offset;
          const double tol = 2 * kUnit * std::max(std::fabs(a), std::fabs(c));
          ASSERT_NEAR(a + c, w[size_t(r * cols + k)], tol) << "row " << r << " position " << p << " of group " << g;
        }
      }
  }
}

// Every SIMD activation quantizer reproduces the scalar one bit for bit for the planar forms too
// (EvenOdd and Nibble32 orders, symmetric offsets, zero points), including partial 32-value blocks.
TEST(FormatMatmulUnpack, SimdActivationQuantizersMatchScalar) {
  std::mt19937 rng(5);
  for (const char* name : {"int4-g128", "int4-g32-asym", "int8-pc", "int3-g64-asym", "fp4-g32", "nvfp4", "int4-g128-24"}) {
    const TensorFormat f = TensorFormat::parse(name);
    for (CpuIsa isa : {CpuIsa::Avx2, CpuIsa::Avx2Vnni, CpuIsa::Avx512}) {
      if (!cpu_supports(isa)) continue;
      SCOPED_TRACE(std::string(cpu_isa_name(isa)) + " " + name);
      const detail::KernelSet set = isa == CpuIsa::Avx512 ? detail::kernels_avx512(f)
                                                          : detail::kernels_avx2(f, isa == CpuIsa::Avx2Vnni);
      ASSERT_TRUE(set.quantize);
      for (int64_t cols : {17, 100, 576}) {
        const int64_t rows = 3, n = rows * groups_for(cols);
        const auto x = test::random_activations(rows * cols, rng);
        std::vector<ActGroup> want(static_cast<size_t>(n)), got(static_cast<size_t>(n));
        quantize_activations(set.form, x.data(), rows, cols, want.data());
        set.quantize(set.form, x.data(), rows, cols, got.data());
        for (int64_t i = 0; i < n; ++i)
          ASSERT_EQ(std::memcmp(&want[size_t(i)], &got[size_t(i)], sizeof(ActGroup)), 0) << "cols " << cols << " group " << i;
      }
    }
  }
}

// A malformed 2:4 pattern (first kept index ≥ second) drops all 4 columns on every path: the
// result equals that of a well-formed tensor whose 4 columns are zero weights.
TEST(FormatMatmulSparse, MalformedPatternsDropTheirColumns) {
  std::mt19937 rng(9);
  for (const char* name : {"int4-g32-24", "int4-g128-asym-24"}) {
    SCOPED_TRACE(name);
    const TensorFormat f = TensorFormat::parse(name);
    const int64_t rows = 5, cols = 576;
    QuantBuffers bad = test::random_tensor(f, rows, cols, rng);
    QuantBuffers zeroed = bad;
    const uint64_t meta_row = sparse_meta_row_bytes(cols);
    for (int64_t r = 0; r < rows; ++r)
      for (int64_t j = 3; j < cols / 4; j += 7) {
        uint8_t& mb = bad.sparse_meta[size_t(r * int64_t(meta_row) + j / 2)];
        mb = uint8_t((mb & ~(0xf << (4 * (j % 2)))) | (sparse_pattern(2, 1) << (4 * (j % 2))));
        uint8_t& mz = zeroed.sparse_meta[size_t(r * int64_t(meta_row) + j / 2)];
        mz = uint8_t((mz & ~(0xf << (4 * (j % 2)))) | (sparse_pattern(0, 1) << (4 * (j % 2))));
        const int zero_code = f.asymmetric ? zeroed.zeros[size_t(r * zeroed.view().groups() + 4 * j / f.group_size)] : 8;
        for (int64_t s = 2 * j; s < 2 * j + 2; ++s) {
          uint8_t& byte = zeroed.codes[size_t(r * int64_t(zeroed.code_row_bytes) + s / 2)];
          byte = uint8_t((byte & ~(0xf << (4 * (s % 2)))) | (zero_code << (4 * (s % 2))));
        }
      }
    const auto x = test::random_activations(3 * cols, rng);
    for (CpuIsa isa : supported_isas()) {
      SCOPED_TRACE(std::string(cpu_isa_name(isa)));
      IsaGuard guard(isa);
      for (int64_t m : {1, 3}) {
        std::vector<float> a(size_t(m * rows)), b(size_t(m * rows));
        matmul(bad.view(), x.data(), m, a.data(), pool(2));
        matmul(zeroed.view(), x.data(), m, b.data(), pool(2));
        EXPECT_EQ(a, b) << "m " << m;
      }
    }
  }
}

// The exact path's reference dequantizer rejects a malformed 2:4 pattern: a clean error, not a
// throw inside a pool worker.
TEST(FormatMatmulSparse, ExactPathRejectsMalformedPatterns) {
  std::mt19937 rng(31);
  QuantBuffers b = test::random_tensor(TensorFormat::parse("int4-g32-24"), 3, 64, rng);
  b.sparse_meta[b.sparse_meta.size() - 1] = uint8_t(sparse_pattern(2, 1));
  const auto x = test::random_activations(64, rng);
  std::vector<float> y(3);
  set_exact_activations(true);
  EXPECT_THROW(matmul(b.view(), x.data(), 1, y.data(), pool(2)), Error);
  set_exact_activations(false);
}

// Exact activations: fp32 weights from the reference dequantizer, fp64 sums; the only error is the
// final rounding to fp32 (plus fp64 rounding of the sum, far below it).
TEST(FormatMatmulExact, ExactActivationsMatchOracle) {
  std::mt19937 rng(13);
  for (const char* name : {"int4-g128-asym-act", "int3-g32", "fp8-g128", "nvfp4", "int4-g32-24", "bf16"}) {
    SCOPED_TRACE(name);
    const TensorFormat f = TensorFormat::parse(name);
    const int64_t rows = 9, cols = 576, m = 3;
    const QuantBuffers b = test::random_tensor(f, rows, cols, rng);
    const QuantTensor t = b.view();
    const auto w = test::dequantized(t);
    const auto x = test::random_activations(m * cols, rng);
    std::vector<float> y(size_t(m * rows));
    set_exact_activations(true);
    matmul(t, x.data(), m, y.data(), pool(2));
    set_exact_activations(false);
    for (int64_t i = 0; i < m; ++i)
      for (int64_t r = 0; r < rows; ++r) {
        double exact = 0, magnitude = 0;
        for (int64_t k = 0; k < cols; ++k) {
          const double xk = x[size_t(i * cols + (f.act_order ? t.perm[k] : k))];
          exact += double(w[size_t(r * cols + k)]) * xk;
          magnitude += std::fabs(double(w[size_t(r * cols + k)]) * xk);
        }
        EXPECT_NEAR(y[size_t(i * rows + r)], exact, kUnit * std::fabs(exact) + double(cols) * 0x1p-52 * magnitude);
      }
  }
}

TEST(FormatMatmulErrors, RejectsBadTensors) {
  std::mt19937 rng(21);
  const QuantBuffers good = test::random_tensor(TensorFormat::parse("int4-g64-asym-act"), 4, 128, rng);
  std::vector<float> x(256, 1.0f), y(64);
  ThreadPool& p = pool(1);
  EXPECT_NO_THROW(matmul(good.view(), x.data(), 2, y.data(), p));
  auto expect_bad = [&](auto&& edit) {
    QuantTensor t = good.view();
    edit(t);
    EXPECT_THROW(matmul(t, x.data(), 1, y.data(), p), Error);
  };
  expect_bad([](QuantTensor& t) { t.format.group_size = 100; });
  expect_bad([](QuantTensor& t) { t.scales = nullptr; });
  expect_bad([](QuantTensor& t) { t.zeros = nullptr; });
  expect_bad([](QuantTensor& t) { t.perm = nullptr; });
  expect_bad([](QuantTensor& t) { t.code_row_bytes = 63; });
  std::vector<int32_t> out_of_range(good.perm);
  out_of_range[5] = 128;
  expect_bad([&](QuantTensor& t) { t.perm = out_of_range.data(); });
  out_of_range[5] = -1;
  expect_bad([&](QuantTensor& t) { t.perm = out_of_range.data(); });
  expect_bad([](QuantTensor& t) { t.format.kind = FormatKind::kFp8E4M3; });  // fp8 has no zero points
  const QuantBuffers sparse = test::random_tensor(TensorFormat::parse("int4-g32-24"), 2, 64, rng);
  QuantTensor no_meta = sparse.view();
  no_meta.sparse_meta = nullptr;
  EXPECT_THROW(matmul(no_meta, x.data(), 1, y.data(), p), Error);
}

}  // namespace
}  // namespace marlin::cpu
