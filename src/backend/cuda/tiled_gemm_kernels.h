// Internal interface between the weight-tile GEMM's host code (tiled_gemm.cpp, the bench) and its
// kernel instantiations (gemm_variants_*.cu, gemv_variants_*.cu). Plain C++17: no device code here.
#pragma once

#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <cstdint>

namespace marlin::cuda::tiled_detail {

// Tile codecs, numbered as marlin::TileCodec (backend/weight_tiles.h).
constexpr int kCodecInt4 = 0;
constexpr int kCodecInt8 = 1;
constexpr int kCodecFp8 = 2;
constexpr int kCodecFp4 = 3;
constexpr int kCodecInt2 = 4;
constexpr int kCodecInt3 = 5;

// Bytes of a tile's codes for a codec (64 × 128 codes).
constexpr int tile_code_bytes(int codec) {
  return codec == kCodecInt8 || codec == kCodecFp8 ? 8192 : codec == kCodecInt2 ? 2048 : codec == kCodecInt3 ? 3072 : 4096;
}

// One launch's problem, as the kernel reads it.
struct GemmParams {
  const uint8_t* tiles = nullptr;  // weight tiles (backend/weight_tiles.h)
  const __half* a = nullptr;       // m × k, row-major
  __half* c = nullptr;             // m × n, row-major
  float* partials = nullptr;       // split-K partial sums: gridDim.x × 2 slots of block_rows × chunk_tokens
  int* counters = nullptr;         // one per output tile (n / block_rows × m_chunks), zero between launches
  int m = 0, n = 0, k = 0;
  int m_chunks = 0;        // ceil(m / chunk_tokens)
  int k_tiles = 0;         // ceil(k / 128): tiles per row block
  long long items = 0;     // n / block_rows × m_chunks × k_tiles work items, striped over the blocks
  int stages = 0;          // depth of the shared-memory ring
  int weights_evict_first = 1;  // weights are read once (m_chunks == 1): stream them past L2
  const float* row_scales = nullptr;  // fp4 tiles: each output row's multiplier (weight_tiles.h)
};

// How a variant multiplies: not at all (a diagnostic that only streams the operands), with
// mma.sync m16n8k16 per warp, or with wgmma m64nNk16 per warpgroup.
constexpr int kPathStream = 0;
constexpr int kPathMma = 1;
constexpr int kPathWgmma = 2;

// A variant of the striped kernel: block_rows = 64·row_tiles weight rows per block, each consumer
// warp owning frags_n strips of 16 rows; chunk_tokens = 8·frags_m tokens per pass; codec, groups
// per 128-column tile and zero points as in WeightTileShape; path: kPath*.
struct KernelConfig {
  int codec;
  int row_tiles;
  int frags_n;
  int frags_m;
  int groups_per_tile;
  bool asymmetric;
  int path;

  int block_rows() const { return 64 * row_tiles; }
  int chunk_tokens() const { return 8 * frags_m; }
  int consumer_warps() const { return 4 * row_tiles / frags_n; }
  int tile_bytes() const { return groups_per_tile * (128 + (asymmetric ? 64 : 0)) + tile_code_bytes(codec); }
  int stage_bytes() const { return row_tiles * tile_bytes() + chunk_tokens() * 256; }  // + activations
};

// The few-token kernel (tiled_gemv_kernel.cuh): rows across SMs, K split inside the block.
struct GemvParams {
  const uint8_t* tiles = nullptr;
  const __half* a = nullptr;
  __half* c = nullptr;
  int m = 0, n = 0, k = 0;
  int k_tiles = 0;           // ceil(k / 128)
  int strips_per_block = 0;  // 16-row strips per block
  int strip_split = 0;       // warp groups, each owning every strip_split-th strip of the block
  int k_split = 0;           // warps per group, each owning 1/k_split of K
  const float* row_scales = nullptr;  // as GemmParams
};

struct GemvConfig {
  int codec;
  int warps;
  int strips_per_warp;
  int frags_m;  // tokens ≤ 8·frags_m
  int depth;    // half-k-tiles each lane loads ahead (more for codecs of few bytes per lane)
  int groups_per_tile;
  bool asymmetric;

  int smem_bytes() const { return warps * 32 * strips_per_warp * frags_m * 16; }
};

// Whether variant `config` (a KernelConfig or GemvConfig) multiplies weights of `shape`'s format (a
// WeightTileShape, backend/weight_tiles.h, which nvcc's C++17 cannot include).
template <typename Config, typename Shape>
bool same_format(const Config& config, const Shape& shape) {
  return config.codec == int(shape.codec) && config.groups_per_tile == shape.groups_per_tile &&
         config.asymmetric == shape.asymmetric;
}

// Every compiled variant (all codecs), and the number of them.
const KernelConfig* kernel_configs(int* count);
const GemvConfig* gemv_configs(int* count);

// Launches striped variant `config` (an index into kernel_configs) on `grid` blocks with `smem`
// bytes of dynamic shared memory, as a programmatic dependent launch when `pdl` (the kernel's
// weight prefetch then overlaps the previous kernel on the stream). Returns the launch's error.
cudaError_t launch_gemm(int config, const GemmParams& params, int grid, int smem, bool pdl, cudaStream_t stream);

// Launches GEMV variant `config` (an index into gemv_configs) on `grid` blocks.
cudaError_t launch_gemv(int config, const GemvParams& params, int grid, bool pdl, cudaStream_t stream);

// Dynamic shared memory a striped variant needs for `stages` stages.
inline int smem_bytes(const KernelConfig& cfg, int stages) { return stages * (cfg.stage_bytes() + 16) + 16; }

// The variants of one translation unit (gemm_variants_<codec>.cu, gemv_variants_<codec>.cu, made
// by tiled_variant_table.cuh); the registry (tiled_gemm_variants.cpp) numbers them one table after
// another.
struct GemmVariantTable {
  const KernelConfig* configs;
  int count;
  cudaError_t (*launch)(int index, const GemmParams&, int grid, int smem, bool pdl, cudaStream_t);
};
struct GemvVariantTable {
  const GemvConfig* configs;
  int count;
  cudaError_t (*launch)(int index, const GemvParams&, int grid, bool pdl, cudaStream_t);
};
GemmVariantTable gemm_variants_int4();
GemmVariantTable gemm_variants_int8();
GemmVariantTable gemm_variants_fp4();
GemmVariantTable gemm_variants_int2();
GemmVariantTable gemm_variants_int3();
GemvVariantTable gemv_variants_int4();
GemvVariantTable gemv_variants_int8();
GemvVariantTable gemv_variants_fp4();
GemvVariantTable gemv_variants_int2();
GemvVariantTable gemv_variants_int3();

}  // namespace marlin::cuda::tiled_detail
