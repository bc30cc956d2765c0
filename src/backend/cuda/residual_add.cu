// The residual add that no norm follows (ops.h add_residual).
#include "backend/cuda/ops.h"
#include "backend/cuda/pdl_launch.cuh"

namespace marlin::cuda {
namespace {

__global__ void add_residual_kernel(float* x, const __half* delta, int64_t count) {
  pdl_prologue();
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < count; i += int64_t(gridDim.x) * blockDim.x)
    x[i] += __half2float(delta[i]);
}

}  // namespace

void add_residual(float* x, const __half* delta, int64_t count, cudaStream_t stream) {
  if (count <= 0) return;
  const int threads = 256;
  const int64_t blocks = (count + threads - 1) / threads;
  launch_pdl(add_residual_kernel, unsigned(blocks < 4096 ? blocks : 4096), threads, 0, stream, x, delta, count);
}

}  // namespace marlin::cuda
