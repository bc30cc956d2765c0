#include "backend/cuda/cuda_mla.h"

#include <vector>

#include "core/error.h"
#include "core/half.h"

namespace marlin::cuda {
namespace {

void check_gemm(cublasStatus_t status, const char* what) {
  MARLIN_CHECK(status == CUBLAS_STATUS_SUCCESS, "cublas: {} failed (status {})", what, int(status));
}

void check_up_projection(const MlaUpProjection& up, const MlaGeometry& g, int64_t rows, const char* what) {
  MARLIN_CHECK(up.weights.size() == size_t(g.n_heads) * size_t(g.qk_nope + g.v_dim) * size_t(g.kv_lora),
               "{}: kv_b_proj of {} values does not fit the model", what, up.weights.size());
  MARLIN_CHECK(rows >= 0 && rows < (int64_t(1) << 31), "{}: {} rows out of range", what, rows);
}

}  // namespace

std::unique_ptr<MlaUpProjection> upload_mla_up_projection(std::span<const float> values) {
  std::vector<uint16_t> host(values.size());
  for (size_t i = 0; i < values.size(); ++i) host[i] = fp32_to_fp16(values[i]);
  auto up = std::make_unique<MlaUpProjection>();
  up->weights = DeviceArray<__half>(host.size());
  up->weights.upload(reinterpret_cast<const __half*>(host.data()), host.size());
  return up;
}

// Column-major, per head h: Q_lat (kv_lora × rows, ld n_heads · row_width) = W_UK[h] (kv_lora ×
// qk_nope: the row-major qk_nope × kv_lora block) · q_nope (qk_nope × rows, ld the q row).
void mla_absorb_queries(cublasHandle_t cublas, const __half* q, int64_t rows, const MlaUpProjection& up,
                        const MlaGeometry& g, __half* q_abs) {
  check_up_projection(up, g, rows, "mla_absorb_queries");
  if (rows == 0) return;
  const float one = 1.0f, zero = 0.0f;
  const int64_t q_head = g.qk_nope + g.qk_rope, up_head = int64_t(g.qk_nope + g.v_dim) * g.kv_lora;
  check_gemm(cublasGemmStridedBatchedEx(cublas, CUBLAS_OP_N, CUBLAS_OP_N, g.kv_lora, int(rows), g.qk_nope, &one,
                                        up.weights.get(), CUDA_R_16F, g.kv_lora, up_head, q, CUDA_R_16F,
                                        int(g.n_heads * q_head), q_head, &zero, q_abs, CUDA_R_16F,
                                        g.n_heads * g.row_width(), g.row_width(), g.n_heads, CUBLAS_COMPUTE_32F,
                                        CUBLAS_GEMM_DEFAULT),
             "mla_absorb_queries");
}

// Column-major, per head h: out (v_dim × rows, ld n_heads · v_dim) = W_UV[h]ᵀ (W_UV[h] is the
// row-major v_dim × kv_lora block, i.e. column-major kv_lora × v_dim) · o_lat (kv_lora × rows,
// ld n_heads · kv_lora).
void mla_project_outputs(cublasHandle_t cublas, const __half* o_lat, int64_t rows, const MlaUpProjection& up,
                         const MlaGeometry& g, __half* out) {
  check_up_projection(up, g, rows, "mla_project_outputs");
  if (rows == 0) return;
  const float one = 1.0f, zero = 0.0f;
  const int64_t up_head = int64_t(g.qk_nope + g.v_dim) * g.kv_lora;
  const __half* w_uv = up.weights.get() + int64_t(g.qk_nope) * g.kv_lora;
  check_gemm(cublasGemmStridedBatchedEx(cublas, CUBLAS_OP_T, CUBLAS_OP_N, g.v_dim, int(rows), g.kv_lora, &one, w_uv,
                                        CUDA_R_16F, g.kv_lora, up_head, o_lat, CUDA_R_16F, g.n_heads * g.kv_lora,
                                        g.kv_lora, &zero, out, CUDA_R_16F, g.n_heads * g.v_dim, g.v_dim, g.n_heads,
                                        CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT),
             "mla_project_outputs");
}

}  // namespace marlin::cuda
