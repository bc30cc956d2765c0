// The codes of int4 weight tiles (backend/weight_tiles.h describes the tile around them). Host code
// only; the kernels that read them are backend/cuda/tiled_gemm.h.
//
// Codes: 4096 bytes, 4 strips of 16 rows; strip s at byte 1024·s. Within a strip, k-step ks
// (16 columns) of lane l (g = l/4, t = l%4) is one little-endian 32-bit word at byte
// 512·(ks/4) + 16·l + 4·(ks%4): its nibbles 0..7 are the codes of
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

#include "backend/weight_tiles.h"

namespace marlin {

// The tile shape of a rows × cols int4 tensor. Throws marlin::Error naming the problem unless the
// format is int4 (symmetric or asymmetric; g32, g64, g128 or per channel; no act-order, no 2:4),
// rows is a positive multiple of 64 and cols a positive multiple of 64.
WeightTileShape int4_tile_shape(const TensorFormat& format, int64_t rows, int64_t cols);

// Re-lays out a planar int4 tensor into int4 tiles (int4_tile_shape(...).total_bytes() bytes).
// Throws marlin::Error for a tensor that fails validate() or int4_tile_shape().
std::vector<uint8_t> pack_int4_tiles(const QuantTensor& w, ThreadPool* pool = nullptr);

namespace tiles_detail {

// Writes the 4096-byte code block of the tile whose first row and column are row0 and col0 in the
// layout above (int4 and fp4 tiles; codes of at most 4 bits).
void write_nibble_codes(const QuantTensor& w, int64_t row0, int64_t col0, uint8_t* codes);

}  // namespace tiles_detail

}  // namespace marlin
