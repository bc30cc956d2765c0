// Helpers of the weight-tile tests: random planar tensors, and a CPU decoder that reads packed
// tiles exactly as the kernels do (backend/cuda/tile_codecs.cuh, bit for bit: the same loads,
// masks, shifts, byte permutes and bit selects, and the fp16 arithmetic emulated in fp32 where it
// is exact) and places each value by the PTX m16n8k16 A-fragment map, so that a round trip
// against dequantize_row checks the layout, the decoding, the scales and the padding.
#pragma once

#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <random>
#include <vector>

#include "backend/weight_tiles.h"
#include "core/half.h"
#include "quant/dequant.h"

namespace marlin::tile_test {

struct Planar {
  TensorFormat format;
  int64_t rows = 0, cols = 0;
  std::vector<uint8_t> codes, zeros;
  std::vector<uint8_t> scales;  // rows × groups entries of the format's scale type
  float tensor_scale = 1.0f;
  uint64_t row_bytes() const { return format.min_code_row_bytes(cols); }
  QuantTensor view() const {
    QuantTensor t;
    t.format = format;
    t.rows = rows;
    t.cols = cols;
    t.codes = codes.data();
    t.code_row_bytes = row_bytes();
    t.scales = scales.data();
    t.zeros = format.asymmetric ? zeros.data() : nullptr;
    t.tensor_scale = tensor_scale;
    return t;
  }
  // Sets scale entry i (fp16 formats only).
  void set_fp16_scale(int64_t i, float s) {
    const uint16_t h = fp32_to_fp16(s);
    std::memcpy(&scales[size_t(2 * i)], &h, 2);
  }
};

// Random codes (fp8: no NaN codes), distinct scales (a scale read from the wrong row or group
// shows; mxfp4: powers of two 2^-12 .. 2^-2; nvfp4: E4M3 codes 0x01 .. 0x7e, tensor scale 0.37),
// random zero points.
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
  const ScaleType type = format_info(p.format.kind).scale;
  p.scales.resize(size_t(entries * scale_bytes(type)));
  for (int64_t i = 0; i < entries; ++i) {
    if (type == ScaleType::kE8M0) p.scales[size_t(i)] = uint8_t(115 + i % 11);
    else if (type == ScaleType::kE4M3) p.scales[size_t(i)] = uint8_t(1 + i % 126);
    else p.set_fp16_scale(i, 0.001f * float(1 + i % 997));
  }
  if (p.format.kind == FormatKind::kNvFp4) p.tensor_scale = 0.37f;
  if (p.format.asymmetric) {
    p.zeros.resize(size_t(entries));
    const int levels = 1 << format_info(p.format.kind).code_bits;
    for (auto& z : p.zeros) z = uint8_t(rng() % unsigned(levels));
  }
  return p;
}

// ----------------------------------------------------------------------------------------------
// The kernels' instructions on the host.

inline float fp16_value(uint32_t bits) { return fp16_to_fp32(uint16_t(bits)); }
// An fp16 operation's result from its exact fp32 value: rounded to fp16, to nearest even.
inline float fp16_round(float x) { return fp16_to_fp32(fp32_to_fp16(x)); }

inline uint32_t rotl(uint32_t x, int n) { return n == 0 ? x : (x << n) | (x >> (32 - n)); }
inline uint32_t rotr(uint32_t x, int n) { return n == 0 ? x : (x >> n) | (x << (32 - n)); }
inline uint32_t bit_select(uint32_t a, uint32_t b, uint32_t mask) { return (a & mask) | (b & ~mask); }

// prmt.b32 in its default mode: byte i of the result is byte (selector >> 4i) & 7 of b:a, or that
// byte's sign bit replicated when bit 3 of the selector nibble is set.
inline uint32_t byte_perm(uint32_t a, uint32_t b, uint32_t selector) {
  const uint64_t bytes = uint64_t(a) | (uint64_t(b) << 32);
  uint32_t r = 0;
  for (int i = 0; i < 4; ++i) {
    const uint32_t nib = (selector >> (4 * i)) & 15;
    uint32_t byte = uint32_t(bytes >> (8 * (nib & 7))) & 0xff;
    if (nib & 8) byte = (byte & 0x80) ? 0xff : 0;
    r |= byte << (8 * i);
  }
  return r;
}

// A's register as the kernel makes it before the scale multiply: two fp16 values (half 0 = low
// 16 bits), exact.
struct PreScale {
  float half[2];
};

inline PreScale halves(uint32_t bits) { return {{fp16_value(bits & 0xffff), fp16_value(bits >> 16)}}; }

