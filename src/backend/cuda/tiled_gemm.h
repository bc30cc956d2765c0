// Fused dequantize × fp16 GEMM on Hopper (sm_90) for weights in weight tiles: C = A · Wᵀ.
// int4_gemm.h and int8_gemm.h are the per-format entry points; this header holds what they share.
//
//   W  n × k weights in the tile layout of backend/weight_tiles.h (int4: int4_tiles.h; int8 and
//      fp8: int8_tiles.h; fp4, mxfp4, nvfp4: fp4_tiles.h, with the row multipliers after the
//      tiles; int3, int2: lowbit_tiles.h), built on the host by pack_weight_tiles() and uploaded
//      by DeviceWeightTiles.
//   A  m × k fp16, row-major (row stride k), 16-byte aligned.
//   C  m × n fp16, row-major (row stride n); fp32 accumulation, one rounding at the end.
// Limits (checked at entry, marlin::Error on violation): n a multiple of 64, k a multiple of 64
// (the tiles pad K to 128 with zero weights; A is never read past k), 1 ≤ m < 2^31 (m = 0 does
// nothing), n / 64 · ceil(m / 64) · k / 128 < 2^31; sm_90 only. A tensor whose N is not a
// multiple of 64 cannot be tiled at all: weight_tile_shape() throws, and the caller keeps another
// path (e.g. cuBLAS on dequantized weights) for it.
//
// One launch per call for m ≤ 16 or n a multiple of 128 (else one per 16 tokens), at most one
// block per SM. The workspace holds split-K partial sums and per-tile counters; give each stream
// its own and never share one between concurrent launches. The result is deterministic (independent
// of timing; the split order depends only on the shape, the kernel picked and the SM count).
#pragma once

#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <cstdint>
#include <vector>

#include "backend/weight_tiles.h"
#include "model/config.h"

namespace marlin::cuda {

// A view of weight tiles in device memory.
struct TiledWeights {
  const uint8_t* tiles = nullptr;  // device pointer, 16-byte aligned
  WeightTileShape shape;
};

// Owns weight tiles uploaded to the current device.
class DeviceWeightTiles {
 public:
  DeviceWeightTiles(const std::vector<uint8_t>& packed, const WeightTileShape& shape);
  ~DeviceWeightTiles();
  DeviceWeightTiles(const DeviceWeightTiles&) = delete;
  DeviceWeightTiles& operator=(const DeviceWeightTiles&) = delete;
  TiledWeights view() const { return {tiles_, shape_}; }

 private:
  uint8_t* tiles_ = nullptr;
  WeightTileShape shape_;
};

// Split-K scratch of the current device, grown on demand (not while the stream is being captured
// into a graph: reserve() first for that).
class GemmWorkspace {
 public:
  GemmWorkspace() = default;
  ~GemmWorkspace();
  GemmWorkspace(const GemmWorkspace&) = delete;
  GemmWorkspace& operator=(const GemmWorkspace&) = delete;

  // Makes room for any call with n ≤ max_n and m ≤ max_m.
  void reserve(int64_t max_n, int64_t max_m);
  float* partials() const { return partials_; }
  int* counters() const { return counters_; }
  int64_t partial_floats() const { return partial_floats_; }
  int64_t counter_count() const { return counter_count_; }

