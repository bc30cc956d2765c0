// RoPE on the q and k heads of each qkv row, then k and v into the paged KV cache.
// One block per token: first every (head, pair) rotation, then 16-byte copies of k and v.
#include <cuda_fp16.h>

#include "backend/cuda/ops.h"
#include "backend/cuda/ops_check.h"

namespace marlin::cuda {
namespace {

constexpr int kThreads = 128;

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
};

__global__ void __launch_bounds__(kThreads) rope_store_kv_kernel(RopeParams p) {
  const int64_t t = blockIdx.x;
  __half* row = p.qkv + t * p.row_stride;
  const float* cosines = p.cos_sin + int64_t(p.positions[t]) * 2 * p.pairs;
  const float* sines = cosines + p.pairs;
  // Rotation in fp32, as Rope::rotate does it.
  const int rotations = (p.n_heads + p.n_kv_heads) * p.pairs;
  for (int i = threadIdx.x; i < rotations; i += kThreads) {
    const int head = i / p.pairs, j = i % p.pairs;
    __half* x = row + int64_t(head) * p.head_dim;
    const float c = cosines[j], s = sines[j];
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
  __syncthreads();  // the rotated k is read back by other threads below
  const int slot = p.slots[t];
  if (slot < 0) return;  // a padding row: nothing to store
  const int64_t page = slot >> p.page_shift, in_page = slot & ((1 << p.page_shift) - 1);
  const int chunks = p.head_dim / 8, kv_chunks = p.n_kv_heads * chunks;
  const uint4* k = reinterpret_cast<const uint4*>(row + int64_t(p.n_heads) * p.head_dim);
  const uint4* v = k + kv_chunks;
  for (int i = threadIdx.x; i < 2 * kv_chunks; i += kThreads) {
    const int which = i / kv_chunks, rest = i % kv_chunks, kv_head = rest / chunks, c = rest % chunks;
    const int64_t dst = ((page * p.n_kv_heads + kv_head) << p.page_shift | in_page) * p.head_dim;
    __half* cache = which == 0 ? p.keys : p.values;
    reinterpret_cast<uint4*>(cache + dst)[c] = (which == 0 ? k : v)[rest];
  }
}

}  // namespace

void rope_store_kv(__half* qkv, int64_t rows, const int32_t* positions, const int32_t* slots, const float* cos_sin,
                   const AttentionGeometry& g, KvLayer cache, cudaStream_t stream) {
  const char* op = "rope_store_kv";
  const int page_shift = ops_detail::check_geometry(op, g);
  ops_detail::require(rows >= 0 && rows < (int64_t(1) << 31), op, "row count out of range", rows);
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
               cache.values};
  rope_store_kv_kernel<<<unsigned(rows), kThreads, 0, stream>>>(p);
  ops_detail::check_launch(op);
}

}  // namespace marlin::cuda
