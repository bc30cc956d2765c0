// Matrix multiplication with a trellis weight (quant/trellis_matrix.h) on the CPU:
//   x' = R_in·x,   y' = Ŵ'·x' (fused decode + GEMV/GEMM, s_r applied per row),   y = R_outᵀ·y'.
// Row strips of 16 (one strip of tiles) are spread over the pool. Each 16 × 16 tile is decoded
// once (state extraction + the procedural codebook; 8 values per step with AVX2/F16C, 16 with
// AVX-512, 32 with AVX-512 FP16) and multiplied with up to kTrellisActRows activation rows before the next tile, so
// a GEMM decodes each tile once per kTrellisActRows rows. The decoded values are bit-identical to
// trellis_decode_tile; per row the sum Σ_c value·x'_c runs in fp32 in tile order and is scaled
// by s_r at the end (the reference rounds s_r·value first), so results differ from the reference
// by fp32 summation-order rounding only.
#pragma once

#include <cstdint>

#include "core/thread_pool.h"
#include "quant/format.h"

namespace marlin::cpu {

// Activation rows one decoded tile is multiplied with (accumulators: rows × 16 × 8 floats).
inline constexpr int64_t kTrellisActRows = 32;

// y[i·rows + r] = Σ_k x[i·cols + k]·Ŵ[r][k] for i < m, Ŵ the weight in the original basis. w must
// be a trellis tensor that passed validate() (cpu::matmul checks and dispatches here).
void trellis_matmul(const QuantTensor& w, const float* x, int64_t m, float* y, ThreadPool& pool);

namespace detail {

// y'[i·rows + r] = s_r·Σ_k x'[i·cols + k]·value[r][k] for the rows of strips [s0, s1), x' already
// rotated. One per ISA (AVX2: AVX2 + FMA + F16C; AVX-512: CpuIsa::Avx512's F/BW/VBMI; AVX-512 FP16:
// those + FP16 + VBMI2, the codebook in 16-bit lanes with vaddph, 32 values per step).
using TrellisStripKernel = void (*)(const QuantTensor& w, const float* x, int64_t m, int64_t s0, int64_t s1,
                                    float* y);
void trellis_strips_scalar(const QuantTensor& w, const float* x, int64_t m, int64_t s0, int64_t s1, float* y);
void trellis_strips_avx2(const QuantTensor& w, const float* x, int64_t m, int64_t s0, int64_t s1, float* y);
void trellis_strips_avx512(const QuantTensor& w, const float* x, int64_t m, int64_t s0, int64_t s1, float* y);
void trellis_strips_avx512fp16(const QuantTensor& w, const float* x, int64_t m, int64_t s0, int64_t s1, float* y);

// The SIMD tile decoders: the same 256 floats as trellis_decode_tile (tested bit for bit).
void trellis_decode_tile_avx2(const uint16_t* words, int k, float* out);
void trellis_decode_tile_avx512(const uint16_t* words, int k, float* out);
void trellis_decode_tile_avx512fp16(const uint16_t* words, int k, float* out);

}  // namespace detail
}  // namespace marlin::cpu
