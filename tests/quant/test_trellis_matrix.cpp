// The trellis format row (names, fields, shapes), the reference dequantizer against an
// independent double-precision oracle (trellis_oracle.h), and quantize_trellis_rtn.
#include <gtest/gtest.h>

#include <cmath>
#include <random>
#include <string>
#include <vector>

#include "core/error.h"
#include "core/thread_pool.h"
#include "quant/dequant.h"
#include "quant/group_grid.h"
#include "quant/trellis_matrix.h"
#include "trellis_oracle.h"

namespace marlin {
namespace {

constexpr double kFloatEps = 1.0 / (1 << 24);  // unit roundoff of fp32

template <typename F>
std::string test_error(F&& f) {
  try {
    f();
  } catch (const Error& e) {
    return e.what();
  }
  return "";
}

TEST(TrellisFormat, NamesRoundTrip) {
  for (int k = 1; k <= 8; ++k) {
    const std::string name = "trellis" + std::to_string(k);
    const TensorFormat f = TensorFormat::parse(name);
    EXPECT_EQ(f.kind, FormatKind::kTrellis);
    EXPECT_EQ(f.bits, k);
    EXPECT_EQ(f.group_size, 0);
    EXPECT_EQ(f.name(), name);
    EXPECT_NO_THROW(f.validate());
    // Bits per weight count the codes only (K), as every per-channel format leaves out its row
    // scale: 16/cols bits more in a real tensor, plus a 64-bit seed per tensor.
    EXPECT_EQ(f.bits_per_weight(), double(k));
    EXPECT_EQ(f.min_code_row_bytes(576), uint64_t(576 * k / 8));
    EXPECT_EQ(f.groups(576), 1);
    EXPECT_TRUE(f.quantized());
  }
  EXPECT_EQ(TensorFormat::parse("TRELLIS3").name(), "trellis3");
  EXPECT_EQ(format_info(FormatKind::kTrellis).scale, ScaleType::kF16);
}

TEST(TrellisFormat, BadNamesAndFieldsAreRejected) {
  for (const char* bad : {"trellis0", "trellis9", "trellis", "trellis10", "trellis04", "trellisx", "trellis3-g128",
                          "trellis4-pc", "trellis2-asym", "trellis4-act"}) {
    SCOPED_TRACE(bad);
    EXPECT_THROW(TensorFormat::parse(bad), Error);
  }
  EXPECT_NE(test_error([] { TensorFormat::parse("trellis9"); }).find("1 to 8"), std::string::npos);
  TensorFormat f;
  f.kind = FormatKind::kTrellis;  // bits left 0
  EXPECT_THROW(f.validate(), Error);
  f.bits = 4;
  f.group_size = 128;
  EXPECT_THROW(f.validate(), Error);
  TensorFormat int4 = TensorFormat::parse("int4-g128");
  int4.bits = 4;  // only trellis carries bits
  EXPECT_THROW(int4.validate(), Error);
  const TensorFormat t4 = TensorFormat::parse("trellis4");
  EXPECT_NO_THROW(t4.check_shape(16, 48));
  EXPECT_THROW(t4.check_shape(24, 48), Error);
  EXPECT_THROW(t4.check_shape(16, 40), Error);
  EXPECT_NE(TensorFormat::parse("trellis2"), TensorFormat::parse("trellis3"));
}

TEST(TrellisFormat, BuffersAndViewCarryTheSeed) {
  const QuantBuffers b = test::random_trellis(32, 48, 3, 7);
  EXPECT_EQ(b.code_row_bytes, 18u);
  EXPECT_EQ(b.codes.size(), 32u * 18u);
  EXPECT_EQ(b.scales.size(), 64u);
  EXPECT_TRUE(b.zeros.empty());
  const QuantTensor t = b.view();
  EXPECT_EQ(t.rotation_seed, b.rotation_seed);
  EXPECT_EQ(t.stored_bytes(), 32u * 18u + 64u);
  EXPECT_NO_THROW(t.validate());
}

// Every value within the rounding of the result to fp32 (plus the double arithmetic's own error).
void expect_matches_oracle(const QuantTensor& t, const std::vector<int64_t>& row_order) {
  const std::vector<double> want = test::oracle_dequantized(t);
  double max_abs = 0;
  for (double v : want) max_abs = std::max(max_abs, std::fabs(v));
  std::vector<float> row(static_cast<size_t>(t.cols));
  for (int64_t r : row_order) {
    dequantize_row(t, r, row.data());
    for (int64_t c = 0; c < t.cols; ++c) {
      const double w = want[size_t(r * t.cols + c)];
      ASSERT_NEAR(row[size_t(c)], w, kFloatEps * std::fabs(w) + 1e-12 * max_abs)
          << t.format.name() << " " << t.rows << "×" << t.cols << " (" << r << ", " << c << ")";
    }
  }
}

TEST(TrellisDequantize, MatchesTheOracleInTheOriginalBasis) {
  struct Shape {
    int64_t rows, cols;
  };
  uint64_t seed = 1;
  for (const Shape s : {Shape{16, 16}, Shape{48, 32}, Shape{64, 144}, Shape{256, 48}, Shape{192, 64}})
    for (int k : {1, 2, 3, 4, 5, 8}) {
      const QuantBuffers b = test::random_trellis(s.rows, s.cols, k, seed++);
      std::vector<int64_t> order(static_cast<size_t>(s.rows));
      for (int64_t r = 0; r < s.rows; ++r) order[size_t(r)] = s.rows - 1 - r;  // backwards: blocks revisited
      expect_matches_oracle(b.view(), order);
    }
}

// The per-thread block cache must never return rows of other bytes at the same address.
TEST(TrellisDequantize, ChangedBytesAreNotServedFromTheCache) {
  QuantBuffers b = test::random_trellis(64, 32, 4, 99);
  std::vector<float> before(32), after(32);
  dequantize_row(b.view(), 5, before.data());
  b.codes[64 * 16 / 2 - 1] ^= 0x10;  // the last byte of the block's codes (one block of 64 rows)
  dequantize_row(b.view(), 5, after.data());
  EXPECT_NE(before, after);
  expect_matches_oracle(b.view(), {5, 63, 0});
  b.scales[2 * 40] ^= 0x01;
  expect_matches_oracle(b.view(), {40});
  b.rotation_seed ^= 1;
  expect_matches_oracle(b.view(), {40});
}

TEST(TrellisDequantize, PaddedStridesFollowTheLayout) {
  const QuantBuffers dense = test::random_trellis(32, 32, 2, 5);
  // The same tiles with code_row_bytes 12 instead of 8: each strip of 16 rows starts 16·12 bytes apart.
  std::vector<uint8_t> padded(32 * 12, 0xee);
  for (int strip = 0; strip < 2; ++strip)
    std::copy_n(dense.codes.data() + strip * 16 * 8, 16 * 8, padded.data() + strip * 16 * 12);
  QuantTensor t = dense.view();
  t.codes = padded.data();
  t.code_row_bytes = 12;
  std::vector<float> a(32), c(32);
  for (int64_t r = 0; r < 32; ++r) {
    dequantize_row(dense.view(), r, a.data());
    dequantize_row(t, r, c.data());
    ASSERT_EQ(a, c) << r;
  }
}

double relative_error(const std::vector<float>& got, const std::vector<float>& want) {
  double e = 0, n = 0;
  for (size_t i = 0; i < got.size(); ++i) {
    e += (double(got[i]) - want[i]) * (double(got[i]) - want[i]);
    n += double(want[i]) * want[i];
  }
  return std::sqrt(e / n);
}

// Gaussian weights with a few large outliers. The tile quantizer's measured MSE per unit-variance
// weight is 0.0675 / 0.0174 / 0.0045 at K = 2 / 3 / 4 (docs/quantization.md), so the relative RMS
// error should be near √MSE = 0.26 / 0.13 / 0.067; the bounds allow 15% for tiles whose variance
// differs from their row's and for the fp16 scales.
TEST(TrellisRtn, QuantizesWithTheExpectedError) {
  ThreadPool pool(2);
  const int64_t rows = 32, cols = 64;
  std::mt19937_64 rng(3);
  std::normal_distribution<float> normal(0.0f, 0.02f);
  std::vector<float> w(static_cast<size_t>(rows * cols));
  for (auto& v : w) v = normal(rng);
  w[17] = 0.3f;
  w[900] = -0.25f;
  const double bound[] = {0, 0, 0.30, 0.15, 0.077};
  for (int k : {2, 3, 4}) {
    const QuantBuffers q = quantize_trellis_rtn(w.data(), rows, cols, k, 0x1234567890abcdefull + k, &pool);
    EXPECT_EQ(q.format.name(), "trellis" + std::to_string(k));
    EXPECT_EQ(q.rotation_seed, 0x1234567890abcdefull + k);
    std::vector<float> got(w.size());
    for (int64_t r = 0; r < rows; ++r) dequantize_row(q.view(), r, got.data() + r * cols);
    const double err = relative_error(got, w);
    std::printf("trellis%d RTN relative RMS error %.4f\n", k, err);
    EXPECT_LT(err, bound[k]) << k;
    // Same input, same seed, no pool: the same bytes.
    const QuantBuffers again = quantize_trellis_rtn(w.data(), rows, cols, k, 0x1234567890abcdefull + k);
    EXPECT_EQ(again.codes, q.codes);
    EXPECT_EQ(again.scales, q.scales);
  }
}

TEST(TrellisRtn, ZeroWeightsDecodeToZeroAndBadInputIsRejected) {
  std::vector<float> w(16 * 32, 0.0f);
  const QuantBuffers q = quantize_trellis_rtn(w.data(), 16, 32, 3, 1);
  std::vector<float> row(32);
  for (int64_t r = 0; r < 16; ++r) {
    dequantize_row(q.view(), r, row.data());
    for (float v : row) ASSERT_EQ(v, 0.0f);
  }
  EXPECT_THROW(quantize_trellis_rtn(w.data(), 16, 24, 3, 1), Error);
  EXPECT_THROW(quantize_trellis_rtn(w.data(), 16, 32, 9, 1), Error);
  w[3] = std::nanf("");
  EXPECT_THROW(quantize_trellis_rtn(w.data(), 16, 32, 3, 1), Error);
  w[3] = 1e7f;  // RMS beyond fp16
  EXPECT_THROW(quantize_trellis_rtn(w.data(), 16, 32, 3, 1), Error);
}

TEST(TrellisRtn, GroupQuantizersRefuseTrellis) {
  EXPECT_NE(test_error([&] { GroupQuantizer(TensorFormat::parse("trellis4"), 1.0f); }).find("quantize_trellis_rtn"),
            std::string::npos);
}

}  // namespace
}  // namespace marlin
