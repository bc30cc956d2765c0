// Greedy sampling: the argmax of each logits row, the lowest index among equal maxima.
#include <climits>
#include <cmath>

#include "backend/cuda/ops.h"
#include "backend/cuda/ops_check.h"

namespace marlin::cuda {
namespace {

constexpr int kThreads = 1024;

struct Candidate {
  float value;
  int index;  // INT_MAX: none yet
};

// NaN never wins; equal values go to the lower index.
__device__ __forceinline__ void keep_better(Candidate& best, float value, int index) {
  if (value > best.value || (value == best.value && index < best.index)) best = {value, index};
}

// One block per row. vec4: the row starts 16-byte aligned and vocab is a multiple of 4.
__global__ void __launch_bounds__(kThreads) argmax_kernel(const float* logits, int64_t vocab, bool vec4,
                                                          int32_t* tokens) {
  const float* row = logits + blockIdx.x * vocab;
  Candidate best{-INFINITY, INT_MAX};
  if (vec4) {
    const float4* row4 = reinterpret_cast<const float4*>(row);
    for (int i = threadIdx.x; i < vocab / 4; i += kThreads) {
      const float4 v = row4[i];
      keep_better(best, v.x, 4 * i);
      keep_better(best, v.y, 4 * i + 1);
      keep_better(best, v.z, 4 * i + 2);
      keep_better(best, v.w, 4 * i + 3);
    }
  } else {
    for (int i = threadIdx.x; i < vocab; i += kThreads) keep_better(best, row[i], i);
  }
  for (int offset = 16; offset > 0; offset /= 2)
    keep_better(best, __shfl_xor_sync(0xffffffffu, best.value, offset), __shfl_xor_sync(0xffffffffu, best.index, offset));
  __shared__ Candidate warp_best[kThreads / 32];
  if (threadIdx.x % 32 == 0) warp_best[threadIdx.x / 32] = best;
  __syncthreads();
  if (threadIdx.x == 0) {
    for (int w = 1; w < kThreads / 32; ++w) keep_better(best, warp_best[w].value, warp_best[w].index);
    tokens[blockIdx.x] = best.index == INT_MAX ? 0 : best.index;  // a row of NaNs gives token 0
  }
}

}  // namespace

void argmax(const float* logits, int batch, int64_t vocab, int32_t* tokens, cudaStream_t stream) {
  using ops_detail::require;
  require(batch >= 0 && batch < 65536, "argmax", "batch out of range", batch);
  require(vocab > 0 && vocab < INT_MAX, "argmax", "vocab out of range", vocab);
  if (batch == 0) return;
  const bool vec4 = ops_detail::aligned16(logits) && vocab % 4 == 0;
  argmax_kernel<<<unsigned(batch), kThreads, 0, stream>>>(logits, vocab, vec4, tokens);
  ops_detail::check_launch("argmax");
}

}  // namespace marlin::cuda
