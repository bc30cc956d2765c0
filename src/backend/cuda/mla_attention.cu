// The latent core of multi-head latent attention (ops.h, mla_attention_latent): every head reads
// the same cached rows [c_kv | k_pe], so the heads are query rows of one shared key head (MQA with
// a 576-wide key whose first 512 values are also the value). A block takes 16 query rows (one
// m16 tile: the heads of a decode token, or consecutive (token, head) pairs of a prompt) and one
// chunk of the context, in tiles of 64 cached rows loaded once (cp.async, double buffered) and
// used both as K and as V:
//   S = Q·Kᵀ: warp w scores keys 16w..16w+15 over the whole row width (mma m16n8k16, fp32);
//   the warps exchange row maxima and sums through shared memory, so all hold the same online
//   softmax state, and write P (fp16) to shared memory;
//   O += P·V: warp w owns a quarter of the latent columns for all 64 keys (no merge at the end).
// A decode step splits long contexts into chunks (flash-decoding); a combine kernel merges them.
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

constexpr int kRows = 16;  // query rows per block
constexpr int kKeys = 64;  // cached rows per tile, 16 per warp for the scores
constexpr int kWarps = 4;
constexpr int kThreads = 32 * kWarps;
constexpr int kPairStride = kKeys / 2 + 4;  // P row stride in half2 pairs (padded: no bank conflicts)
constexpr int kMaxWidth = 768;              // the widest row whose tiles fit in an H100's shared memory
// Enough blocks for a few waves on any current GPU: a decode step's split aims for this many.
constexpr int64_t kTargetBlocks = 1024;
constexpr int64_t kMinTilesPerChunk = 2;

struct LatentParams {
  const __half* q_abs;
  int rows_per_seq;
  const int32_t* seq_lens;
  const int32_t* block_tables;
  int max_pages, max_len;
  const __half* cache;
  int n_heads, width, padded_width, kv_lora, page_shift;
  float scale_log2;  // scale · log2(e)
  int chunk_len, chunks;
  __half* o_lat;
  float* partials;  // [batch · rows_per_seq · n_heads][chunks][kv_lora + 2]: O (unnormalized), max, sum
};

// Offset in halves of 16-byte chunk `chunk` of row `row` in a tile of rows of `chunks_per_row`
// chunks (a multiple of 8), XOR-swizzled by row so that ldmatrix reads 8 rows without conflicts.
__device__ __forceinline__ int swizzle(int row, int chunk, int chunks_per_row) {
  return (row * chunks_per_row + (chunk ^ (row & 7))) << 3;
}

// The first position after the context of query row i (token i / n_heads) of sequence b.
__device__ __forceinline__ int row_end(const LatentParams& p, int b, int i) {
  const int len = min(p.seq_lens[b], p.max_len);
  return len - p.rows_per_seq + 1 + i / p.n_heads;
}

constexpr int smem_bytes(int padded_width) {
  return (kRows + 2 * kKeys) * padded_width * int(sizeof(__half)) + kRows * kPairStride * 4;
}

