// Building blocks of the attention kernels (attention_prefill.cu, attention_decode.cu):
// - tiles of head_dim-long fp16 rows in shared memory, 16-byte chunks XOR-swizzled by row so that
//   ldmatrix reads 8 rows of one column without bank conflicts;
// - cp.async loads of such tiles from the paged KV cache (rows past the valid range become zeros,
//   so masked keys never multiply garbage values);
// - fragments of mma.sync m16n8k16 (fp16 in, fp32 accumulate) and the online softmax over them.
// Fragment map (PTX ISA): lane = 4·g + t holds C/D values (row g, cols 2t, 2t+1) in [0], [1] and
// (row g + 8, same cols) in [2], [3] of each 16×8 block.
#pragma once

#include <cuda_fp16.h>

#include <cstdint>

#include "backend/cuda/ptx.cuh"

namespace marlin::cuda::attention_detail {

constexpr float kLog2e = 1.4426950408889634f;  // scores are scaled by scale·log2(e) for exp2

// 16-byte cp.async; writes 16 zero bytes instead when !valid (src is then not read).
__device__ __forceinline__ void cp_async16_zfill(uint32_t dst, const void* src, bool valid) {
  asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;" ::"r"(dst), "l"(src), "r"(valid ? 16 : 0)
               : "memory");
}

__device__ __forceinline__ void ldmatrix_x4_trans(uint32_t (&r)[4], uint32_t addr) {
  asm volatile("ldmatrix.sync.aligned.m8n8.x4.trans.shared.b16 {%0,%1,%2,%3}, [%4];"
               : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
               : "r"(addr));
}

__device__ __forceinline__ uint32_t pack_half2(float lo, float hi) {
  const __half2 h = __floats2half2_rn(lo, hi);
  return *reinterpret_cast<const uint32_t*>(&h);
}

// Offset in halves of 16-byte chunk `chunk` of row `row` in a swizzled tile of HD-half rows.
template <int HD>
__device__ __forceinline__ int swizzled(int row, int chunk) {
  static_assert(HD >= 64, "the swizzle needs at least 8 chunks per row");
  return row * HD + ((chunk ^ (row & 7)) << 3);
}

// One KV head of one sequence in the paged cache (ops.h): position → element offset.
struct PagedHead {
  const int32_t* block_table;  // the sequence's pages in order
  int64_t kv_head;
  int64_t n_kv_heads;
  int page_shift;  // log2(page_size)

  template <int HD>
  __device__ __forceinline__ int64_t offset(int pos) const {
    const int64_t page = block_table[pos >> page_shift];
    return (((page * n_kv_heads + kv_head) << page_shift) | (pos & ((1 << page_shift) - 1))) * HD;
  }
};

// Starts loading positions [first, first + ROWS) of `cache` (keys or values) into `tile`; rows at
// or past `end` are zero-filled. All THREADS threads of the block take part.
template <int HD, int ROWS, int THREADS>
__device__ __forceinline__ void load_paged_tile(__half* tile, const __half* cache, const PagedHead& head, int first,
                                                int end) {
  constexpr int kChunks = HD / 8;
  for (int i = threadIdx.x; i < ROWS * kChunks; i += THREADS) {
    const int row = i / kChunks, chunk = i % kChunks, pos = first + row;
    const bool valid = pos < end;
    const __half* src = valid ? cache + head.offset<HD>(pos) + 8 * chunk : cache;
    cp_async16_zfill(smem_addr(tile + swizzled<HD>(row, chunk)), src, valid);
  }
}

// A operand: rows row0..row0+15, columns 16·kstep..+15 of a swizzled tile.
template <int HD>
__device__ __forceinline__ void load_a_frag(uint32_t (&a)[4], const __half* tile, int row0, int kstep, int lane) {
  ldmatrix_x4(a, smem_addr(tile + swizzled<HD>(row0 + lane % 16, 2 * kstep + lane / 16)));
}

