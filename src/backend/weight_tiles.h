// Weight tiles: the layout the CUDA weight GEMMs (backend/cuda/tiled_gemm.h) read, built on the CPU
// from a planar QuantTensor (quant/format.h) once, when a model is loaded. Host code only.
//
// W has N rows (output features) and K columns (input features). It is cut into tiles of
// 64 rows × 128 columns, stored one after another in (row block, column block) order with the
// column block fastest, so that one row block's whole K range is one contiguous run. Tile (nb, kt)
// starts at byte (nb·col_blocks + kt)·tile_bytes and holds:
//   scales  [gpt][64] fp16   scale of tile row r for the tile's group j (gpt = groups per tile:
//                            4 for g32, 2 for g64, 1 for g128 and per channel — per-channel
//                            scales are repeated in every tile). fp8 tiles store s·256 (see
//                            int8_tiles.h).
//   zeros   [gpt][64] u8     zero point of row r, group j (asymmetric int4 only)
//   codes   code_bytes()     4 strips of 16 rows in tensor-core fragment order; the codec's
//                            header says how (int4_tiles.h: 4-bit, int8_tiles.h: int8 and fp8).
//
// K need only be a multiple of 64: the last tile is padded to 128 columns with codes that decode
// to exactly 0 and, for groups that lie wholly in the padding, scale 0 (and zero point 0). The
// kernels never read activations past K. N must be a multiple of 64.
#pragma once

#include <cstdint>
#include <vector>

#include "quant/format.h"

namespace marlin {

inline constexpr int kTileRows = 64;
inline constexpr int kTileCols = 128;
inline constexpr int kTileColAlign = 64;  // K must be a multiple of this

// How a tile's codes decode: 4-bit integers, 8-bit integers, or FP8 E4M3.
enum class TileCodec : uint8_t { kInt4, kInt8, kFp8 };

const char* tile_codec_name(TileCodec codec);

struct WeightTileShape {
  int64_t rows = 0;  // N
  int64_t cols = 0;  // K of the tensor (the tiles cover col_blocks()·128 columns)
  TileCodec codec = TileCodec::kInt4;
  int groups_per_tile = 1;
  bool asymmetric = false;

  int code_bits() const { return codec == TileCodec::kInt4 ? 4 : 8; }
  int code_bytes() const { return kTileRows * kTileCols * code_bits() / 8; }
  int scale_bytes() const { return groups_per_tile * kTileRows * 2; }
  int zero_bytes() const { return asymmetric ? groups_per_tile * kTileRows : 0; }
  int tile_bytes() const { return scale_bytes() + zero_bytes() + code_bytes(); }
  int64_t row_blocks() const { return rows / kTileRows; }
  int64_t col_blocks() const { return (cols + kTileCols - 1) / kTileCols; }
  uint64_t total_bytes() const { return uint64_t(row_blocks() * col_blocks()) * uint64_t(tile_bytes()); }
};

// The tile shape of a rows × cols tensor of `format`: int4 (int4_tiles.h), int8 or fp8
// (int8_tiles.h). Throws marlin::Error naming the problem for a format no tile codec takes or a
// shape the tiles cannot hold (rows not a positive multiple of 64, cols not of 64).
WeightTileShape weight_tile_shape(const TensorFormat& format, int64_t rows, int64_t cols);

// Re-lays out a planar tensor into weight tiles (weight_tile_shape(...).total_bytes() bytes).
// Throws marlin::Error for a tensor that fails validate() or weight_tile_shape().
std::vector<uint8_t> pack_weight_tiles(const QuantTensor& w);

namespace tiles_detail {

// Checks shared by every codec: rows and cols multiples of 64, no act-order or 2:4.
void check_tileable(const TensorFormat& format, int64_t rows, int64_t cols);

// The shape with rows, cols, groups per tile and asymmetry taken from the format.
WeightTileShape base_shape(const TensorFormat& format, int64_t rows, int64_t cols, TileCodec codec);

// Writes the scale (times scale_multiplier, a power of two) and zero-point blocks of every tile of
// `w` into `out` (total_bytes() bytes); padded groups get scale 0 and zero point 0. Throws when a
// multiplied scale does not fit fp16.
void fill_tile_quant(const QuantTensor& w, const WeightTileShape& shape, float scale_multiplier,
                     std::vector<uint8_t>& out);

// The code of row r, column k as stored (k < cols), else the code that decodes to exactly 0 in
// that row's group: the zero point (asymmetric; 0 in a group wholly past K), 2^(bits−1)
// (symmetric int), 0 (fp8). For int4, int8 and fp8 tensors that passed validate().
inline uint32_t code_or_neutral(const QuantTensor& w, int64_t r, int64_t k) {
  const bool int4 = w.format.kind == FormatKind::kInt4;
  if (k < w.cols) {
    const uint8_t* row = w.codes + uint64_t(r) * w.code_row_bytes;
    return int4 ? (row[k / 2] >> (4 * (k % 2))) & 0xf : row[k];
  }
  if (w.format.kind == FormatKind::kFp8E4M3) return 0;
  if (w.format.asymmetric) {
    const int64_t groups = w.groups(), g = w.format.group_size == 0 ? 0 : k / w.format.group_size;
    return g < groups ? w.zeros[r * groups + g] : 0;
  }
  return int4 ? 8 : 128;
}

}  // namespace tiles_detail

}  // namespace marlin