// Grid: (chunks, query tiles, batch). VP: kv_lora rounded up to a multiple of 64 (each warp's
// quarter of the output columns is a whole number of 16-column ldmatrix loads).
template <int VP>
__global__ void __launch_bounds__(kThreads) mla_latent_kernel(LatentParams p) {
  pdl_prologue();
  constexpr int kWarpCols = VP / kWarps;
  constexpr int kColBlocks = kWarpCols / 8;  // 8-column mma output blocks per warp
  extern __shared__ __align__(16) __half smem[];
  __shared__ float warp_max[kWarps][kRows], warp_sum[kWarps][kRows];
  const int pw = p.padded_width, row_chunks = pw / 8;
  __half* q_tile = smem;
  __half* stages = q_tile + kRows * pw;  // two tiles of kKeys rows
  uint32_t* p_pairs = reinterpret_cast<uint32_t*>(stages + 2 * kKeys * pw);

  const int b = blockIdx.z, tile_row0 = blockIdx.y * kRows;
  const int rows_total = p.rows_per_seq * p.n_heads;
  const int tile_rows = min(kRows, rows_total - tile_row0);
  const int64_t seq_row0 = int64_t(b) * rows_total;  // this sequence's first q_abs / o_lat row
  const int chunk0 = blockIdx.x * p.chunk_len;
  const int tile_end = row_end(p, b, tile_row0 + tile_rows - 1);  // the tile's last row sees the most
  const int first = chunk0;
  const int end = min(chunk0 + p.chunk_len, tile_end);
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32, g = lane / 4, t = lane % 4;
  if (first >= end) {
    if (p.chunks == 1)  // an empty context: zeros (with chunks the combine kernel writes them)
      for (int i = threadIdx.x; i < tile_rows * p.kv_lora; i += kThreads)
        p.o_lat[(seq_row0 + tile_row0) * p.kv_lora + i] = __float2half(0.0f);
    return;
  }
  const int tiles = (end - first + kKeys - 1) / kKeys;
  const int32_t* pages = p.block_tables + int64_t(b) * p.max_pages;
  const int width_chunks = p.width / 8;
  auto load_tile = [&](int tile) {
    __half* dst = stages + (tile % 2) * kKeys * pw;
    for (int i = threadIdx.x; i < kKeys * row_chunks; i += kThreads) {
      const int r = i / row_chunks, c = i % row_chunks, pos = first + tile * kKeys + r;
      const bool valid = pos < end && c < width_chunks;
      const __half* src = p.cache;
      if (valid) {
        const int64_t slot = int64_t(pages[pos >> p.page_shift]) << p.page_shift | (pos & ((1 << p.page_shift) - 1));
        src = p.cache + slot * p.width + 8 * c;
      }
      cp_async16_zfill(smem_addr(dst + swizzle(r, c, row_chunks)), src, valid);
    }
  };
  // The query rows (zeros past the tile's rows and the row width) travel with tile 0.
  for (int i = threadIdx.x; i < kRows * row_chunks; i += kThreads) {
    const int r = i / row_chunks, c = i % row_chunks;
    const bool valid = r < tile_rows && c < width_chunks;
    const __half* src = valid ? p.q_abs + (seq_row0 + tile_row0 + r) * p.width + 8 * c : p.q_abs;
    cp_async16_zfill(smem_addr(q_tile + swizzle(r, c, row_chunks)), src, valid);
  }
  load_tile(0);
  cp_async_commit();

  // Rows g and g + 8 of the tile: the keys each may see (rows past the tile see none).
  const int limit[2] = {g < tile_rows ? min(row_end(p, b, tile_row0 + g), end) : 0,
                        g + 8 < tile_rows ? min(row_end(p, b, tile_row0 + g + 8), end) : 0};
  float row_max[2] = {-INFINITY, -INFINITY}, row_sum[2] = {0.0f, 0.0f};
  float o[kColBlocks][4] = {};
  const int col0 = warp * kWarpCols;  // this warp's output columns

  for (int tile = 0; tile < tiles; ++tile) {
    cp_async_wait<0>();
    __syncthreads();  // tile `tile` has landed, and every warp is done with the stage refilled next
    if (tile + 1 < tiles) load_tile(tile + 1);
    cp_async_commit();
    const __half* kv = stages + (tile % 2) * kKeys * pw;

    float s[2][4] = {};
    const int m = lane / 8;
    for (int ks = 0; ks < pw / 16; ++ks) {
      uint32_t a[4], bk[4];
      ldmatrix_x4(a, smem_addr(q_tile + swizzle(lane % 16, 2 * ks + lane / 16, row_chunks)));
      ldmatrix_x4(bk, smem_addr(kv + swizzle(16 * warp + lane % 8 + 8 * (m / 2), 2 * ks + m % 2, row_chunks)));
      mma_16816(s[0], a, bk[0], bk[1]);
      mma_16816(s[1], a, bk[2], bk[3]);
    }
    const int key0 = first + tile * kKeys + 16 * warp;
    float tile_max[2] = {-INFINITY, -INFINITY};
#pragma unroll
    for (int nb = 0; nb < 2; ++nb) {
#pragma unroll
      for (int e = 0; e < 4; ++e) {
        const int r = e / 2;
        s[nb][e] = key0 + 8 * nb + 2 * t + (e & 1) < limit[r] ? s[nb][e] * p.scale_log2 : -INFINITY;
        tile_max[r] = fmaxf(tile_max[r], s[nb][e]);
      }
    }
#pragma unroll
    for (int r = 0; r < 2; ++r) {
      tile_max[r] = fmaxf(tile_max[r], __shfl_xor_sync(0xffffffffu, tile_max[r], 1));
      tile_max[r] = fmaxf(tile_max[r], __shfl_xor_sync(0xffffffffu, tile_max[r], 2));
      if (t == 0) warp_max[warp][g + 8 * r] = tile_max[r];
    }
    __syncthreads();  // every warp's maxima are in
    float alpha[2], added[2] = {0.0f, 0.0f};
#pragma unroll
    for (int r = 0; r < 2; ++r) {
      float mx = row_max[r];
#pragma unroll
      for (int w = 0; w < kWarps; ++w) mx = fmaxf(mx, warp_max[w][g + 8 * r]);
      const float base = mx == -INFINITY ? 0.0f : mx;  // a row with every key masked so far
      alpha[r] = exp2f(row_max[r] - base);
      row_max[r] = mx;
#pragma unroll
      for (int nb = 0; nb < 2; ++nb) {
        s[nb][2 * r] = exp2f(s[nb][2 * r] - base);
        s[nb][2 * r + 1] = exp2f(s[nb][2 * r + 1] - base);
        added[r] += s[nb][2 * r] + s[nb][2 * r + 1];
      }
      added[r] += __shfl_xor_sync(0xffffffffu, added[r], 1);
      added[r] += __shfl_xor_sync(0xffffffffu, added[r], 2);
      if (t == 0) warp_sum[warp][g + 8 * r] = added[r];
    }
    // P as the A operand of P·V: (row, keys 2k, 2k+1) as one half2 at pair k.
#pragma unroll
    for (int nb = 0; nb < 2; ++nb) {
      const int pair = 8 * warp + 4 * nb + t;
      p_pairs[g * kPairStride + pair] = pack_half2(s[nb][0], s[nb][1]);
      p_pairs[(g + 8) * kPairStride + pair] = pack_half2(s[nb][2], s[nb][3]);
    }
    __syncthreads();  // P and the sums are in
#pragma unroll
    for (int r = 0; r < 2; ++r) {
      float sum = 0;
#pragma unroll
      for (int w = 0; w < kWarps; ++w) sum += warp_sum[w][g + 8 * r];
      row_sum[r] = row_sum[r] * alpha[r] + sum;
    }
#pragma unroll
    for (int ob = 0; ob < kColBlocks; ++ob) {
      o[ob][0] *= alpha[0];
      o[ob][1] *= alpha[0];
      o[ob][2] *= alpha[1];
      o[ob][3] *= alpha[1];
    }
#pragma unroll
    for (int kk = 0; kk < kKeys / 16; ++kk) {
      uint32_t a[4];
      a[0] = p_pairs[g * kPairStride + 8 * kk + t];
      a[1] = p_pairs[(g + 8) * kPairStride + 8 * kk + t];
      a[2] = p_pairs[g * kPairStride + 8 * kk + 4 + t];
      a[3] = p_pairs[(g + 8) * kPairStride + 8 * kk + 4 + t];
#pragma unroll
      for (int dc = 0; dc < kColBlocks / 2; ++dc) {
        uint32_t bv[4];
        const int chunk = col0 / 8 + 2 * dc + m / 2;
        ldmatrix_x4_trans(bv, smem_addr(kv + swizzle(16 * kk + lane % 8 + 8 * (m % 2), chunk, row_chunks)));
        mma_16816(o[2 * dc], a, bv[0], bv[1]);
        mma_16816(o[2 * dc + 1], a, bv[2], bv[3]);
      }
    }
  }
  cp_async_wait<0>();

  // Rows g and g + 8, columns col0 + 8·ob + 2t and the next.
#pragma unroll
  for (int r = 0; r < 2; ++r) {
    const int row = g + 8 * r;
    if (row >= tile_rows) continue;
    const int64_t out_row = seq_row0 + tile_row0 + row;
    if (p.chunks == 1) {
      const float inv = row_sum[r] > 0 ? 1.0f / row_sum[r] : 0.0f;
#pragma unroll
      for (int ob = 0; ob < kColBlocks; ++ob) {
        const int col = col0 + 8 * ob + 2 * t;
        if (col < p.kv_lora)
          *reinterpret_cast<uint32_t*>(p.o_lat + out_row * p.kv_lora + col) =
              pack_half2(o[ob][2 * r] * inv, o[ob][2 * r + 1] * inv);
      }
    } else {
      float* part = p.partials + (out_row * p.chunks + blockIdx.x) * (p.kv_lora + 2);
#pragma unroll
      for (int ob = 0; ob < kColBlocks; ++ob) {
        const int col = col0 + 8 * ob + 2 * t;
        if (col < p.kv_lora) *reinterpret_cast<float2*>(part + col) = make_float2(o[ob][2 * r], o[ob][2 * r + 1]);
      }
      if (warp == 0 && t == 0) {
        part[p.kv_lora] = row_max[r];
        part[p.kv_lora + 1] = row_sum[r];
      }
    }
  }
}

