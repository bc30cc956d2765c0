#include "backend/fp4_tiles.h"

#include <cmath>
#include <cstring>

#include "backend/int4_tiles.h"
#include "core/error.h"
#include "core/half.h"
#include "quant/fp_codes.h"

namespace marlin {

namespace {

// Group g's scale σ of `row` without the nvfp4 tensor scale (exact in fp32); NaN for a NaN code.
float group_sigma(const QuantTensor& w, int64_t row, int64_t g) {
  const uint64_t entry = uint64_t(row) * uint64_t(w.groups()) + uint64_t(g);
  switch (w.format.kind) {
    case FormatKind::kMxFp4: return e8m0_to_float(w.scales[entry]);
    case FormatKind::kNvFp4: return e4m3_to_float(w.scales[entry]);
    default: {
      uint16_t h;
      std::memcpy(&h, w.scales + 2 * entry, 2);
      return fp16_to_fp32(h);
    }
  }
}

}  // namespace

WeightTileShape fp4_tile_shape(const TensorFormat& format, int64_t rows, int64_t cols) {
  MARLIN_CHECK(format.kind == FormatKind::kFp4 || format.kind == FormatKind::kMxFp4 ||
                   format.kind == FormatKind::kNvFp4,
               "fp4 tiles: format {} is not fp4, mxfp4 or nvfp4", format.name());
  tiles_detail::check_tileable(format, rows, cols);
  return tiles_detail::base_shape(format, rows, cols, TileCodec::kFp4);
}

std::vector<uint8_t> pack_fp4_tiles(const QuantTensor& w, ThreadPool* pool) {
  w.validate();
  const WeightTileShape shape = fp4_tile_shape(w.format, w.rows, w.cols);
  std::vector<uint8_t> out(shape.total_bytes());
  const int64_t groups = w.groups();
  const float t = w.format.kind == FormatKind::kNvFp4 ? w.tensor_scale : 1.0f;
  MARLIN_CHECK(std::isfinite(t), "fp4 tiles: tensor scale {} is not finite", t);
  // Per row: the exponent j, and the row multiplier 2^j·t after the tiles.
  std::vector<int> row_exponent(size_t(w.rows), 0);
  for (int64_t r = 0; r < w.rows; ++r) {
    float largest = 0.0f;
    for (int64_t g = 0; g < groups; ++g) {
      const float sigma = group_sigma(w, r, g);
      MARLIN_CHECK(std::isfinite(sigma), "fp4 tiles: scale {} of row {} group {} is not finite", sigma, r, g);
      largest = std::fmax(largest, std::fabs(sigma));
    }
    int j = 0;
    if (largest > 0.0f) j = std::ilogb(largest);
    row_exponent[size_t(r)] = j;
    const float multiplier = std::ldexp(t, j);
    MARLIN_CHECK(std::isfinite(multiplier), "fp4 tiles: row {} multiplier 2^{}·{} overflows fp32", r, j, t);
    std::memcpy(out.data() + shape.tiles_bytes() + 4 * uint64_t(r), &multiplier, 4);
  }
  tiles_detail::fill_tile_quant(
      w, shape,
      [&](int64_t row, int64_t group) {
        // In double: far from under- or overflow, so the comparison below sees any loss.
        const double stored = std::ldexp(double(group_sigma(w, row, group)), 14 - row_exponent[size_t(row)]);
        const uint16_t bits = fp32_to_fp16(float(stored));
        MARLIN_CHECK(double(fp16_to_fp32(bits)) == stored,
                     "fp4 tiles: scale {} of row {} group {} is not exact in fp16 next to the row's largest "
                     "(2^{}): the row's scales span too many powers of two",
                     group_sigma(w, row, group), row, group, row_exponent[size_t(row)]);
        return bits;
      },
      out);
  tiles_detail::fill_tile_codes(
      shape, [&](int64_t row0, int64_t col0, uint8_t* codes) { tiles_detail::write_nibble_codes(w, row0, col0, codes); },
      out, pool);
  return out;
}

void multiply_fp4_row_scales(std::vector<uint8_t>& packed, const WeightTileShape& shape, int64_t row0, int64_t rows,
                             float factor) {
  MARLIN_CHECK(shape.codec == TileCodec::kFp4 && packed.size() == shape.total_bytes(),
               "fp4 tiles: row multipliers of {} tiles of {} bytes", tile_codec_name(shape.codec), packed.size());
  MARLIN_CHECK(row0 >= 0 && rows >= 0 && row0 + rows <= shape.rows, "fp4 tiles: rows {}..{} of {}", row0,
               row0 + rows, shape.rows);
  for (int64_t r = row0; r < row0 + rows; ++r) {
    uint8_t* at = packed.data() + shape.tiles_bytes() + 4 * uint64_t(r);
    float m;
    std::memcpy(&m, at, 4);
    m *= factor;
    MARLIN_CHECK(std::isfinite(m), "fp4 tiles: row {} multiplier overflows", r);
    std::memcpy(at, &m, 4);
  }
}

}  // namespace marlin
