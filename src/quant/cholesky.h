// Dense Cholesky work for GPTQ and LDLQ, in double.
#pragma once

#include <cstdint>
#include <vector>

namespace marlin {

class ThreadPool;

// In place: the lower triangle of `a` (n × n, row-major; only the lower triangle is read) becomes
// L with a = L·Lᵀ; the strict upper triangle is left as it was. n³/6 multiply-adds, split over
// `pool` (the result does not depend on the thread count). Returns false, leaving `a`
// unspecified, when a pivot is not positive and finite.
bool cholesky_lower(std::vector<double>& a, int64_t n, ThreadPool* pool = nullptr);

// The upper-triangular U with (H + λI)⁻¹ = Uᵀ·U (what GPTQ calls the Cholesky factor of the
// inverse Hessian) for a symmetric n × n matrix H (row-major; only its lower triangle is read)
// and λ = `damping`; U comes back row-major with zeros below the diagonal. The inverse is never
// formed: with H + λI = U'·U'ᵀ (U' upper, the Cholesky factorization taken from the last row up),
// U = U'⁻¹. Costs n³/3 multiply-adds, split over `pool` (the result does not depend on the thread
// count) and 3·n² doubles. Returns false, leaving u unspecified, when a pivot is not positive and
// finite, i.e. H + λI is not (numerically) positive definite.
bool inverse_hessian_factor(const std::vector<double>& h, int64_t n, double damping, std::vector<double>& u,
                            ThreadPool* pool = nullptr);

}  // namespace marlin
