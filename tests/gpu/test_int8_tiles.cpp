// The 8-bit tile layout (backend/int8_tiles.h: int8 and FP8 E4M3), checked on the CPU like the
// int4 tiles: decoding the packed stream as the kernel's registers are defined must give back
// every weight of the planar tensor exactly once, with its scale, and zeros in the K padding.
#include <gtest/gtest.h>

#include <cmath>
#include <vector>

#include "backend/int8_tiles.h"
#include "core/error.h"
#include "quant/fp_codes.h"
#include "tile_test_util.h"

namespace marlin {
namespace {

using tile_test::expect_layout_matches;
using tile_test::random_planar;

TEST(Int8Tiles, LayoutRoundTripsEveryFormat) {
  for (const char* format : {"int8-g128", "int8-g64", "int8-g32", "int8-pc", "fp8-pc", "fp8-g128"})
    expect_layout_matches(format, 192, 384);
}

TEST(Int8Tiles, PadsKToWholeTiles) {
  for (const char* format : {"int8-g128", "int8-g32", "int8-pc", "fp8-pc", "fp8-g128"}) {
    expect_layout_matches(format, 128, 576);
    expect_layout_matches(format, 64, 192);
  }
}

// The kernel's fp8 decoding (bits moved into an fp16) is exactly e4m3(q)/256 for every code but
// the two NaNs, subnormals included.
TEST(Int8Tiles, Fp8BitMoveIsExact) {
  for (uint32_t q = 0; q < 256; ++q) {
    if ((q & 0x7f) == 0x7f) continue;
    // The code as byte 1 of a word (row g + 8's first value: register 1, half 0).
    std::vector<uint8_t> codes(8192, 0);
    codes[1] = uint8_t(q);
    tile_test::PreScale a[4];
    tile_test::decode_kstep(codes.data(), TileCodec::kFp8, 0, 0, 0, 0, 0, a);
    EXPECT_EQ(a[1].half[0], e4m3_to_float(uint8_t(q)) / 256.0f) << "code " << q;
  }
}

TEST(Int8Tiles, TileSizes) {
  const WeightTileShape pc = int8_tile_shape(TensorFormat::parse("int8-pc"), 4096, 4096);
  EXPECT_EQ(pc.codec, TileCodec::kInt8);
  EXPECT_EQ(pc.groups_per_tile, 1);
  EXPECT_EQ(pc.tile_bytes(), 128 + 8192);
  EXPECT_EQ(pc.total_bytes(), uint64_t(64 * 32) * 8320u);
  const WeightTileShape g32 = int8_tile_shape(TensorFormat::parse("int8-g32"), 64, 128);
  EXPECT_EQ(g32.groups_per_tile, 4);
  EXPECT_EQ(g32.tile_bytes(), 4 * 128 + 8192);
  EXPECT_EQ(int8_tile_shape(TensorFormat::parse("fp8-pc"), 64, 128).codec, TileCodec::kFp8);
  EXPECT_EQ(weight_tile_shape(TensorFormat::parse("fp8-g128"), 64, 576).col_blocks(), 5);
}

TEST(Int8Tiles, RejectsWhatTheKernelCannotRun) {
  EXPECT_THROW(int8_tile_shape(TensorFormat::parse("int8-g128"), 96, 128), Error);  // rows
  EXPECT_THROW(int8_tile_shape(TensorFormat::parse("int8-g128"), 64, 160), Error);  // cols
  EXPECT_THROW(int8_tile_shape(TensorFormat::parse("int8-g128-asym"), 64, 128), Error);
  EXPECT_THROW(int8_tile_shape(TensorFormat::parse("fp8-g64"), 64, 128), Error);
  EXPECT_THROW(int8_tile_shape(TensorFormat::parse("int4-g128"), 64, 128), Error);
  EXPECT_THROW(int8_tile_shape(TensorFormat::parse("int8-g128-act"), 64, 128), Error);
  // fp8 tiles store 256·s in fp16: a scale of 300 cannot be.
  tile_test::Planar p = random_planar("fp8-pc", 64, 128, 3);
  p.set_fp16_scale(5, 300.0f);
  EXPECT_THROW(pack_int8_tiles(p.view()), Error);
  p.set_fp16_scale(5, 255.0f);
  EXPECT_NO_THROW(pack_int8_tiles(p.view()));
}

}  // namespace
}  // namespace marlin
