// The grouped weight-tile GEMM (tiled_grouped_gemm.h): all experts of a sparse MLP step in one
// launch. Block (x, y) owns output rows [R·x, R·x + R) of chunk y (R = 128 or 256 weight rows,
// up to 32 or 64 grouped rows of one expert) and their whole K range, so every output value is
// written once, by one block, summed in K order: deterministic, no workspace. The expert and its
// rows come from the grouping kernel's device-side offsets (a binary search of chunk_begin), so
// the host sizes the grid by an upper bound and surplus blocks return at once.
//
// Each k-step stage holds the expert's 2 weight tiles of that k-step and the chunk's activations
// in the striped kernel's layout (tiled_gemm_kernel.cuh). All warps copy a stage (16-byte
// cp.async: weight bytes as they lie, activation rows gathered through the row index) into a
// ring, then each warp multiplies its 16-row strip by the chunk's tokens:
//  - narrow chunks: TiledGemm::mma_stage (mma.sync) on a 3-deep ring;
//  - wide chunks: each warpgroup's 64 rows by wgmma on a 4-deep ring, in half-stages (4 k-steps)
//    whose products run while the warps dequantize the next half-stage's weights.
// Rows of the chunk past the expert's count are not loaded and not stored; activation columns past
// K are zero-filled (the tiles' padding is zero weights, but stale shared memory might hold NaNs).
#pragma once

#include <iterator>

#include "backend/cuda/tiled_gemm_kernel.cuh"
#include "backend/cuda/tiled_grouped_gemm.h"

namespace marlin::cuda::tiled_detail {

template <int kCodec, int kGroupsPerTile, bool kAsym, int kChunk>
struct GroupedGemm {
  static constexpr int kPath = kChunk == kGroupedChunkWide ? kPathWgmma : kPathMma;
  static constexpr int kBlockRows = grouped_block_rows(kChunk);
  using Tile = TiledGemm<kCodec, kBlockRows / 64, 1, kChunk / 8, kGroupsPerTile, kAsym, kPath>;
  using C = typename Tile::C;
  static constexpr int kStages = kPath == kPathWgmma ? 4 : 3;
  static constexpr int kThreads = Tile::kWarps * 32;
  static constexpr int kSmemBytes = kStages * Tile::kStageBytes;
  static constexpr int kRowTiles = kBlockRows / 64;
  static constexpr int kTilePieces = Tile::kTileBytes / 16;
  static_assert(Tile::kTileBytes % 16 == 0 && Tile::kStageBytes % 128 == 0, "16-byte copies, 128-byte stages");
  static_assert(Tile::kWarps == kBlockRows / 16, "one 16-row strip per warp");
  static_assert(kChunk == kGroupedChunkNarrow || kChunk == kGroupedChunkWide, "a chunk width of the table");

  // Copies k-step kt of row block nb of the expert's tiles and of the chunk's activation rows.
  static __device__ __forceinline__ void load_stage(const GroupedGemmParams& p, const uint8_t* tiles, int nb, int kt,
                                                    uint8_t* stage, const int* src_row) {
    const uint32_t weights = smem_addr(stage);
    for (int i = threadIdx.x; i < kRowTiles * kTilePieces; i += kThreads) {
      const int j = i / kTilePieces, piece = i % kTilePieces;
      const uint8_t* from =
          tiles + (static_cast<long long>(nb * kRowTiles + j) * p.k_tiles + kt) * Tile::kTileBytes + piece * 16;
      cp_async16(weights + j * Tile::kTileBytes + piece * 16, from);
    }
    // Piece c: values 8·kc .. 8·kc + 7 of chunk row 8·tg + r, as TiledGemm::load_activation_pieces.
    const uint32_t act = smem_addr(stage + Tile::kWeightBytes);
    for (int c = threadIdx.x; c < Tile::kChunk * 16; c += kThreads) {
      const int kc = 2 * ((c >> 4) & 7) + (c & 1), r = (c >> 1) & 7, tg = c >> 7;
      const int row = src_row[8 * tg + r];
      if (row < 0) continue;
      const int col = kt * kTileCols + kc * 8;
      const bool inside_k = col < p.k;
      const __half* from = inside_k ? p.a + static_cast<long long>(row) * p.k + col : p.a;
      cp_async16_or_zero(act + tg * kActGroupBytes + kc * kCoreMatrixBytes + r * 16, from, inside_k);
    }
  }

  // The expert whose chunks hold chunk y: the last e with chunk_begin[e] ≤ y (experts without
  // rows have chunk_begin[e] = chunk_begin[e + 1] and are passed over).
  static __device__ __forceinline__ int expert_of(const GroupedGemmParams& p, int y) {
    int lo = 0, hi = p.n_experts - 1;
    while (lo < hi) {
      const int mid = (lo + hi + 1) / 2;
      if (p.chunk_begin[mid] <= y)
        lo = mid;
      else
        hi = mid - 1;
    }
    return lo;
  }