// dequant_nibbles without the scale: register 0 and 2 subtract 1024 + z, 1 and 3 multiply by 1/16
// and add −(64 + z), each half in fp16 (exact here; fp16_round shows it if it were not).
inline void dequant_nibbles(uint32_t word, uint32_t low_mask, uint32_t high_mask, uint32_t zero_top,
                            uint32_t zero_bottom, PreScale (&a)[4]) {
  const uint32_t exp1024 = 0x64006400, shifted = word >> 8;
  const uint32_t x[4] = {(word & low_mask) | exp1024, (word & high_mask) | exp1024, (shifted & low_mask) | exp1024,
                         (shifted & high_mask) | exp1024};
  const float sixteenth = fp16_value(0x2c00);
  for (int r = 0; r < 4; ++r) {
    const uint32_t zero = r % 2 ? zero_bottom : zero_top;
    const PreScale in = halves(x[r]);
    for (int h = 0; h < 2; ++h)
      a[r].half[h] = r % 2 == 0 ? fp16_round(in.half[h] - fp16_value(0x6400 | zero))
                                : fp16_round(in.half[h] * sixteenth + fp16_value(0xd400 | (zero << 4)));
  }
}

inline uint32_t load_word(const uint8_t* p) {
  uint32_t w;
  std::memcpy(&w, p, 4);
  return w;
}

inline uint32_t symmetric_zero(TileCodec codec) {
  switch (codec) {
    case TileCodec::kInt8: return 128;
    case TileCodec::kInt4: return 8;
    case TileCodec::kInt3: return 4;
    case TileCodec::kInt2: return 2;
    default: return 0;
  }
}

// The four A registers of k-step ks (0..7) of strip `strip`, lane `lane`, before the scale
// multiply, from the tile's code block: the codec's load (at the half's first byte) and dequant.
inline void decode_kstep(const uint8_t* codes, TileCodec codec, int strip, int ks, int lane, uint32_t zero_top,
                         uint32_t zero_bottom, PreScale (&a)[4]) {
  const int code_bytes = kTileRows * kTileCols * tile_code_bits(codec) / 8;
  const uint8_t* half = codes + tiles_detail::half_offset(code_bytes, strip, ks / 4);
  const int k = ks % 4;
  switch (codec) {
    case TileCodec::kInt4:
      return dequant_nibbles(load_word(half + 16 * lane + 4 * k), 0x000f000f, 0x00f000f0, zero_top, zero_bottom, a);
    case TileCodec::kInt2: {
      const uint32_t pair = load_word(half + 8 * lane + 4 * (k / 2));
      return dequant_nibbles(k % 2 ? pair >> 2 : pair, 0x00030003, 0x00300030, zero_top, zero_bottom, a);
    }
    case TileCodec::kInt3: {
      const uint32_t pair = load_word(half + 8 * lane + 4 * (k / 2));
      const uint32_t low = k % 2 ? pair >> 2 : pair;
      const uint32_t third_word = load_word(half + 256 + 4 * lane);
      const uint32_t third = k == 0 ? third_word << 2 : k == 1 ? third_word << 1 : k == 2 ? third_word : third_word >> 1;
      return dequant_nibbles(bit_select(low, third, 0x33333333), 0x00070007, 0x00700070, zero_top, zero_bottom, a);
    }
    case TileCodec::kInt8:
    case TileCodec::kFp8: {
      const uint8_t* vec = half + 512 * (k / 2) + 16 * lane;
      const uint32_t w0 = load_word(vec + 8 * (k % 2)), w1 = load_word(vec + 8 * (k % 2) + 4);
      if (codec == TileCodec::kFp8) {
        auto high_bytes = [](uint32_t x) { return (x & 0x80008000u) | ((x >> 1) & 0x3f803f80u); };
        a[0] = halves(high_bytes(w0 << 8));
        a[1] = halves(high_bytes(w0));
        a[2] = halves(high_bytes(w1 << 8));
        a[3] = halves(high_bytes(w1));
        return;
      }
      const uint32_t words[4] = {w0, w0, w1, w1}, selectors[4] = {0x4240, 0x4341, 0x4240, 0x4341};
      for (int r = 0; r < 4; ++r) {
        const PreScale in = halves(byte_perm(words[r], 0x64646464u, selectors[r]));
        const float offset = fp16_value(0x6400 | (r % 2 ? zero_bottom : zero_top));
        for (int h = 0; h < 2; ++h) a[r].half[h] = fp16_round(in.half[h] - offset);
      }
      return;
    }
    case TileCodec::kFp4: {
      const uint32_t place = 0x8e008e00, word = load_word(half + 16 * lane + 4 * k);
      const uint32_t signs_up = rotl(word, 3);
      const uint32_t y02 = bit_select(signs_up, word, 0x40404040), y13 = bit_select(signs_up, word, 0x04040404);
      a[0] = halves((y02 << 9) & place);
      a[1] = halves((y13 << 5) & place);
      a[2] = halves((y02 << 1) & place);
      a[3] = halves(rotr(y13, 3) & place);
      return;
    }
  }
}

