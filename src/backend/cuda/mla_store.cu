// Multi-head latent attention's small ops (ops.h): the cache row of each new token (normalized
// latent + rotated shared key) and the rotated part of the absorbed queries. RoPE in fp32 from
// the backend's angle table, exactly as Rope::rotate pairs the values.
#include <cuda_fp16.h>

#include "backend/cuda/ops.h"
#include "backend/cuda/ops_check.h"
#include "backend/cuda/pdl_launch.cuh"

namespace marlin::cuda {
namespace {

constexpr int kThreads = 128;

// Rotates pair j of the qk_rope values at `in` by (cos, sin) and writes them at `out`.
__device__ __forceinline__ void rotate_pair(const __half* in, __half* out, int j, int pairs, bool half_split,
                                            float c, float s) {
  const int lo = half_split ? j : 2 * j, hi = half_split ? j + pairs : 2 * j + 1;
  const float a = __half2float(in[lo]), b = __half2float(in[hi]);
  out[lo] = __float2half_rn(a * c - b * s);
  out[hi] = __float2half_rn(b * c + a * s);
}

struct StoreParams {
  const __half* kv_a;
  const float* kv_norm;
  float eps;
  const int32_t* positions;
  const int32_t* slots;
  const float* cos_sin;
  int kv_lora, pairs;
  bool half_split;
  __half* cache;
};

// Grid: one block per row.
__global__ void __launch_bounds__(kThreads) mla_store_kv_kernel(StoreParams p) {
  pdl_prologue();
  __shared__ float warp_sums[kThreads / 32];
  const int64_t t = blockIdx.x;
  const int slot = p.slots[t];
  if (slot < 0) return;  // a padding row
  const int width = p.kv_lora + 2 * p.pairs;
  const __half* in = p.kv_a + t * width;
  __half* out = p.cache + int64_t(slot) * width;
  float sum = 0;
  for (int i = threadIdx.x; i < p.kv_lora; i += kThreads) {
    const float v = __half2float(in[i]);
    sum += v * v;
  }
#pragma unroll
  for (int o = 16; o > 0; o /= 2) sum += __shfl_xor_sync(0xffffffffu, sum, o);
  if (threadIdx.x % 32 == 0) warp_sums[threadIdx.x / 32] = sum;
  __syncthreads();
  float total = 0;
#pragma unroll
  for (int w = 0; w < kThreads / 32; ++w) total += warp_sums[w];
  const float scale = rsqrtf(total / float(p.kv_lora) + p.eps);
  for (int i = threadIdx.x; i < p.kv_lora; i += kThreads)
    out[i] = __float2half_rn(__half2float(in[i]) * scale * p.kv_norm[i]);
  const float* angles = p.cos_sin + int64_t(p.positions[t]) * 2 * p.pairs;
  for (int j = threadIdx.x; j < p.pairs; j += kThreads)
    rotate_pair(in + p.kv_lora, out + p.kv_lora, j, p.pairs, p.half_split, angles[j], angles[p.pairs + j]);
}

struct QueryParams {
  const __half* q;
  const int32_t* positions;
  const float* cos_sin;
  int n_heads, qk_nope, kv_lora, pairs;
  bool half_split;
  __half* q_abs;
};

// Grid: one block per row; thread i takes (head i / pairs, pair i % pairs).
__global__ void __launch_bounds__(kThreads) mla_rope_queries_kernel(QueryParams p) {
  pdl_prologue();
  const int64_t t = blockIdx.x;
  const int rope = 2 * p.pairs, q_head = p.qk_nope + rope, abs_head = p.kv_lora + rope;
  const float* angles = p.cos_sin + int64_t(p.positions[t]) * rope;
  for (int i = threadIdx.x; i < p.n_heads * p.pairs; i += kThreads) {
    const int h = i / p.pairs, j = i % p.pairs;
    const __half* in = p.q + (t * p.n_heads + h) * q_head + p.qk_nope;
    __half* out = p.q_abs + (t * p.n_heads + h) * abs_head + p.kv_lora;
    rotate_pair(in, out, j, p.pairs, p.half_split, angles[j], angles[p.pairs + j]);
  }
}

void check_mla_geometry(const char* op, const MlaGeometry& g) {
  using ops_detail::require;
  require(g.n_heads > 0 && g.n_heads < 65536, op, "n_heads out of range", g.n_heads);
  require(g.qk_nope > 0, op, "qk_nope must be positive", g.qk_nope);
  require(g.qk_rope > 0 && g.qk_rope % 8 == 0, op, "qk_rope must be a positive multiple of 8", g.qk_rope);
  require(g.kv_lora > 0 && g.kv_lora % 8 == 0, op, "kv_lora must be a positive multiple of 8", g.kv_lora);
  require(g.v_dim > 0, op, "v_dim must be positive", g.v_dim);
}

}  // namespace

void mla_store_kv(const __half* kv_a, int64_t rows, const float* kv_norm, float eps, const int32_t* positions,
                  const int32_t* slots, const float* cos_sin, const MlaGeometry& g, __half* cache,
                  cudaStream_t stream) {
  const char* op = "mla_store_kv";
  check_mla_geometry(op, g);
  ops_detail::require(rows >= 0 && rows < (int64_t(1) << 31), op, "row count out of range", rows);
  if (rows == 0) return;
  const StoreParams p{kv_a, kv_norm, eps, positions, slots, cos_sin, g.kv_lora, g.qk_rope / 2, g.rope_half_split,
                      cache};
  launch_pdl(mla_store_kv_kernel, unsigned(rows), kThreads, 0, stream, p);
  ops_detail::check_launch(op);
}

void mla_rope_queries(const __half* q, int64_t rows, const int32_t* positions, const float* cos_sin,
                      const MlaGeometry& g, __half* q_abs, cudaStream_t stream) {
  const char* op = "mla_rope_queries";
  check_mla_geometry(op, g);
  ops_detail::require(rows >= 0 && rows < (int64_t(1) << 31), op, "row count out of range", rows);
  if (rows == 0) return;
  const QueryParams p{q, positions, cos_sin, g.n_heads, g.qk_nope, g.kv_lora, g.qk_rope / 2, g.rope_half_split, q_abs};
  launch_pdl(mla_rope_queries_kernel, unsigned(rows), kThreads, 0, stream, p);
  ops_detail::check_launch(op);
}

}  // namespace marlin::cuda
