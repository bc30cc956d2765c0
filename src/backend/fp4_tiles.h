// The codes and scales of FP4 E2M1 weight tiles: fp4 (fp16 group scales), mxfp4 (E8M0 per 32) and
// nvfp4 (E4M3 per 16 times an fp32 tensor scale). backend/weight_tiles.h describes the tile around
// them. Host code only; the kernels that read them are backend/cuda/tiled_gemm.h.
//
// Codes: int4's layout (int4_tiles.h), each nibble an E2M1 code s|e e|m (sign bit 3).
//
// Values. The kernel moves a code's sign to bit 15 of an fp16 and its e e m bits to bits 11..9,
// which is the fp16 e2m1(q)·2^-14 exactly (exponent field e: e = 0 gives the subnormal m·2^-15,
// e ≥ 1 gives 2^(e−15)·(1 + m/2)), multiplies it by the tile's fp16 scale — the only rounding of a
// weight — and, after the fp32 sum over K, multiplies each output by its row's fp32 multiplier.
// Each group's scale σ (fp4: the fp16 scale; mxfp4: 2^(e−127); nvfp4: e4m3(s)) is stored as
// σ·2^(14−j) with one exponent j per row, chosen so that the row's largest |σ| lands in
// [2^14, 2^15); the row multiplier is 2^j (nvfp4: t·2^j). So the kernel's weight is
// fp16(w / 2^j) exactly as fp16 rounding of w / 2^j (exact for mxfp4 and nvfp4, whose products
// have at most 6 significant bits), and scaling by 2^j is exact. A row whose scales span more
// powers of two than fp16 holds exactly (an E8M0 spread beyond ~38), or a NaN scale, is rejected:
// pack_fp4_tiles throws, and the caller keeps fp16 weights.
#pragma once

#include <cstdint>
#include <vector>

#include "backend/weight_tiles.h"

namespace marlin {

// The tile shape of a rows × cols fp4, mxfp4 or nvfp4 tensor. Throws marlin::Error naming the
// problem for another format, act-order, or rows / cols not positive multiples of 64.
WeightTileShape fp4_tile_shape(const TensorFormat& format, int64_t rows, int64_t cols);

// Re-lays out a planar fp4-family tensor into fp4 tiles followed by the row multipliers
// (fp4_tile_shape(...).total_bytes() bytes). Throws marlin::Error for a tensor that fails
// validate() or fp4_tile_shape(), or scales the tiles cannot hold exactly (see above).
std::vector<uint8_t> pack_fp4_tiles(const QuantTensor& w, ThreadPool* pool = nullptr);

// Multiplies the row multipliers of rows [row0, row0 + rows) of packed fp4 tiles by `factor`: for
// tensors stacked by rows whose parts had different nvfp4 tensor scales (packed with scale 1).
void multiply_fp4_row_scales(std::vector<uint8_t>& packed, const WeightTileShape& shape, int64_t row0, int64_t rows,
                             float factor);

}  // namespace marlin
