// Internal interface of the grouped weight-tile GEMM (a sparse MLP's prompt steps; tiled_gemm.h's
// grouped_gemm): one launch multiplies every expert's rows by that expert's tiles. Plain C++17: no
// device code here.
#pragma once

#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <cstdint>

namespace marlin::cuda::tiled_detail {

// Rows are in grouped order (expert by expert, group_slots in ops.h): position i belongs to the
// expert e with expert_begin[e] ≤ i < expert_begin[e + 1], whose rows form chunks of
// `chunk` positions numbered chunk_begin[e], chunk_begin[e] + 1, ... Block (x, y) computes row
// block x (grouped_block_rows(chunk) weight rows) of chunk y; blocks of chunks past
// chunk_begin[n_experts] return.
// Row i reads a[order[i] / a_div] (a_div > 0; gathered tokens) or a[i] (a_div = 0), and writes
// c[order[i]] (scatter) or c[i].
struct GroupedGemmParams {
  const uint8_t* const* expert_tiles = nullptr;  // per expert: its tiles, row scales right after
  long long tiles_bytes = 0;
  const int32_t* order = nullptr;         // grouped position → slot
  const int32_t* expert_begin = nullptr;  // n_experts + 1 positions
  const int32_t* chunk_begin = nullptr;   // n_experts + 1 chunk numbers
  int n_experts = 0;
  const __half* a = nullptr;  // rows of k values
  int a_div = 0;
  __half* c = nullptr;  // rows of n values
  bool scatter = false;
  int n = 0, k = 0;
  int k_tiles = 0;  // ceil(k / 128)
};

// The grouped kernel's shape: narrow chunks of 32 positions × 128 weight rows (8 warps of one
// 16-row strip each) multiply with mma.sync on a 3-stage cp.async ring; wide chunks of 64
// positions × 256 rows (16 warps, 4 warpgroups) with wgmma on a 4-stage ring, for steps whose
// experts have many rows each: a wide block reads each weight tile half as often per position
// and each activation half as often per weight row.
constexpr int kGroupedChunkNarrow = 32;
constexpr int kGroupedChunkWide = 64;
constexpr int grouped_block_rows(int chunk) { return chunk == kGroupedChunkWide ? 256 : 128; }

// One variant per weight format (codec, groups per tile, zero points) and chunk width.
struct GroupedGemmConfig {
  int codec;
  int groups_per_tile;
  bool asymmetric;
  int chunk;
};

// The compiled variants, and a launch of variant `config` on a grid of row_blocks × chunks blocks.
const GroupedGemmConfig* grouped_gemm_configs(int* count);
cudaError_t launch_grouped_gemm(int config, const GroupedGemmParams& params, int row_blocks, int chunks, bool pdl,
                                cudaStream_t stream);

}  // namespace marlin::cuda::tiled_detail
