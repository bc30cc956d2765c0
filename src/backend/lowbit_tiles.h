// The codes of int3 and int2 weight tiles (backend/weight_tiles.h describes the tile around them).
// Host code only; the kernels that read them are backend/cuda/tiled_gemm.h.
//
// Both build on int4's fragment order (int4_tiles.h): per lane and k-step, nibble i (i = 0..7) of
// a 32-bit word stands for the positions (g, c), (g+8, c), (g, c+8), (g+8, c+8), (g, c+1),
// (g+8, c+1), (g, c+9), (g+8, c+9), and the kernel decodes such a word as int4 does, with masks
// that keep only a code's bits. Each lane owns, per strip and half-k-tile (k-steps 4h .. 4h + 3),
// fewer bytes than int4's 16, read with 8- and 4-byte loads that keep every load aligned and every
// warp's load one contiguous run:
//
//   int2  2048 bytes of codes; half h of strip s at byte 512·s + 256·h, lane l's 8 bytes at 8·l:
//         word 0 holds k-steps 4h and 4h + 1, word 1 k-steps 4h + 2 and 4h + 3; in a word, bits
//         4i..4i+1 are nibble i's code of the first k-step and bits 4i+2..4i+3 of the second
//         (the kernel shifts the word right by 2 for the second).
//   int3  3072 bytes; half h of strip s at byte 768·s + 384·h: a 2-bit plane of the codes' low
//         two bits laid out as int2's (lane l's 8 bytes at 8·l), then a 1-bit plane of their
//         third bits (lane l's word at 256 + 4·l): bit 4i + j is nibble i's third bit of k-step
//         4h + j. The kernel shifts that bit to 4i + 2 and merges it under the low two bits with
//         one bit select, which gives int4's word with 3-bit codes.
//
// Values, as in quant/format.h: w = s·(q − 2^(bits−1)) symmetric, w = s·(q − z) asymmetric; the
// kernel computes q − z exactly in fp16 and rounds once, in the scale multiply.
#pragma once

#include <cstdint>
#include <vector>

#include "backend/weight_tiles.h"

namespace marlin {

// The tile shape of a rows × cols int2 or int3 tensor. Throws marlin::Error naming the problem
// unless the format is int2 or int3 (symmetric or asymmetric; g32, g64, g128 or per channel; no
// act-order), rows is a positive multiple of 64 and cols a positive multiple of 64.
WeightTileShape lowbit_tile_shape(const TensorFormat& format, int64_t rows, int64_t cols);

// Re-lays out a planar int2 or int3 tensor into tiles (lowbit_tile_shape(...).total_bytes() bytes).
// Throws marlin::Error for a tensor that fails validate() or lowbit_tile_shape().
std::vector<uint8_t> pack_lowbit_tiles(const QuantTensor& w, ThreadPool* pool = nullptr);

}  // namespace marlin
