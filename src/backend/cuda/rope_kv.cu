// RoPE on the q and k heads of each qkv row (after their per-head RMSNorm when the model has one),
// then k and v into the paged KV cache. One block per (token, head) of head_dim/2 threads, so that
// a single decode token still spreads over many SMs: warp 0 normalizes a q or k head, thread j
// rotates pair j of it, then a k or v head is copied to its cache slot in 16-byte pieces.
#include <cuda_fp16.h>

#include "backend/cuda/ops.h"
#include "backend/cuda/head_norm.cuh"
#include "backend/cuda/ops_check.h"
#include "backend/cuda/pdl_launch.cuh"

namespace marlin::cuda {
namespace {

struct RopeParams {
  __half* qkv;
  int64_t row_stride;  // (n_heads + 2·n_kv_heads)·head_dim
  const int32_t* positions;
  const int32_t* slots;
  const float* cos_sin;
  int n_heads, n_kv_heads, head_dim, pairs;
  bool half_split;
  int page_shift;
  __half* keys;
  __half* values;
  const float* q_norm;  // per-head RMSNorm weights of q and k heads, or null for none
  const float* k_norm;
  float eps;
};

// Grid: (n_heads + 2·n_kv_heads, rows); block: head_dim / 2 threads.
__global__ void rope_store_kv_kernel(RopeParams p) {
  pdl_prologue();
  const int64_t t = blockIdx.y;
  const int head = blockIdx.x, j = threadIdx.x;
  __half* x = p.qkv + t * p.row_stride + int64_t(head) * p.head_dim;
  const bool rotated = head < p.n_heads + p.n_kv_heads;
  if (rotated && p.q_norm) {
    if (j < 32) rms_normalize_head(x, p.head_dim, head < p.n_heads ? p.q_norm : p.k_norm, p.eps, j);
    __syncthreads();  // the normalized values are rotated by other threads below
  }
  if (rotated && j < p.pairs) {  // in fp32, as Rope::rotate does it
    const float* cosines = p.cos_sin + int64_t(p.positions[t]) * 2 * p.pairs;
    const float c = cosines[j], s = cosines[p.pairs + j];
    if (p.half_split) {
      const float a = __half2float(x[j]), b = __half2float(x[j + p.pairs]);
      x[j] = __float2half_rn(a * c - b * s);
      x[j + p.pairs] = __float2half_rn(b * c + a * s);
    } else {
      __half2* pair = reinterpret_cast<__half2*>(x + 2 * j);
      const float2 v = __half22float2(*pair);
      *pair = __floats2half2_rn(v.x * c - v.y * s, v.x * s + v.y * c);
    }
  }
  const int slot = p.slots[t];
  if (head < p.n_heads || slot < 0) return;  // a q head, or a padding row: nothing to store
  __syncthreads();  // the rotated k values are read back by other threads below
  const bool is_key = head < p.n_heads + p.n_kv_heads;
  const int kv_head = head - p.n_heads - (is_key ? 0 : p.n_kv_heads);
  const int64_t page = slot >> p.page_shift, in_page = slot & ((1 << p.page_shift) - 1);
  const int64_t dst = ((page * p.n_kv_heads + kv_head) << p.page_shift | in_page) * p.head_dim;
  if (j < p.head_dim / 8)
    reinterpret_cast<uint4*>((is_key ? p.keys : p.values) + dst)[j] = reinterpret_cast<const uint4*>(x)[j];
}

}  // namespace

void rope_store_kv(__half* qkv, int64_t rows, const int32_t* positions, const int32_t* slots, const float* cos_sin,
                   const AttentionGeometry& g, KvLayer cache, cudaStream_t stream, const HeadNorm& norm) {
  const char* op = "rope_store_kv";
  const int page_shift = ops_detail::check_geometry(op, g);
  ops_detail::require(rows >= 0 && rows < 65536, op, "row count out of range", rows);
  ops_detail::require(ops_detail::aligned16(qkv) && ops_detail::aligned16(cache.keys) &&
                          ops_detail::aligned16(cache.values),
                      op, "qkv and cache pointers must be 16-byte aligned", 0);
  if (rows == 0) return;
  RopeParams p{qkv,       int64_t(g.n_heads + 2 * g.n_kv_heads) * g.head_dim,
               positions, slots,
               cos_sin,   g.n_heads,
               g.n_kv_heads, g.head_dim,
               g.rotary_dim / 2, g.rope_half_split,
               page_shift, cache.keys,
               cache.values, norm.q_weight,
               norm.k_weight, norm.eps};
  ops_detail::require((norm.q_weight == nullptr) == (norm.k_weight == nullptr), op,
                      "q and k norm weights come together", 0);
  const dim3 grid(unsigned(g.n_heads + 2 * g.n_kv_heads), unsigned(rows));
  launch_pdl(rope_store_kv_kernel, grid, unsigned(g.head_dim / 2), 0, stream, p);
  ops_detail::check_launch(op);
}

}  // namespace marlin::cuda
