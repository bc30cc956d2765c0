// Host side of the weight-tile GEMM: entry checks, workspace, launch of the picked kernel.
#include "backend/cuda/tiled_gemm.h"

#include <algorithm>
#include <climits>

#include "backend/cuda/ops.h"
#include "backend/cuda/tiled_gemm_kernels.h"
#include "backend/cuda/tiled_routed_gemv.h"
#include "core/error.h"

namespace marlin::cuda {

namespace {

using tiled_detail::GemvConfig;
using tiled_detail::KernelConfig;

static_assert(int(TileCodec::kInt4) == tiled_detail::kCodecInt4 && int(TileCodec::kInt8) == tiled_detail::kCodecInt8 &&
              int(TileCodec::kFp8) == tiled_detail::kCodecFp8 && int(TileCodec::kFp4) == tiled_detail::kCodecFp4 &&
              int(TileCodec::kInt2) == tiled_detail::kCodecInt2 && int(TileCodec::kInt3) == tiled_detail::kCodecInt3);

// The row multipliers after the tiles (fp4), or null.
const float* row_scales(const TiledWeights& w) {
  return w.shape.row_scale_bytes() ? reinterpret_cast<const float*>(w.tiles + w.shape.tiles_bytes()) : nullptr;
}

void check_cuda(cudaError_t err, const char* what) {
  MARLIN_CHECK(err == cudaSuccess, "tiled gemm: {}: {}", what, cudaGetErrorString(err));
}

int device_attribute(cudaDeviceAttr attr) {
  int device = 0, value = 0;
  check_cuda(cudaGetDevice(&device), "cudaGetDevice");
  check_cuda(cudaDeviceGetAttribute(&value, attr, device), "cudaDeviceGetAttribute");
  return value;
}

bool aligned16(const void* p) { return reinterpret_cast<uintptr_t>(p) % 16 == 0; }

// The largest block_rows × chunk_tokens and the smallest block_rows and chunk over all variants,
// for sizing the workspace.
struct VariantExtremes {
  int64_t max_slot = 0;
  int min_rows = INT_MAX;
  int min_chunk = INT_MAX;
};

VariantExtremes variant_extremes() {
  int count = 0;
  const KernelConfig* configs = tiled_detail::kernel_configs(&count);
  VariantExtremes e;
  for (int i = 0; i < count; ++i) {
    e.max_slot = std::max<int64_t>(e.max_slot, int64_t(configs[i].block_rows()) * configs[i].chunk_tokens());
    e.min_rows = std::min(e.min_rows, configs[i].block_rows());
    e.min_chunk = std::min(e.min_chunk, configs[i].chunk_tokens());
  }
  return e;
}

// Pipeline depth when the caller does not choose: shallow, which also leaves room for the next
// kernel's block on the SM. Run 4 (H100, int4): 3 stages best or within 1 % for the mma.sync
// variants, 3–4 for wgmma up to m = 256 (6 was 2–9 % slower there, equal at m = 1024).
int default_stages(const KernelConfig& cfg) { return cfg.path == tiled_detail::kPathWgmma ? 4 : 3; }

// One GEMV launch for m ≤ 8·frags_m tokens.
void launch_gemv(int variant, const TiledWeights& w, const __half* a, __half* c, int64_t m, bool pdl,
                 cudaStream_t stream) {
  int count = 0;
  const GemvConfig& cfg = tiled_detail::gemv_configs(&count)[variant];
  tiled_detail::GemvParams p;
  p.tiles = w.tiles;
  p.a = a;
  p.c = c;
  p.m = int(m);
  p.n = int(w.shape.rows);
  p.k = int(w.shape.cols);
  p.k_tiles = int(w.shape.col_blocks());
  p.row_scales = row_scales(w);
  // Spread the strips over the SMs; a block's warps split its strips, then its K range.
  const int strips = p.n / 16;
  const int sms = device_attribute(cudaDevAttrMultiProcessorCount);
  p.strips_per_block = std::min((strips + sms - 1) / sms, cfg.warps * cfg.strips_per_warp);
  p.strip_split = (p.strips_per_block + cfg.strips_per_warp - 1) / cfg.strips_per_warp;
  p.k_split = std::max(1, cfg.warps / p.strip_split);
  const int grid = (strips + p.strips_per_block - 1) / p.strips_per_block;
  check_cuda(tiled_detail::launch_gemv(variant, p, grid, pdl, stream), "launch");
}

// The few-token kernel over all m tokens: one launch per 8·frags_m of them.
void run_gemv(int variant, const TiledWeights& w, const __half* a, __half* c, int64_t m, bool pdl,
              cudaStream_t stream) {
  int count = 0;
  const GemvConfig* configs = tiled_detail::gemv_configs(&count);
  MARLIN_CHECK(variant < count, "tiled gemm: no gemv variant {}", variant);
  const GemvConfig& cfg = configs[variant];
  MARLIN_CHECK(tiled_detail::same_format(cfg, w.shape),
               "tiled gemm: gemv variant {} is for another weight format", variant);
  const int64_t chunk = 8 * cfg.frags_m;
  for (int64_t t0 = 0; t0 < m; t0 += chunk)
    launch_gemv(variant, w, a + t0 * w.shape.cols, c + t0 * w.shape.rows, std::min(chunk, m - t0), pdl, stream);
}

void run_striped(int variant, const TiledWeights& w, const __half* a, __half* c, int64_t m, GemmWorkspace& workspace,
                 const GemmTuning& tuning, cudaStream_t stream) {
  const WeightTileShape& s = w.shape;
  int count = 0;
  const KernelConfig* configs = tiled_detail::kernel_configs(&count);
  MARLIN_CHECK(variant < count, "tiled gemm: no variant {}", variant);
  const KernelConfig& cfg = configs[variant];
  MARLIN_CHECK(tiled_detail::same_format(cfg, s),
               "tiled gemm: variant {} is for another weight format", variant);
  MARLIN_CHECK(s.rows % cfg.block_rows() == 0, "tiled gemm: n = {} is not a multiple of {} (variant {})", s.rows,
               cfg.block_rows(), variant);

  tiled_detail::GemmParams p;
  p.tiles = w.tiles;
  p.a = a;
  p.c = c;
  p.m = int(m);
  p.n = int(s.rows);
  p.k = int(s.cols);
  p.m_chunks = int((m + cfg.chunk_tokens() - 1) / cfg.chunk_tokens());
  p.k_tiles = int(s.col_blocks());
  const int64_t out_tiles = s.rows / cfg.block_rows() * p.m_chunks;
  const int64_t items = out_tiles * p.k_tiles;
  MARLIN_CHECK(items < INT_MAX, "tiled gemm: problem too large ({} work items)", items);
  p.items = items;
  p.weights_evict_first = p.m_chunks == 1;
  p.row_scales = row_scales(w);

  const int sms = device_attribute(cudaDevAttrMultiProcessorCount);
  const int grid = int(std::min<int64_t>(sms, items));
  const int smem_limit = device_attribute(cudaDevAttrMaxSharedMemoryPerBlockOptin);
  const int fit = (smem_limit - 16) / (cfg.stage_bytes() + 16);
  p.stages = std::min(tuning.stages > 0 ? tuning.stages : default_stages(cfg), fit);
  MARLIN_CHECK(p.stages >= 2, "tiled gemm: variant {} does not fit in shared memory", variant);

  if (out_tiles > workspace.counter_count() ||
      int64_t(grid) * 2 * cfg.block_rows() * cfg.chunk_tokens() > workspace.partial_floats()) {
    cudaStreamCaptureStatus capture = cudaStreamCaptureStatusNone;
    check_cuda(cudaStreamIsCapturing(stream, &capture), "cudaStreamIsCapturing");
    MARLIN_CHECK(capture == cudaStreamCaptureStatusNone,
                 "tiled gemm: workspace too small while capturing a graph (reserve n {} m {} first)", s.rows, m);
    workspace.reserve(s.rows, m);
  }
  p.partials = workspace.partials();
  p.counters = workspace.counters();
  check_cuda(tiled_detail::launch_gemm(variant, p, grid, tiled_detail::smem_bytes(cfg, p.stages),
                                       tuning.overlap_previous_kernel, stream),
             "launch");
}

}  // namespace

int tiled_detail::routed_variant(const WeightTileShape& shape) {
  int count = 0;
  const GemvConfig* configs = routed_gemv_configs(&count);
  for (int i = 0; i < count; ++i)
    if (same_format(configs[i], shape)) return i;
  return -1;
}

bool routed_gemv_supported(const WeightTileShape& shape) {
  return tiled_gemm_supported() && tiled_detail::routed_variant(shape) >= 0;
}

void routed_gemv(const uint8_t* const* expert_tiles, const WeightTileShape& shape, const int32_t* expert_ids, int slots,
                 int slot_div, const __half* a, __half* c, cudaStream_t stream, const RoutedEpilogue& epilogue,
                 const RoutedPrologue& prologue) {
  const int variant = tiled_detail::routed_variant(shape);
  MARLIN_CHECK(variant >= 0 && tiled_gemm_supported(), "routed gemv: no kernel for these weights");
  MARLIN_CHECK(slots >= 1 && slots <= 65535 && slot_div >= 1, "routed gemv: {} slots", slots);
  MARLIN_CHECK(shape.rows % kTileRows == 0 && shape.cols % kTileColAlign == 0 && shape.rows < INT_MAX &&
                   shape.cols < INT_MAX,
               "routed gemv: {} x {} weights", shape.rows, shape.cols);
  MARLIN_CHECK(aligned16(a) && c != nullptr, "routed gemv: activations not 16-byte aligned");
  int count = 0;
  const GemvConfig& cfg = tiled_detail::routed_gemv_configs(&count)[variant];
  tiled_detail::RoutedGemvParams r;
  r.expert_tiles = expert_tiles;
  r.expert_ids = expert_ids;
  r.tiles_bytes = static_cast<long long>(shape.tiles_bytes());
  r.slot_div = slot_div;
  if (epilogue.kind != RoutedEpilogue::kNone) {
    MARLIN_CHECK(epilogue.counters && epilogue.out, "routed gemv: an epilogue without counters or output");
    MARLIN_CHECK(epilogue.kind != RoutedEpilogue::kSiluMul || shape.rows % 16 == 0,
                 "routed gemv: SwiGLU of {} rows", shape.rows);
    MARLIN_CHECK(epilogue.kind != RoutedEpilogue::kCombine ||
                     (epilogue.weights && slot_div == 1 && epilogue.top_k >= 1 && slots % epilogue.top_k == 0),
                 "routed gemv: combining {} slots by {}", slots, epilogue.top_k);
    r.epilogue = epilogue.kind == RoutedEpilogue::kSiluMul ? tiled_detail::kEpilogueSiluMul
                                                           : tiled_detail::kEpilogueCombine;
    r.counters = epilogue.counters;
    r.epilogue_out = epilogue.out;
    r.slot_weights = epilogue.weights;
    r.top_k = epilogue.top_k;
  }
  tiled_detail::GemvParams& p = r.gemv;
  p.a = a;
  p.c = c;
  p.m = 1;
  p.n = int(shape.rows);
  p.k = int(shape.cols);
  p.k_tiles = int(shape.col_blocks());
  // Enough blocks over all slots to cover the SMs; a block's warps split its strips, then K.
  const int strips = p.n / 16;
  const int sms = device_attribute(cudaDevAttrMultiProcessorCount);
  const int per_slot = std::max(1, sms / slots);
  p.strips_per_block = std::min((strips + per_slot - 1) / per_slot, cfg.warps * cfg.strips_per_warp);
  p.strip_split = (p.strips_per_block + cfg.strips_per_warp - 1) / cfg.strips_per_warp;
  p.k_split = std::max(1, cfg.warps / p.strip_split);
  const int grid_x = (strips + p.strips_per_block - 1) / p.strips_per_block;
  if (prologue.logits) {
    MARLIN_CHECK(expert_ids == nullptr && prologue.ids && prologue.weights &&
                     slot_div == prologue.routing.top_k + prologue.routing.n_shared && slots % slot_div == 0,
                 "routed gemv: routing {} slots by {} in the prologue", slots, slot_div);
    if (int64_t(grid_x) * slots <= sms) {  // one wave: each block routes its token itself
      r.route = route_params("routed gemv", slots / slot_div, prologue.n_routed, prologue.routing);
      r.route_logits = prologue.logits;
      r.route_bias = prologue.score_bias;
      r.routed_ids = prologue.ids;
      r.routed_weights = prologue.weights;
    } else {  // more: routing again in each of the later waves' blocks costs more than a launch
      moe_route(prologue.logits, prologue.score_bias, slots / slot_div, prologue.n_routed, prologue.routing,
                prologue.ids, prologue.weights, stream);
      r.expert_ids = prologue.ids;
    }
  } else {
    MARLIN_CHECK(expert_ids != nullptr, "routed gemv: no expert ids");
  }
  check_cuda(tiled_detail::launch_routed_gemv(variant, r, grid_x, slots, stream), "launch");
}

DeviceWeightTiles::DeviceWeightTiles(const std::vector<uint8_t>& packed, const WeightTileShape& shape)
    : shape_(shape) {
  MARLIN_CHECK(packed.size() == shape.total_bytes(), "weight tiles: {} bytes for a shape of {}", packed.size(),
               shape.total_bytes());
  check_cuda(cudaMalloc(&tiles_, packed.size()), "cudaMalloc(weights)");
  const cudaError_t err = cudaMemcpy(tiles_, packed.data(), packed.size(), cudaMemcpyHostToDevice);
  if (err != cudaSuccess) {
    cudaFree(tiles_);
    tiles_ = nullptr;
    check_cuda(err, "cudaMemcpy(weights)");
  }
}

DeviceWeightTiles::~DeviceWeightTiles() { cudaFree(tiles_); }

GemmWorkspace::~GemmWorkspace() {
  cudaFree(partials_);
  cudaFree(counters_);
}

void GemmWorkspace::reserve(int64_t max_n, int64_t max_m) {
  MARLIN_CHECK(max_n > 0 && max_m > 0, "tiled gemm workspace: bad size n {} m {}", max_n, max_m);
  const VariantExtremes e = variant_extremes();
  const int64_t floats = int64_t(device_attribute(cudaDevAttrMultiProcessorCount)) * 2 * e.max_slot;
  const int64_t counters = (max_n / e.min_rows + 1) * ((max_m + e.min_chunk - 1) / e.min_chunk);
  if (floats > partial_floats_) {
    cudaFree(partials_);
    partials_ = nullptr;
    partial_floats_ = 0;
    check_cuda(cudaMalloc(&partials_, size_t(floats) * sizeof(float)), "cudaMalloc(partials)");
    partial_floats_ = floats;
  }
  if (counters > counter_count_) {
    cudaFree(counters_);
    counters_ = nullptr;
    counter_count_ = 0;
    check_cuda(cudaMalloc(&counters_, size_t(counters) * sizeof(int)), "cudaMalloc(counters)");
    check_cuda(cudaMemset(counters_, 0, size_t(counters) * sizeof(int)), "cudaMemset(counters)");
    counter_count_ = counters;
  }
}

bool tiled_gemm_supported() { return device_attribute(cudaDevAttrComputeCapabilityMajor) == 9; }

void tiled_gemm(const TiledWeights& w, const __half* a, __half* c, int64_t m, GemmWorkspace& workspace,
                cudaStream_t stream, const GemmTuning& tuning) {
  MARLIN_CHECK(tuning.variant < 0 || tuning.gemv_variant < 0, "tiled gemm: both a gemm and a gemv variant given");
  const WeightTileShape& s = w.shape;
  MARLIN_CHECK(s.rows > 0 && s.rows % kTileRows == 0, "tiled gemm: n = {} is not a multiple of {}", s.rows, kTileRows);
  MARLIN_CHECK(s.cols > 0 && s.cols % kTileColAlign == 0, "tiled gemm: k = {} is not a multiple of {}", s.cols,
               kTileColAlign);
  MARLIN_CHECK(s.rows < INT_MAX && s.cols < INT_MAX && m >= 0 && m < INT_MAX, "tiled gemm: sizes too large");
  if (m == 0) return;
  MARLIN_CHECK(w.tiles && aligned16(w.tiles), "tiled gemm: weights missing or not 16-byte aligned");
  MARLIN_CHECK(a && aligned16(a), "tiled gemm: activations missing or not 16-byte aligned");
  MARLIN_CHECK(c != nullptr, "tiled gemm: no output");
  MARLIN_CHECK(tiled_gemm_supported(), "tiled gemm: needs an sm_90 GPU");
  const GemmTuning pick = tuning.variant < 0 && tuning.gemv_variant < 0
                              ? tiled_gemm_pick(s, m, device_attribute(cudaDevAttrMultiProcessorCount))
                              : tuning;
  if (pick.gemv_variant >= 0)
    run_gemv(pick.gemv_variant, w, a, c, m, tuning.overlap_previous_kernel, stream);
  else
    run_striped(pick.variant, w, a, c, m, workspace, GemmTuning{pick.variant, -1, tuning.stages > 0 ? tuning.stages : pick.stages,
                                                                tuning.overlap_previous_kernel},
                stream);
}

}  // namespace marlin::cuda
