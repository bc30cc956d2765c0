// RMSNorm of the fp32 residual stream into fp16, alone or fused with the residual add, and of
// fp16 rows in place. One block per row; each thread owns 8-value chunks (two float4 of x, or
// one 16-byte fp16 load, and one 16-byte fp16 store).
#include <cuda_fp16.h>

#include "backend/cuda/ops.h"
#include "backend/cuda/ops_check.h"
#include "backend/cuda/head_norm.cuh"
#include "backend/cuda/pdl_launch.cuh"

namespace marlin::cuda {
namespace {

constexpr int kMaxThreads = 512;

// Sum over the block; every thread gets the total. blockDim.x is a multiple of 32.
__device__ float block_sum(float v) {
  __shared__ float warp_sums[kMaxThreads / 32];
  for (int offset = 16; offset > 0; offset /= 2) v += __shfl_xor_sync(0xffffffffu, v, offset);
  const int warp = threadIdx.x / 32, warps = blockDim.x / 32;
  if (threadIdx.x % 32 == 0) warp_sums[warp] = v;
  __syncthreads();
  float total = 0;
  for (int w = 0; w < warps; ++w) total += warp_sums[w];
  return total;
}

__device__ void add_half8(float4& lo, float4& hi, uint4 packed) {
  const __half2* h = reinterpret_cast<const __half2*>(&packed);
  const float2 a = __half22float2(h[0]), b = __half22float2(h[1]), c = __half22float2(h[2]),
               d = __half22float2(h[3]);
  lo.x += a.x, lo.y += a.y, lo.z += b.x, lo.w += b.y;
  hi.x += c.x, hi.y += c.y, hi.z += d.x, hi.w += d.y;
}

// x (rows × n fp32) += delta when kAdd; out = fp16(x / rms(x) · weight). n is a multiple of 8.
template <bool kAdd>
__global__ void rms_norm_kernel(float* x, const __half* delta, const float* weight, float eps, int n,
                                __half* out) {
  pdl_prologue();
  const int64_t row = blockIdx.x;
  float4* xr = reinterpret_cast<float4*>(x + row * n);
  const int chunks = n / 8;
  float squares = 0;
  for (int c = threadIdx.x; c < chunks; c += blockDim.x) {
    float4 lo = xr[2 * c], hi = xr[2 * c + 1];
    if constexpr (kAdd) {
      add_half8(lo, hi, reinterpret_cast<const uint4*>(delta + row * n)[c]);
      xr[2 * c] = lo;
      xr[2 * c + 1] = hi;
    }
    squares += lo.x * lo.x + lo.y * lo.y + lo.z * lo.z + lo.w * lo.w;
    squares += hi.x * hi.x + hi.y * hi.y + hi.z * hi.z + hi.w * hi.w;
  }
  const float scale = rsqrtf(block_sum(squares) / float(n) + eps);
  const float4* w = reinterpret_cast<const float4*>(weight);
  uint4* o = reinterpret_cast<uint4*>(out + row * n);
  for (int c = threadIdx.x; c < chunks; c += blockDim.x) {
    // Each thread re-reads only the chunks it wrote itself.
    const float4 lo = xr[2 * c], hi = xr[2 * c + 1], wl = w[2 * c], wh = w[2 * c + 1];
    uint4 packed;
    __half2* h = reinterpret_cast<__half2*>(&packed);
    h[0] = __floats2half2_rn(lo.x * scale * wl.x, lo.y * scale * wl.y);
    h[1] = __floats2half2_rn(lo.z * scale * wl.z, lo.w * scale * wl.w);
    h[2] = __floats2half2_rn(hi.x * scale * wh.x, hi.y * scale * wh.y);
    h[3] = __floats2half2_rn(hi.z * scale * wh.z, hi.w * scale * wh.w);
    o[c] = packed;
  }
}

// a (rows × n fp16) = fp16(a / rms(a) · weight), in fp32. Each thread re-reads only its own chunks.
__global__ void rms_norm_half_kernel(__half* a, const float* weight, float eps, int n) {
  pdl_prologue();
  uint4* ar = reinterpret_cast<uint4*>(a + int64_t(blockIdx.x) * n);
  const int chunks = n / 8;
  float squares = 0;
  for (int c = threadIdx.x; c < chunks; c += blockDim.x) {
    float4 lo = make_float4(0, 0, 0, 0), hi = lo;
    add_half8(lo, hi, ar[c]);
    squares += lo.x * lo.x + lo.y * lo.y + lo.z * lo.z + lo.w * lo.w;
    squares += hi.x * hi.x + hi.y * hi.y + hi.z * hi.z + hi.w * hi.w;
  }
  const float scale = rsqrtf(block_sum(squares) / float(n) + eps);
  const float4* w = reinterpret_cast<const float4*>(weight);
  for (int c = threadIdx.x; c < chunks; c += blockDim.x) {
    float4 lo = make_float4(0, 0, 0, 0), hi = lo;
    add_half8(lo, hi, ar[c]);
    const float4 wl = w[2 * c], wh = w[2 * c + 1];
    uint4 packed;
    __half2* h = reinterpret_cast<__half2*>(&packed);
    h[0] = __floats2half2_rn(lo.x * scale * wl.x, lo.y * scale * wl.y);
    h[1] = __floats2half2_rn(lo.z * scale * wl.z, lo.w * scale * wl.w);
    h[2] = __floats2half2_rn(hi.x * scale * wh.x, hi.y * scale * wh.y);
    h[3] = __floats2half2_rn(hi.z * scale * wh.z, hi.w * scale * wh.w);
    ar[c] = packed;
  }
}

int norm_threads(int64_t n) { return int(std::min<int64_t>(kMaxThreads, (n / 8 + 31) / 32 * 32)); }

template <bool kAdd>
void launch_rms_norm(const char* op, float* x, const __half* delta, const float* weight, float eps, int64_t rows,
                     int64_t n, __half* out, cudaStream_t stream) {
  using ops_detail::require;
  require(n > 0 && n % 8 == 0 && n <= (int64_t(1) << 24), op, "row length must be a positive multiple of 8", n);
  require(rows >= 0 && rows < (int64_t(1) << 31), op, "row count out of range", rows);
  require(ops_detail::aligned16(x) && ops_detail::aligned16(weight) && ops_detail::aligned16(out) &&
              ops_detail::aligned16(delta),
          op, "pointers must be 16-byte aligned", 0);
  if (rows == 0) return;
  launch_pdl(rms_norm_kernel<kAdd>, unsigned(rows), norm_threads(n), 0, stream, x, delta, weight, eps, int(n), out);
  ops_detail::check_launch(op);
}

// One warp per head: each lane holds 8 values (head_dim ≤ 256), the warp sums their squares.
__global__ void qk_norm_kernel(__half* qkv, int64_t rows, int64_t stride, int n_q_heads, int n_heads, int head_dim,
                               const float* q_weight, const float* k_weight, float eps) {
  pdl_prologue();
  const int64_t item = int64_t(blockIdx.x) * (blockDim.x / 32) + threadIdx.x / 32;
  if (item >= rows * n_heads) return;
  const int64_t row = item / n_heads;
  const int head = int(item % n_heads);
  rms_normalize_head(qkv + row * stride + int64_t(head) * head_dim, head_dim, head < n_q_heads ? q_weight : k_weight,
                     eps, threadIdx.x % 32);
}

}  // namespace

void qk_norm(__half* qkv, int64_t rows, int64_t stride, int n_q_heads, int n_k_heads, int head_dim,
             const float* q_weight, const float* k_weight, float eps, cudaStream_t stream) {
  using ops_detail::require;
  const char* op = "qk_norm";
  require(head_dim > 0 && head_dim % 8 == 0 && head_dim <= 256, op, "head_dim must be a multiple of 8 up to 256",
          head_dim);
  require(n_q_heads >= 1 && n_k_heads >= 1 && n_q_heads + n_k_heads <= 4096, op, "head counts out of range",
          n_q_heads + n_k_heads);
  require(stride % 8 == 0 && stride >= int64_t(n_q_heads + n_k_heads) * head_dim, op,
          "row stride must be a multiple of 8 holding every q and k head", stride);
  require(rows >= 0 && rows * (n_q_heads + n_k_heads) < (int64_t(1) << 40), op, "row count out of range", rows);
  require(ops_detail::aligned16(qkv), op, "qkv must be 16-byte aligned", 0);
  if (rows == 0) return;
  constexpr int kWarps = 8;
  const int64_t heads = rows * (n_q_heads + n_k_heads);
  launch_pdl(qk_norm_kernel, unsigned((heads + kWarps - 1) / kWarps), kWarps * 32, 0, stream, qkv, rows, stride,
             n_q_heads, n_q_heads + n_k_heads, head_dim, q_weight, k_weight, eps);
  ops_detail::check_launch(op);
}

void rms_norm(const float* x, const float* weight, float eps, int64_t rows, int64_t n, __half* out,
              cudaStream_t stream) {
  launch_rms_norm<false>("rms_norm", const_cast<float*>(x), nullptr, weight, eps, rows, n, out, stream);
}

void add_rms_norm(float* x, const __half* delta, const float* weight, float eps, int64_t rows, int64_t n,
                  __half* out, cudaStream_t stream) {
  launch_rms_norm<true>("add_rms_norm", x, delta, weight, eps, rows, n, out, stream);
}

void rms_norm_half(__half* a, const float* weight, float eps, int64_t rows, int64_t n, cudaStream_t stream) {
  using ops_detail::require;
  const char* op = "rms_norm_half";
  require(n > 0 && n % 8 == 0 && n <= (int64_t(1) << 24), op, "row length must be a positive multiple of 8", n);
  require(rows >= 0 && rows < (int64_t(1) << 31), op, "row count out of range", rows);
  require(ops_detail::aligned16(a) && ops_detail::aligned16(weight), op, "pointers must be 16-byte aligned", 0);
  if (rows == 0) return;
  launch_pdl(rms_norm_half_kernel, unsigned(rows), norm_threads(n), 0, stream, a, weight, eps, int(n));
  ops_detail::check_launch(op);
}

}  // namespace marlin::cuda
