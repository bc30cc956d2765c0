// Multi-head latent attention on the GPU, the parts around the latent kernels of ops.h: kv_b_proj
// kept as fp16 and the two absorbed products of every head as cuBLAS strided batched GEMMs (one
// batch entry per head; fp16 in and out, fp32 accumulation).
#pragma once

#include <cublas_v2.h>
#include <cuda_fp16.h>

#include <cstdint>
#include <memory>
#include <span>

#include "backend/backend.h"
#include "backend/cuda/device_memory.h"
#include "backend/cuda/ops.h"

namespace marlin::cuda {

// kv_b_proj rounded once to fp16 (round to nearest: a relative error of at most 2^-11 per
// weight, as for every fp32 weight the GPU holds): n_heads · (qk_nope + v_dim) rows of kv_lora.
struct MlaUpProjection final : BackendTensor {
  DeviceArray<__half> weights;
};

std::unique_ptr<MlaUpProjection> upload_mla_up_projection(std::span<const float> values);

// For `rows` query rows (n_heads × [q_nope | q_pe]) and each head h: the first kv_lora values of
// q_abs[t][h] (rows of row_width()) = W_UK[h]ᵀ · q_nope[t][h], rounded to fp16.
void mla_absorb_queries(cublasHandle_t cublas, const __half* q, int64_t rows, const MlaUpProjection& up,
                        const MlaGeometry& g, __half* q_abs);

// out[t][h] (rows × n_heads · v_dim) = W_UV[h] · o_lat[t][h] (o_lat rows of kv_lora values, t-major).
void mla_project_outputs(cublasHandle_t cublas, const __half* o_lat, int64_t rows, const MlaUpProjection& up,
                         const MlaGeometry& g, __half* out);

}  // namespace marlin::cuda