// B operands of S = Q·Kᵀ for keys key0..key0+15 (two 8-key blocks: b[0..1] and b[2..3]) at
// head_dim columns 16·kstep..+15. K rows are Kᵀ's columns, so no transpose.
template <int HD>
__device__ __forceinline__ void load_k_frags(uint32_t (&b)[4], const __half* tile, int key0, int kstep, int lane) {
  const int m = lane / 8;
  ldmatrix_x4(b, smem_addr(tile + swizzled<HD>(key0 + lane % 8 + 8 * (m / 2), 2 * kstep + m % 2)));
}

// B operands of O += P·V for keys key0..key0+15 (the k dimension) and head_dim chunks `chunk`,
// `chunk + 1` (two 8-column blocks: b[0..1] and b[2..3]), transposed by ldmatrix.
template <int HD>
__device__ __forceinline__ void load_v_frags(uint32_t (&b)[4], const __half* tile, int key0, int chunk, int lane) {
  const int m = lane / 8;
  ldmatrix_x4_trans(b, smem_addr(tile + swizzled<HD>(key0 + lane % 8 + 8 * (m % 2), chunk + m / 2)));
}

// The A operand of P·V for keys 16·kstep..+15, from the probabilities in score blocks 2·kstep and
// 2·kstep + 1 (the C layout of two 16×8 blocks is the A layout of one 16×16 block).
template <int NB>
__device__ __forceinline__ void probability_frag(uint32_t (&a)[4], const float (&s)[NB][4], int kstep) {
  a[0] = pack_half2(s[2 * kstep][0], s[2 * kstep][1]);
  a[1] = pack_half2(s[2 * kstep][2], s[2 * kstep][3]);
  a[2] = pack_half2(s[2 * kstep + 1][0], s[2 * kstep + 1][1]);
  a[3] = pack_half2(s[2 * kstep + 1][2], s[2 * kstep + 1][3]);
}

// Online softmax of one warp's 16 query rows; this thread holds rows g ([0]) and g + 8 ([1]).
// Scores arrive already multiplied by scale·log2(e), so exp2 gives the softmax weights.
struct OnlineSoftmax {
  float row_max[2] = {-INFINITY, -INFINITY};
  float row_sum[2] = {0.0f, 0.0f};  // this thread's share; reduce_sums() adds the quad's

  // Turns a block of scores into unnormalized probabilities and rescales the output so far.
  template <int NB, int OB>
  __device__ __forceinline__ void update(float (&s)[NB][4], float (&o)[OB][4]) {
#pragma unroll
    for (int r = 0; r < 2; ++r) {
      float m = row_max[r];
#pragma unroll
      for (int nb = 0; nb < NB; ++nb) m = fmaxf(m, fmaxf(s[nb][2 * r], s[nb][2 * r + 1]));
      m = fmaxf(m, __shfl_xor_sync(0xffffffffu, m, 1));
      m = fmaxf(m, __shfl_xor_sync(0xffffffffu, m, 2));
      const float base = m == -INFINITY ? 0.0f : m;  // a row with every key masked so far
      const float alpha = exp2f(row_max[r] - base);
      row_max[r] = m;
      float added = 0;
#pragma unroll
      for (int nb = 0; nb < NB; ++nb) {
        s[nb][2 * r] = exp2f(s[nb][2 * r] - base);
        s[nb][2 * r + 1] = exp2f(s[nb][2 * r + 1] - base);
        added += s[nb][2 * r] + s[nb][2 * r + 1];
      }
      row_sum[r] = row_sum[r] * alpha + added;
#pragma unroll
      for (int ob = 0; ob < OB; ++ob) {
        o[ob][2 * r] *= alpha;
        o[ob][2 * r + 1] *= alpha;
      }
    }
  }

  __device__ __forceinline__ void reduce_sums() {
#pragma unroll
    for (int r = 0; r < 2; ++r) {
      row_sum[r] += __shfl_xor_sync(0xffffffffu, row_sum[r], 1);
      row_sum[r] += __shfl_xor_sync(0xffffffffu, row_sum[r], 2);
    }
  }
};

}  // namespace marlin::cuda::attention_detail
