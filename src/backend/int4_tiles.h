// The weight layout of the CUDA int4 GEMM ("int4 tiles"), built on the CPU from planar int4
// (quant/format.h) once, when a model is loaded. Host code only; the kernel that reads it is
// backend/cuda/int4_gemm.h.
//
// W has N rows (output features) and K columns (input features). It is cut into tiles of
// 64 rows × 128 columns, stored one after another in (row block, column block) order with the
// column block fastest, so that one row block's whole K range is one contiguous run and a block of
// the kernel streams it with a few large bulk copies. Tile (nb, kt) starts at byte
// (nb·K/128 + kt)·tile_bytes and holds:
//   scales  [gpt][64] fp16   scale of tile row r for the tile's group j (gpt = groups per tile:
//                            4 for g32, 2 for g64, 1 for g128 and per channel — per-channel
//                            scales are repeated in every tile)
//   zeros   [gpt][64] u8     zero point of row r, group j (asymmetric only)
//   codes   4096 bytes       4 strips of 16 rows; strip s at byte 1024·s
// Within a strip, k-step ks (16 columns) of lane l (g = l/4, t = l%4) is one little-endian 32-bit
// word at byte 512·(ks/4) + 16·l + 4·(ks%4): its nibbles 0..7 are the codes of
//   (g, c), (g+8, c), (g, c+8), (g+8, c+8), (g, c+1), (g+8, c+1), (g, c+9), (g+8, c+9),
// c = 16·ks + 2t (rows relative to the strip, columns to the tile). That is the A operand of the
// tensor cores' m16n8k16 product in register order: nibbles (i, i+4) are the two halves of
// register i, so masking 0x000f000f / 0x00f000f0 of the word and of the word >> 8 makes the four
// registers with no further shuffling. Each lane reads its four k-steps with one 16-byte load.
//
// Values: w = s·(q − 8) symmetric, w = s·(q − z) asymmetric, as in quant/format.h.
#pragma once

#include <cstdint>
#include <vector>

#include "quant/format.h"

namespace marlin {

inline constexpr int kInt4TileRows = 64;
inline constexpr int kInt4TileCols = 128;
inline constexpr int kInt4TileCodeBytes = kInt4TileRows * kInt4TileCols / 2;

struct Int4TileShape {
  int64_t rows = 0;  // N
  int64_t cols = 0;  // K
  int groups_per_tile = 1;
  bool asymmetric = false;

  int scale_bytes() const { return groups_per_tile * kInt4TileRows * 2; }
  int zero_bytes() const { return asymmetric ? groups_per_tile * kInt4TileRows : 0; }
  int tile_bytes() const { return scale_bytes() + zero_bytes() + kInt4TileCodeBytes; }
  int64_t row_blocks() const { return rows / kInt4TileRows; }
  int64_t col_blocks() const { return cols / kInt4TileCols; }
  uint64_t total_bytes() const { return uint64_t(row_blocks() * col_blocks()) * uint64_t(tile_bytes()); }
};

// The tile shape of a rows × cols int4 tensor. Throws marlin::Error naming the problem unless the
// format is int4 (symmetric or asymmetric; g32, g64, g128 or per channel; no act-order, no 2:4),
// rows is a positive multiple of 64 and cols a positive multiple of 128.
Int4TileShape int4_tile_shape(const TensorFormat& format, int64_t rows, int64_t cols);

// Re-lays out a planar int4 tensor into int4 tiles (int4_tile_shape(...).total_bytes() bytes).
// Throws marlin::Error for a tensor that fails validate() or int4_tile_shape().
std::vector<uint8_t> pack_int4_tiles(const QuantTensor& w);

}  // namespace marlin
