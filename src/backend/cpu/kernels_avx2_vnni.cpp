// AVX2 + FMA + F16C + BMI2 + AVX-VNNI kernels (see kernels_avx2_impl.h).
#include <immintrin.h>

#include <algorithm>
#include <cstdint>
#include <cstring>

#include "backend/cpu/kernels.h"
#include "backend/cpu/planar.h"
#include "quant/fp_codes.h"

#pragma GCC push_options
#pragma GCC target("avx2,fma,f16c,bmi2,avxvnni")
// See kernels_avx2.cpp.
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#pragma GCC diagnostic ignored "-Wuninitialized"
#define MARLIN_AVX2_VNNI true
#define MARLIN_AVX2_ENTRY kernels_avx2_vnni
#include "backend/cpu/kernels_avx2_impl.h"
#pragma GCC pop_options