// Grid: one block per query row of the step; merges the chunks that held any of its context.
__global__ void __launch_bounds__(kThreads) mla_latent_combine_kernel(LatentParams p) {
  pdl_prologue();
  const int rows_total = p.rows_per_seq * p.n_heads;
  const int b = blockIdx.x / rows_total, i = blockIdx.x % rows_total;
  const int end = row_end(p, b, i);
  const int active = end > 0 ? (end + p.chunk_len - 1) / p.chunk_len : 0;
  const int stride = p.kv_lora + 2;
  const float* part = p.partials + int64_t(blockIdx.x) * p.chunks * stride;
  float m = -INFINITY;
  for (int c = 0; c < active; ++c) m = fmaxf(m, part[c * stride + p.kv_lora]);
  const float base = m == -INFINITY ? 0.0f : m;
  for (int d = threadIdx.x; d < p.kv_lora; d += kThreads) {
    float sum = 0, acc = 0;
    for (int c = 0; c < active; ++c) {
      const float* chunk = part + c * stride;
      const float f = exp2f(chunk[p.kv_lora] - base);
      sum += chunk[p.kv_lora + 1] * f;
      acc += chunk[d] * f;
    }
    p.o_lat[int64_t(blockIdx.x) * p.kv_lora + d] = __float2half_rn(sum > 0 ? acc / sum : 0.0f);
  }
}

