// Matrix multiplication on the CPU: y = x · Wᵀ with W in any weight format marlin runs
// (quant/format.h): GGML blocks, planar int8/4/3/2 (symmetric or with zero points, act-order),
// fp8 E4M3, fp4 / mxfp4 / nvfp4, f32 / f16 / bf16, trellis (trellis_matmul.h).
#pragma once

#include <cstdint>

#include "core/thread_pool.h"
#include "quant/format.h"

namespace marlin::cpu {

// y[i*rows + r] = Σ_k x[i*cols + k] · W[r][k] for i < m (x and y are fp32, row-major; with act
// order, column k of W multiplies x[i*cols + perm[k]]).
// Rows are split across the pool's threads. Activations are quantized internally to 8 bits per
// 32 values (as llama.cpp does) for formats that run in the int8 form (GGML quantized types,
// planar integer and fp4 formats); f32/f16/bf16/fp8 and trellis weights multiply fp32 activations. The error
// of each path is bounded by the tests against the fp64 oracle (tests/backend/test_cpu_matmul.cpp).
// Throws marlin::Error for a format or shape it cannot run (before touching y).
void matmul(const QuantTensor& w, const float* x, int64_t m, float* y, ThreadPool& pool);

// With exact activations on, matmul keeps activations in fp32 and accumulates in fp64 (weights
// dequantized row by row by the reference dequantizer): many times slower, but its only error is
// the fp32 rounding of the result. The parity tests use it to check a model's arithmetic against a
// float64 reference. Process-wide; not to be changed while matmuls run.
void set_exact_activations(bool exact);

}  // namespace marlin::cpu
