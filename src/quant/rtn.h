// Round-to-nearest quantization of a weight matrix into any TensorFormat (group_grid.h says how
// each format's scales are chosen).
#pragma once

#include <cstdint>
#include <span>

#include "quant/format.h"
#include "quant/quant_buffers.h"

namespace marlin {

class ThreadPool;

// Quantizes the rows × cols fp32 matrix w (row-major; rows = output features) to `format`.
// - act-order formats need `perm` (cols entries, a permutation): stored column k is w[:, perm[k]];
//   other formats take no perm.
// - 2:4 formats keep the 2 largest-magnitude values of every 4 stored columns (the first on ties);
//   group scales are fitted to the kept values.
// - f32 / f16 / bf16 store the values rounded to nearest even; ggml kinds use the reference
//   quantizers of quant/ggml_quantize.h (Q4_0, Q4_1, Q5_0, Q5_1, Q8_0).
// Rows are split over `pool` when given. Throws marlin::Error for a shape the format cannot hold, a
// non-finite weight (named by row and column), a bad perm, or a scale fp16 cannot hold.
QuantBuffers quantize_rtn(const float* w, int64_t rows, int64_t cols, const TensorFormat& format,
                          std::span<const int32_t> perm = {}, ThreadPool* pool = nullptr);

// Throws marlin::Error naming the first non-finite value of a rows × cols matrix.
void check_finite(const float* w, int64_t rows, int64_t cols);

// The 2:4 choice RTN makes for 4 values: the positions of the 2 of largest magnitude, ascending.
void keep_largest_two(const float* four, int& first, int& second);

}  // namespace marlin
