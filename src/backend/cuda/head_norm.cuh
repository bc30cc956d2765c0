// The per-head RMSNorm of Qwen3 and Gemma 3 (ops.h's qk_norm) for one head, shared by the kernel
// that runs it on its own (norm_ops.cu) and the one that runs it before RoPE (rope_kv.cu), so that
// both give the same bits.
#pragma once

#include <cuda_fp16.h>

namespace marlin::cuda {

// x (head_dim fp16 values, 16-byte aligned, head_dim a multiple of 8 up to 256) ← x / rms(x) · w,
// in place; called by all 32 lanes of one warp, lane l holding values 8l .. 8l + 7.
__device__ __forceinline__ void rms_normalize_head(__half* x, int head_dim, const float* w, float eps, int lane) {
  const bool active = lane * 8 < head_dim;
  uint4* values = reinterpret_cast<uint4*>(x) + lane;
  float v[8] = {};
  if (active) {
    const uint4 packed = *values;
    const __half2* h = reinterpret_cast<const __half2*>(&packed);
    for (int i = 0; i < 4; ++i) {
      const float2 f = __half22float2(h[i]);
      v[2 * i] = f.x, v[2 * i + 1] = f.y;
    }
  }
  float squares = 0;
  for (float value : v) squares += value * value;
  for (int offset = 16; offset > 0; offset /= 2) squares += __shfl_xor_sync(0xffffffffu, squares, offset);
  if (!active) return;
  const float scale = rsqrtf(squares / float(head_dim) + eps);
  w += lane * 8;
  uint4 packed;
  __half2* h = reinterpret_cast<__half2*>(&packed);
  for (int i = 0; i < 4; ++i) h[i] = __floats2half2_rn(v[2 * i] * scale * w[2 * i], v[2 * i + 1] * scale * w[2 * i + 1]);
  *values = packed;
}

}  // namespace marlin::cuda
