// Weight tiles: the layout the CUDA weight GEMMs (backend/cuda/tiled_gemm.h) read, built on the CPU
// from a planar QuantTensor (quant/format.h) once, when a model is loaded. Host code only.
//
// W has N rows (output features) and K columns (input features). It is cut into tiles of
// 64 rows × 128 columns, stored one after another in (row block, column block) order with the
// column block fastest, so that one row block's whole K range is one contiguous run. Tile (nb, kt)
// starts at byte (nb·col_blocks + kt)·tile_bytes and holds:
//   scales  [gpt][64] fp16   scale of tile row r for the tile's group j (gpt = groups per tile:
//                            8 for g16, 4 for g32, 2 for g64, 1 for g128 and per channel —
//                            per-channel scales are repeated in every tile). fp8 tiles store
//                            s·256 (see int8_tiles.h), fp4 tiles a folded scale (fp4_tiles.h).
//   zeros   [gpt][64] u8     zero point of row r, group j (asymmetric int4, int3, int2 only)
//   codes   code_bytes()     4 strips of 16 rows in tensor-core fragment order; the codec's
//                            header says how (int4_tiles.h: int4; int8_tiles.h: int8 and fp8;
//                            fp4_tiles.h: E2M1; lowbit_tiles.h: int3 and int2). Strip s, half h
//                            (k-steps 4h .. 4h + 3) of every codec starts at byte
//                            s·code_bytes()/4 + h·code_bytes()/8 of the block.
//
// fp4 tiles are followed, after the last tile, by one fp32 multiplier per row (row_scale_bytes()):
// the kernels multiply each output by its row's multiplier before rounding it to fp16.
//
// K need only be a multiple of 64: the last tile is padded to 128 columns with codes that decode
// to exactly 0 and, for groups that lie wholly in the padding, scale 0 (and zero point 0). The
// kernels never read activations past K. N must be a multiple of 64.
#pragma once

#include <cstdint>
#include <functional>
#include <vector>

#include "quant/format.h"
#include "quant/pack.h"

namespace marlin {

class ThreadPool;

inline constexpr int kTileRows = 64;
inline constexpr int kTileCols = 128;
inline constexpr int kTileColAlign = 64;  // K must be a multiple of this

// How a tile's codes decode: 4-bit integers, 8-bit integers, FP8 E4M3, FP4 E2M1 (fp4, mxfp4 and
// nvfp4), 2-bit or 3-bit integers.
enum class TileCodec : uint8_t { kInt4, kInt8, kFp8, kFp4, kInt2, kInt3 };

// Bits of one code of a codec.
inline constexpr int tile_code_bits(TileCodec codec) {
  switch (codec) {
    case TileCodec::kInt8:
    case TileCodec::kFp8: return 8;
    case TileCodec::kInt3: return 3;
    case TileCodec::kInt2: return 2;
    default: return 4;
  }
}

const char* tile_codec_name(TileCodec codec);

struct WeightTileShape {
  int64_t rows = 0;  // N
  int64_t cols = 0;  // K of the tensor (the tiles cover col_blocks()·128 columns)
  TileCodec codec = TileCodec::kInt4;
  int groups_per_tile = 1;
  bool asymmetric = false;