 private:
  float* partials_ = nullptr;
  int* counters_ = nullptr;
  int64_t partial_floats_ = 0;
  int64_t counter_count_ = 0;
};

// How a call runs; the defaults are what the benchmarks found best.
struct GemmTuning {
  // At most one of the two: a variant of the striped kernel (an index into
  // tiled_detail::kernel_configs()) or of the few-token kernel (tiled_detail::gemv_configs()), its
  // codec and format matching the weights'. Both -1: tiled_gemm_pick().
  int variant = -1;
  int gemv_variant = -1;
  int stages = 0;  // pipeline depth of the striped kernel; 0: the variant's default
  // Programmatic dependent launch: the kernel may start, and stream its first weights, while the
  // previous kernel on the stream is still running; it waits for that kernel before touching A, C
  // or the workspace. The weights themselves must therefore not be written by the previous kernel.
  bool overlap_previous_kernel = true;
};

// Whether the current device runs the tiled kernels (sm_90: TMA, mbarrier transactions, wgmma).
// On others every weight runs as fp16 through cuBLAS (cuda_linear.h).
bool tiled_gemm_supported();

// C = A · Wᵀ for m tokens on `stream`, any codec. Throws marlin::Error for shapes outside the
// limits above, a misaligned pointer, a variant of another weight format, or a CUDA error at launch.
void tiled_gemm(const TiledWeights& w, const __half* a, __half* c, int64_t m, GemmWorkspace& workspace,
                cudaStream_t stream, const GemmTuning& tuning = {});

// Routed experts (a sparse MLP's decode, cuda_experts.h): for each slot y < slots,
// c[y] = a[y / slot_div] · W_eᵀ with e = expert_ids[y] (device memory, written by the previous
// kernel), where expert e's weights (`shape`, the same for every expert) are at expert_tiles[e]
// (a device array of device pointers). a rows are shape.cols wide, c rows shape.rows. One launch.
// routed_gemv_supported() says whether a compiled variant takes the format.
// An epilogue saves the launch after it: kSiluMul also writes out[y] = silu(c[y][:n/2])·c[y][n/2:]
// (slots × n/2 values; SwiGLU of a stacked gate|up), kCombine also writes each token's
// out[t] = Σ_j weights[t·top_k + j]·c[t·top_k + j] (slots/top_k × n values, slot_div 1), bit for
// bit as silu_mul and combine_slots (ops.h) would. `counters` (one per slot for kSiluMul, one per
// token for kCombine) must be zero before the first launch; each launch leaves them zero.
// A prologue saves the launch before it: with `logits` set the launch routes its tokens itself, as
// moe_route (ops.h) would from the same logits, bias and rule (slot_div = top_k + n_shared), and
// writes the ids and weights moe_route would write to `ids` and `weights`; expert_ids is then
// unused (nullptr). Where the launch takes more than one wave of blocks, it launches moe_route
// first instead (routing in every block of the later waves would cost more).
struct RoutedPrologue {
  const float* logits = nullptr;
  const float* score_bias = nullptr;
  int n_routed = 0;  // routed experts (logits per token)
  MoeRouting routing;
  int32_t* ids = nullptr;
  float* weights = nullptr;
};
struct RoutedEpilogue {
  enum Kind { kNone, kSiluMul, kCombine } kind = kNone;
  int* counters = nullptr;
  __half* out = nullptr;
  const float* weights = nullptr;  // kCombine
  int top_k = 1;                   // kCombine
};
bool routed_gemv_supported(const WeightTileShape& shape);
void routed_gemv(const uint8_t* const* expert_tiles, const WeightTileShape& shape, const int32_t* expert_ids, int slots,
                 int slot_div, const __half* a, __half* c, cudaStream_t stream, const RoutedEpilogue& epilogue = {},
                 const RoutedPrologue& prologue = {});

// A sparse MLP's whole decode step in one launch (moe_decode_kernel.cuh), for few tokens: each
// token's routing (as moe_route from the same logits, bias and rule), every slot's gate|up product
// (gate_up[e]: expert e's stacked gate|up tiles, `gate_up_shape`), SwiGLU, down product (down[e],
// `down_shape`) and each token's weighted sum of its slots into out (rows × d_model). The slots'
// SwiGLU and down outputs go to hidden (slots × d_ffn) and y (slots × d_model). `counters` (at
// least moe_decode_counters of them) must be zero before the first launch; each launch leaves them
// zero. The launch has blocks of each slot's share of the rows, all resident at once:
// moe_decode_limits (called before the first launch) says how many the device holds, or 0 where
// the formats differ from the routed variants'; a step needs at most that many slots (else use
// routed_gemv). Where a block's share of both products fits in its shared memory, it is copied in
// whole as the step starts.
struct MoeDecodeLimits {
  int resident_blocks = 0;  // blocks the device holds at once: the most slots of a step (0: no kernel)
  int max_smem = 0;         // bytes of dynamic shared memory a block may have
};
struct MoeDecodeStep {
  const uint8_t* const* gate_up = nullptr;
  const uint8_t* const* down = nullptr;
  WeightTileShape gate_up_shape, down_shape;
  const __half* h = nullptr;
  __half* out = nullptr;
  int64_t rows = 0;
  const float* logits = nullptr;
  const float* score_bias = nullptr;
  int n_experts = 0;  // in the tables: the routed ones, then the shared ones (at most 256)
  int n_routed = 0;   // routed experts (logits per token)
  MoeRouting routing;
  __half* hidden = nullptr;
  __half* y = nullptr;
  int* counters = nullptr;
  MoeDecodeLimits limits;  // moe_decode_limits of the shapes
};
MoeDecodeLimits moe_decode_limits(const WeightTileShape& gate_up_shape, const WeightTileShape& down_shape);
int64_t moe_decode_counters(int slots, int resident_blocks);
void moe_decode(const MoeDecodeStep& step, cudaStream_t stream);

// Grouped experts (a sparse MLP's longer steps, cuda_experts.h): every expert's rows in one launch.
// The rows are the `slots` (token, expert) slots of a step in the grouped order group_slots
// (ops.h) wrote with chunk `chunk`: position i (slot order[i]) belongs to expert e for
// expert_begin[e] ≤ i < expert_begin[e + 1], all in device memory. Row i is
// a[order[i] / a_div] · W_eᵀ (a_div ≥ 1: the slot's token) or a[i] · W_eᵀ (a_div = 0: a already
// grouped), written to c[order[i]] (scatter: back in slot order) or c[i]; a rows are shape.cols
// wide, c rows shape.rows. Experts' weights (`shape`, the same for all) at expert_tiles[e]. Each
// value is one fp32 sum in K order, rounded once: deterministic. grouped_gemm_supported() says
// whether a compiled variant takes the format (and shape.rows is a multiple of 128).
struct ExpertGroups {
  const int32_t* order = nullptr;
  const int32_t* expert_begin = nullptr;
  const int32_t* chunk_begin = nullptr;
  int n_experts = 0;
  int slots = 0;
  int chunk = 32;  // positions per chunk: grouped_gemm_chunk()'s choice
};
bool grouped_gemm_supported(const WeightTileShape& shape);
// Whether wide chunks (below) take the format and shape.rows (a multiple of 256).
bool grouped_gemm_wide_supported(const WeightTileShape& shape);
// The chunk width for a step of `slots` slots over `n_experts` experts: kPick gives 64 (wgmma)
// where the experts average enough rows to fill wide chunks, else 32 (mma.sync); kNarrow and kWide
// force one (for comparisons).
enum class ChunkChoice { kPick, kNarrow, kWide };
int grouped_gemm_chunk(int slots, int n_experts, ChunkChoice choice = ChunkChoice::kPick);
void grouped_gemm(const uint8_t* const* expert_tiles, const WeightTileShape& shape, const ExpertGroups& groups,
                  const __half* a, int a_div, __half* c, bool scatter, cudaStream_t stream);

// The kernel tiled_gemm() runs for these weights and m on a device with `sms` SMs (variant or
// gemv_variant set; tiled_gemm_pick.cpp documents the rule and the measurements behind it).
// Throws marlin::Error when no compiled kernel takes the format.
GemmTuning tiled_gemm_pick(const WeightTileShape& shape, int64_t m, int sms);

}  // namespace marlin::cuda
