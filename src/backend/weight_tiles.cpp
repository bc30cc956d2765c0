#include "backend/weight_tiles.h"

#include <cmath>
#include <cstring>

#include "backend/int4_tiles.h"
#include "backend/int8_tiles.h"
#include "core/error.h"
#include "core/half.h"

namespace marlin {

const char* tile_codec_name(TileCodec codec) {
  switch (codec) {
    case TileCodec::kInt4: return "int4";
    case TileCodec::kInt8: return "int8";
    case TileCodec::kFp8: return "fp8";
  }
  return "?";
}

WeightTileShape weight_tile_shape(const TensorFormat& format, int64_t rows, int64_t cols) {
  switch (format.kind) {
    case FormatKind::kInt4: return int4_tile_shape(format, rows, cols);
    case FormatKind::kInt8:
    case FormatKind::kFp8E4M3: return int8_tile_shape(format, rows, cols);
    default: fail("weight tiles: format {} has no tile codec (int4, int8 and fp8 have)", format.name());
  }
}

std::vector<uint8_t> pack_weight_tiles(const QuantTensor& w) {
  switch (w.format.kind) {
    case FormatKind::kInt4: return pack_int4_tiles(w);
    case FormatKind::kInt8:
    case FormatKind::kFp8E4M3: return pack_int8_tiles(w);
    default: fail("weight tiles: format {} has no tile codec (int4, int8 and fp8 have)", w.format.name());
  }
}

namespace tiles_detail {

void check_tileable(const TensorFormat& format, int64_t rows, int64_t cols) {
  format.check_shape(rows, cols);
  MARLIN_CHECK(!format.act_order && !format.sparse_24, "weight tiles: format {} (act-order and 2:4 are not supported)",
               format.name());
  MARLIN_CHECK(rows % kTileRows == 0, "weight tiles: {} rows are not a multiple of {}", rows, kTileRows);
  MARLIN_CHECK(cols % kTileColAlign == 0, "weight tiles: {} columns are not a multiple of {}", cols, kTileColAlign);
}

WeightTileShape base_shape(const TensorFormat& format, int64_t rows, int64_t cols, TileCodec codec) {
  WeightTileShape shape;
  shape.rows = rows;
  shape.cols = cols;
  shape.codec = codec;
  shape.groups_per_tile = format.group_size == 0 ? 1 : kTileCols / format.group_size;
  shape.asymmetric = format.asymmetric;
  return shape;
}

void fill_tile_quant(const QuantTensor& w, const WeightTileShape& shape, float scale_multiplier,
                     std::vector<uint8_t>& out) {
  const int64_t groups = w.groups();
  const int gpt = shape.groups_per_tile;
  for (int64_t nb = 0; nb < shape.row_blocks(); ++nb) {
    for (int64_t kt = 0; kt < shape.col_blocks(); ++kt) {
      uint8_t* tile = out.data() + uint64_t(nb * shape.col_blocks() + kt) * uint64_t(shape.tile_bytes());
      for (int j = 0; j < gpt; ++j) {
        const int64_t group = w.format.group_size == 0 ? 0 : kt * gpt + j;
        for (int r = 0; r < kTileRows; ++r) {
          const int64_t row = nb * kTileRows + r;
          uint16_t scale = 0;
          uint8_t zero = 0;
          if (group < groups) {
            const uint64_t entry = uint64_t(row) * uint64_t(groups) + uint64_t(group);
            std::memcpy(&scale, w.scales + 2 * entry, 2);
            if (shape.asymmetric) zero = w.zeros[entry];
            if (scale_multiplier != 1.0f) {
              const float s = fp16_to_fp32(scale) * scale_multiplier;
              MARLIN_CHECK(!std::isfinite(s) || std::fabs(s) <= 65504.0f,
                           "{} tiles: scale {} of row {} group {} is too large (the kernel needs it times {} in fp16)",
                           tile_codec_name(shape.codec), fp16_to_fp32(scale), row, group, scale_multiplier);
              scale = fp32_to_fp16(s);
            }
          }
          std::memcpy(tile + 2 * (j * kTileRows + r), &scale, 2);
          if (shape.asymmetric) tile[shape.scale_bytes() + j * kTileRows + r] = zero;
        }
      }
    }
  }
}

}  // namespace tiles_detail

}  // namespace marlin