  int code_bits() const { return tile_code_bits(codec); }
  int code_bytes() const { return kTileRows * kTileCols * code_bits() / 8; }
  int scale_bytes() const { return groups_per_tile * kTileRows * 2; }
  int zero_bytes() const { return asymmetric ? groups_per_tile * kTileRows : 0; }
  int tile_bytes() const { return scale_bytes() + zero_bytes() + code_bytes(); }
  int64_t row_blocks() const { return rows / kTileRows; }
  int64_t col_blocks() const { return (cols + kTileCols - 1) / kTileCols; }
  // Bytes of all tiles; the row multipliers (fp4 only) start there.
  uint64_t tiles_bytes() const { return uint64_t(row_blocks() * col_blocks()) * uint64_t(tile_bytes()); }
  uint64_t row_scale_bytes() const { return codec == TileCodec::kFp4 ? uint64_t(rows) * 4 : 0; }
  uint64_t total_bytes() const { return tiles_bytes() + row_scale_bytes(); }
};

// The tile shape of a rows × cols tensor of `format`: int4 (int4_tiles.h), int8 or fp8
// (int8_tiles.h), fp4, mxfp4 or nvfp4 (fp4_tiles.h), int3 or int2 (lowbit_tiles.h). Throws
// marlin::Error naming the problem for a format no tile codec takes or a shape the tiles cannot
// hold (rows not a positive multiple of 64, cols not of 64).
WeightTileShape weight_tile_shape(const TensorFormat& format, int64_t rows, int64_t cols);

// Re-lays out a planar tensor into weight tiles (weight_tile_shape(...).total_bytes() bytes).
// Throws marlin::Error for a tensor that fails validate() or weight_tile_shape(), or whose scales
// the codec cannot hold (fp8_tiles: |s| ≥ 256; fp4_tiles.h: scales of one row too far apart).
std::vector<uint8_t> pack_weight_tiles(const QuantTensor& w, ThreadPool* pool = nullptr);

namespace tiles_detail {

// Checks shared by every codec: rows and cols multiples of 64, no act-order or 2:4.
void check_tileable(const TensorFormat& format, int64_t rows, int64_t cols);

// The shape with rows, cols, groups per tile and asymmetry taken from the format.
WeightTileShape base_shape(const TensorFormat& format, int64_t rows, int64_t cols, TileCodec codec);

// Writes the scale and zero-point blocks of every tile of `w` into `out` (total_bytes() bytes):
// stored_scale(row, group) gives the fp16 bits of a group's tile scale; padded groups get scale 0
// and zero point 0.
void fill_tile_quant(const QuantTensor& w, const WeightTileShape& shape,
                     const std::function<uint16_t(int64_t row, int64_t group)>& stored_scale, std::vector<uint8_t>& out);

// The same with the tensor's fp16 scales times scale_multiplier (a power of two); throws when a
// multiplied scale does not fit fp16.
void fill_tile_quant(const QuantTensor& w, const WeightTileShape& shape, float scale_multiplier,
                     std::vector<uint8_t>& out);

// fn(nb) for every row block nb of the tiles, spread over the pool's threads when there is one.
void for_row_blocks(const WeightTileShape& shape, ThreadPool* pool, const std::function<void(int64_t nb)>& fn);

// Writes the codes of every tile: codes(row0, col0, dst) fills the code block `dst` of the
// tile whose first row and column are row0 and col0. With a pool, row blocks are spread over its
// threads (codes must not throw: a worker cannot pass an exception on).
void fill_tile_codes(const WeightTileShape& shape,
                     const std::function<void(int64_t row0, int64_t col0, uint8_t* dst)>& codes, std::vector<uint8_t>& out,
                     ThreadPool* pool = nullptr);

// The code of row r, column k as stored (k < cols), else the code that decodes to exactly 0 in
// that row's group: the zero point (asymmetric; 0 in a group wholly past K), 2^(bits−1)
// (symmetric int), 0 (fp8, E2M1). For tensors of a tileable format that passed validate().
inline uint32_t code_or_neutral(const QuantTensor& w, int64_t r, int64_t k) {
  const int bits = format_info(w.format.kind).code_bits;
  if (k < w.cols) return packed_code(w.codes + uint64_t(r) * w.code_row_bytes, k, bits);
  switch (w.format.kind) {
    case FormatKind::kFp8E4M3:
    case FormatKind::kFp4:
    case FormatKind::kMxFp4:
    case FormatKind::kNvFp4: return 0;
    default: break;
  }
  if (w.format.asymmetric) {
    const int64_t groups = w.groups(), g = w.format.group_size == 0 ? 0 : k / w.format.group_size;
    return g < groups ? w.zeros[r * groups + g] : 0;
  }
  return 1u << (bits - 1);
}

// The codes of the 8 fragment positions of lane `lane`, k-step `ks` of the strip whose first row
// is `row0`, in the tile whose first column is `col0`, 4 bits each in int4's nibble order
// (int4_tiles.h): nibble i holds the code of (g, c), (g+8, c), (g, c+8), (g+8, c+8), (g, c+1),
// (g+8, c+1), (g, c+9), (g+8, c+9) for i = 0..7, g = row0 + lane/4, c = col0 + 16·ks + 2·(lane%4).
// For codes of at most 4 bits.
uint32_t nibble_word(const QuantTensor& w, int64_t row0, int64_t col0, int ks, int lane);

// Byte offset, within a tile's code block of `code_bytes`, of half h of strip s (weight_tiles.h).
inline int half_offset(int code_bytes, int strip, int half) { return strip * code_bytes / 4 + half * code_bytes / 8; }

}  // namespace tiles_detail

}  // namespace marlin
