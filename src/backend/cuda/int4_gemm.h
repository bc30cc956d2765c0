// Fused int4-dequantize × fp16 GEMM on Hopper (sm_90): C = A · Wᵀ.
//
//   W  n × k int4 weights (n = output features, k = input features) in the int4-tile layout of
//      backend/int4_tiles.h: symmetric or asymmetric, g32 / g64 / g128 / per channel, fp16 scales.
//      pack_int4_tiles() builds it on the host; Int4DeviceWeights uploads it.
//   A  m × k fp16, row-major (row stride k), 16-byte aligned.
//   C  m × n fp16, row-major (row stride n); fp32 accumulation, one rounding at the end.
// Limits (checked at entry, marlin::Error on violation): n a multiple of 64 (128 for the kernels
// picked when n is not a multiple of 256 — see int4_gemm.cpp), k a multiple of 128, 1 ≤ m, and
// n / 64 · ceil(m / 64) · k / 128 < 2^31; sm_90 only.
//
// One launch per call, at most one block per SM. The workspace holds split-K partial sums and
// per-tile counters; give each stream its own and never share one between concurrent launches.
// The result is deterministic (independent of timing and SM count only through the fixed
// split order).
#pragma once

#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <cstdint>

#include "backend/int4_tiles.h"

namespace marlin::cuda {

// A view of int4 tiles in device memory.
struct Int4Weights {
  const uint8_t* tiles = nullptr;  // device pointer, 16-byte aligned
  Int4TileShape shape;
};

// Owns int4 tiles uploaded to the current device.
class Int4DeviceWeights {
 public:
  explicit Int4DeviceWeights(const QuantTensor& planar);  // packs on the host, then uploads
  ~Int4DeviceWeights();
  Int4DeviceWeights(const Int4DeviceWeights&) = delete;
  Int4DeviceWeights& operator=(const Int4DeviceWeights&) = delete;
  Int4Weights view() const { return {tiles_, shape_}; }

 private:
  uint8_t* tiles_ = nullptr;
  Int4TileShape shape_;
};

// Split-K scratch of the current device, grown on demand (not while the stream is being captured
// into a graph: reserve() first for that).
class Int4GemmWorkspace {
 public:
  Int4GemmWorkspace() = default;
  ~Int4GemmWorkspace();
  Int4GemmWorkspace(const Int4GemmWorkspace&) = delete;
  Int4GemmWorkspace& operator=(const Int4GemmWorkspace&) = delete;

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

// How int4_gemm runs; the defaults are what the benchmarks found best.
struct Int4GemmTuning {
  // At most one of the two: a variant of the striped kernel (an index into
  // int4_detail::kernel_configs()) or of the few-token kernel (int4_detail::gemv_configs()), its
  // format matching the weights'. Both -1: int4_gemm_pick().
  int variant = -1;
  int gemv_variant = -1;
  int stages = 0;  // pipeline depth of the striped kernel; 0: the variant's default
  // Programmatic dependent launch: the kernel may start, and stream its first weights, while the
  // previous kernel on the stream is still running; it waits for that kernel before touching A, C
  // or the workspace. The weights themselves must therefore not be written by the previous kernel.
  bool overlap_previous_kernel = true;
};

// C = A · Wᵀ for m tokens on `stream`. Throws marlin::Error for shapes outside the limits above,
// a misaligned pointer, a variant of another weight format, or a CUDA error at launch.
void int4_gemm(const Int4Weights& w, const __half* a, __half* c, int64_t m, Int4GemmWorkspace& workspace,
               cudaStream_t stream, const Int4GemmTuning& tuning = {});

// The kernel int4_gemm() picks for this weight format and m (variant or gemv_variant set).
Int4GemmTuning int4_gemm_pick(const Int4TileShape& shape, int64_t m);

}  // namespace marlin::cuda
