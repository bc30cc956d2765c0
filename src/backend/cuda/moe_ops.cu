// The data movement of a sparse MLP on the GPU (cuda_experts.h): gathering the rows routed to one
// expert, adding its weighted outputs back into the tokens' fp32 sums, and rounding the sums to
// fp16.
#include <cuda_fp16.h>

#include "backend/cuda/ops.h"
#include "backend/cuda/ops_check.h"

namespace marlin::cuda {
namespace {

constexpr int kThreads = 256;

// out[i] = in[rows[i]] for n rows of `cols` fp16 values (cols a multiple of 8): one block per row.
__global__ void gather_rows_kernel(const __half* in, int64_t cols, const int32_t* rows, __half* out) {
  const int64_t i = blockIdx.x;
  const uint4* from = reinterpret_cast<const uint4*>(in + int64_t(rows[i]) * cols);
  uint4* to = reinterpret_cast<uint4*>(out + i * cols);
  for (int64_t c = threadIdx.x; c < cols / 8; c += blockDim.x) to[c] = from[c];
}

// sums[rows[i]] += weights[i] · y[i] for n rows of `cols` values: one block per row. A row index
// appears at most once per launch, so no two blocks touch the same sum.
__global__ void add_weighted_rows_kernel(const __half* y, int64_t cols, const int32_t* rows, const float* weights,
                                         float* sums) {
  const int64_t i = blockIdx.x;
  const float w = weights[i];
  const __half* from = y + i * cols;
  float* to = sums + int64_t(rows[i]) * cols;
  for (int64_t c = threadIdx.x; c < cols; c += blockDim.x) to[c] += w * __half2float(from[c]);
}

__global__ void float_to_half_kernel(const float* in, int64_t count, __half* out) {
  const int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x;
  if (i < count) out[i] = __float2half_rn(in[i]);
}

}  // namespace

void gather_rows(const __half* in, int64_t cols, const int32_t* rows, int64_t n, __half* out, cudaStream_t stream) {
  ops_detail::require(cols > 0 && cols % 8 == 0, "gather_rows", "cols must be a positive multiple of 8", cols);
  ops_detail::require(n >= 0 && n < (int64_t(1) << 31), "gather_rows", "row count out of range", n);
  ops_detail::require(ops_detail::aligned16(in) && ops_detail::aligned16(out), "gather_rows",
                      "pointers must be 16-byte aligned", 0);
  if (n == 0) return;
  gather_rows_kernel<<<unsigned(n), kThreads, 0, stream>>>(in, cols, rows, out);
  ops_detail::check_launch("gather_rows");
}

void add_weighted_rows(const __half* y, int64_t cols, const int32_t* rows, const float* weights, int64_t n, float* sums,
                       cudaStream_t stream) {
  ops_detail::require(cols > 0, "add_weighted_rows", "cols must be positive", cols);
  ops_detail::require(n >= 0 && n < (int64_t(1) << 31), "add_weighted_rows", "row count out of range", n);
  if (n == 0) return;
  add_weighted_rows_kernel<<<unsigned(n), kThreads, 0, stream>>>(y, cols, rows, weights, sums);
  ops_detail::check_launch("add_weighted_rows");
}

void float_to_half(const float* in, int64_t count, __half* out, cudaStream_t stream) {
  ops_detail::require(count >= 0, "float_to_half", "count must not be negative", count);
  if (count == 0) return;
  float_to_half_kernel<<<unsigned((count + kThreads - 1) / kThreads), kThreads, 0, stream>>>(in, count, out);
  ops_detail::check_launch("float_to_half");
}

}  // namespace marlin::cuda
