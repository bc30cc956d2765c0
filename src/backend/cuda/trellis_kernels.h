// The trellis format's kernels on the GPU (quant/trellis_matrix.h describes the format): the
// fused decode + product for few tokens, a decoder into fp16 rows for cuBLAS (prompts), and the
// Hadamard rotations around them. Plain C++17: no device code here.
//
// Device layout of the codes: the tensor's tiles in the order the format stores them (strip by
// strip, 16·K uint16 words per tile), each pair of uint16 words swapped, so that uint32 word j of
// a tile holds stream bits [32j, 32j + 32) most significant first (trellis_device_words does that
// on the host).
#pragma once

#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <cstdint>
#include <vector>

namespace marlin::cuda {

// The most rows one trellis_gemv call takes (32: four 8-token fragments per pass).
constexpr int kTrellisGemvRows = 32;

struct TrellisWeights {
  const uint32_t* words = nullptr;     // device layout above
  const float* row_scales = nullptr;   // s_r · kTrellisScale per row
  const uint16_t* half_scales = nullptr;  // s_r as stored (fp16 bits), for the exact decoder
  int rows = 0, cols = 0, bits = 0;    // rows and cols multiples of 16, bits 1..8
};

// The host-side words of the device layout from the format's little-endian code bytes
// (rows/16 strips of code_row_bytes·16 bytes, the first cols·K/8 bytes of each row used).
std::vector<uint32_t> trellis_device_words(const uint8_t* codes, int64_t rows, int64_t cols, int bits,
                                           int64_t code_row_bytes);

// y'[t][r] = Σ_c Ŵ'[r][c]·x'[t][c] for t < m ≤ kTrellisGemvRows, in fp32 (out: m × rows).
// Ŵ' decoded on the fly into tensor-core fragments; no workspace. `x_pairs` holds x' as
// hadamard_rotate writes it with `pairs`: each fp16 value twice (m × 2·cols halves), because each
// code's two fp16 pieces take a pair of k-slots in the tensor-core product, which so multiplies
// their exact sum: each weight within half an fp16 ulp of the format's (rounded) code.
cudaError_t trellis_gemv(const TrellisWeights& w, const __half* x_pairs, int m, float* out, cudaStream_t stream);

// Ŵ' as fp16 rows (rows × cols, row-major): each value fp16(s_r · value), the value exactly as
// quant/trellis_code.h defines it and the product rounded in fp32 as trellis_decode_strip does.
cudaError_t trellis_decode_half(const TrellisWeights& w, __half* out, cudaStream_t stream);

// One dimension's rotation (quant/hadamard.h): `dim` values, Hadamard block `block`, sign bits as
// uint32 words (bit i mod 32 of word i/32 set: s_i = −1).
struct RotationSegment {
  int begin = 0;   // first value of the segment in each row
  int dim = 0;     // values (a multiple of block)
  int block = 0;   // 16, 32, 64 or 128
  const uint32_t* signs = nullptr;
};

constexpr int kMaxRotationSegments = 4;

// Rotates each of `m` rows (`row_len` values apart) segment by segment: `transpose` false is
// v ← R·v = H·S·v (activations before the product), true is v ← Rᵀ·v = S·H·v (outputs after it).
// In fp32; in: fp16 or fp32 (in_f32), out: fp16 or fp32 (out_f32); in == out is allowed (not with
// `pairs`). With `pairs` (fp16 out only) each output value is written twice: rows of 2·row_len
// halves, what trellis_gemv reads.
struct RotationParams {
  RotationSegment segments[kMaxRotationSegments];
  int count = 0;
  int row_len = 0;
  bool transpose = false;
  bool pairs = false;
};
cudaError_t hadamard_rotate(const RotationParams& p, const void* in, bool in_f32, void* out, bool out_f32, int m,
                            cudaStream_t stream);

}  // namespace marlin::cuda
