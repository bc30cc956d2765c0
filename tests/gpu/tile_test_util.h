// Helpers of the weight-tile tests: random planar tensors, and a CPU decoder that reads packed
// tiles the way the kernels' registers are defined (the PTX m16n8k16 A-fragment map), so that a
// round trip against dequantize_row checks the layout, the scales and the padding.
#pragma once

#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <random>
#include <vector>

#include "backend/int8_tiles.h"
#include "backend/weight_tiles.h"
#include "core/half.h"
#include "quant/dequant.h"

namespace marlin::tile_test {

struct Planar {
  TensorFormat format;
  int64_t rows = 0, cols = 0;
  std::vector<uint8_t> codes, zeros;
  std::vector<uint16_t> scales;
  uint64_t row_bytes() const { return format.min_code_row_bytes(cols); }
  QuantTensor view() const {
    QuantTensor t;
    t.format = format;
    t.rows = rows;
    t.cols = cols;
    t.codes = codes.data();
    t.code_row_bytes = row_bytes();
    t.scales = reinterpret_cast<const uint8_t*>(scales.data());
    t.zeros = format.asymmetric ? zeros.data() : nullptr;
    return t;
  }
};

// Random codes (fp8: no NaN codes), distinct scales (a scale read from the wrong row or group
// shows), random zero points.
inline Planar random_planar(const char* format, int64_t rows, int64_t cols, uint32_t seed) {
  std::mt19937 rng(seed);
  Planar p;
  p.format = TensorFormat::parse(format);
  p.rows = rows;
  p.cols = cols;
  p.codes.resize(size_t(uint64_t(rows) * p.row_bytes()));
  const bool fp8 = p.format.kind == FormatKind::kFp8E4M3;
  for (auto& c : p.codes) {
    c = uint8_t(rng());
    while (fp8 && (c & 0x7f) == 0x7f) c = uint8_t(rng());
  }
  const int64_t entries = rows * p.format.groups(cols);
  p.scales.resize(size_t(entries));
  for (int64_t i = 0; i < entries; ++i) p.scales[size_t(i)] = fp32_to_fp16(0.001f * float(1 + i % 997));
  if (p.format.asymmetric) {
    p.zeros.resize(size_t(entries));
    const int levels = 1 << format_info(p.format.kind).code_bits;
    for (auto& z : p.zeros) z = uint8_t(rng() % unsigned(levels));
  }
  return p;
}

// The fp16 value the fp8 kernels make of an E4M3 code before scaling (e4m3(q)/256): sign and the
// seven exponent/mantissa bits moved into an fp16's place.
inline float fp8_kernel_value(uint32_t q) {
  return fp16_to_fp32(uint16_t(((q & 0x80) << 8) | ((q & 0x7f) << 7)));
}

// Row and column (within a 16-row strip and a 16-column k-step) of half h of register r of lane l
// in the tensor cores' m16n8k16 A fragment.
inline void fragment_position(int lane, int reg, int half, int* row, int* col) {
  const int g = lane / 4, t = lane % 4;
  *row = g + 8 * (reg % 2);
  *col = 2 * t + half + 8 * (reg / 2);
}

// The code of half `half` of register `reg` of lane `lane`, k-step `ks`, strip `strip` of a tile's
// code block, per the codec's header (int4_tiles.h, int8_tiles.h).
inline uint32_t fragment_code(const uint8_t* codes, TileCodec codec, int strip, int ks, int lane, int reg, int half) {
  if (codec == TileCodec::kInt4) {
    uint32_t word;
    std::memcpy(&word, codes + 1024 * strip + 512 * (ks / 4) + 16 * lane + 4 * (ks % 4), 4);
    return (word >> (4 * (reg + 4 * half))) & 15;
  }
  return codes[2048 * strip + 512 * (ks / 2) + 16 * lane + 8 * (ks % 2) + 4 * (reg / 2) + (reg % 2) + 2 * half];
}

// Every value of the packed tiles as the kernel computes it before rounding to fp16 (rows ×
// col_blocks·128, row-major), and how often each position was written.
struct Decoded {
  int64_t cols = 0;  // padded width
  std::vector<float> values;
  std::vector<int> hits;
};

inline Decoded decode_tiles(const std::vector<uint8_t>& packed, const WeightTileShape& shape) {
  Decoded d;
  d.cols = shape.col_blocks() * kTileCols;
  d.values.assign(size_t(shape.rows * d.cols), NAN);
  d.hits.assign(size_t(shape.rows * d.cols), 0);
  const int gpt = shape.groups_per_tile;
  for (int64_t nb = 0; nb < shape.row_blocks(); ++nb) {
    for (int64_t kt = 0; kt < shape.col_blocks(); ++kt) {
      const uint8_t* tile = packed.data() + (nb * shape.col_blocks() + kt) * shape.tile_bytes();
      const uint8_t* codes = tile + shape.scale_bytes() + shape.zero_bytes();
      for (int strip = 0; strip < 4; ++strip)
        for (int ks = 0; ks < 8; ++ks)
          for (int lane = 0; lane < 32; ++lane)
            for (int reg = 0; reg < 4; ++reg)
              for (int half = 0; half < 2; ++half) {
                const uint32_t q = fragment_code(codes, shape.codec, strip, ks, lane, reg, half);
                int r, c;
                fragment_position(lane, reg, half, &r, &c);
                const int tile_row = 16 * strip + r, tile_col = 16 * ks + c;
                const int group = tile_col * gpt / kTileCols;
                uint16_t scale_bits;
                std::memcpy(&scale_bits, tile + 2 * (group * kTileRows + tile_row), 2);
                const float s = fp16_to_fp32(scale_bits);
                float value;
                if (shape.codec == TileCodec::kFp8) {
                  value = s * fp8_kernel_value(q);
                } else {
                  const int symmetric_zero = shape.codec == TileCodec::kInt4 ? 8 : 128;
                  const int zero =
                      shape.asymmetric ? tile[shape.scale_bytes() + group * kTileRows + tile_row] : symmetric_zero;
                  value = s * float(int(q) - zero);
                }
                const size_t i = size_t((nb * kTileRows + tile_row) * d.cols + kt * kTileCols + tile_col);
                d.values[i] = value;
                d.hits[i]++;
              }
    }
  }
  return d;
}

// Packs `format` weights of rows × cols, decodes the tiles as the kernel does and compares every
// value with dequantize_row; padded columns must decode to exactly 0.
inline void expect_layout_matches(const char* format, int64_t rows, int64_t cols) {
  SCOPED_TRACE(::testing::Message() << format << " " << rows << " x " << cols);
  const Planar p = random_planar(format, rows, cols, 1234);
  const std::vector<uint8_t> packed = pack_weight_tiles(p.view());
  const WeightTileShape shape = weight_tile_shape(p.format, rows, cols);
  ASSERT_EQ(packed.size(), shape.total_bytes());
  const Decoded d = decode_tiles(packed, shape);
  std::vector<float> expected(static_cast<size_t>(cols));
  int mismatches = 0;
  for (int64_t r = 0; r < rows; ++r) {
    dequantize_row(p.view(), r, expected.data());
    for (int64_t c = 0; c < d.cols; ++c) {
      const size_t i = size_t(r * d.cols + c);
      const float want = c < cols ? expected[size_t(c)] : 0.0f;
      if (d.hits[i] != 1 || d.values[i] != want) {
        if (++mismatches <= 5)
          ADD_FAILURE() << "row " << r << " col " << c << ": decoded " << d.values[i] << " (hit " << d.hits[i]
                        << " times), planar " << want;
      }
    }
  }
  EXPECT_EQ(mismatches, 0);
}

}  // namespace marlin::tile_test
