// The codes of 8-bit weight tiles, int8 and FP8 E4M3 (backend/weight_tiles.h describes the tile
// around them). Host code only; the kernels that read them are backend/cuda/tiled_gemm.h.
//
// Codes: 8192 bytes, 4 strips of 16 rows; strip s at byte 2048·s. Within a strip, k-step ks
// (16 columns) of lane l (g = l/4, t = l%4) is two little-endian 32-bit words at byte
// 512·(ks/2) + 16·l + 8·(ks%2) (the second word 4 bytes on), whose bytes 0..3 are the codes of
//   word 0: (g, c), (g+8, c), (g, c+1), (g+8, c+1)
//   word 1: (g, c+8), (g+8, c+8), (g, c+9), (g+8, c+9)
// c = 16·ks + 2t (rows relative to the strip, columns to the tile). Bytes 0 and 2 of a word are
// one register of the tensor cores' m16n8k16 A operand (row g), bytes 1 and 3 the next (row g+8):
// one byte permute (int8) or two masks and a shift (fp8) make a register. Each lane reads two
// k-steps with one 16-byte load; a warp's load is one contiguous 512-byte run.
//
// Values, as in quant/format.h: int8 w = s·(q − 128) (symmetric only); fp8 w = s·e4m3(q). fp8
// tiles store the scale times 256: the kernel turns an E4M3 code into the fp16 e4m3(q)/256 by
// moving its bits into place, and (e4m3(q)/256)·(256·s) is s·e4m3(q) with the one rounding of the
// product. A scale whose 256-fold overflows fp16 (|s| ≥ 256) is rejected.
#pragma once

#include <cstdint>
#include <vector>

#include "backend/weight_tiles.h"

namespace marlin {

// The scale multiplier fp8 tiles store (see above).
inline constexpr float kFp8TileScaleMultiplier = 256.0f;

// The tile shape of a rows × cols 8-bit tensor. Throws marlin::Error naming the problem unless the
// format is symmetric int8 (g32, g64, g128 or per channel) or fp8 (g128 or per channel; no
// act-order, no 2:4), rows is a positive multiple of 64 and cols a positive multiple of 64.
WeightTileShape int8_tile_shape(const TensorFormat& format, int64_t rows, int64_t cols);

// Re-lays out a planar int8 or fp8 tensor into 8-bit tiles (int8_tile_shape(...).total_bytes()
// bytes). Throws marlin::Error for a tensor that fails validate() or int8_tile_shape(), or an fp8
// scale too large for the 256-fold stored scale.
std::vector<uint8_t> pack_int8_tiles(const QuantTensor& w, ThreadPool* pool = nullptr);

}  // namespace marlin
