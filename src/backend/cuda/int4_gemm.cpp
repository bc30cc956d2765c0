// Host side of the int4 GEMM: entry checks, workspace, choice of kernel variant, launch.
#include "backend/cuda/int4_gemm.h"

#include <algorithm>
#include <climits>

#include "backend/cuda/int4_gemm_kernels.h"
#include "core/error.h"

namespace marlin::cuda {

namespace {

using int4_detail::KernelConfig;

void check_cuda(cudaError_t err, const char* what) {
  MARLIN_CHECK(err == cudaSuccess, "int4 gemm: {}: {}", what, cudaGetErrorString(err));
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
  const KernelConfig* configs = int4_detail::kernel_configs(&count);
  VariantExtremes e;
  for (int i = 0; i < count; ++i) {
    e.max_slot = std::max<int64_t>(e.max_slot, int64_t(configs[i].block_rows()) * configs[i].chunk_tokens());
    e.min_rows = std::min(e.min_rows, configs[i].block_rows());
    e.min_chunk = std::min(e.min_chunk, configs[i].chunk_tokens());
  }
  return e;
}

// The variant with this shape, path and format, or -1.
int find_variant(int row_tiles, int frags_n, int frags_m, int path, const Int4TileShape& shape) {
  int count = 0;
  const KernelConfig* configs = int4_detail::kernel_configs(&count);
  for (int i = 0; i < count; ++i) {
    const KernelConfig& c = configs[i];
    if (c.path == path && c.row_tiles == row_tiles && c.frags_n == frags_n && c.frags_m == frags_m &&
        c.groups_per_tile == shape.groups_per_tile && c.asymmetric == shape.asymmetric)
      return i;
  }
  return -1;
}

// Pipeline depth when the caller does not choose: shallow for the streaming (small-m) variants,
// which then also leave room for the next kernel's block on the SM; deeper for the wgmma ones.
int default_stages(const KernelConfig& cfg) { return cfg.path == int4_detail::kPathWgmma ? 6 : 4; }

}  // namespace

Int4DeviceWeights::Int4DeviceWeights(const QuantTensor& planar) {
  const std::vector<uint8_t> packed = pack_int4_tiles(planar);
  shape_ = int4_tile_shape(planar.format, planar.rows, planar.cols);
  check_cuda(cudaMalloc(&tiles_, packed.size()), "cudaMalloc(weights)");
  const cudaError_t err = cudaMemcpy(tiles_, packed.data(), packed.size(), cudaMemcpyHostToDevice);
  if (err != cudaSuccess) {
    cudaFree(tiles_);
    check_cuda(err, "cudaMemcpy(weights)");
  }
}

Int4DeviceWeights::~Int4DeviceWeights() { cudaFree(tiles_); }

Int4GemmWorkspace::~Int4GemmWorkspace() {
  cudaFree(partials_);
  cudaFree(counters_);
}

void Int4GemmWorkspace::reserve(int64_t max_n, int64_t max_m) {
  MARLIN_CHECK(max_n > 0 && max_m > 0, "int4 gemm workspace: bad size n {} m {}", max_n, max_m);
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

namespace {

// The few-token variant with this shape and format, or -1.
int find_gemv(int warps, int strips_per_warp, int frags_m, const Int4TileShape& shape) {
  int count = 0;
  const int4_detail::GemvConfig* configs = int4_detail::gemv_configs(&count);
  for (int i = 0; i < count; ++i) {
    const int4_detail::GemvConfig& c = configs[i];
    if (c.warps == warps && c.strips_per_warp == strips_per_warp && c.frags_m == frags_m &&
        c.groups_per_tile == shape.groups_per_tile && c.asymmetric == shape.asymmetric)
      return i;
  }
  return -1;
}

void run_gemv(int variant, const Int4Weights& w, const __half* a, __half* c, int64_t m, bool pdl,
              cudaStream_t stream) {
  int count = 0;
  const int4_detail::GemvConfig& cfg = int4_detail::gemv_configs(&count)[variant];
  MARLIN_CHECK(cfg.groups_per_tile == w.shape.groups_per_tile && cfg.asymmetric == w.shape.asymmetric,
               "int4 gemm: gemv variant {} is for another weight format", variant);
  MARLIN_CHECK(m <= 8 * cfg.frags_m, "int4 gemm: gemv variant {} takes at most {} tokens, not {}", variant,
               8 * cfg.frags_m, m);
  int4_detail::GemvParams p;
  p.tiles = w.tiles;
  p.a = a;
  p.c = c;
  p.m = int(m);
  p.n = int(w.shape.rows);
  p.k = int(w.shape.cols);
  p.k_tiles = int(w.shape.cols / 128);
  // Spread the strips over the SMs; a block's warps split its strips, then its K range.
  const int strips = p.n / 16;
  const int sms = device_attribute(cudaDevAttrMultiProcessorCount);
  p.strips_per_block = std::min((strips + sms - 1) / sms, cfg.warps * cfg.strips_per_warp);
  p.strip_split = (p.strips_per_block + cfg.strips_per_warp - 1) / cfg.strips_per_warp;
  p.k_split = std::max(1, cfg.warps / p.strip_split);
  const int grid = (strips + p.strips_per_block - 1) / p.strips_per_block;
  check_cuda(int4_detail::launch_int4_gemv(variant, p, grid, pdl, stream), "launch");
}

}  // namespace

Int4GemmTuning int4_gemm_pick(const Int4TileShape& shape, int64_t m) {
  using int4_detail::kPathMma;
  using int4_detail::kPathWgmma;
  Int4GemmTuning t;
  if (m <= 16) {
    t.gemv_variant = find_gemv(8, 2, m <= 8 ? 1 : 2, shape);
    if (t.gemv_variant >= 0) return t;
  }
  const bool plain = shape.groups_per_tile == 1 && !shape.asymmetric;
  if (plain) {
    if (m <= 32)
      t.variant = find_variant(2, 1, 4, kPathWgmma, shape);
    else
      t.variant = shape.rows % 256 == 0 ? find_variant(4, 1, 8, kPathWgmma, shape)
                                        : find_variant(2, 1, 8, kPathWgmma, shape);
  } else {
    t.variant = m <= 16 ? find_variant(2, 2, 2, kPathMma, shape) : find_variant(2, 1, 8, kPathWgmma, shape);
  }
  MARLIN_CHECK(t.variant >= 0, "int4 gemm: no kernel for {} groups per tile{}", shape.groups_per_tile,
               shape.asymmetric ? ", asymmetric" : "");
  return t;
}

void int4_gemm(const Int4Weights& w, const __half* a, __half* c, int64_t m, Int4GemmWorkspace& workspace,
               cudaStream_t stream, const Int4GemmTuning& tuning) {
  MARLIN_CHECK(tuning.variant < 0 || tuning.gemv_variant < 0, "int4 gemm: both a gemm and a gemv variant given");
  const Int4GemmTuning pick = tuning.variant < 0 && tuning.gemv_variant < 0 ? int4_gemm_pick(w.shape, m) : tuning;
  const Int4TileShape& s = w.shape;
  MARLIN_CHECK(s.rows > 0 && s.rows % 64 == 0, "int4 gemm: n = {} is not a multiple of 64", s.rows);
  MARLIN_CHECK(s.cols > 0 && s.cols % 128 == 0, "int4 gemm: k = {} is not a multiple of 128", s.cols);
  MARLIN_CHECK(s.rows < INT_MAX && s.cols < INT_MAX && m >= 0 && m < INT_MAX, "int4 gemm: sizes too large");
  if (m == 0) return;
  MARLIN_CHECK(w.tiles && aligned16(w.tiles), "int4 gemm: weights missing or not 16-byte aligned");
  MARLIN_CHECK(a && aligned16(a), "int4 gemm: activations missing or not 16-byte aligned");
  MARLIN_CHECK(c != nullptr, "int4 gemm: no output");
  MARLIN_CHECK(device_attribute(cudaDevAttrComputeCapabilityMajor) == 9, "int4 gemm: needs an sm_90 GPU");
  if (pick.gemv_variant >= 0) {
    int gemv_count = 0;
    int4_detail::gemv_configs(&gemv_count);
    MARLIN_CHECK(pick.gemv_variant < gemv_count, "int4 gemm: no gemv variant {}", pick.gemv_variant);
    run_gemv(pick.gemv_variant, w, a, c, m, tuning.overlap_previous_kernel, stream);
    return;
  }
  const int variant = pick.variant;
  int count = 0;
  const KernelConfig* configs = int4_detail::kernel_configs(&count);
  MARLIN_CHECK(variant >= 0 && variant < count, "int4 gemm: no variant {}", variant);
  const KernelConfig& cfg = configs[variant];
  MARLIN_CHECK(cfg.groups_per_tile == s.groups_per_tile && cfg.asymmetric == s.asymmetric,
               "int4 gemm: variant {} is for another weight format", variant);
  MARLIN_CHECK(s.rows % cfg.block_rows() == 0, "int4 gemm: n = {} is not a multiple of {} (variant {})", s.rows,
               cfg.block_rows(), variant);

  int4_detail::GemmParams p;
  p.tiles = w.tiles;
  p.a = a;
  p.c = c;
  p.m = int(m);
  p.n = int(s.rows);
  p.k = int(s.cols);
  p.m_chunks = int((m + cfg.chunk_tokens() - 1) / cfg.chunk_tokens());
  p.k_tiles = int(s.cols / 128);
  const int64_t out_tiles = s.rows / cfg.block_rows() * p.m_chunks;
  const int64_t items = out_tiles * p.k_tiles;
  MARLIN_CHECK(items < INT_MAX, "int4 gemm: problem too large ({} work items)", items);
  p.items = items;
  p.weights_evict_first = p.m_chunks == 1;

  const int sms = device_attribute(cudaDevAttrMultiProcessorCount);
  const int grid = int(std::min<int64_t>(sms, items));
  const int smem_limit = device_attribute(cudaDevAttrMaxSharedMemoryPerBlockOptin);
  const int fit = (smem_limit - 16) / (cfg.stage_bytes() + 16);
  p.stages = std::min(tuning.stages > 0 ? tuning.stages : default_stages(cfg), fit);
  MARLIN_CHECK(p.stages >= 2, "int4 gemm: variant {} does not fit in shared memory", variant);

  if (out_tiles > workspace.counter_count() || int64_t(grid) * 2 * cfg.block_rows() * cfg.chunk_tokens() >
                                                   workspace.partial_floats()) {
    cudaStreamCaptureStatus capture = cudaStreamCaptureStatusNone;
    check_cuda(cudaStreamIsCapturing(stream, &capture), "cudaStreamIsCapturing");
    MARLIN_CHECK(capture == cudaStreamCaptureStatusNone,
                 "int4 gemm: workspace too small while capturing a graph (reserve n {} m {} first)", s.rows, m);
    workspace.reserve(s.rows, m);
  }
  p.partials = workspace.partials();
  p.counters = workspace.counters();
  check_cuda(int4_detail::launch_int4_gemm(variant, p, grid, int4_detail::smem_bytes(cfg, p.stages),
                                           tuning.overlap_previous_kernel, stream),
             "launch");
}

}  // namespace marlin::cuda