  // Ring: stage kt lives in slot kt % kStages; the copies of k-step kt + kStages - 1 go into the
  // slot every warp finished multiplying in the previous iteration (the barrier says so).
  static __device__ __forceinline__ void multiply_narrow(const GroupedGemmParams& p, const uint8_t* tiles, int nb,
                                                         uint8_t* smem, const int* src_row, const int (&tile_off)[1],
                                                         const int (&row_off)[1], int lane, typename Tile::Acc& acc) {
#pragma unroll
    for (int s = 0; s < kStages - 1; ++s) {
      if (s < p.k_tiles) load_stage(p, tiles, nb, s, smem + s * Tile::kStageBytes, src_row);
      cp_async_commit();
    }
    for (int kt = 0; kt < p.k_tiles; ++kt) {
      cp_async_wait<kStages - 2>();
      __syncthreads();
      const int next = kt + kStages - 1;
      if (next < p.k_tiles) load_stage(p, tiles, nb, next, smem + (next % kStages) * Tile::kStageBytes, src_row);
      cp_async_commit();
      Tile::mma_stage(smem + (kt % kStages) * Tile::kStageBytes, tile_off, row_off, lane, acc);
    }
    cp_async_wait<0>();
  }

  // Ring of 4: stage kt lives in slot kt % 4 and is copied two iterations ahead, into the slot of
  // stage kt − 2, whose products every warpgroup had waited for before the barrier (each waits for
  // all but its latest half-stage before dequantizing the next). Half h of a stage (k-steps
  // 4h .. 4h + 3) is dequantized into a[h] once the products that last read a[h] are done, and its
  // 4 products are committed as one group: they run while the other half is dequantized.
  static __device__ __forceinline__ void multiply_wide(const GroupedGemmParams& p, const uint8_t* tiles, int nb,
                                                       uint8_t* smem, const int* src_row, int tile_off, int row_off,
                                                       int lane, typename Tile::Acc& acc) {
    static_assert(kStages == 4, "copies two stages ahead into the slot of two stages back");
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ < 900
    __trap();  // wgmma and the async-proxy fence need sm_90; grouped_gemm_supported() keeps older GPUs away
#else
    float(&d)[Tile::kChunk / 2] = reinterpret_cast<float(&)[Tile::kChunk / 2]>(acc[0]);
    uint32_t a[2][4][4];
    for (int s = 0; s < 2; ++s) {
      if (s < p.k_tiles) load_stage(p, tiles, nb, s, smem + s * Tile::kStageBytes, src_row);
      cp_async_commit();
    }
    for (int kt = 0; kt < p.k_tiles; ++kt) {
      cp_async_wait<1>();
      fence_proxy_async_shared();  // wgmma reads what this thread's cp.async wrote
      __syncthreads();
      const int next = kt + 2;
      if (next < p.k_tiles) load_stage(p, tiles, nb, next, smem + (next % kStages) * Tile::kStageBytes, src_row);
      cp_async_commit();
      const uint8_t* stage = smem + (kt % kStages) * Tile::kStageBytes;
      typename Tile::Quant quant[kGroupsPerTile][2];
      Tile::load_quant(stage, tile_off, row_off, quant);
      const uint32_t act = smem_addr(stage + Tile::kWeightBytes);
#pragma unroll
      for (int h = 0; h < 2; ++h) {
        wgmma_wait<1>();  // the group that read a[h] (this stage's other half, or the last stage's) is done
        fence_registers(a[h]);
        fence_registers(d);
        const typename Tile::Codes codes = Tile::load_codes(stage, tile_off, row_off, h, lane);
#pragma unroll
        for (int i = 0; i < 4; ++i) {
          const int ks = 4 * h + i, group = ks * kGroupsPerTile / 8;
          C::dequant(codes, i, quant[group][0], quant[group][1], a[h][i]);
        }
        fence_registers(a[h]);
        fence_registers(d);
        wgmma_fence();
#pragma unroll
        for (int i = 0; i < 4; ++i)
          wgmma_f16<Tile::kChunk>(d, a[h][i], wgmma_desc(act + (4 * h + i) * 2 * kCoreMatrixBytes));
        wgmma_commit();
      }
    }
    wgmma_wait<0>();
    fence_registers(a[0]);
    fence_registers(a[1]);
    fence_registers(d);
    cp_async_wait<0>();
#endif
  }