struct LatentSplit {
  int chunk_len;  // a multiple of kKeys
  int chunks;
};

// A prompt runs in one chunk (its query tiles fill the GPU); a decode step is split by the launch
// shape alone, never by the current lengths.
LatentSplit latent_split(int batch, int rows_per_seq, int64_t max_len, const MlaGeometry& g) {
  const int64_t tiles = std::max<int64_t>(1, (max_len + kKeys - 1) / kKeys);
  if (rows_per_seq > 1) return {int(tiles * kKeys), 1};
  const int64_t blocks_per_chunk = int64_t(std::max(batch, 1)) * ((g.n_heads + kRows - 1) / kRows);
  int64_t chunks = std::clamp<int64_t>((kTargetBlocks + blocks_per_chunk - 1) / blocks_per_chunk, 1,
                                       std::max<int64_t>(1, tiles / kMinTilesPerChunk));
  const int64_t tiles_per_chunk = (tiles + chunks - 1) / chunks;
  chunks = (tiles + tiles_per_chunk - 1) / tiles_per_chunk;
  return {int(tiles_per_chunk * kKeys), int(chunks)};
}

void check_latent_shape(const char* op, int batch, int rows_per_seq, int64_t max_len, const MlaGeometry& g) {
  using ops_detail::require;
  require(g.n_heads > 0 && g.n_heads < 65536, op, "n_heads out of range", g.n_heads);
  require(g.kv_lora > 0 && g.kv_lora % 8 == 0 && g.kv_lora <= 512, op,
          "kv_lora must be a positive multiple of 8, at most 512", g.kv_lora);
  require(g.qk_rope > 0 && g.qk_rope % 8 == 0, op, "qk_rope must be a positive multiple of 8", g.qk_rope);
  require(g.row_width() <= kMaxWidth, op, "kv_lora + qk_rope must be at most 768", g.row_width());
  require(g.page_size > 0 && (g.page_size & (g.page_size - 1)) == 0, op, "page_size must be a power of two",
          g.page_size);
  require(batch >= 0 && batch < 65536, op, "batch out of range", batch);
  require(rows_per_seq > 0 && int64_t(rows_per_seq) * g.n_heads < int64_t(kRows) * 65535, op,
          "rows per sequence out of range", rows_per_seq);
  require(rows_per_seq == 1 || batch <= 1, op, "several sequences take one row each", batch);
  require(max_len > 0 && max_len < (int64_t(1) << 30), op, "max_len out of range", max_len);
}

