// The arithmetic of a sparse MLP's slot outputs, shared by the kernels that run it on its own
// (elementwise_ops.cu's silu_mul, moe_ops.cu's combine_slots) and the routed product's epilogues
// (tiled_routed_gemv.cuh), so that both give the same bits.
#pragma once

#include <cuda_fp16.h>

#include <cstdint>

namespace marlin::cuda {

struct Silu {
  __device__ float operator()(float g) const { return g / (1.0f + expf(-g)); }
};

// act(gate)·up for 8 values (one 16-byte chunk of each), each product rounded once to fp16.
template <typename Act>
__device__ __forceinline__ uint4 gated_chunk(uint4 gate, uint4 up) {
  const __half2* gh = reinterpret_cast<const __half2*>(&gate);
  const __half2* uh = reinterpret_cast<const __half2*>(&up);
  uint4 result;
  __half2* rh = reinterpret_cast<__half2*>(&result);
  const Act act;
#pragma unroll
  for (int k = 0; k < 4; ++k) {
    const float2 gv = __half22float2(gh[k]), uv = __half22float2(uh[k]);
    rh[k] = __floats2half2_rn(act(gv.x) * uv.x, act(gv.y) * uv.y);
  }
  return result;
}

// Σ_j weights[j] · y[j·cols] over a token's top_k slots, in slot order, rounded once to fp16.
// `load` reads one fp16 value (plain, or from L2 for values other blocks just wrote).
template <typename Load>
__device__ __forceinline__ __half weighted_slot_sum(const __half* y, const float* weights, int top_k, int64_t cols,
                                                    Load load) {
  float sum = 0;
  for (int j = 0; j < top_k; ++j) sum += weights[j] * __half2float(load(y + j * cols));
  return __float2half_rn(sum);
}

}  // namespace marlin::cuda
