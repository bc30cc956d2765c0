// The int4-tile layout (backend/int4_tiles.h), checked on the CPU: decoding the packed stream the
// way the kernel's registers are defined (the PTX m16n8k16 A-fragment map) must give back every
// weight of the planar tensor exactly once, with its scale and zero point.
#include <gtest/gtest.h>

#include <cstring>
#include <random>
#include <vector>

#include "backend/int4_tiles.h"
#include "core/error.h"
#include "core/half.h"
#include "quant/dequant.h"

namespace marlin {
namespace {

struct Planar {
  TensorFormat format;
  int64_t rows, cols;
  std::vector<uint8_t> codes, zeros;
  std::vector<uint16_t> scales;
  QuantTensor view() const {
    QuantTensor t;
    t.format = format;
    t.rows = rows;
    t.cols = cols;
    t.codes = codes.data();
    t.code_row_bytes = uint64_t(cols / 2);
    t.scales = reinterpret_cast<const uint8_t*>(scales.data());
    t.zeros = format.asymmetric ? zeros.data() : nullptr;
    return t;
  }
};

Planar random_planar(const char* format, int64_t rows, int64_t cols, uint32_t seed) {
  std::mt19937 rng(seed);
  Planar p{TensorFormat::parse(format), rows, cols, {}, {}, {}};
  p.codes.resize(size_t(rows * cols / 2));
  for (auto& c : p.codes) c = uint8_t(rng());
  const int64_t entries = rows * p.format.groups(cols);
  p.scales.resize(size_t(entries));
  // Distinct scales, so a scale read from the wrong row or group shows.
  for (int64_t i = 0; i < entries; ++i) p.scales[size_t(i)] = fp32_to_fp16(0.001f * float(1 + i % 997));
  if (p.format.asymmetric) {
    p.zeros.resize(size_t(entries));
    for (auto& z : p.zeros) z = uint8_t(rng() & 15);
  }
  return p;
}

// Row and column (within a 16-row strip and a 16-column k-step) of half h of register r of lane l
// in the tensor cores' m16n8k16 A fragment.
void fragment_position(int lane, int reg, int half, int* row, int* col) {
  const int g = lane / 4, t = lane % 4;
  *row = g + 8 * (reg % 2);
  *col = 2 * t + half + 8 * (reg / 2);
}

// Dequantizes the packed stream as the kernel does and compares it with dequantize_row.
void expect_layout_matches(const char* format, int64_t rows, int64_t cols) {
  SCOPED_TRACE(format);
  const Planar p = random_planar(format, rows, cols, 1234);
  const std::vector<uint8_t> packed = pack_int4_tiles(p.view());
  const Int4TileShape shape = int4_tile_shape(p.format, rows, cols);
  ASSERT_EQ(packed.size(), shape.total_bytes());

  std::vector<float> decoded(static_cast<size_t>(rows * cols), NAN);
  std::vector<int> hits(static_cast<size_t>(rows * cols), 0);
  const int gpt = shape.groups_per_tile;
  for (int64_t nb = 0; nb < shape.row_blocks(); ++nb) {
    for (int64_t kt = 0; kt < shape.col_blocks(); ++kt) {
      const uint8_t* tile = packed.data() + (nb * shape.col_blocks() + kt) * shape.tile_bytes();
      const uint8_t* codes = tile + shape.scale_bytes() + shape.zero_bytes();
      for (int strip = 0; strip < 4; ++strip) {
        for (int ks = 0; ks < 8; ++ks) {
          for (int lane = 0; lane < 32; ++lane) {
            uint32_t word;
            std::memcpy(&word, codes + 1024 * strip + 512 * (ks / 4) + 16 * lane + 4 * (ks % 4), 4);
            for (int reg = 0; reg < 4; ++reg) {
              for (int half = 0; half < 2; ++half) {
                const uint32_t q = (word >> (4 * (reg + 4 * half))) & 15;
                int r, c;
                fragment_position(lane, reg, half, &r, &c);
                const int tile_row = 16 * strip + r, tile_col = 16 * ks + c;
                const int group = tile_col * gpt / kInt4TileCols;
                uint16_t scale_bits;
                std::memcpy(&scale_bits, tile + 2 * (group * kInt4TileRows + tile_row), 2);
                const int zero = shape.asymmetric ? tile[shape.scale_bytes() + group * kInt4TileRows + tile_row] : 8;
                const int64_t row = nb * kInt4TileRows + tile_row, col = kt * kInt4TileCols + tile_col;
                decoded[size_t(row * cols + col)] = fp16_to_fp32(scale_bits) * float(int(q) - zero);
                hits[size_t(row * cols + col)]++;
              }
            }
          }
        }
      }
    }
  }
  std::vector<float> expected(static_cast<size_t>(cols));
  int mismatches = 0;
  for (int64_t r = 0; r < rows; ++r) {
    dequantize_row(p.view(), r, expected.data());
    for (int64_t c = 0; c < cols; ++c) {
      const size_t i = size_t(r * cols + c);
      if (hits[i] != 1 || decoded[i] != expected[size_t(c)]) {
        if (++mismatches <= 5)
          ADD_FAILURE() << "row " << r << " col " << c << ": decoded " << decoded[i] << " (hit " << hits[i]
                        << " times), planar " << expected[size_t(c)];
      }
    }
  }
  EXPECT_EQ(mismatches, 0);
}

TEST(Int4Tiles, LayoutRoundTripsEveryFormat) {
  for (const char* format : {"int4-g128", "int4-g64", "int4-g32", "int4-pc", "int4-g128-asym", "int4-g32-asym",
                             "int4-pc-asym"})
    expect_layout_matches(format, 192, 384);
}

TEST(Int4Tiles, TileSizes) {
  const Int4TileShape g128 = int4_tile_shape(TensorFormat::parse("int4-g128"), 4096, 4096);
  EXPECT_EQ(g128.groups_per_tile, 1);
  EXPECT_EQ(g128.tile_bytes(), 128 + 4096);
  EXPECT_EQ(g128.total_bytes(), uint64_t(64 * 32) * 4224u);
  const Int4TileShape g32a = int4_tile_shape(TensorFormat::parse("int4-g32-asym"), 64, 128);
  EXPECT_EQ(g32a.groups_per_tile, 4);
  EXPECT_EQ(g32a.tile_bytes(), 4 * 128 + 4 * 64 + 4096);
  EXPECT_EQ(int4_tile_shape(TensorFormat::parse("int4-pc"), 64, 128).groups_per_tile, 1);
}

TEST(Int4Tiles, RejectsWhatTheKernelCannotRun) {
  const TensorFormat g128 = TensorFormat::parse("int4-g128");
  EXPECT_THROW(int4_tile_shape(g128, 96, 128), Error);   // rows not a multiple of 64
  EXPECT_THROW(int4_tile_shape(g128, 64, 192), Error);   // cols not a multiple of 128
  EXPECT_THROW(int4_tile_shape(TensorFormat::parse("int8-g128"), 64, 128), Error);
  EXPECT_THROW(int4_tile_shape(TensorFormat::parse("int4-g128-act"), 64, 128), Error);
  EXPECT_THROW(int4_tile_shape(TensorFormat::parse("int4-g128-24"), 64, 128), Error);
  EXPECT_THROW(int4_tile_shape(TensorFormat::parse("fp4-g32"), 64, 128), Error);
  Planar p = random_planar("int4-g128", 64, 128, 1);
  QuantTensor t = p.view();
  t.scales = nullptr;
  EXPECT_THROW(pack_int4_tiles(t), Error);
}

}  // namespace
}  // namespace marlin