  static __device__ void run(const GroupedGemmParams& p, uint8_t* smem, int* src_row, int* dst_row) {
    const int y = blockIdx.y, nb = blockIdx.x;
    if (y >= p.chunk_begin[p.n_experts]) return;
    const int e = expert_of(p, y);
    const int first = p.expert_begin[e] + (y - p.chunk_begin[e]) * Tile::kChunk;
    const int rows = min(Tile::kChunk, p.expert_begin[e + 1] - first);
    if (threadIdx.x < Tile::kChunk) {
      const int i = first + threadIdx.x;
      const bool valid = int(threadIdx.x) < rows;
      src_row[threadIdx.x] = !valid ? -1 : p.a_div > 0 ? p.order[i] / p.a_div : i;
      dst_row[threadIdx.x] = !valid ? -1 : p.scatter ? p.order[i] : i;
    }
    __syncthreads();
    const uint8_t* tiles = p.expert_tiles[e];

    const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
    const int tile_off[1] = {(warp / 4) * Tile::kTileBytes};
    const int row_off[1] = {(warp % 4) * 16 + lane / 4};
    typename Tile::Acc acc;
#pragma unroll
    for (int fm = 0; fm < Tile::kChunk / 8; ++fm)
#pragma unroll
      for (int i = 0; i < 4; ++i) acc[0][fm][i] = 0.0f;

    if constexpr (kPath == kPathMma) multiply_narrow(p, tiles, nb, smem, src_row, tile_off, row_off, lane, acc);
    if constexpr (kPath == kPathWgmma) multiply_wide(p, tiles, nb, smem, src_row, tile_off[0], row_off[0], lane, acc);

    // Accumulator fm holds rows n, n + 8 of tokens 8·fm + 2t, 8·fm + 2t + 1 (store_c's layout).
    const int g = lane / 4, t = lane % 4;
    const int n = nb * kBlockRows + warp * 16 + g;
    float top = 1.0f, bottom = 1.0f;
    if constexpr (C::kRowScales) {
      const float* row_scales = reinterpret_cast<const float*>(tiles + p.tiles_bytes);
      top = row_scales[n];
      bottom = row_scales[n + 8];
    }
#pragma unroll
    for (int fm = 0; fm < Tile::kChunk / 8; ++fm)
#pragma unroll
      for (int j = 0; j < 2; ++j) {
        const int tok = fm * 8 + 2 * t + j;
        if (tok >= rows) continue;
        __half* c = p.c + static_cast<long long>(dst_row[tok]) * p.n + n;
        c[0] = __float2half_rn(scale_output<C::kRowScales>(acc[0][fm][j], top));
        c[8] = __float2half_rn(scale_output<C::kRowScales>(acc[0][fm][2 + j], bottom));
      }
  }
};

template <int kCodec, int kGroupsPerTile, bool kAsym, int kChunk>
__global__ void __launch_bounds__(GroupedGemm<kCodec, kGroupsPerTile, kAsym, kChunk>::kThreads)
    grouped_gemm_kernel(const __grid_constant__ GroupedGemmParams p) {
  extern __shared__ __align__(128) uint8_t smem[];
  __shared__ int src_row[kChunk], dst_row[kChunk];
  grid_dependency_wait();  // the grouping and the activations come from earlier kernels
  allow_dependent_launch();
  GroupedGemm<kCodec, kGroupsPerTile, kAsym, kChunk>::run(p, smem, src_row, dst_row);
}

template <int kCodec, int kGroupsPerTile, bool kAsym, int kChunk>
cudaError_t launch_grouped_gemm_variant(const GroupedGemmParams& params, int row_blocks, int chunks, bool pdl,
                                        cudaStream_t stream) {
  using G = GroupedGemm<kCodec, kGroupsPerTile, kAsym, kChunk>;
  auto* kernel = grouped_gemm_kernel<kCodec, kGroupsPerTile, kAsym, kChunk>;
  cudaError_t err = cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, G::kSmemBytes);
  if (err != cudaSuccess) return err;
  return launch_overlapping(pdl, kernel, dim3(row_blocks, chunks), dim3(G::kThreads), size_t(G::kSmemBytes), stream,
                            params);
}

}  // namespace marlin::cuda::tiled_detail

// The grouped table from an X-macro list X(codec, groups_per_tile, asymmetric, chunk).
#define MARLIN_GROUPED_GEMM_CONFIG_ROW(CODEC, G, Z, CHUNK) GroupedGemmConfig{CODEC, G, Z, CHUNK},
#define MARLIN_GROUPED_GEMM_LAUNCH_CASE(CODEC, G, Z, CHUNK) \
  if (index == i++) return launch_grouped_gemm_variant<CODEC, G, Z, CHUNK>(params, row_blocks, chunks, pdl, stream);

#define MARLIN_DEFINE_GROUPED_GEMM_TABLE(LIST)                                                              \
  namespace {                                                                                              \
  constexpr GroupedGemmConfig grouped_configs[] = {LIST(MARLIN_GROUPED_GEMM_CONFIG_ROW)};                  \
  }                                                                                                        \
  const GroupedGemmConfig* grouped_gemm_configs(int* count) {                                              \
    *count = int(std::size(grouped_configs));                                                              \
    return grouped_configs;                                                                                \
  }                                                                                                        \
  cudaError_t launch_grouped_gemm(int index, const GroupedGemmParams& params, int row_blocks, int chunks,   \
                                  bool pdl, cudaStream_t stream) {                                         \
    int i = 0;                                                                                             \
    LIST(MARLIN_GROUPED_GEMM_LAUNCH_CASE)                                                                  \
    return cudaErrorInvalidValue;                                                                          \
  }
