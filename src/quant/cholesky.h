// Dense Cholesky work for GPTQ, in double.
#pragma once

#include <cstdint>
#include <vector>

namespace marlin {

class ThreadPool;

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
