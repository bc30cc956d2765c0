// Attention of one new token per sequence over its paged cache (flash-decoding). A block takes one
// chunk of one sequence's context for up to 16 query heads sharing a KV head (one m16 tile, so
// K and V are read once for the whole group); its 4 warps split each 64-key tile 16 keys apiece,
// with a 3-stage cp.async pipeline of tiles. The warps' softmax states merge in shared memory;
// with several chunks the block writes an unnormalized partial (O, max, sum) and a combine kernel
// merges the chunks of each (sequence, head). With a sliding window, chunks wholly before the
// window do nothing and the window's first chunk starts at the window.
#include <cuda_fp16.h>

#include <algorithm>
#include <cmath>

#include "backend/cuda/attention_mma.cuh"
#include "backend/cuda/ops.h"
#include "backend/cuda/ops_check.h"
#include "backend/cuda/pdl_launch.cuh"

namespace marlin::cuda {
namespace {

using namespace attention_detail;

constexpr int kKeys = 64;   // keys per tile, 16 per warp
constexpr int kHeads = 16;  // query heads per block
constexpr int kWarps = 4;
constexpr int kThreads = 32 * kWarps;
// Enough blocks for a few waves on any current GPU: the split into chunks aims for this many.
constexpr int64_t kTargetBlocks = 1024;
constexpr int64_t kMinTilesPerChunk = 2;

struct DecodeSplit {
  int chunk_len;  // a multiple of kKeys
  int chunks;
};

// Depends only on the launch shape, never on the current lengths (CUDA-graph replays stay valid).
DecodeSplit decode_split(int batch, int64_t max_len, const AttentionGeometry& g) {
  const int64_t tiles = std::max<int64_t>(1, (max_len + kKeys - 1) / kKeys);
  const int64_t head_tiles = (g.n_heads / g.n_kv_heads + kHeads - 1) / kHeads;
  const int64_t blocks_per_chunk = int64_t(std::max(batch, 1)) * g.n_kv_heads * head_tiles;
  int64_t chunks = std::clamp<int64_t>((kTargetBlocks + blocks_per_chunk - 1) / blocks_per_chunk, 1,
                                       std::max<int64_t>(1, tiles / kMinTilesPerChunk));
  const int64_t tiles_per_chunk = (tiles + chunks - 1) / chunks;
  chunks = (tiles + tiles_per_chunk - 1) / tiles_per_chunk;
  return {int(tiles_per_chunk * kKeys), int(chunks)};
}

struct DecodeParams {
  const __half* qkv;
  int64_t row_stride;
  const int32_t* seq_lens;
  const int32_t* block_tables;
  int max_pages;
  int max_len;
  const __half* keys;
  const __half* values;
  int n_heads, n_kv_heads, group, head_tiles, page_shift;
  int window;        // > 0: a sequence of length len sees keys [len - window, len)
  float scale_log2;  // scale · log2(e)
  int chunk_len, chunks;
  __half* out;
  int64_t out_stride;
  float* partials;  // [batch][n_heads][chunks][HD + 2]: O (unnormalized), max, sum
};

// The first key a sequence of `len` positions attends to.
__device__ __forceinline__ int window_begin(int len, int window) { return window > 0 ? max(0, len - window) : 0; }

template <int HD>
constexpr int kDecodeStages = HD <= 128 ? 3 : 2;  // a stage is 64 keys of K and V

template <int HD>
constexpr int decode_smem_bytes() {
  return (kHeads + kDecodeStages<HD> * 2 * kKeys) * HD * int(sizeof(__half));
}

// Grid: (chunks, n_kv_heads · head_tiles, batch).
template <int HD>
__global__ void __launch_bounds__(kThreads) attention_decode_kernel(DecodeParams p) {
  pdl_prologue();
  constexpr int kStages = kDecodeStages<HD>;
  constexpr int kSteps = HD / 16;
  constexpr int kChunks = HD / 8;
  constexpr bool kQInRegisters = HD <= 128;
  static_assert(kWarps * kHeads * HD * sizeof(float) <= kStages * 2 * kKeys * HD * sizeof(__half),
                "the merge buffer reuses the pipeline stages");
  extern __shared__ __align__(16) __half smem[];
  __shared__ float warp_max[kWarps][kHeads], warp_sum[kWarps][kHeads];
  __half* q_tile = smem;
  __half* stages = q_tile + kHeads * HD;  // stage s: K tile, then V tile

  const int b = blockIdx.z, kv_head = blockIdx.y / p.head_tiles, head_tile = blockIdx.y % p.head_tiles;
  const int head0 = kv_head * p.group + head_tile * kHeads;
  const int heads = min(kHeads, p.group - head_tile * kHeads);
  const int len = min(p.seq_lens[b], p.max_len);
  const int chunk0 = blockIdx.x * p.chunk_len;
  const int first = max(chunk0, window_begin(len, p.window));
  const int end = min(chunk0 + p.chunk_len, len);
  if (first >= end) {
    if (p.chunks == 1)  // an empty context: zeros (with chunks the combine kernel writes them)
      for (int i = threadIdx.x; i < heads * HD; i += kThreads)
        p.out[int64_t(b) * p.out_stride + int64_t(head0) * HD + i] = __float2half(0.0f);
    return;
  }
  const int tiles = (end - first + kKeys - 1) / kKeys;
  const PagedHead kv{p.block_tables + int64_t(b) * p.max_pages, kv_head, p.n_kv_heads, p.page_shift};
  auto k_stage = [&](int s) { return stages + 2 * s * kKeys * HD; };
  auto load_tile = [&](int tile) {
    __half* k = k_stage(tile % kStages);
    load_paged_tile<HD, kKeys, kThreads>(k, p.keys, kv, first + tile * kKeys, end);
    load_paged_tile<HD, kKeys, kThreads>(k + kKeys * HD, p.values, kv, first + tile * kKeys, end);
  };

  // The group's query rows (zeros past `heads`) travel with tile 0.
  for (int i = threadIdx.x; i < kHeads * kChunks; i += kThreads) {
    const int r = i / kChunks, c = i % kChunks;
    const bool valid = r < heads;
    const __half* src = valid ? p.qkv + int64_t(b) * p.row_stride + int64_t(head0 + r) * HD + 8 * c : p.qkv;
    cp_async16_zfill(smem_addr(q_tile + swizzled<HD>(r, c)), src, valid);
  }
#pragma unroll
  for (int s = 0; s < kStages - 1; ++s) {
    if (s < tiles) load_tile(s);
    cp_async_commit();
  }

  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32, g = lane / 4, t = lane % 4;
  const int warp_key0 = 16 * warp;  // this warp's keys within each tile
  uint32_t q_frags[kQInRegisters ? kSteps : 1][4];
  float o[kChunks][4] = {};
  OnlineSoftmax softmax;

  for (int tile = 0; tile < tiles; ++tile) {
    cp_async_wait<kStages - 2>();
    __syncthreads();  // tile `tile` has landed, and every warp is done with the stage refilled next
    if (tile + kStages - 1 < tiles) load_tile(tile + kStages - 1);
    cp_async_commit();
    if constexpr (kQInRegisters) {
      if (tile == 0) {
#pragma unroll
        for (int ks = 0; ks < kSteps; ++ks) load_a_frag<HD>(q_frags[ks], q_tile, 0, ks, lane);
      }
    }
    const __half* k_tile = k_stage(tile % kStages);
    const __half* v_tile = k_tile + kKeys * HD;

    float s[2][4] = {};
#pragma unroll
    for (int ks = 0; ks < kSteps; ++ks) {
      uint32_t a[4];
      if constexpr (kQInRegisters) {
#pragma unroll
        for (int i = 0; i < 4; ++i) a[i] = q_frags[ks][i];
      } else {
        load_a_frag<HD>(a, q_tile, 0, ks, lane);
      }
      uint32_t bk[4];
      load_k_frags<HD>(bk, k_tile, warp_key0, ks, lane);
      mma_16816(s[0], a, bk[0], bk[1]);
      mma_16816(s[1], a, bk[2], bk[3]);
    }
    const int key0 = first + tile * kKeys + warp_key0;
#pragma unroll
    for (int nb = 0; nb < 2; ++nb) {
#pragma unroll
      for (int e = 0; e < 4; ++e) {
        s[nb][e] *= p.scale_log2;
        if (key0 + 8 * nb + 2 * t + (e & 1) >= end) s[nb][e] = -INFINITY;
      }
    }
    softmax.update(s, o);
    uint32_t pa[4];
    probability_frag(pa, s, 0);
#pragma unroll
    for (int dc = 0; dc < kChunks / 2; ++dc) {
      uint32_t bv[4];
      load_v_frags<HD>(bv, v_tile, warp_key0, 2 * dc, lane);
      mma_16816(o[2 * dc], pa, bv[0], bv[1]);
      mma_16816(o[2 * dc + 1], pa, bv[2], bv[3]);
    }
  }

  // Merge the warps: each leaves (max, sum, O) per row; the stages become the O buffer.
  softmax.reduce_sums();
  cp_async_wait<0>();
  __syncthreads();
  float* merge = reinterpret_cast<float*>(stages);  // [warp][kHeads][HD]
  if (t == 0) {
    warp_max[warp][g] = softmax.row_max[0];
    warp_max[warp][g + 8] = softmax.row_max[1];
    warp_sum[warp][g] = softmax.row_sum[0];
    warp_sum[warp][g + 8] = softmax.row_sum[1];
  }
#pragma unroll
  for (int ob = 0; ob < kChunks; ++ob) {
    float* row = merge + (warp * kHeads + g) * HD + 8 * ob + 2 * t;
    *reinterpret_cast<float2*>(row) = make_float2(o[ob][0], o[ob][1]);
    *reinterpret_cast<float2*>(row + 8 * HD) = make_float2(o[ob][2], o[ob][3]);
  }
  __syncthreads();
  for (int i = threadIdx.x; i < heads * HD; i += kThreads) {
    const int r = i / HD, d = i % HD;
    float m = warp_max[0][r];  // finite: warp 0 always sees key `first`
#pragma unroll
    for (int w = 1; w < kWarps; ++w) m = fmaxf(m, warp_max[w][r]);
    float sum = 0, acc = 0;
#pragma unroll
    for (int w = 0; w < kWarps; ++w) {
      const float f = exp2f(warp_max[w][r] - m);
      sum += warp_sum[w][r] * f;
      acc += merge[(w * kHeads + r) * HD + d] * f;
    }
    if (p.chunks == 1) {
      p.out[int64_t(b) * p.out_stride + int64_t(head0 + r) * HD + d] = __float2half_rn(acc / sum);
    } else {
      float* part = p.partials + ((int64_t(b) * p.n_heads + head0 + r) * p.chunks + blockIdx.x) * (HD + 2);
      part[d] = acc;
      if (d == 0) {
        part[HD] = m;
        part[HD + 1] = sum;
      }
    }
  }
}

// Grid: batch · n_heads blocks of HD threads; merges the chunks that held any context.
template <int HD>
__global__ void __launch_bounds__(HD) attention_decode_combine_kernel(DecodeParams p) {
  pdl_prologue();
  const int b = blockIdx.x / p.n_heads, head = blockIdx.x % p.n_heads;
  const int len = min(p.seq_lens[b], p.max_len);
  // The chunks that held any of keys [window_begin, len).
  const int active_begin = window_begin(len, p.window) / p.chunk_len;
  const int active_end = len > 0 ? (len + p.chunk_len - 1) / p.chunk_len : 0;
  const float* part = p.partials + int64_t(blockIdx.x) * p.chunks * (HD + 2);
  float m = -INFINITY;
  for (int c = active_begin; c < active_end; ++c) m = fmaxf(m, part[c * (HD + 2) + HD]);
  float sum = 0, acc = 0;
  for (int c = active_begin; c < active_end; ++c) {
    const float* chunk = part + c * (HD + 2);
    const float f = exp2f(chunk[HD] - m);
    sum += chunk[HD + 1] * f;
    acc += chunk[threadIdx.x] * f;
  }
  p.out[int64_t(b) * p.out_stride + int64_t(head) * HD + threadIdx.x] =
      __float2half_rn(active_end > active_begin ? acc / sum : 0.0f);
}

template <int HD>
void launch_decode(const DecodeParams& p, int batch, cudaStream_t stream) {
  constexpr int smem = decode_smem_bytes<HD>();
  ops_detail::allow_shared_memory(reinterpret_cast<const void*>(&attention_decode_kernel<HD>), smem,
                                  "attention_decode");
  const dim3 grid(unsigned(p.chunks), unsigned(p.n_kv_heads * p.head_tiles), unsigned(batch));
  launch_pdl(attention_decode_kernel<HD>, grid, kThreads, smem, stream, p);
  if (p.chunks > 1) launch_pdl(attention_decode_combine_kernel<HD>, unsigned(batch * p.n_heads), HD, 0, stream, p);
}

}  // namespace

int64_t attention_decode_workspace_floats(int batch, int64_t max_len, const AttentionGeometry& g) {
  const char* op = "attention_decode_workspace_floats";
  ops_detail::check_geometry(op, g);
  ops_detail::require(batch >= 0, op, "batch must not be negative", batch);
  ops_detail::require(max_len > 0 && max_len < (int64_t(1) << 30), op, "max_len out of range", max_len);
  const DecodeSplit split = decode_split(batch, max_len, g);
  return split.chunks == 1 ? 0 : int64_t(batch) * g.n_heads * split.chunks * (g.head_dim + 2);
}

void attention_decode(const __half* qkv, int batch, const int32_t* seq_lens, const int32_t* block_tables,
                      int max_pages, int64_t max_len, const AttentionGeometry& g, KvLayer cache, float scale,
                      __half* out, float* workspace, cudaStream_t stream) {
  const char* op = "attention_decode";
  const int page_shift = ops_detail::check_geometry(op, g);
  using ops_detail::require;
  require(batch >= 0 && batch < 65536, op, "batch out of range", batch);
  require(max_len > 0 && max_len < (int64_t(1) << 30), op, "max_len out of range", max_len);
  require(max_pages > 0 && int64_t(max_pages) * g.page_size >= max_len, op,
          "block table rows must cover max_len positions", max_pages);
  require(ops_detail::aligned16(qkv) && ops_detail::aligned16(cache.keys) && ops_detail::aligned16(cache.values),
          op, "qkv and cache pointers must be 16-byte aligned", 0);
  if (batch == 0) return;
  const DecodeSplit split = decode_split(batch, max_len, g);
  require(split.chunks == 1 || workspace != nullptr, op, "a workspace is needed for this many chunks",
          split.chunks);
  const int group = g.n_heads / g.n_kv_heads;
  const DecodeParams p{qkv,
                       int64_t(g.n_heads + 2 * g.n_kv_heads) * g.head_dim,
                       seq_lens,
                       block_tables,
                       max_pages,
                       int(max_len),
                       cache.keys,
                       cache.values,
                       g.n_heads,
                       g.n_kv_heads,
                       group,
                       (group + kHeads - 1) / kHeads,
                       page_shift,
                       g.window,
                       scale * kLog2e,
                       split.chunk_len,
                       split.chunks,
                       out,
                       int64_t(g.n_heads) * g.head_dim,
                       workspace};
  require(int64_t(g.n_kv_heads) * p.head_tiles < 65536, op, "too many KV heads", g.n_kv_heads);
  switch (g.head_dim) {
    case 64: launch_decode<64>(p, batch, stream); break;
    case 128: launch_decode<128>(p, batch, stream); break;
    default: launch_decode<256>(p, batch, stream); break;
  }
  ops_detail::check_launch(op);
}

}  // namespace marlin::cuda
