// Host side of the grouped weight-tile GEMM (tiled_gemm.h's grouped_gemm): entry checks and the
// launch of the format's variant on a grid sized for the most chunks the step can have.
#include <algorithm>
#include <climits>

#include "backend/cuda/tiled_gemm.h"
#include "backend/cuda/tiled_grouped_gemm.h"
#include "core/error.h"

namespace marlin::cuda {
namespace {

// The grouped variant for `shape`'s format and the chunk width, or -1.
int grouped_variant(const WeightTileShape& shape, int chunk) {
  int count = 0;
  const tiled_detail::GroupedGemmConfig* configs = tiled_detail::grouped_gemm_configs(&count);
  for (int i = 0; i < count; ++i)
    if (configs[i].codec == int(shape.codec) && configs[i].groups_per_tile == shape.groups_per_tile &&
        configs[i].asymmetric == shape.asymmetric && configs[i].chunk == chunk)
      return i;
  return -1;
}

// Average rows per expert from which wide chunks pay. CudaMoeGroupedPerf.Qwen3LayerTimings (H100,
// 128 experts, 8 per token; one sparse layer), narrow against wide: 216 against 242 µs at 4 rows
// per expert, 345 against 289 at 32, 1,003 against 765 at 128.
constexpr int kWideChunkRows = 32;

}  // namespace

bool grouped_gemm_supported(const WeightTileShape& shape) {
  return tiled_gemm_supported() && grouped_variant(shape, tiled_detail::kGroupedChunkNarrow) >= 0 &&
         shape.rows % tiled_detail::grouped_block_rows(tiled_detail::kGroupedChunkNarrow) == 0 &&
         shape.cols % kTileColAlign == 0 && shape.rows < INT_MAX && shape.cols < INT_MAX;
}

bool grouped_gemm_wide_supported(const WeightTileShape& shape) {
  return grouped_gemm_supported(shape) && grouped_variant(shape, tiled_detail::kGroupedChunkWide) >= 0 &&
         shape.rows % tiled_detail::grouped_block_rows(tiled_detail::kGroupedChunkWide) == 0;
}

int grouped_gemm_chunk(int slots, int n_experts, ChunkChoice choice) {
  const bool many_rows = n_experts >= 1 && slots / n_experts >= kWideChunkRows;
  const bool wide = choice == ChunkChoice::kWide || (choice == ChunkChoice::kPick && many_rows);
  return wide ? tiled_detail::kGroupedChunkWide : tiled_detail::kGroupedChunkNarrow;
}

void grouped_gemm(const uint8_t* const* expert_tiles, const WeightTileShape& shape, const ExpertGroups& groups,
                  const __half* a, int a_div, __half* c, bool scatter, cudaStream_t stream) {
  MARLIN_CHECK(grouped_gemm_supported(shape), "grouped gemm: no kernel for {} x {} weights of this format", shape.rows,
               shape.cols);
  MARLIN_CHECK(groups.n_experts >= 1 && groups.slots >= 1 && a_div >= 0, "grouped gemm: {} slots of {} experts",
               groups.slots, groups.n_experts);
  const int variant = grouped_variant(shape, groups.chunk);
  const int block_rows = tiled_detail::grouped_block_rows(groups.chunk);
  MARLIN_CHECK(variant >= 0 && shape.rows % block_rows == 0, "grouped gemm: no kernel for chunks of {} positions",
               groups.chunk);
  MARLIN_CHECK(expert_tiles && groups.order && groups.expert_begin && groups.chunk_begin && a && c,
               "grouped gemm: missing pointer");
  MARLIN_CHECK(reinterpret_cast<uintptr_t>(a) % 16 == 0, "grouped gemm: activations not 16-byte aligned");
  // Each expert's rows end in at most one partial chunk, and at most min(experts, slots) experts
  // have rows.
  const int64_t chunks = groups.slots / groups.chunk + std::min(groups.n_experts, groups.slots);
  MARLIN_CHECK(chunks <= 65535, "grouped gemm: {} slots are too many for one launch", groups.slots);
  tiled_detail::GroupedGemmParams p;
  p.expert_tiles = expert_tiles;
  p.tiles_bytes = static_cast<long long>(shape.tiles_bytes());
  p.order = groups.order;
  p.expert_begin = groups.expert_begin;
  p.chunk_begin = groups.chunk_begin;
  p.n_experts = groups.n_experts;
  p.a = a;
  p.a_div = a_div;
  p.c = c;
  p.scatter = scatter;
  p.n = int(shape.rows);
  p.k = int(shape.cols);
  p.k_tiles = int(shape.col_blocks());
  const int row_blocks = p.n / block_rows;
  // sm_90 (tiled_gemm_supported): programmatic dependent launch is always there.
  const cudaError_t err =
      tiled_detail::launch_grouped_gemm(variant, p, row_blocks, int(chunks), true, stream);
  MARLIN_CHECK(err == cudaSuccess, "grouped gemm: launch: {}", cudaGetErrorString(err));
}

}  // namespace marlin::cuda
