// The int3- and int2-tile codecs (backend/lowbit_tiles.h), checked on the CPU: decoding the packed
// planes exactly as the kernel does (the shifts, the bit select of the third bits, the masks and
// the fp16 exponent trick) gives back every weight of the planar tensor once, with its scale and
// zero point, and zeros in the K padding.
#include <gtest/gtest.h>

#include "backend/lowbit_tiles.h"
#include "core/error.h"
#include "tile_test_util.h"

namespace marlin {
namespace {

using tile_test::expect_layout_matches;

TEST(LowbitTiles, LayoutRoundTripsEveryFormat) {
  for (const char* format : {"int2-g128", "int2-g64", "int2-g32", "int2-pc", "int2-g128-asym", "int2-g64-asym",
                             "int2-g32-asym", "int2-pc-asym", "int3-g128", "int3-g64", "int3-g32", "int3-pc",
                             "int3-g128-asym", "int3-g64-asym", "int3-g32-asym", "int3-pc-asym"})
    expect_layout_matches(format, 192, 384);
}

TEST(LowbitTiles, PadsKToWholeTiles) {
  for (const char* format : {"int2-g128", "int2-g32-asym", "int2-pc-asym", "int3-g128", "int3-g32", "int3-g128-asym",
                             "int3-pc-asym"}) {
    expect_layout_matches(format, 128, 576);
    expect_layout_matches(format, 64, 192);
  }
}

TEST(LowbitTiles, TileSizes) {
  const WeightTileShape int2 = lowbit_tile_shape(TensorFormat::parse("int2-g128"), 4096, 4096);
  EXPECT_EQ(int2.codec, TileCodec::kInt2);
  EXPECT_EQ(int2.tile_bytes(), 128 + 2048);
  EXPECT_EQ(int2.total_bytes(), uint64_t(64 * 32) * 2176u);
  const WeightTileShape int3 = lowbit_tile_shape(TensorFormat::parse("int3-g64-asym"), 64, 128);
  EXPECT_EQ(int3.codec, TileCodec::kInt3);
  EXPECT_EQ(int3.groups_per_tile, 2);
  EXPECT_EQ(int3.tile_bytes(), 2 * 128 + 2 * 64 + 3072);
  EXPECT_EQ(weight_tile_shape(TensorFormat::parse("int3-pc"), 64, 576).col_blocks(), 5);
}

TEST(LowbitTiles, RejectsWhatTheKernelCannotRun) {
  EXPECT_THROW(lowbit_tile_shape(TensorFormat::parse("int2-g128"), 96, 128), Error);
  EXPECT_THROW(lowbit_tile_shape(TensorFormat::parse("int3-g128"), 64, 160), Error);
  EXPECT_THROW(lowbit_tile_shape(TensorFormat::parse("int3-g128-act"), 64, 128), Error);
  EXPECT_THROW(lowbit_tile_shape(TensorFormat::parse("int4-g128"), 64, 128), Error);
  tile_test::Planar p = tile_test::random_planar("int3-g128-asym", 64, 128, 1);
  QuantTensor t = p.view();
  t.zeros = nullptr;
  EXPECT_THROW(pack_lowbit_tiles(t), Error);
}

}  // namespace
}  // namespace marlin
