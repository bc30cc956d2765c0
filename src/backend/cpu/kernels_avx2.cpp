// Plain AVX2 + FMA + F16C + BMI2 kernels (see kernels_avx2_impl.h).
#include <immintrin.h>

#include <algorithm>
#include <cstdint>
#include <cstring>

#include "backend/cpu/kernels.h"
#include "backend/cpu/planar.h"
#include "quant/fp_codes.h"

#pragma GCC push_options
#pragma GCC target("avx2,fma,f16c,bmi2")
// GCC 12's intrinsic headers build "undefined" vectors from themselves, which -Wall reports as
// (maybe-)uninitialized in every caller; the warning says nothing about this code.
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#pragma GCC diagnostic ignored "-Wuninitialized"
#define MARLIN_AVX2_VNNI false
#define MARLIN_AVX2_ENTRY kernels_avx2_plain
#include "backend/cpu/kernels_avx2_impl.h"
#pragma GCC pop_options

namespace marlin::cpu::detail {

KernelSet kernels_avx2(const TensorFormat& f, bool vnni) { return vnni ? kernels_avx2_vnni(f) : kernels_avx2_plain(f); }

}  // namespace marlin::cpu::detail
