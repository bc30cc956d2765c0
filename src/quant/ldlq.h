// LDLQ (QuIP, Chee et al. 2023; QTIP, Tseng et al. 2024): quantizes a weight matrix in strips of
// b columns (b = 16 for 16 × 16 trellis tiles), feeding every finished strip's error into the
// targets of the strips still to come through the block LDL factor of the Hessian, so that the
// proxy loss tr((W − Ŵ)·H·(W − Ŵ)ᵀ) stays small rather than ‖W − Ŵ‖².
//
// Orientation: with H = L·D·Lᵀ (quant/ldl.h, L unit block-LOWER-triangular), E = W − Ŵ gives
// E·L whose strip k is E_k + Σ_{j>k} E_j·L_jk, so strips go from the LAST to the first:
//   target_k = W_k + Σ_{j>k} (W_j − Ŵ_j)·L_jk,   Ŵ_k = quantize(target_k),
// and the loss is Σ_k tr(R_k·D_k·R_kᵀ) with R_k = target_k − Ŵ_k: each strip's quantizer sees
// only its own residual weighted by the b × b block D_k (which a tile quantizer may use or treat as
// identity, as QTIP does). With b = 1 this is QuIP's LDLQ, equivalent to GPTQ with the columns in
// reverse order.
//
// Pipeline for incoherence processing: rotate W and H first (quant/hadamard.h: W' = R_out·W·R_inᵀ,
// H' = R_in·H·R_inᵀ), run LDLQ on (W', H'); the quantized W' is what the checkpoint stores.
#pragma once

#include <cstdint>
#include <functional>
#include <span>
#include <vector>

#include "quant/ldl.h"

namespace marlin {

class ThreadPool;

// Quantizes one strip: target is rows × width (width = the LDL block, row-major, `width` floats per
// row, contiguous), strip k covers columns [k·width, (k+1)·width); the quantized values go to
// `quantized` (same layout). Called once per strip, from the last strip to the first, on the calling
// thread (it may use its own thread pool, e.g. one 16 × 16 tile per task; LDLQ's pool is idle
// then). A quantizer that produces codes keeps them itself, indexed by k. It may throw
// marlin::Error; non-finite output is rejected.
using StripQuantizer =
    std::function<void(const float* target, int64_t rows, int64_t width, int64_t strip, float* quantized)>;

struct LdlqOptions {
  LdlOptions ldl;              // block (the strip width, default 16), dampening, pool for the LDL
  ThreadPool* pool = nullptr;  // the feedback and the loss, split over rows; results do not depend on it
};

struct LdlqResult {
  std::vector<float> weights;  // Ŵ, rows × cols row-major
  double proxy_loss = 0.0;     // tr((W − Ŵ)·H·(W − Ŵ)ᵀ) with the H given (no dampening)
  double damping = 0.0;        // the absolute λ the LDL added to diag H
};

// LDLQ of w (rows × cols row-major, rows = output features) against hessian (cols × cols, only its
// lower triangle is read). rows and cols must be multiples of 16 (whole 16 × 16 tiles) and of the
// strip width; throws
// marlin::Error for bad shapes, non-finite input, a Hessian the LDL rejects (quant/ldl.h), or a
// quantizer that returns a non-finite value.
LdlqResult quantize_ldlq(const float* w, int64_t rows, int64_t cols, std::span<const double> hessian,
                         const StripQuantizer& quantize, const LdlqOptions& options = {});

// The same from an LDL computed beforehand (width = ldl.block, cols = ldl.n): returns Ŵ.
std::vector<float> ldlq(const float* w, int64_t rows, int64_t cols, const BlockLdl& ldl, const StripQuantizer& quantize,
                        ThreadPool* pool = nullptr);

// tr(E·H·Eᵀ) with E = w − q (rows × cols) and H cols × cols (lower triangle read), in double.
double proxy_loss(const float* w, const float* q, int64_t rows, int64_t cols, std::span<const double> hessian,
                  ThreadPool* pool = nullptr);

}  // namespace marlin
