// Products of fp16 weights with a few activation rows (dense_gemv in ops.h): the sparse MLPs'
// routers (fp32 logits) at decode and short prompts, where cuBLAS's general kernels cost several
// times the weights' read (H100, 128 × 2048 router: ≈ 10 µs at one row, ≈ 1 ms at 16 rows).
#include <cuda_fp16.h>

#include "backend/cuda/ops.h"
#include "backend/cuda/ops_check.h"
#include "backend/cuda/pdl_launch.cuh"

namespace marlin::cuda {
namespace {

constexpr int kWarps = 4;

// One warp per weight row: 16-byte loads along K, kBatch of them in flight per lane before any
// arithmetic (a 2048-wide row is 8 loads per lane: one round trip instead of eight), every
// activation row against the same weights, fp32 sums reduced across the warp. The first weights
// are loaded before waiting for the previous kernel (they do not depend on it; the activations do).
constexpr int kBatch = 8;

template <bool kF32Out>
__global__ void dense_gemv_kernel(const __half* w, int rows, int cols, const __half* in, int m, void* out) {
  allow_dependent_launch();
  const int row = blockIdx.x * kWarps + threadIdx.x / 32, lane = threadIdx.x % 32;
  if (row >= rows) {
    grid_dependency_wait();
    return;
  }
  const uint4* wr = reinterpret_cast<const uint4*>(w + static_cast<long long>(row) * cols);
  const int vectors = cols / 8;
  float acc[kDenseGemvRows] = {};
  bool waited = false;
  for (int base = lane; base < vectors; base += 32 * kBatch) {
    uint4 wv[kBatch];
#pragma unroll
    for (int b = 0; b < kBatch; ++b) {
      const int i = base + 32 * b;
      wv[b] = i < vectors ? __ldg(wr + i) : make_uint4(0, 0, 0, 0);
    }
    if (!waited) {
      grid_dependency_wait();
      waited = true;
    }
#pragma unroll
    for (int b = 0; b < kBatch; ++b) {
      const int i = base + 32 * b;
      if (i >= vectors) break;
      const __half2* wh = reinterpret_cast<const __half2*>(&wv[b]);
      float2 wf[4];
#pragma unroll
      for (int j = 0; j < 4; ++j) wf[j] = __half22float2(wh[j]);
#pragma unroll
      for (int t = 0; t < kDenseGemvRows; ++t) {
        if (t >= m) break;
        const uint4 xv = *(reinterpret_cast<const uint4*>(in + static_cast<long long>(t) * cols) + i);
        const __half2* xh = reinterpret_cast<const __half2*>(&xv);
#pragma unroll
        for (int j = 0; j < 4; ++j) {
          const float2 xf = __half22float2(xh[j]);
          acc[t] += wf[j].x * xf.x + wf[j].y * xf.y;
        }
      }
    }
  }
  if (!waited) grid_dependency_wait();
#pragma unroll
  for (int t = 0; t < kDenseGemvRows; ++t) {
    if (t >= m) break;
    float sum = acc[t];
    for (int offset = 16; offset > 0; offset /= 2) sum += __shfl_xor_sync(0xffffffffu, sum, offset);
    if (lane != 0) continue;
    const long long at = static_cast<long long>(t) * rows + row;
    if constexpr (kF32Out) {
      static_cast<float*>(out)[at] = sum;
    } else {
      static_cast<__half*>(out)[at] = __float2half_rn(sum);
    }
  }
}

}  // namespace

void dense_gemv(const __half* w, int64_t rows, int64_t cols, const __half* in, int64_t m, void* out, bool out_f32,
                cudaStream_t stream) {
  using ops_detail::require;
  require(cols > 0 && cols % 8 == 0 && cols < (int64_t(1) << 31), "dense_gemv", "cols must be a positive multiple of 8",
          cols);
  require(rows > 0 && rows < (int64_t(1) << 31), "dense_gemv", "row count out of range", rows);
  require(m >= 1 && m <= kDenseGemvRows, "dense_gemv", "activation rows out of range", m);
  require(ops_detail::aligned16(w) && ops_detail::aligned16(in), "dense_gemv", "pointers must be 16-byte aligned", 0);
  const unsigned blocks = unsigned((rows + kWarps - 1) / kWarps);
  if (out_f32) {
    launch_pdl(dense_gemv_kernel<true>, blocks, kWarps * 32, 0, stream, w, int(rows), int(cols), in, int(m), out);
  } else {
    launch_pdl(dense_gemv_kernel<false>, blocks, kWarps * 32, 0, stream, w, int(rows), int(cols), in, int(m), out);
  }
  ops_detail::check_launch("dense_gemv");
}

}  // namespace marlin::cuda
