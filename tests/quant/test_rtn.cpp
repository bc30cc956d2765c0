// RTN quantization: per-element error bounds from each format's grid, exact round trips of values
// already on a grid, awkward shapes, 2:4, act-order, and bad arguments.
#include <gtest/gtest.h>

#include <algorithm>
#include <array>
#include <cmath>
#include <cstring>
#include <numeric>
#include <random>
#include <vector>

#include "core/error.h"
#include "core/half.h"
#include "core/thread_pool.h"
#include "quant/dequant.h"
#include "quant/fp_codes.h"
#include "quant/ggml_quantize.h"
#include "quant/pack.h"
#include "quant/rtn.h"

namespace marlin {
namespace {

const char* const kGridFormats[] = {"int8-pc",   "int8-g32",       "int4-g128",   "int4-g32",     "int4-g64-asym",
                                    "int4-pc",   "int4-g32-24",    "int4-g128-asym-24", "int3-g128", "int3-g64-asym",
                                    "int3-pc-asym", "int2-g32",    "int2-g128-asym", "fp8-pc",    "fp8-g128",
                                    "fp4-g32",   "fp4-g128",       "mxfp4",       "nvfp4"};

std::vector<float> gaussian(int64_t n, uint32_t seed, float sigma = 1.0f) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> dist(0.0f, sigma);
  std::vector<float> w(static_cast<size_t>(n));
  for (auto& v : w) v = dist(rng);
  return w;
}

std::vector<float> dequantize_all(const QuantBuffers& q) {
  std::vector<float> out(static_cast<size_t>(q.rows * q.cols));
  const QuantTensor t = q.view();
  for (int64_t r = 0; r < q.rows; ++r) dequantize_row(t, r, &out[size_t(r * q.cols)]);
  return out;
}

// The fp32 multiplier of group g of row r, decoded independently of the library's dequantizer.
float group_multiplier(const QuantBuffers& q, int64_t r, int64_t g) {
  const size_t entry = size_t(r * q.format.groups(q.cols) + g);
  switch (format_info(q.format.kind).scale) {
    case ScaleType::kF16: {
      uint16_t h;
      std::memcpy(&h, &q.scales[2 * entry], 2);
      return fp16_to_fp32(h);
    }
    case ScaleType::kE8M0: return std::ldexp(1.0f, int(q.scales[entry]) - 127);
    case ScaleType::kE4M3: return q.tensor_scale * e4m3_to_float(q.scales[entry]);
    default: return 0.0f;
  }
}

// Half the distance between neighbouring grid points around |x| (in units of the scale), plus what
// a format may clip: the analytic bound on |x − round(x)| for one element.
double element_bound(FormatKind kind, double x_over_s) {
  const double m = std::fabs(x_over_s);
  switch (kind) {
    case FormatKind::kFp8E4M3: {
      const double spacing = m < 0.015625 ? 0.001953125 : std::ldexp(1.0, int(std::floor(std::log2(m))) - 3);
      return spacing / 2 + std::max(0.0, m - 448.0);
    }
    case FormatKind::kFp4:
    case FormatKind::kMxFp4:
    case FormatKind::kNvFp4: {
      const double spacing = m < 2 ? 0.5 : m < 4 ? 1.0 : 2.0;
      return spacing / 2 + std::max(0.0, m - 6.0);
    }
    default: return 0.5;  // integer grids cover their group: half a step
  }
}

struct Shape {
  int64_t rows, cols;
};

TEST(Rtn, EveryFormatStaysWithinItsGridBound) {
  for (const char* name : kGridFormats) {
    for (Shape shape : {Shape{1, 128}, Shape{7, 128}, Shape{5, 576}, Shape{2, 64}}) {
      const TensorFormat f = TensorFormat::parse(name);
      SCOPED_TRACE(::testing::Message() << name << " " << shape.rows << "x" << shape.cols);
      std::vector<float> w = gaussian(shape.rows * shape.cols, 11, 0.02f);
      w[3] = 0.3f;  // an outlier
      const QuantBuffers q = quantize_rtn(w.data(), shape.rows, shape.cols, f);
      const std::vector<float> d = dequantize_all(q);
      const int64_t group = f.group_size == 0 ? shape.cols : f.group_size;
      int failures = 0;
      for (int64_t r = 0; r < shape.rows; ++r) {
        for (int64_t k = 0; k < shape.cols; ++k) {
          const size_t i = size_t(r * shape.cols + k);
          if (f.sparse_24 && d[i] == 0.0f) continue;  // dropped (checked in Sparse24KeepsTheLargest)
          const double s = group_multiplier(q, r, k / group);
          ASSERT_TRUE(std::isfinite(s) && s >= 0);
          const double err = std::fabs(double(w[i]) - double(d[i]));
          // fp32 evaluation of s·q adds at most an ulp of the result.
          const double bound = s * element_bound(f.kind, w[i] / s) + 1e-6 * std::fabs(double(w[i]));
          if (err > bound && ++failures < 5)
            ADD_FAILURE() << "row " << r << " col " << k << ": w " << w[i] << " -> " << d[i] << ", bound " << bound;
        }
      }
      if (f.asymmetric)
        for (uint8_t z : q.zeros) ASSERT_LT(z, 1 << format_info(f.kind).code_bits);
      if (f.kind == FormatKind::kNvFp4)
        for (uint8_t s : q.scales) ASSERT_LE(s, 0x7e);  // never a NaN or negative scale
    }
  }
}

TEST(Rtn, RoundsToTheNearestGridPoint) {
  // Every dequantized value is the grid point of its group nearest to the weight.
  for (const char* name : kGridFormats) {
    const TensorFormat f = TensorFormat::parse(name);
    if (f.sparse_24) continue;
    SCOPED_TRACE(name);
    const int64_t rows = 3, cols = 256;
    const std::vector<float> w = gaussian(rows * cols, 5);
    const QuantBuffers q = quantize_rtn(w.data(), rows, cols, f);
    const std::vector<float> d = dequantize_all(q);
    const int bits = format_info(f.kind).code_bits;
    const int64_t group = f.group_size == 0 ? cols : f.group_size;
    for (int64_t r = 0; r < rows; ++r) {
      for (int64_t k = 0; k < cols; ++k) {
        const int64_t g = k / group;
        const float s = group_multiplier(q, r, g);
        const int zero = f.asymmetric ? q.zeros[size_t(r * q.format.groups(cols) + g)] : 1 << (bits - 1);
        float nearest = INFINITY;
        for (int c = 0; c < (1 << bits); ++c) {
          float v;
          if (f.kind == FormatKind::kFp8E4M3) {
            if ((c & 0x7f) == 0x7f) continue;
            v = s * e4m3_to_float(uint8_t(c));
          } else if (bits == 4 && f.kind != FormatKind::kInt4) {
            v = s * e2m1_to_float(uint8_t(c));
          } else {
            v = s * float(c - zero);
          }
          nearest = std::min(nearest, std::fabs(w[size_t(r * cols + k)] - v));
        }
        const float err = std::fabs(w[size_t(r * cols + k)] - d[size_t(r * cols + k)]);
        ASSERT_LE(err, nearest * (1 + 1e-6f) + 1e-12f) << "row " << r << " col " << k;
      }
    }
  }
}

// Codes reaching the ends of each group's grid, under random scales: quantizing the values they
// stand for gives back the same values (and scales).
TEST(Rtn, ValuesOnTheGridRoundTripExactly) {
  std::mt19937 rng(3);
  for (const char* name : kGridFormats) {
    const TensorFormat f = TensorFormat::parse(name);
    if (f.sparse_24) continue;
    SCOPED_TRACE(name);
    const int64_t rows = 4, cols = 192;
    QuantBuffers q = QuantBuffers::allocate(f, rows, cols);
    const int bits = format_info(f.kind).code_bits;
    const int64_t groups = f.groups(cols), group = f.group_size == 0 ? cols : f.group_size;
    std::vector<uint8_t> codes(static_cast<size_t>(cols));
    for (int64_t r = 0; r < rows; ++r) {
      for (int64_t k = 0; k < cols; ++k) codes[size_t(k)] = uint8_t(rng() % (1u << bits));
      for (int64_t g = 0; g < groups; ++g) {
        const size_t entry = size_t(r * groups + g);
        uint8_t* c = &codes[size_t(g * group)];
        if (f.kind == FormatKind::kFp8E4M3) {
          for (int64_t k = 0; k < group; ++k)
            if ((c[k] & 0x7f) == 0x7f) c[k] = 0x10;
          c[1] = 0x7e;  // 448
        } else if (f.kind == FormatKind::kInt2 || f.kind == FormatKind::kInt3 || f.kind == FormatKind::kInt4 ||
                   f.kind == FormatKind::kInt8) {
          c[0] = 0;
          if (f.asymmetric) c[1] = uint8_t((1 << bits) - 1);
        } else {
          c[2] = 0xf;  // −6
        }
        if (f.kind == FormatKind::kMxFp4) {
          q.scales[entry] = uint8_t(100 + rng() % 50);
        } else if (f.kind == FormatKind::kNvFp4) {
          q.scales[entry] = uint8_t(r == 0 && g == 0 ? 0x7e : 8 + rng() % 100);
        } else {
          const uint16_t h = fp32_to_fp16(std::ldexp(1.0f + float(rng() % 1000) / 1000.0f, -int(rng() % 10)));
          std::memcpy(&q.scales[2 * entry], &h, 2);
        }
        if (f.asymmetric) q.zeros[entry] = uint8_t(rng() % (1u << bits));
      }
      pack_codes(codes.data(), cols, bits, &q.codes[size_t(r) * q.code_row_bytes]);
    }
    if (f.kind == FormatKind::kNvFp4) q.tensor_scale = 0.0078125f;  // 2^-7: t·448·6 is exact
    const std::vector<float> w = dequantize_all(q);
    const QuantBuffers again = quantize_rtn(w.data(), rows, cols, f);
    EXPECT_EQ(dequantize_all(again), w);
    if (f.kind != FormatKind::kMxFp4) EXPECT_EQ(again.scales, q.scales);  // mxfp4 may find a finer exponent
    EXPECT_EQ(again.zeros, q.zeros);
    EXPECT_EQ(again.tensor_scale, q.tensor_scale);
  }
}

TEST(Rtn, RequantizingGivesTheSameValues) {
  for (const char* name : {"int8-g32", "int4-g128", "int4-pc", "int3-g64", "int2-g32", "fp8-g128", "fp4-g32", "mxfp4"}) {
    SCOPED_TRACE(name);
    const TensorFormat f = TensorFormat::parse(name);
    const std::vector<float> w = gaussian(6 * 384, 9);
    const std::vector<float> once = dequantize_all(quantize_rtn(w.data(), 6, 384, f));
    const std::vector<float> twice = dequantize_all(quantize_rtn(once.data(), 6, 384, f));
    EXPECT_EQ(once, twice);
  }
}

TEST(Rtn, Sparse24KeepsTheLargestTwoOfFour) {
  const std::vector<float> w = gaussian(3 * 128, 21);
  for (const char* name : {"int4-g32-24", "int4-pc-asym-24"}) {
    const QuantBuffers q = quantize_rtn(w.data(), 3, 128, TensorFormat::parse(name));
    const std::vector<float> d = dequantize_all(q);
    for (size_t j = 0; j < w.size(); j += 4) {
      std::array<int, 4> order = {0, 1, 2, 3};
      std::sort(order.begin(), order.end(), [&](int a, int b) { return std::fabs(w[j + a]) > std::fabs(w[j + b]); });
      EXPECT_EQ(d[j + order[2]], 0.0f);
      EXPECT_EQ(d[j + order[3]], 0.0f);
      EXPECT_LT(std::fabs(d[j + order[0]] - w[j + order[0]]), 0.5f);
    }
  }
}

TEST(Rtn, ActOrderStoresPermutedColumns) {
  const int64_t rows = 3, cols = 256;
  const std::vector<float> w = gaussian(rows * cols, 4);
  std::vector<int32_t> perm(static_cast<size_t>(cols));
  std::iota(perm.begin(), perm.end(), 0);
  std::shuffle(perm.begin(), perm.end(), std::mt19937(8));
  std::vector<float> permuted(w.size());
  for (int64_t r = 0; r < rows; ++r)
    for (int64_t k = 0; k < cols; ++k) permuted[size_t(r * cols + k)] = w[size_t(r * cols + perm[size_t(k)])];
  const QuantBuffers act = quantize_rtn(w.data(), rows, cols, TensorFormat::parse("int4-g64-act"), perm);
  const QuantBuffers plain = quantize_rtn(permuted.data(), rows, cols, TensorFormat::parse("int4-g64"));
  EXPECT_EQ(act.perm, perm);
  EXPECT_EQ(act.codes, plain.codes);
  EXPECT_EQ(act.scales, plain.scales);
  EXPECT_EQ(act.view().perm, act.perm.data());
}

TEST(Rtn, PlainAndGgmlKinds) {
  const std::vector<float> w = gaussian(2 * 64, 6);
  const QuantBuffers f16 = quantize_rtn(w.data(), 2, 64, TensorFormat::parse("f16"));
  const QuantBuffers q8 = quantize_rtn(w.data(), 2, 64, TensorFormat::parse("q8_0"));
  std::vector<uint8_t> expected(q8.codes.size());
  quantize_row(GgmlType::Q8_0, w.data(), expected.data(), 64);
  quantize_row(GgmlType::Q8_0, w.data() + 64, expected.data() + q8.code_row_bytes, 64);
  EXPECT_EQ(q8.codes, expected);
  const std::vector<float> d = dequantize_all(f16);
  for (size_t i = 0; i < w.size(); ++i) EXPECT_EQ(d[i], fp16_to_fp32(fp32_to_fp16(w[i])));
  EXPECT_EQ(dequantize_all(quantize_rtn(w.data(), 2, 64, TensorFormat::parse("f32"))), w);
}

TEST(Rtn, ThreadsGiveIdenticalBytes) {
  ThreadPool pool(2);
  const std::vector<float> w = gaussian(33 * 256, 12);
  for (const char* name : {"int4-g128", "nvfp4", "q4_1"}) {
    const TensorFormat f = TensorFormat::parse(name);
    EXPECT_EQ(quantize_rtn(w.data(), 33, 256, f, {}, &pool).codes, quantize_rtn(w.data(), 33, 256, f).codes);
  }
}

TEST(Rtn, RejectsBadArguments) {
  std::vector<float> w = gaussian(4 * 64, 1);
  const std::vector<int32_t> perm = {0, 1, 2};
  EXPECT_THROW(quantize_rtn(w.data(), 4, 64, TensorFormat::parse("int4-g32-act")), Error);          // no perm
  EXPECT_THROW(quantize_rtn(w.data(), 4, 64, TensorFormat::parse("int4-g32-act"), perm), Error);    // short perm
  EXPECT_THROW(quantize_rtn(w.data(), 4, 64, TensorFormat::parse("int4-g32"), perm), Error);        // perm, no -act
  EXPECT_THROW(quantize_rtn(w.data(), 4, 62, TensorFormat::parse("int4-g32-24")), Error);           // cols % 4
  EXPECT_THROW(quantize_rtn(w.data(), 4, 48, TensorFormat::parse("q4_0")), Error);                  // not whole blocks
  EXPECT_THROW(quantize_rtn(w.data(), 1, 256, TensorFormat::parse("q4_k")), Error);                 // no quantizer
  EXPECT_THROW(quantize_rtn(w.data(), 0, 64, TensorFormat::parse("int4-g32")), Error);
  EXPECT_THROW(quantize_rtn(nullptr, 4, 64, TensorFormat::parse("int4-g32")), Error);
  std::vector<int32_t> repeated(64, 0);
  EXPECT_THROW(quantize_rtn(w.data(), 4, 64, TensorFormat::parse("int4-g32-act"), repeated), Error);
  w[70] = NAN;
  try {
    quantize_rtn(w.data(), 4, 64, TensorFormat::parse("int4-g32"));
    ADD_FAILURE() << "NaN accepted";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("row 1, column 6"), std::string::npos) << e.what();
  }
  w[70] = 1e6f;  // int2 needs a scale of 1e6: more than fp16 holds
  ThreadPool pool(2);
  EXPECT_THROW(quantize_rtn(w.data(), 4, 64, TensorFormat::parse("int2-g32"), {}, &pool), Error);
}

}  // namespace
}  // namespace marlin
