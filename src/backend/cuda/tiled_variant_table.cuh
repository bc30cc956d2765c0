// What a variant file (gemm_variants_<codec>.cu, gemv_variants_<codec>.cu) needs to compile its
// list of kernel variants into a table (tiled_gemm_kernels.h): a list is an X-macro, one X(...)
// per variant, and one MARLIN_DEFINE_*_TABLE line turns it into the table's configs and launcher.
// The *_SET macros are the variant sets a format gets: a new codec's file lists its formats, one
// line each. The files stay one per codec (and kind of kernel) so that they compile in parallel.
#pragma once

#include <iterator>

#include "backend/cuda/tiled_gemm_kernels.h"

// Striped kernel: X(codec, row_tiles, frags_n, frags_m, groups_per_tile, asymmetric, path).
#define MARLIN_GEMM_CONFIG_ROW(CODEC, R, FN, FM, G, Z, PATH) KernelConfig{CODEC, R, FN, FM, G, Z, PATH},
#define MARLIN_GEMM_LAUNCH_CASE(CODEC, R, FN, FM, G, Z, PATH) \
  if (index == i++) return launch_gemm_variant<CODEC, R, FN, FM, G, Z, PATH>(params, grid, smem, pdl, stream);

#define MARLIN_DEFINE_GEMM_TABLE(NAME, LIST)                                                                  \
  namespace {                                                                                                \
  constexpr KernelConfig NAME##_configs[] = {LIST(MARLIN_GEMM_CONFIG_ROW)};                                  \
  cudaError_t NAME##_launch(int index, const GemmParams& params, int grid, int smem, bool pdl,               \
                            cudaStream_t stream) {                                                           \
    int i = 0;                                                                                               \
    LIST(MARLIN_GEMM_LAUNCH_CASE)                                                                            \
    return cudaErrorInvalidValue;                                                                            \
  }                                                                                                          \
  }                                                                                                          \
  GemmVariantTable NAME() { return {NAME##_configs, int(std::size(NAME##_configs)), NAME##_launch}; }

// Few-token kernel: X(codec, warps, strips_per_warp, frags_m, depth, groups_per_tile, asymmetric).
#define MARLIN_GEMV_CONFIG_ROW(CODEC, W, S, FM, D, G, Z) GemvConfig{CODEC, W, S, FM, D, G, Z},
#define MARLIN_GEMV_LAUNCH_CASE(CODEC, W, S, FM, D, G, Z) \
  if (index == i++) return launch_gemv_variant<CODEC, W, S, FM, D, G, Z>(params, grid, pdl, stream);

#define MARLIN_DEFINE_GEMV_TABLE(NAME, LIST)                                                                  \
  namespace {                                                                                                \
  constexpr GemvConfig NAME##_configs[] = {LIST(MARLIN_GEMV_CONFIG_ROW)};                                    \
  cudaError_t NAME##_launch(int index, const GemvParams& params, int grid, bool pdl, cudaStream_t stream) {   \
    int i = 0;                                                                                               \
    LIST(MARLIN_GEMV_LAUNCH_CASE)                                                                            \
    return cudaErrorInvalidValue;                                                                            \
  }                                                                                                          \
  }                                                                                                          \
  GemvVariantTable NAME() { return {NAME##_configs, int(std::size(NAME##_configs)), NAME##_launch}; }

// The striped variants tiled_gemm_pick() chooses among (tiled_gemm_pick.cpp): 128- and 256-row
// blocks with mma.sync for 8 and 16 tokens per pass, 256-row mma for 32, wgmma for 32 and 64
// (256-row wgmma: FULL only).
#define MARLIN_GEMM_SET_R2_WGMMA(X, CODEC, G, Z) \
  X(CODEC, 2, 2, 1, G, Z, kPathMma)              \
  X(CODEC, 4, 2, 1, G, Z, kPathMma)              \
  X(CODEC, 2, 2, 2, G, Z, kPathMma)              \
  X(CODEC, 4, 2, 2, G, Z, kPathMma)              \
  X(CODEC, 4, 2, 4, G, Z, kPathMma)              \
  X(CODEC, 2, 1, 4, G, Z, kPathWgmma)            \
  X(CODEC, 2, 1, 8, G, Z, kPathWgmma)

// With the 256-row wgmma kernel: its 17 warps get 96 registers, which int4, int8, fp8, int3 and
// int2 exceed by a few (24 bytes of spills, ptxas 13.0); int3 and int2 leave it out.
#define MARLIN_GEMM_FULL_SET(X, CODEC, G, Z) \
  MARLIN_GEMM_SET_R2_WGMMA(X, CODEC, G, Z)   \
  X(CODEC, 4, 1, 8, G, Z, kPathWgmma)

// The least every format has: the pick's fallbacks (mma R2-FN2-FM2 to 16 tokens, wgmma
// R2-FN1-FM8 above) and 8 tokens per pass.
#define MARLIN_GEMM_BASIC_SET(X, CODEC, G, Z) \
  X(CODEC, 2, 2, 1, G, Z, kPathMma)           \
  X(CODEC, 2, 2, 2, G, Z, kPathMma)           \
  X(CODEC, 2, 1, 8, G, Z, kPathWgmma)

// The GEMV variants tiled_gemm_pick() chooses among: 16 warps × 1 strip for m ≤ 4, 8 × 2 above,
// 8 and 16 tokens per launch; D half-k-tiles loaded ahead for 8 tokens, 4 for 16.
#define MARLIN_GEMV_SET(X, CODEC, D, G, Z) \
  X(CODEC, 16, 1, 1, D, G, Z)              \
  X(CODEC, 8, 2, 1, D, G, Z)               \
  X(CODEC, 8, 2, 2, 4, G, Z)
