// GPTQ (Frantar et al., 2022): quantizes a weight matrix column by column, folding each column's
// rounding error into the columns not yet quantized through the inverse Hessian of the layer's
// inputs, so that ||X·Wᵀ − X·Qᵀ||² stays small rather than ||W − Q||².
//
// - Every grid format (int8/4/3/2 symmetric or asymmetric, fp8, fp4, mxfp4, nvfp4): a column is
//   rounded with quant/group_grid.h's quantizer, its group's scale fitted when the group starts
//   (to the group's error-corrected values; per channel: to the whole original row).
// - Act-order (-act): columns are quantized in order of decreasing Hessian diagonal, stable. The
//   result stores them permuted (perm[k] = the input feature of stored column k) with contiguous
//   groups in that order, so a kernel computes Σ_k q[k]·x[perm[k]] with ordinary group scales.
// - 2:4 (-24): at every 4th column, the 2 of 4 with the largest w²/U_jj² are kept (SparseGPT's
//   OBS saliency: U_jj² = [H_F⁻¹]_jj over the columns F not yet quantized); the dropped ones are
//   quantized to 0 and their error propagated like any other. Group scales are fitted to all of
//   the group's values (the masks are not known yet when a group starts).
// - Dead inputs (diag H = 0) get H_ii = 1 and weight 0. Dampening λ = percdamp·mean(diag H) is
//   added to the diagonal; when H + λI is still not positive definite, λ grows 10× per retry.
#pragma once

#include <cstdint>
#include <span>

#include "quant/format.h"
#include "quant/quant_buffers.h"

namespace marlin {

class ThreadPool;

struct GptqOptions {
  double percdamp = 0.01;   // dampening relative to mean(diag H), > 0
  int block_size = 128;     // columns per lazy batch; a multiple of the group size
  int damping_retries = 3;  // extra attempts, each with 10× the dampening (up to 10·mean)
  ThreadPool* pool = nullptr;  // rows (and the Cholesky work) split over it; results do not depend on it
};

struct GptqResult {
  QuantBuffers weights;
  double percdamp = 0.0;     // the relative dampening that was used
  int64_t dead_columns = 0;  // inputs with diag H = 0
  double loss = 0.0;         // GPTQ's objective Σ (w − q)² / (2·U_ii²) over all weights
};

// w: rows × cols fp32 (row-major, rows = output features); hessian: cols × cols, symmetric, e.g.
// HessianAccumulator::hessian(). Throws marlin::Error for a format without a grid (plain, ggml),
// bad shapes or options, non-finite input, or a Hessian that is not positive definite even with
// the largest dampening tried (the message says which).
GptqResult quantize_gptq(const float* w, int64_t rows, int64_t cols, const TensorFormat& format,
                         std::span<const double> hessian, const GptqOptions& options = {});

}  // namespace marlin
