// The int4-tile layout (backend/int4_tiles.h), checked on the CPU: decoding the packed stream the
// way the kernel's registers are defined (the PTX m16n8k16 A-fragment map) must give back every
// weight of the planar tensor exactly once, with its scale and zero point.
#include <gtest/gtest.h>

#include "backend/int4_tiles.h"
#include "core/error.h"
#include "core/thread_pool.h"
#include "tile_test_util.h"

namespace marlin {
namespace {

using tile_test::expect_layout_matches;
using tile_test::random_planar;

TEST(Int4Tiles, LayoutRoundTripsEveryFormat) {
  for (const char* format : {"int4-g128", "int4-g64", "int4-g32", "int4-pc", "int4-g128-asym", "int4-g32-asym",
                             "int4-pc-asym"})
    expect_layout_matches(format, 192, 384);
}

// K a multiple of 64 but not of 128 (SmolLM2's 576 and 192): the last tile is padded with zeros,
// including a partial g128 group and g32 groups that lie wholly in the padding.
// Packing on a pool (what the CUDA backend does at upload) spreads row blocks over threads and
// must give the same bytes as one thread, for every codec, with and without a padded last tile.
TEST(WeightTiles, PackingOnAPoolGivesTheSameBytes) {
  ThreadPool pool(3);
  for (const char* format : {"int4-g128", "int4-g32-asym", "int8-g128", "fp8-pc", "fp4-g32", "mxfp4", "nvfp4",
                             "int3-g128", "int2-g64-asym"})
    for (const int64_t cols : {384, 576}) {
      SCOPED_TRACE(testing::Message() << format << ", " << cols << " columns");
      const tile_test::Planar p = random_planar(format, 320, cols, 77);
      const std::vector<uint8_t> alone = pack_weight_tiles(p.view());
      EXPECT_EQ(pack_weight_tiles(p.view(), &pool), alone);
      EXPECT_FALSE(alone.empty());
    }
}

TEST(Int4Tiles, PadsKToWholeTiles) {
  for (const char* format : {"int4-g128", "int4-g32", "int4-g128-asym", "int4-g32-asym", "int4-pc-asym"}) {
    expect_layout_matches(format, 128, 576);
    expect_layout_matches(format, 64, 192);
  }
}

TEST(Int4Tiles, TileSizes) {
  const WeightTileShape g128 = int4_tile_shape(TensorFormat::parse("int4-g128"), 4096, 4096);
  EXPECT_EQ(g128.codec, TileCodec::kInt4);
  EXPECT_EQ(g128.groups_per_tile, 1);
  EXPECT_EQ(g128.tile_bytes(), 128 + 4096);
  EXPECT_EQ(g128.total_bytes(), uint64_t(64 * 32) * 4224u);
  const WeightTileShape g32a = int4_tile_shape(TensorFormat::parse("int4-g32-asym"), 64, 128);
  EXPECT_EQ(g32a.groups_per_tile, 4);
  EXPECT_EQ(g32a.tile_bytes(), 4 * 128 + 4 * 64 + 4096);
  EXPECT_EQ(int4_tile_shape(TensorFormat::parse("int4-pc"), 64, 128).groups_per_tile, 1);
  EXPECT_EQ(int4_tile_shape(TensorFormat::parse("int4-g128"), 576, 576).col_blocks(), 5);
}

TEST(Int4Tiles, RejectsWhatTheKernelCannotRun) {
  const TensorFormat g128 = TensorFormat::parse("int4-g128");
  EXPECT_THROW(int4_tile_shape(g128, 96, 128), Error);   // rows not a multiple of 64
  EXPECT_THROW(int4_tile_shape(g128, 64, 96), Error);    // cols not a multiple of 64
  EXPECT_THROW(int4_tile_shape(TensorFormat::parse("int8-g128"), 64, 128), Error);
  EXPECT_THROW(int4_tile_shape(TensorFormat::parse("int4-g128-act"), 64, 128), Error);
  EXPECT_THROW(int4_tile_shape(TensorFormat::parse("int4-g128-24"), 64, 128), Error);
  EXPECT_THROW(int4_tile_shape(TensorFormat::parse("fp4-g32"), 64, 128), Error);
  EXPECT_THROW(weight_tile_shape(TensorFormat::parse("q4_0"), 64, 128), Error);
  tile_test::Planar p = random_planar("int4-g128", 64, 128, 1);
  QuantTensor t = p.view();
  t.scales = nullptr;
  EXPECT_THROW(pack_int4_tiles(t), Error);
}

}  // namespace
}  // namespace marlin