// Row and column (within a 16-row strip and a 16-column k-step) of half h of register r of lane l
// in the tensor cores' m16n8k16 A fragment.
inline void fragment_position(int lane, int reg, int half, int* row, int* col) {
  const int g = lane / 4, t = lane % 4;
  *row = g + 8 * (reg % 2);
  *col = 2 * t + half + 8 * (reg / 2);
}

// Every value of the packed tiles as the kernel computes it (rows × col_blocks·128, row-major): the
// exact product of the decoded code and the tile scale (the kernel's fp16 is its rounding) times
// the row multiplier (fp4), and how often each position was written.
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
      auto scale = [&](int group, int tile_row) {
        uint16_t bits;
        std::memcpy(&bits, tile + 2 * (group * kTileRows + tile_row), 2);
        return fp16_to_fp32(bits);
      };
      auto zero = [&](int group, int tile_row) {
        return shape.asymmetric ? uint32_t(tile[shape.scale_bytes() + group * kTileRows + tile_row])
                                : symmetric_zero(shape.codec);
      };
      for (int strip = 0; strip < 4; ++strip)
        for (int ks = 0; ks < 8; ++ks) {
          const int group = 16 * ks * gpt / kTileCols;
          for (int lane = 0; lane < 32; ++lane) {
            const int top = 16 * strip + lane / 4;
            PreScale a[4];
            decode_kstep(codes, shape.codec, strip, ks, lane, zero(group, top), zero(group, top + 8), a);
            for (int reg = 0; reg < 4; ++reg)
              for (int half = 0; half < 2; ++half) {
                int r, c;
                fragment_position(lane, reg, half, &r, &c);
                const int tile_row = 16 * strip + r;
                const int64_t row = nb * kTileRows + tile_row;
                float value = a[reg].half[half] * scale(group, tile_row);
                if (shape.codec == TileCodec::kFp4) {
                  float multiplier;
                  std::memcpy(&multiplier, packed.data() + shape.tiles_bytes() + 4 * row, 4);
                  value *= multiplier;
                }
                const size_t i = size_t(row * d.cols + kt * kTileCols + 16 * ks + c);
                d.values[i] = value;
                d.hits[i]++;
              }
          }
        }
    }
  }
  return d;
}

// Packs the planar weights, decodes the tiles as the kernel does and compares every value with
// dequantize_row, within `rel_tol` of it (0: exactly); padded columns must decode to exactly 0.
inline void expect_planar_matches(const Planar& p, float rel_tol = 0.0f) {
  const std::vector<uint8_t> packed = pack_weight_tiles(p.view());
  const WeightTileShape shape = weight_tile_shape(p.format, p.rows, p.cols);
  ASSERT_EQ(packed.size(), shape.total_bytes());
  const Decoded d = decode_tiles(packed, shape);
  std::vector<float> expected(static_cast<size_t>(p.cols));
  int mismatches = 0;
  for (int64_t r = 0; r < p.rows; ++r) {
    dequantize_row(p.view(), r, expected.data());
    for (int64_t c = 0; c < d.cols; ++c) {
      const size_t i = size_t(r * d.cols + c);
      const float want = c < p.cols ? expected[size_t(c)] : 0.0f;
      const bool close = rel_tol == 0.0f ? d.values[i] == want : std::fabs(d.values[i] - want) <= rel_tol * std::fabs(want);
      if (d.hits[i] != 1 || !close) {
        if (++mismatches <= 5)
          ADD_FAILURE() << "row " << r << " col " << c << ": decoded " << d.values[i] << " (hit " << d.hits[i]
                        << " times), planar " << want;
      }
    }
  }
  EXPECT_EQ(mismatches, 0);
}

inline void expect_layout_matches(const char* format, int64_t rows, int64_t cols, float rel_tol = 0.0f) {
  SCOPED_TRACE(::testing::Message() << format << " " << rows << " x " << cols);
  expect_planar_matches(random_planar(format, rows, cols, 1234), rel_tol);
}

}  // namespace marlin::tile_test
