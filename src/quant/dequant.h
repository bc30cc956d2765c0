// Scalar reference dequantization of every TensorFormat (the oracle kernels are tested against).
#pragma once

#include <cstdint>

#include "quant/format.h"

namespace marlin {

// Writes the t.cols values of row `row` to out, evaluated exactly as format.h's formulas in fp32
// (integer formats: s·float(q − z); nvfp4: (t·e4m3(s))·e2m1(q)). Values come out in the STORED
// column order: for act-order tensors out[k] is the weight of input feature t.perm[k] (the
// unpermuted row is logical[perm[k]] = out[k]). 2:4 tensors give exact zeros in dropped columns.
// GGML kinds go through quant/ggml_dequant.h; trellis tensors come out in the original
// (unrotated) basis, Ŵ = R_outᵀ·Ŵ'·R_in (quant/trellis_matrix.h). Throws marlin::Error for a tensor that fails
// t.validate(), a row out of range, or a malformed 2:4 pattern.
void dequantize_row(const QuantTensor& t, int64_t row, float* out);

// Throws marlin::Error unless perm holds every index 0..cols-1 exactly once (for loaders).
void check_permutation(const int32_t* perm, int64_t cols);

}  // namespace marlin
