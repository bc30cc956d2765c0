// Per-ISA kernel entry points behind cpu::matmul (internal to backend/cpu).
#pragma once

#include <cstdint>

#include "backend/cpu/int8_layout.h"
#include "backend/cpu/matmul.h"

namespace marlin::cpu::detail {

// y[c·w.rows + r] for r in [r0, r1) and c in [0, m), from activations quantized by
// quantize_activations (m rows of groups_for(w.cols) groups).
using Int8Kernel = void (*)(const QuantMatrix& w, const ActGroup* act, int64_t m, int64_t r0, int64_t r1,
                            float* y);
// The same for F32/F16/BF16 weights with fp32 activations x (m rows of w.cols).
using FloatKernel = void (*)(const QuantMatrix& w, const float* x, int64_t m, int64_t r0, int64_t r1, float* y);
// Same contract as quantize_activations (bit-identical output).
using ActQuantizer = void (*)(GgmlType type, const float* x, int64_t rows, int64_t cols, ActGroup* out);

struct KernelSet {
  Int8Kernel int8;         // nullptr when the type has no int8 form
  FloatKernel floating;    // nullptr for quantized types
  ActQuantizer quantize;
};

KernelSet kernels_scalar(GgmlType type);
KernelSet kernels_avx2(GgmlType type, bool vnni);
KernelSet kernels_avx2_plain(GgmlType type);
KernelSet kernels_avx2_vnni(GgmlType type);
KernelSet kernels_avx512(GgmlType type);

}  // namespace marlin::cpu::detail
