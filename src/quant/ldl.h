// The Hessian side of LDLQ: a cheap positive-semi-definiteness test, the regularization that makes
// a Hessian positive definite, and its block LDL decomposition, all in double.
//
// Block LDL: H + λI = L·D·Lᵀ with
// - L unit block-lower-triangular: its b × b diagonal blocks are the identity, the blocks above
//   them are zero (b = `block`, 16 for LDLQ's 16 × 16 tiles; 1 gives the scalar LDL);
// - D block diagonal: symmetric positive definite b × b blocks D_k.
// It comes from the Cholesky factor C (H + λI = C·Cᵀ, quant/cholesky.h): with C_k the diagonal
// blocks of C, L = C·diag(C_k)⁻¹ and D_k = C_k·C_kᵀ. Unique for a positive definite matrix.
//
// Regularization (why a diagonal shift and not eigenvalue clipping): a Hessian 2·XᵀX/n is PSD in
// exact arithmetic; it fails to be positive definite through rank deficiency (fewer samples than
// features, dead inputs) or rounding, both cured by a small shift λI, which changes LDLQ's
// objective only by λ·‖W − Ŵ‖². Clipping eigenvalues would need a full symmetric eigensolver (about
// 30× the work of a Cholesky factorization, and no LAPACK in the engine) to fix a problem the shift
// already fixes. So, as GPTQ does (quant/gptq.h): λ = percdamp·mean(diag H) is always added; while
// the Cholesky factorization fails, λ grows 10× (up to `retries` times); if it still fails (H far
// from PSD, e.g. a damaged Hessian), λ = percdamp·mean(diag H) − g with g the Gershgorin bound below
// (g ≤ λ_min(H) < 0 then), which makes every eigenvalue of H + λI ≥ percdamp·mean(diag H) > 0.
//
// Only the lower triangle of H is read (it is taken as symmetric).
#pragma once

#include <cstdint>
#include <span>
#include <vector>

namespace marlin {

class ThreadPool;

// Gershgorin's lower bound on the eigenvalues of a symmetric n × n matrix:
// g = min_i (h_ii − Σ_{j≠i} |h_ij|) ≤ λ_min. O(n²).
double gershgorin_lower_bound(std::span<const double> h, int64_t n);
// Whether the Gershgorin discs all lie in [0, ∞): a sufficient (not necessary) test of PSD.
inline bool gershgorin_psd(std::span<const double> h, int64_t n) { return gershgorin_lower_bound(h, n) >= 0.0; }

struct LdlOptions {
  int64_t block = 16;       // D's block size; divides n, 1..128
  double percdamp = 0.01;   // the first λ relative to mean(diag H), > 0
  int damping_retries = 3;  // extra attempts, each with 10× λ, before the Gershgorin shift
  ThreadPool* pool = nullptr;  // results do not depend on it
};

struct BlockLdl {
  int64_t n = 0, block = 0;
  std::vector<double> l;  // n × n row-major, unit block-lower-triangular (exact zeros above, identity blocks)
  std::vector<double> d;  // D_k stacked: n × block row-major, row i holds row i % block of D_{i / block}
  double damping = 0.0;   // the absolute λ that was added to the diagonal
  bool gershgorin_psd = false;  // whether H itself passed the Gershgorin test
  bool gershgorin_shift = false;  // whether λ came from the Gershgorin bound (the retries all failed)
};

// The block LDL decomposition of H + λI (see above). Throws marlin::Error for a size that is not
// n² or not whole blocks, a non-finite entry, mean(diag H) <= 0, bad options, or (numerically
// hopeless) a matrix whose Cholesky factorization fails even with the Gershgorin shift.
BlockLdl block_ldl(std::span<const double> h, int64_t n, const LdlOptions& options = {});

}  // namespace marlin
