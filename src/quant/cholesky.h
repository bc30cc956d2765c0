// Dense Cholesky work for GPTQ, in double.
#pragma once

#include <cstdint>
#include <vector>

namespace marlin {

class ThreadPool;

// The upper-triangular U with H⁻¹ = Uᵀ·U (what GPTQ calls the Cholesky factor of the inverse
// Hessian) for a symmetric positive-definite n × n matrix H, row-major; U comes back row-major
// with zeros below the diagonal. H⁻¹ is never formed: with H = U'·U'ᵀ (U' upper, the Cholesky
// factorization taken from the last row up), U = U'⁻¹. Costs n³/3 multiply-adds, split over
// `pool` (results do not depend on the thread count). Returns false, leaving u unspecified, when
// a pivot is not positive and finite, i.e. H is not (numerically) positive definite.
bool inverse_hessian_factor(const std::vector<double>& h, int64_t n, std::vector<double>& u,
                            ThreadPool* pool = nullptr);

}  // namespace marlin
