// Causal attention over a prompt, flash-attention style: a block takes 64 queries of one head
// (16 per warp) and walks the keys in tiles of 64 through the paged cache. S = Q·Kᵀ and O += P·V
// run on mma.sync m16n8k16 with fp32 accumulation; the softmax is online, in fp32. K and V tiles
// are double buffered against each other: V(i) loads while S(i) is computed, K(i+1) while P·V(i).
// With a sliding window, tiles wholly before every row's window are skipped and the rest masked.
#include <cuda_fp16.h>

#include <cmath>

#include "backend/cuda/attention_mma.cuh"
#include "backend/cuda/ops.h"
#include "backend/cuda/ops_check.h"

namespace marlin::cuda {
namespace {

using namespace attention_detail;

constexpr int kRows = 64;  // queries per block, 16 per warp
constexpr int kKeys = 64;  // keys per tile
constexpr int kThreads = 128;

struct PrefillParams {
  const __half* qkv;
  int64_t row_stride;  // halves between consecutive qkv rows
  int rows;
  int pos0;
  const __half* keys;
  const __half* values;
  const int32_t* block_table;
  int n_kv_heads;
  int group;  // query heads per KV head
  int page_shift;
  int window;        // > 0: position p sees keys (p - window, p]
  float scale_log2;  // scale · log2(e)
  __half* out;
  int64_t out_stride;
};

template <int HD>
constexpr int prefill_smem_bytes() {
  return (kRows + 2 * kKeys) * HD * int(sizeof(__half));
}

// Grid: (n_heads, query tiles). Tiles are taken longest first (the causal triangle's last rows).
template <int HD>
__global__ void __launch_bounds__(kThreads) attention_prefill_kernel(PrefillParams p) {
  constexpr int kSteps = HD / 16;  // k-steps of Q·Kᵀ
  constexpr int kChunks = HD / 8;  // 16-byte chunks per row, and 8-column output blocks
  constexpr int kScoreBlocks = kKeys / 8;
  constexpr bool kQInRegisters = HD <= 128;  // at 256 the registers go to the output accumulators
  extern __shared__ __align__(16) __half smem[];
  __half* q_tile = smem;
  __half* k_tile = q_tile + kRows * HD;
  __half* v_tile = k_tile + kKeys * HD;

  const int head = blockIdx.x;
  const int q0 = (gridDim.y - 1 - blockIdx.y) * kRows;
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32, g = lane / 4, t = lane % 4;
  const int row0 = 16 * warp;  // this warp's rows within the tile
  const PagedHead kv{p.block_table, head / p.group, p.n_kv_heads, p.page_shift};
  const int key_end = p.pos0 + min(q0 + kRows, p.rows);  // keys any row of this tile sees
  // The first key the tile's first row sees (0 without a window), from the tile holding it on.
  const int key_begin = p.window > 0 ? max(0, p.pos0 + q0 - p.window + 1) : 0;
  const int first_tile = key_begin / kKeys;
  const int tiles = (key_end + kKeys - 1) / kKeys;
  const int warp_first_pos = p.pos0 + q0 + row0;

  // Queries past `rows` are zeros; their results are not stored.
  for (int i = threadIdx.x; i < kRows * kChunks; i += kThreads) {
    const int r = i / kChunks, c = i % kChunks;
    const bool valid = q0 + r < p.rows;
    const __half* src = valid ? p.qkv + int64_t(q0 + r) * p.row_stride + int64_t(head) * HD + 8 * c : p.qkv;
    cp_async16_zfill(smem_addr(q_tile + swizzled<HD>(r, c)), src, valid);
  }
  load_paged_tile<HD, kKeys, kThreads>(k_tile, p.keys, kv, first_tile * kKeys, key_end);
  cp_async_commit();
  cp_async_wait<0>();
  __syncthreads();

  uint32_t q_frags[kQInRegisters ? kSteps : 1][4];
  if constexpr (kQInRegisters) {
#pragma unroll
    for (int ks = 0; ks < kSteps; ++ks) load_a_frag<HD>(q_frags[ks], q_tile, row0, ks, lane);
  }
  float o[kChunks][4] = {};
  OnlineSoftmax softmax;

  for (int tile = first_tile; tile < tiles; ++tile) {
    const int key0 = tile * kKeys;
    load_paged_tile<HD, kKeys, kThreads>(v_tile, p.values, kv, key0, key_end);
    cp_async_commit();

    float s[kScoreBlocks][4] = {};
#pragma unroll
    for (int ks = 0; ks < kSteps; ++ks) {
      uint32_t a[4];
      if constexpr (kQInRegisters) {
#pragma unroll
        for (int i = 0; i < 4; ++i) a[i] = q_frags[ks][i];
      } else {
        load_a_frag<HD>(a, q_tile, row0, ks, lane);
      }
#pragma unroll
      for (int kp = 0; kp < kKeys / 16; ++kp) {
        uint32_t b[4];
        load_k_frags<HD>(b, k_tile, 16 * kp, ks, lane);
        mma_16816(s[2 * kp], a, b[0], b[1]);
        mma_16816(s[2 * kp + 1], a, b[2], b[3]);
      }
    }
    // Causal mask: only tiles reaching past this warp's first position need one. Window mask:
    // only tiles starting at or before the window start of this warp's last row.
    const bool diagonal = key0 + kKeys - 1 > warp_first_pos;
    const bool window_edge = p.window > 0 && key0 <= warp_first_pos + 15 - p.window;
#pragma unroll
    for (int nb = 0; nb < kScoreBlocks; ++nb) {
#pragma unroll
      for (int e = 0; e < 4; ++e) {
        s[nb][e] *= p.scale_log2;
        const int key = key0 + 8 * nb + 2 * t + (e & 1), pos = warp_first_pos + g + 8 * (e / 2);
        if ((diagonal && key > pos) || (window_edge && key <= pos - p.window)) s[nb][e] = -INFINITY;
      }
    }
    softmax.update(s, o);

    cp_async_wait<0>();
    __syncthreads();  // V(tile) has landed, and every warp is done with K(tile)
    if (tile + 1 < tiles) {
      load_paged_tile<HD, kKeys, kThreads>(k_tile, p.keys, kv, key0 + kKeys, key_end);
      cp_async_commit();
    }
#pragma unroll
    for (int kk = 0; kk < kKeys / 16; ++kk) {
      uint32_t a[4];
      probability_frag(a, s, kk);
#pragma unroll
      for (int dc = 0; dc < kChunks / 2; ++dc) {
        uint32_t b[4];
        load_v_frags<HD>(b, v_tile, 16 * kk, 2 * dc, lane);
        mma_16816(o[2 * dc], a, b[0], b[1]);
        mma_16816(o[2 * dc + 1], a, b[2], b[3]);
      }
    }
    cp_async_wait<0>();
    __syncthreads();  // K(tile + 1) has landed, and every warp is done with V(tile)
  }

  // Normalize; stage the warp's 16 rows in its own rows of the Q tile; store 16-byte chunks.
  softmax.reduce_sums();
  const float inv0 = 1.0f / softmax.row_sum[0], inv1 = 1.0f / softmax.row_sum[1];
#pragma unroll
  for (int ob = 0; ob < kChunks; ++ob) {
    *reinterpret_cast<uint32_t*>(q_tile + swizzled<HD>(row0 + g, ob) + 2 * t) =
        pack_half2(o[ob][0] * inv0, o[ob][1] * inv0);
    *reinterpret_cast<uint32_t*>(q_tile + swizzled<HD>(row0 + g + 8, ob) + 2 * t) =
        pack_half2(o[ob][2] * inv1, o[ob][3] * inv1);
  }
  __syncwarp();
  for (int i = lane; i < 16 * kChunks; i += 32) {
    const int r = i / kChunks, c = i % kChunks, q = q0 + row0 + r;
    if (q < p.rows)
      *reinterpret_cast<uint4*>(p.out + int64_t(q) * p.out_stride + int64_t(head) * HD + 8 * c) =
          *reinterpret_cast<const uint4*>(q_tile + swizzled<HD>(row0 + r, c));
  }
}

template <int HD>
void launch_prefill(const PrefillParams& p, int n_heads, cudaStream_t stream) {
  constexpr int smem = prefill_smem_bytes<HD>();
  ops_detail::allow_shared_memory(reinterpret_cast<const void*>(&attention_prefill_kernel<HD>), smem,
                                  "attention_prefill");
  const dim3 grid(unsigned(n_heads), unsigned((p.rows + kRows - 1) / kRows));
  attention_prefill_kernel<HD><<<grid, kThreads, smem, stream>>>(p);
}

}  // namespace

void attention_prefill(const __half* qkv, int64_t rows, int64_t pos0, const int32_t* block_table,
                       const AttentionGeometry& g, KvLayer cache, float scale, __half* out, cudaStream_t stream) {
  const char* op = "attention_prefill";
  const int page_shift = ops_detail::check_geometry(op, g);
  ops_detail::require(rows >= 0 && rows <= 65535 * int64_t(kRows), op, "row count out of range", rows);
  ops_detail::require(pos0 >= 0 && pos0 + rows < (int64_t(1) << 30), op, "context out of range", pos0 + rows);
  ops_detail::require(ops_detail::aligned16(qkv) && ops_detail::aligned16(out) &&
                          ops_detail::aligned16(cache.keys) && ops_detail::aligned16(cache.values),
                      op, "qkv, out and cache pointers must be 16-byte aligned", 0);
  if (rows == 0) return;
  const PrefillParams p{qkv,
                        int64_t(g.n_heads + 2 * g.n_kv_heads) * g.head_dim,
                        int(rows),
                        int(pos0),
                        cache.keys,
                        cache.values,
                        block_table,
                        g.n_kv_heads,
                        g.n_heads / g.n_kv_heads,
                        page_shift,
                        g.window,
                        scale * kLog2e,
                        out,
                        int64_t(g.n_heads) * g.head_dim};
  switch (g.head_dim) {
    case 64: launch_prefill<64>(p, g.n_heads, stream); break;
    case 128: launch_prefill<128>(p, g.n_heads, stream); break;
    default: launch_prefill<256>(p, g.n_heads, stream); break;
  }
  ops_detail::check_launch(op);
}

}  // namespace marlin::cuda
