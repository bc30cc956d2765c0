// Linear layers on the GPU. Every format runs: int4, int3 and int2 (symmetric or asymmetric),
// symmetric int8, fp8, fp4, mxfp4 and nvfp4 through the fused dequantize + GEMM/GEMV kernels
// (tiled_gemm.h) when their tiles fit (rows a multiple of 64, cols of 64, scales the codec can hold);
// everything else is dequantized once, at upload, to fp16 and multiplied by cuBLAS. For products of many rows (prompts) the int4 weights are unpacked to
// fp16 into a shared scratch and multiplied by cuBLAS, which is then the faster way.
#pragma once

#include <cublas_v2.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <memory>
#include <span>

#include "backend/backend.h"
#include "backend/cuda/device_memory.h"
#include "backend/cuda/tiled_gemm.h"

namespace marlin::cuda {

// What the linear layers of one backend share: the stream and the scratch of their kernels.
struct LinearContext {
  cudaStream_t stream = nullptr;
  cublasHandle_t cublas = nullptr;
  GemmWorkspace workspace;          // split-K scratch of the fused kernels
  DeviceArray<__half> unpacked;     // the int4 weights of one layer as fp16 (many-row products)
  DeviceArray<__half> f16_scratch;  // an int4 product on its way to fp32 (logits), grown on demand
  DeviceArray<__half> rotated;      // a trellis layer's rotated activations (max_rows × widest cols)
  DeviceArray<float> products;      // a trellis layer's few-row products before their rotation
  int64_t max_rows = 0;  // the most activation rows of one call (sizes the workspaces)
  ThreadPool* pool = nullptr;  // host threads that lay weights out in tiles at upload (null: this thread)
  // Counts replacements of the buffers above after upload: recorded graphs that use them are stale.
  int64_t generation = 0;
};

// `parts` (same column count) dequantized, stacked by rows and rounded to fp16 in device memory.
DeviceArray<__half> upload_as_half(std::span<const QuantTensor> parts);

// Row-major out (m × rows) = in (m × cols) · Wᵀ for fp16 W (rows × cols, row-major), by cuBLAS;
// out is fp16, or fp32 when `out_f32`.
void gemm_f16(const LinearContext& ctx, const __half* w, int64_t rows, int64_t cols, const __half* in, int64_t m,
              void* out, bool out_f32);

class CudaLinear : public BackendLinear {
 public:
  // `parts` stacked by rows (same column count; the fused kernels need the same format in every part).
  static std::unique_ptr<CudaLinear> upload(std::span<const QuantTensor> parts, LinearContext& ctx);
  // out = in · Wᵀ for m rows of fp16 input; out is fp16, or fp32 when `out_f32`.
  virtual void forward(const __half* in, int64_t m, void* out, bool out_f32, LinearContext& ctx) const = 0;
  virtual const char* kernel_name() const = 0;
  // The weights as the routed expert kernels read them: tiles (tiled formats; null otherwise) or
  // fp16 rows (the dequantized formats; null otherwise).
  virtual const TiledWeights* tiles() const { return nullptr; }
  virtual const __half* half_weights() const { return nullptr; }
};

// Trellis parts (trellis_linear.cpp) as the fused trellis kernels run them, or null when they
// cannot: another format, parts of different widths or rotation seeds (each input rotation would
// differ), more parts than the output rotation takes.
std::unique_ptr<CudaLinear> upload_trellis(std::span<const QuantTensor> parts, LinearContext& ctx);

}  // namespace marlin::cuda
