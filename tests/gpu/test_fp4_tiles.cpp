// The fp4-tile codec (backend/fp4_tiles.h: fp4, mxfp4, nvfp4), checked on the CPU: the kernel's
// bit placement of E2M1 codes is exact, and decoding the packed tiles exactly as the kernel does
// gives back every weight of the planar tensor once, with its folded scale and row multiplier.
#include <gtest/gtest.h>

#include <cmath>
#include <random>
#include <vector>

#include "backend/fp4_tiles.h"
#include "core/error.h"
#include "quant/fp_codes.h"
#include "tile_test_util.h"

namespace marlin {
namespace {

using tile_test::expect_layout_matches;
using tile_test::random_planar;

// nvfp4's planar value is (t·e4m3(s))·e2m1(q), rounded twice in fp32; the kernel's weight
// e2m1(q)·e4m3(s)·2^-j is exact and its product with t·2^j rounds once: they may differ by
// 1.5 fp32 ulps.
constexpr float kNvFp4Tolerance = 0x1p-22f;

// Every code at every nibble of a k-step word, among random neighbours, becomes the fp16
// e2m1(q)·2^-14 exactly (subnormals and −0 included) in its register half: nibble i is register
// i % 4, half i / 4.
TEST(Fp4Tiles, BitPlacementIsExact) {
  std::mt19937 rng(5);
  for (uint32_t q = 0; q < 16; ++q)
    for (int i = 0; i < 8; ++i)
      for (int trial = 0; trial < 16; ++trial) {
        const uint32_t word = (uint32_t(rng()) & ~(0xfu << (4 * i))) | (q << (4 * i));
        std::vector<uint8_t> codes(4096, 0);
        for (int b = 0; b < 4; ++b) codes[size_t(b)] = uint8_t(word >> (8 * b));
        tile_test::PreScale a[4];
        tile_test::decode_kstep(codes.data(), TileCodec::kFp4, 0, 0, 0, 0, 0, a);
        const float got = a[i % 4].half[i / 4], want = std::ldexp(e2m1_to_float(uint8_t(q)), -14);
        EXPECT_EQ(got, want) << "code " << q << " nibble " << i;
        EXPECT_EQ(std::signbit(got), std::signbit(want)) << "code " << q << " nibble " << i;
      }
}

TEST(Fp4Tiles, LayoutRoundTripsEveryFormat) {
  for (const char* format : {"fp4-g128", "fp4-g64", "fp4-g32", "fp4-pc", "mxfp4"})
    expect_layout_matches(format, 192, 384);
  expect_layout_matches("nvfp4", 192, 384, kNvFp4Tolerance);
}

TEST(Fp4Tiles, PadsKToWholeTiles) {
  for (const char* format : {"fp4-g128", "fp4-g32", "fp4-pc", "mxfp4"}) {
    expect_layout_matches(format, 128, 576);
    expect_layout_matches(format, 64, 192);
  }
  expect_layout_matches("nvfp4", 128, 576, kNvFp4Tolerance);
  expect_layout_matches("nvfp4", 64, 192, kNvFp4Tolerance);
}

// Scales whose 2^14-fold overflows fp16 (up to 60000), tiny ones (fp16 subnormals) and negative
// ones still round-trip: each row's exponent moves its largest scale to [2^14, 2^15).
TEST(Fp4Tiles, FoldsAnyFp16ScaleExactly) {
  tile_test::Planar p = random_planar("fp4-g32", 64, 256, 9);
  const float extremes[] = {60000.0f, 1000.0f, -3.5f, 6e-8f, 1e-5f, -0.25f};
  for (int64_t i = 0; i < 64 * 8; i += 7) p.set_fp16_scale(i, extremes[(i / 7) % 6]);
  tile_test::expect_planar_matches(p);
  const WeightTileShape shape = weight_tile_shape(p.format, 64, 256);
  const std::vector<uint8_t> packed = pack_weight_tiles(p.view());
  for (int64_t r = 0; r < 64; ++r) {
    float m;
    std::memcpy(&m, packed.data() + shape.tiles_bytes() + 4 * r, 4);
    int e;
    EXPECT_EQ(std::frexp(m, &e), 0.5f) << "row " << r << ": multiplier " << m << " is not a power of two";
  }
}

TEST(Fp4Tiles, TileSizes) {
  const WeightTileShape nv = fp4_tile_shape(TensorFormat::parse("nvfp4"), 4096, 4096);
  EXPECT_EQ(nv.codec, TileCodec::kFp4);
  EXPECT_EQ(nv.groups_per_tile, 8);
  EXPECT_EQ(nv.tile_bytes(), 8 * 128 + 4096);
  EXPECT_EQ(nv.total_bytes(), uint64_t(64 * 32) * 5120u + 4096u * 4u);
  EXPECT_EQ(fp4_tile_shape(TensorFormat::parse("mxfp4"), 64, 128).groups_per_tile, 4);
  EXPECT_EQ(fp4_tile_shape(TensorFormat::parse("fp4-pc"), 64, 128).tile_bytes(), 128 + 4096);
  EXPECT_EQ(weight_tile_shape(TensorFormat::parse("fp4-g64"), 64, 576).col_blocks(), 5);
}

TEST(Fp4Tiles, RejectsWhatTheKernelCannotRun) {
  EXPECT_THROW(fp4_tile_shape(TensorFormat::parse("fp4-g128"), 96, 128), Error);
  EXPECT_THROW(fp4_tile_shape(TensorFormat::parse("nvfp4"), 64, 96), Error);
  EXPECT_THROW(fp4_tile_shape(TensorFormat::parse("int4-g128"), 64, 128), Error);
  EXPECT_THROW(fp4_tile_shape(TensorFormat::parse("fp4-g128-act"), 64, 128), Error);
  // mxfp4 scales 2^-126 and 2^0 in one row: 2^-126 is not an fp16 next to 2^14.
  tile_test::Planar mx = random_planar("mxfp4", 64, 128, 2);
  mx.scales[0] = 1;
  mx.scales[1] = 127;
  EXPECT_THROW(pack_fp4_tiles(mx.view()), Error);
  mx.scales[0] = 127 - 38;  // 2^-38 next to 2^0: stored as 2^-24, the least fp16
  EXPECT_NO_THROW(pack_fp4_tiles(mx.view()));
  mx.scales[0] = 0xff;  // NaN
  EXPECT_THROW(pack_fp4_tiles(mx.view()), Error);
  tile_test::Planar nv = random_planar("nvfp4", 64, 128, 3);
  nv.scales[3] = 0x7f;  // NaN
  EXPECT_THROW(pack_fp4_tiles(nv.view()), Error);
}

// Two nvfp4 tensors with different tensor scales, stacked by rows and packed with scale 1, then
// given their own scales by multiply_fp4_row_scales, decode as each alone.
TEST(Fp4Tiles, StackedPartsKeepTheirTensorScales) {
  tile_test::Planar a = random_planar("nvfp4", 64, 256, 4), b = random_planar("nvfp4", 128, 256, 5);
  a.tensor_scale = 0.37f;
  b.tensor_scale = 1.9e-3f;
  tile_test::Planar stacked = a;
  stacked.rows = 192;
  stacked.codes.insert(stacked.codes.end(), b.codes.begin(), b.codes.end());
  stacked.scales.insert(stacked.scales.end(), b.scales.begin(), b.scales.end());
  stacked.tensor_scale = 1.0f;
  const WeightTileShape shape = weight_tile_shape(stacked.format, 192, 256);
  std::vector<uint8_t> packed = pack_weight_tiles(stacked.view());
  multiply_fp4_row_scales(packed, shape, 0, 64, a.tensor_scale);
  multiply_fp4_row_scales(packed, shape, 64, 128, b.tensor_scale);
  EXPECT_THROW(multiply_fp4_row_scales(packed, shape, 64, 129, 2.0f), Error);
  const tile_test::Decoded d = tile_test::decode_tiles(packed, shape);
  std::vector<float> want(256);
  for (int64_t r = 0; r < 192; ++r) {
    dequantize_row(r < 64 ? a.view() : b.view(), r < 64 ? r : r - 64, want.data());
    for (int64_t c = 0; c < 256; ++c)
      ASSERT_LE(std::fabs(d.values[size_t(r * 256 + c)] - want[size_t(c)]), kNvFp4Tolerance * std::fabs(want[size_t(c)]))
          << "row " << r << " col " << c;
  }
}

}  // namespace
}  // namespace marlin
