// Internal interface between the int4 GEMM's host code (int4_gemm.cpp, the bench) and its kernel
// instantiations (int4_gemm_kernels.cu). Plain C++: no device code here.
#pragma once

#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <cstdint>

namespace marlin::cuda::int4_detail {

// One launch's problem, as the kernel reads it.
struct GemmParams {
  const uint8_t* tiles = nullptr;  // int4 tiles (backend/int4_tiles.h)
  const __half* a = nullptr;       // m × k, row-major
  __half* c = nullptr;             // m × n, row-major
  float* partials = nullptr;       // split-K partial sums: gridDim.x × 2 slots of block_rows × chunk_tokens
  int* counters = nullptr;         // one per output tile (n / block_rows × m_chunks), zero between launches
  int m = 0, n = 0, k = 0;
  int m_chunks = 0;        // ceil(m / chunk_tokens)
  int k_tiles = 0;         // k / 128
  long long items = 0;     // n / block_rows × m_chunks × k_tiles work items, striped over the blocks
  int stages = 0;          // depth of the shared-memory ring
  int weights_evict_first = 1;  // weights are read once (m_chunks == 1): stream them past L2
};

// How a variant multiplies: not at all (a diagnostic that only streams the operands), with
// mma.sync m16n8k16 per warp, or with wgmma m64nNk16 per warpgroup.
constexpr int kPathStream = 0;
constexpr int kPathMma = 1;
constexpr int kPathWgmma = 2;

// A kernel variant: block_rows = 64·row_tiles weight rows per block, each consumer warp owning
// frags_n strips of 16 rows; chunk_tokens = 8·frags_m tokens per pass; groups per 128-column tile
// and zero points as in Int4TileShape; path: kPath*.
struct KernelConfig {
  int row_tiles;
  int frags_n;
  int frags_m;
  int groups_per_tile;
  bool asymmetric;
  int path;

  int block_rows() const { return 64 * row_tiles; }
  int chunk_tokens() const { return 8 * frags_m; }
  int consumer_warps() const { return 4 * row_tiles / frags_n; }
  int tile_bytes() const { return groups_per_tile * (128 + (asymmetric ? 64 : 0)) + 4096; }
  int stage_bytes() const;  // weights of one 128-column step plus the activations it multiplies
};

// Every compiled variant, and the number of them.
const KernelConfig* kernel_configs(int* count);

// Launches variant `config` (an index into kernel_configs) on `grid` blocks with `smem` bytes of
// dynamic shared memory, as a programmatic dependent launch when `pdl` (the kernel's weight
// prefetch then overlaps the previous kernel on the stream). Returns the launch's error code.
cudaError_t launch_int4_gemm(int config, const GemmParams& params, int grid, int smem, bool pdl,
                             cudaStream_t stream);

// The few-token kernel (int4_gemv_kernel.cuh): rows across SMs, K split inside the block.
struct GemvParams {
  const uint8_t* tiles = nullptr;
  const __half* a = nullptr;
  __half* c = nullptr;
  int m = 0, n = 0, k = 0;
  int k_tiles = 0;           // k / 128
  int strips_per_block = 0;  // 16-row strips per block
  int strip_split = 0;       // warp groups, each owning every strip_split-th strip of the block
  int k_split = 0;           // warps per group, each owning 1/k_split of K
};

struct GemvConfig {
  int warps;
  int strips_per_warp;
  int frags_m;  // tokens ≤ 8·frags_m
  int groups_per_tile;
  bool asymmetric;
};

const GemvConfig* gemv_configs(int* count);

// Launches GEMV variant `config` on `grid` blocks (dynamic shared memory: the partial sums).
cudaError_t launch_int4_gemv(int config, const GemvParams& params, int grid, bool pdl, cudaStream_t stream);

inline int gemv_smem_bytes(const GemvConfig& cfg) { return cfg.warps * 32 * cfg.strips_per_warp * cfg.frags_m * 16; }

// Dynamic shared memory the variant needs for `stages` stages.
inline int smem_bytes(const KernelConfig& cfg, int stages) { return stages * (cfg.stage_bytes() + 16) + 16; }

}  // namespace marlin::cuda::int4_detail
