// Reference quantizers: fp32 -> GGML weight blocks (to make test data; bit-identical to the
// python `gguf` package's quantizers) and fp32 -> 8-bit activation blocks for integer dot products.
#pragma once

#include <cmath>
#include <cstdint>

#include "quant/ggml_types.h"

namespace marlin {

// Writes n / 32 blocks of `type` (Q4_0, Q4_1, Q5_0, Q5_1 or Q8_0) for the n values at x.
// n must be a multiple of 32; dst must hold ggml_row_bytes(type, n) bytes.
void quantize_row(GgmlType type, const float* x, uint8_t* dst, int64_t n);

// 8-bit activation block (the role of ggml's Q8_0/Q8_1 for activations, with an fp32 scale):
// d = max|x| / 127 and q = x / d rounded to nearest-even, so |x − d·q| ≤ d/2 (+ rounding of x/d).
struct BlockQ8Act {
  float d;
  int8_t q[32];
};

// The activation quantizer every CPU kernel uses (SIMD code reproduces it exactly: the same fp32
// operations, and round-to-nearest-even as the SIMD float->int conversion does).
inline void quantize_block_q8_act(const float* x, float& d, int8_t* q) {
  float amax = 0.0f;
  for (int j = 0; j < 32; ++j) amax = std::fmax(amax, std::fabs(x[j]));
  d = amax / 127.0f;
  const float inv = amax > 0.0f ? 127.0f / amax : 0.0f;
  for (int j = 0; j < 32; ++j) q[j] = int8_t(std::nearbyint(x[j] * inv));
}

void quantize_row_q8_act(const float* x, BlockQ8Act* dst, int64_t n);

// ggml's Q8_K: 256 values with one fp32 scale and sums of every 16 quants (used by k-quant dots).
struct BlockQ8K {
  float d;
  int8_t q[256];
  int16_t bsums[16];
};

void quantize_row_q8_k(const float* x, BlockQ8K* dst, int64_t n);

}  // namespace marlin
