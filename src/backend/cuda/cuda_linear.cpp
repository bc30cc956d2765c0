#include "backend/cuda/cuda_linear.h"

#include <algorithm>
#include <cstring>
#include <optional>
#include <vector>

#include "backend/cuda/device_memory.h"
#include "backend/cuda/int4_unpack.h"
#include "backend/cuda/ops.h"
#include "backend/fp4_tiles.h"
#include "backend/weight_tiles.h"
#include "core/half.h"
#include "quant/dequant.h"
#include "quant/quant_buffers.h"

namespace marlin::cuda {
namespace {

// From this many rows on, unpacking int4 weights to fp16 and calling cuBLAS beats the fused
// kernel (H100, Llama-3.1-8B layer shapes: at 256 rows both take ≈ 400 µs per layer, at 1024
// the fused kernel takes twice as long).
constexpr int64_t kUnpackRows = 256;

// The parts stacked into one planar tensor (host copy).
QuantBuffers stack_rows(std::span<const QuantTensor> parts) {
  int64_t rows = 0;
  for (const QuantTensor& p : parts) rows += p.rows;
  const TensorFormat& f = parts[0].format;
  const int64_t cols = parts[0].cols, groups = f.groups(cols);
  QuantBuffers out = QuantBuffers::allocate(f, rows, cols);
  const size_t scale_row = size_t(groups) * size_t(scale_bytes(format_info(f.kind).scale));
  int64_t r0 = 0;
  for (const QuantTensor& p : parts) {
    for (int64_t r = 0; r < p.rows; ++r) {
      std::memcpy(&out.codes[size_t(r0 + r) * out.code_row_bytes], p.codes + size_t(r) * p.code_row_bytes,
                  out.code_row_bytes);
      std::memcpy(&out.scales[size_t(r0 + r) * scale_row], p.scales + size_t(r) * scale_row, scale_row);
      if (f.asymmetric)
        std::memcpy(&out.zeros[size_t(r0 + r) * size_t(groups)], p.zeros + size_t(r) * size_t(groups), size_t(groups));
    }
    r0 += p.rows;
  }
  return out;
}

// Stacked parts packed into weight tiles for the fused kernels.
struct PackedTiles {
  WeightTileShape shape;
  std::vector<uint8_t> bytes;
};

// The parts in weight tiles, or nullopt when the fused kernels cannot run them: a format without a
// tile codec, rows not a multiple of 64, scales a codec cannot hold (fp4_tiles.h), a GPU older
// than sm_90, ...
std::optional<PackedTiles> pack_tiles(std::span<const QuantTensor> parts, ThreadPool* pool) {
  if (!tiled_gemm_supported()) return std::nullopt;
  int64_t rows = 0;
  for (const QuantTensor& p : parts) {
    if (!(p.format == parts[0].format)) return std::nullopt;
    rows += p.rows;
  }
  try {
    PackedTiles t{weight_tile_shape(parts[0].format, rows, parts[0].cols), {}};
    // nvfp4 parts may have different tensor scales: packed with scale 1 (what stack_rows keeps),
    // then each part's rows get its own.
    t.bytes = pack_weight_tiles(stack_rows(parts).view(), pool);
    if (parts[0].format.kind == FormatKind::kNvFp4) {
      int64_t r0 = 0;
      for (const QuantTensor& p : parts) {
        multiply_fp4_row_scales(t.bytes, t.shape, r0, p.rows, p.tensor_scale);
        r0 += p.rows;
      }
    }
    return t;
  } catch (const Error&) {
    return std::nullopt;
  }
}

// Weights in tiles (int4, int8, fp8, fp4 / mxfp4 / nvfp4, int3, int2), run by the fused
// dequantize + GEMM/GEMV kernels.
class TiledLinear final : public CudaLinear {
 public:
  TiledLinear(const PackedTiles& packed, LinearContext& ctx)
      : weights_(packed.bytes, packed.shape), view_(weights_.view()) {
    rows = packed.shape.rows;
    cols = packed.shape.cols;
    // Reserved now for every row count the kernels will see: a workspace that grew later would
    // leave recorded graphs pointing at freed memory.
    ctx.workspace.reserve(rows, unpacks(ctx.max_rows) ? kUnpackRows - 1 : ctx.max_rows);
    if (unpacks(ctx.max_rows) && ctx.unpacked.size() < size_t(rows * cols))
      ctx.unpacked = DeviceArray<__half>(size_t(rows * cols));
  }
  void forward(const __half* in, int64_t m, void* out, bool out_f32, LinearContext& ctx) const override {
    const TiledWeights w = weights_.view();
    if (unpacks(m)) {
      check_cuda(int4_tiles_to_half(w.tiles, rows, cols, w.shape.groups_per_tile, w.shape.asymmetric,
                                    ctx.unpacked.get(), ctx.stream),
                 "int4 unpack");
      return gemm_f16(ctx, ctx.unpacked.get(), rows, cols, in, m, out, out_f32);
    }
    if (!out_f32) return tiled_gemm(w, in, static_cast<__half*>(out), m, ctx.workspace, ctx.stream);
    if (ctx.f16_scratch.size() < size_t(m * rows)) {
      check_cuda(cudaStreamSynchronize(ctx.stream), "cudaStreamSynchronize");
      ctx.f16_scratch = DeviceArray<__half>(size_t(m * rows));
      ++ctx.generation;
    }
    tiled_gemm(w, in, ctx.f16_scratch.get(), m, ctx.workspace, ctx.stream);
    half_to_float(ctx.f16_scratch.get(), m * rows, static_cast<float*>(out), ctx.stream);
  }
  const char* kernel_name() const override { return tile_codec_name(weights_.view().shape.codec); }
  const TiledWeights* tiles() const override { return &view_; }