template <int VP>
void launch_latent(const LatentParams& p, int batch, cudaStream_t stream) {
  const int smem = smem_bytes(p.padded_width);
  ops_detail::allow_shared_memory(reinterpret_cast<const void*>(&mla_latent_kernel<VP>), smem, "mla_attention_latent");
  const unsigned query_tiles = unsigned((p.rows_per_seq * p.n_heads + kRows - 1) / kRows);
  const dim3 grid(unsigned(p.chunks), query_tiles, unsigned(batch));
  launch_pdl(mla_latent_kernel<VP>, grid, kThreads, size_t(smem), stream, p);
  if (p.chunks > 1)
    launch_pdl(mla_latent_combine_kernel, unsigned(batch * p.rows_per_seq * p.n_heads), kThreads, 0, stream, p);
}

}  // namespace

int64_t mla_attention_workspace_floats(int batch, int rows_per_seq, int64_t max_len, const MlaGeometry& g) {
  const char* op = "mla_attention_workspace_floats";
  check_latent_shape(op, batch, rows_per_seq, max_len, g);
  const LatentSplit split = latent_split(batch, rows_per_seq, max_len, g);
  return split.chunks == 1 ? 0 : int64_t(batch) * rows_per_seq * g.n_heads * split.chunks * (g.kv_lora + 2);
}

void mla_attention_latent(const __half* q_abs, int batch, int rows_per_seq, const int32_t* seq_lens,
                          const int32_t* block_tables, int max_pages, int64_t max_len, const MlaGeometry& g,
                          const __half* cache, float scale, __half* o_lat, float* workspace, cudaStream_t stream) {
  const char* op = "mla_attention_latent";
  using ops_detail::require;
  check_latent_shape(op, batch, rows_per_seq, max_len, g);
  require(max_pages > 0 && int64_t(max_pages) * g.page_size >= max_len, op,
          "block table rows must cover max_len positions", max_pages);
  require(ops_detail::aligned16(q_abs) && ops_detail::aligned16(cache) && ops_detail::aligned16(o_lat), op,
          "q_abs, cache and o_lat pointers must be 16-byte aligned", 0);
  if (batch == 0) return;
  const LatentSplit split = latent_split(batch, rows_per_seq, max_len, g);
  require(split.chunks == 1 || workspace != nullptr, op, "a workspace is needed for this many chunks", split.chunks);
  int page_shift = 0;
  while ((1 << page_shift) < g.page_size) ++page_shift;
  const int width = g.row_width();
  // kv_lora rounded up to the kernel's output width; the rows are padded to a multiple of 64
  // (whole swizzle groups) that also covers it.
  const int vp = g.kv_lora <= 64 ? 64 : g.kv_lora <= 128 ? 128 : g.kv_lora <= 256 ? 256 : 512;
  const LatentParams p{q_abs,
                       rows_per_seq,
                       seq_lens,
                       block_tables,
                       max_pages,
                       int(max_len),
                       cache,
                       g.n_heads,
                       width,
                       std::max((width + 63) / 64 * 64, vp),
                       g.kv_lora,
                       page_shift,
                       scale * kLog2e,
                       split.chunk_len,
                       split.chunks,
                       o_lat,
                       workspace};
  if (vp == 64) {
    launch_latent<64>(p, batch, stream);
  } else if (vp == 128) {
    launch_latent<128>(p, batch, stream);
  } else if (vp == 256) {
    launch_latent<256>(p, batch, stream);
  } else {
    launch_latent<512>(p, batch, stream);
  }
  ops_detail::check_launch(op);
}

}  // namespace marlin::cuda
