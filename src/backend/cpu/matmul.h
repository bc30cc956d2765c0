// Quantized matrix multiplication on the CPU: y = x · Wᵀ with W kept in its GGML block format.
#pragma once

#include <cstdint>

#include "core/thread_pool.h"
#include "quant/format.h"
#include "quant/ggml_types.h"

namespace marlin::cpu {

// A weight matrix of `rows` output features × `cols` input features, row-major; each row is
// `row_bytes` bytes in `type`'s block format (cols is a multiple of the type's block size).
struct QuantMatrix {
  GgmlType type;
  int64_t rows;
  int64_t cols;
  const uint8_t* data;
  uint64_t row_bytes;
};

// y[i*rows + r] = Σ_k x[i*cols + k] · W[r][k] for i < m (x and y are fp32, row-major).
// Rows are split across the pool's threads. Activations may be quantized internally to 8 bits
// (as llama.cpp does) where the weight type's fast kernel needs it; the error of that step is
// bounded by the tests against the fp64 oracle.
void matmul(const QuantMatrix& w, const float* x, int64_t m, float* y, ThreadPool& pool);

// The same for a weight in any stored format (for now: unquantized floats and GGML blocks).
void matmul(const QuantTensor& w, const float* x, int64_t m, float* y, ThreadPool& pool);

// With exact activations on, matmul keeps activations in fp32 and accumulates in fp64 (weights
// dequantized row by row): many times slower, but its only error is the fp32 rounding of the
// result. The parity tests use it to check a model's arithmetic against a float64 reference.
// Process-wide; not to be changed while matmuls run.
void set_exact_activations(bool exact);

}  // namespace marlin::cpu
