#include "backend/weight_tiles.h"

#include <cmath>
#include <cstring>

#include "backend/fp4_tiles.h"
#include "backend/int4_tiles.h"
#include "backend/int8_tiles.h"
#include "backend/lowbit_tiles.h"
#include "core/error.h"
#include "core/half.h"
#include "core/thread_pool.h"

namespace marlin {

const char* tile_codec_name(TileCodec codec) {
  switch (codec) {
    case TileCodec::kInt4: return "int4";
    case TileCodec::kInt8: return "int8";
    case TileCodec::kFp8: return "fp8";
    case TileCodec::kFp4: return "fp4";
    case TileCodec::kInt2: return "int2";
    case TileCodec::kInt3: return "int3";
  }
  return "?";
}

namespace {

[[noreturn]] void no_codec(const TensorFormat& format) {
  fail("weight tiles: format {} has no tile codec (int2, int3, int4, int8, fp8, fp4, mxfp4 and nvfp4 have)",
       format.name());
}

}  // namespace

WeightTileShape weight_tile_shape(const TensorFormat& format, int64_t rows, int64_t cols) {
  switch (format.kind) {
    case FormatKind::kInt4: return int4_tile_shape(format, rows, cols);
    case FormatKind::kInt8:
    case FormatKind::kFp8E4M3: return int8_tile_shape(format, rows, cols);
    case FormatKind::kFp4:
    case FormatKind::kMxFp4:
    case FormatKind::kNvFp4: return fp4_tile_shape(format, rows, cols);
    case FormatKind::kInt2:
    case FormatKind::kInt3: return lowbit_tile_shape(format, rows, cols);
    default: no_codec(format);
  }
}

std::vector<uint8_t> pack_weight_tiles(const QuantTensor& w, ThreadPool* pool) {
  switch (w.format.kind) {
    case FormatKind::kInt4: return pack_int4_tiles(w, pool);
    case FormatKind::kInt8:
    case FormatKind::kFp8E4M3: return pack_int8_tiles(w, pool);
    case FormatKind::kFp4:
    case FormatKind::kMxFp4:
    case FormatKind::kNvFp4: return pack_fp4_tiles(w, pool);
    case FormatKind::kInt2:
    case FormatKind::kInt3: return pack_lowbit_tiles(w, pool);
    default: no_codec(w.format);
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

uint32_t nibble_word(const QuantTensor& w, int64_t row0, int64_t col0, int ks, int lane) {
  const int64_t g = row0 + lane / 4;
  const int64_t c = col0 + 16 * ks + 2 * (lane % 4);
  const int64_t rows[8] = {g, g + 8, g, g + 8, g, g + 8, g, g + 8};
  const int64_t cols[8] = {c, c, c + 8, c + 8, c + 1, c + 1, c + 9, c + 9};
  uint32_t word = 0;
  for (int i = 0; i < 8; ++i) word |= code_or_neutral(w, rows[i], cols[i]) << (4 * i);
  return word;
}

void fill_tile_quant(const QuantTensor& w, const WeightTileShape& shape,
                     const std::function<uint16_t(int64_t row, int64_t group)>& stored_scale, std::vector<uint8_t>& out) {
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
            scale = stored_scale(row, group);
            if (shape.asymmetric) zero = w.zeros[uint64_t(row) * uint64_t(groups) + uint64_t(group)];
          }
          std::memcpy(tile + 2 * (j * kTileRows + r), &scale, 2);
          if (shape.asymmetric) tile[shape.scale_bytes() + j * kTileRows + r] = zero;
        }
      }
    }
  }
}

void fill_tile_quant(const QuantTensor& w, const WeightTileShape& shape, float scale_multiplier,
                     std::vector<uint8_t>& out) {
  const int64_t groups = w.groups();
  fill_tile_quant(
      w, shape,
      [&](int64_t row, int64_t group) {
        uint16_t scale;
        std::memcpy(&scale, w.scales + 2 * (uint64_t(row) * uint64_t(groups) + uint64_t(group)), 2);
        if (scale_multiplier == 1.0f) return scale;
        const float s = fp16_to_fp32(scale) * scale_multiplier;
        MARLIN_CHECK(!std::isfinite(s) || std::fabs(s) <= 65504.0f,
                     "{} tiles: scale {} of row {} group {} is too large (the kernel needs it times {} in fp16)",
                     tile_codec_name(shape.codec), fp16_to_fp32(scale), row, group, scale_multiplier);
        return fp32_to_fp16(s);
      },
      out);
}

void fill_tile_codes(const WeightTileShape& shape,
                     const std::function<void(int64_t row0, int64_t col0, uint8_t* dst)>& codes, std::vector<uint8_t>& out,
                     ThreadPool* pool) {
  const int code_offset = shape.scale_bytes() + shape.zero_bytes();
  for_row_blocks(shape, pool, [&](int64_t nb) {
    for (int64_t kt = 0; kt < shape.col_blocks(); ++kt)
      codes(nb * kTileRows, kt * kTileCols,
            out.data() + uint64_t(nb * shape.col_blocks() + kt) * uint64_t(shape.tile_bytes()) + code_offset);
  });
}

void for_row_blocks(const WeightTileShape& shape, ThreadPool* pool, const std::function<void(int64_t nb)>& fn) {
  auto blocks = [&](int64_t begin, int64_t end) {
    for (int64_t nb = begin; nb < end; ++nb) fn(nb);
  };
  if (pool == nullptr)
    blocks(0, shape.row_blocks());
  else
    pool->parallel_for(shape.row_blocks(), 1, blocks);
}

}  // namespace tiles_detail

}  // namespace marlin