 private:
  bool unpacks(int64_t m) const { return m >= kUnpackRows && weights_.view().shape.codec == TileCodec::kInt4; }
  DeviceWeightTiles weights_;
  TiledWeights view_;
};

class DenseLinear final : public CudaLinear {
 public:
  explicit DenseLinear(std::span<const QuantTensor> parts) : weights_(upload_as_half(parts)) {
    cols = parts[0].cols;
    for (const QuantTensor& p : parts) rows += p.rows;
  }
  void forward(const __half* in, int64_t m, void* out, bool out_f32, LinearContext& ctx) const override {
    // fp32 outputs of small products (routers) on the GEMV kernel; cuBLAS elsewhere.
    if (out_f32 && m <= kDenseGemvRows && rows * cols <= (int64_t(1) << 24) && cols % 8 == 0)
      return dense_gemv(weights_.get(), rows, cols, in, m, out, true, ctx.stream);
    gemm_f16(ctx, weights_.get(), rows, cols, in, m, out, out_f32);
  }
  const char* kernel_name() const override { return "fp16"; }
  const __half* half_weights() const override { return weights_.get(); }

 private:
  DeviceArray<__half> weights_;
};

}  // namespace

// Column-major, that is W(cols × rows)ᵀ · in(cols × m).
void gemm_f16(const LinearContext& ctx, const __half* w, int64_t rows, int64_t cols, const __half* in, int64_t m,
              void* out, bool out_f32) {
  const float one = 1.0f, zero = 0.0f;
  const cublasStatus_t status =
      cublasGemmEx(ctx.cublas, CUBLAS_OP_T, CUBLAS_OP_N, int(rows), int(m), int(cols), &one, w, CUDA_R_16F, int(cols),
                   in, CUDA_R_16F, int(cols), &zero, out, out_f32 ? CUDA_R_32F : CUDA_R_16F, int(rows),
                   CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT);
  MARLIN_CHECK(status == CUBLAS_STATUS_SUCCESS, "cublas: cublasGemmEx failed (status {})", int(status));
}

DeviceArray<__half> upload_as_half(std::span<const QuantTensor> parts) {
  const int64_t cols = parts[0].cols;
  std::vector<float> row(static_cast<size_t>(cols));
  std::vector<uint16_t> host;
  size_t total = 0;
  for (const QuantTensor& p : parts) total += size_t(p.rows) * size_t(cols);
  host.reserve(total);
  for (const QuantTensor& p : parts) {
    for (int64_t r = 0; r < p.rows; ++r) {
      dequantize_row(p, r, row.data());
      for (float v : row) host.push_back(fp32_to_fp16(v));
    }
  }
  DeviceArray<__half> out(host.size());
  out.upload(reinterpret_cast<const __half*>(host.data()), host.size());
  return out;
}

std::unique_ptr<CudaLinear> CudaLinear::upload(std::span<const QuantTensor> parts, LinearContext& ctx) {
  MARLIN_CHECK(!parts.empty(), "cuda backend: a linear layer needs at least one weight");
  for (const QuantTensor& p : parts) {
    p.validate();
    MARLIN_CHECK(p.cols == parts[0].cols, "cuda backend: stacked weights of {} and {} columns", parts[0].cols, p.cols);
  }
  if (const auto packed = pack_tiles(parts, ctx.pool)) return std::make_unique<TiledLinear>(*packed, ctx);
  if (auto trellis = upload_trellis(parts, ctx)) return trellis;
  return std::make_unique<DenseLinear>(parts);
}

}  // namespace marlin::cuda
