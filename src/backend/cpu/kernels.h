// Per-ISA kernel entry points behind cpu::matmul (internal to backend/cpu).
#pragma once

#include <cstdint>
#include <optional>

#include "backend/cpu/int8_layout.h"
#include "backend/cpu/matmul.h"

namespace marlin::cpu::detail {

// y[c·w.rows + r] for r in [r0, r1) and c in [0, m), from activations quantized by the set's
// quantizer (m rows of groups_for(w.cols) groups). w has passed matmul's checks.
using Int8Kernel = void (*)(const QuantTensor& w, const ActGroup* act, int64_t m, int64_t r0, int64_t r1,
                            float* y);
// The same for weights multiplied in fp32 (f32, f16, bf16, fp8) with fp32 activations x (m rows of w.cols).
using FloatKernel = void (*)(const QuantTensor& w, const float* x, int64_t m, int64_t r0, int64_t r1, float* y);
// Same contract as quantize_activations (bit-identical output).
using ActQuantizer = void (*)(const Int8Format& fmt, const float* x, int64_t rows, int64_t cols, ActGroup* out);

struct KernelSet {
  Int8Kernel int8 = nullptr;         // set for formats with an int8 form
  FloatKernel floating = nullptr;    // set for the others
  ActQuantizer quantize = nullptr;   // with int8
  Int8Format form{};                 // with int8: the form activations are quantized for
};

// Kernels of one ISA for a format; an empty set where the ISA has none (the caller falls back
// to the scalar set, which covers every format matmul accepts).
KernelSet kernels_scalar(const TensorFormat& f);
KernelSet kernels_avx2(const TensorFormat& f, bool vnni);
KernelSet kernels_avx2_plain(const TensorFormat& f);
KernelSet kernels_avx2_vnni(const TensorFormat& f);
KernelSet kernels_avx512(const TensorFormat& f);
// The AVX-512 kernels, by family (kernels_avx512 picks among them).
KernelSet kernels_avx512_ggml(GgmlType type);
KernelSet kernels_avx512_planar(const TensorFormat& f);
KernelSet kernels_avx512_float(const TensorFormat& f);
void quantize_activations_avx512(const Int8Format& fmt, const float* x, int64_t rows, int64_t cols, ActGroup* out);

// The element type of a format multiplied in fp32: kF32, kF16, kBF16 or kFp8E4M3; nullopt for the
// others.
std::optional<FormatKind> float_element(const TensorFormat& f);

}  // namespace marlin::cpu::detail
