// Which kernel tiled_gemm() runs: a rule on (n, k, m, SM count, format), fit to the measurements
// of bench/gpu (H100 runs; bench/gpu/NOTES.md). Each branch says what it was fit to.
//
//  1. The few-token kernel (GEMV: rows across SMs, K split inside each block, no split-K tail):
//     m ≤ 10 (every shape), m ≤ 16 for tiny matrices (≤ 16 KB per SM). Alone (kernel bench, runs
//     4 and 7) the GEMV won only part of that: int4 every m ≤ 4 shape with n ≤ 14336 by 10–25 %,
//     but 4096×28672 (14 strips per SM: one warp per strip, whole K) went to the striped mma
//     kernel by 2–6 %, and at m = 8 only 4096×4096 (64 KB per SM) to the GEMV; int8/fp8 every
//     m ≤ 4 shape, and m = 8 up to 196 KB per SM. Inside a model the GEMV won all of them
//     (2026-11-28, see tiled_gemm_pick), and the model is what runs.
//  2. Otherwise the striped kernel, with 256-row blocks (R4) when that still leaves every SM
//     enough k-steps of work, else 128-row blocks (R2) that split K over more SMs; 3 stages.
//     Enough: 6 (runs 4 and 7, int4: R2 ahead at ≤ 5.8, R4 from 7.8 up; 8-bit with wgmma, m > 32,
//     the same), but 16 for 8-bit tiles on the mma.sync path, m ≤ 32 (run 7: R2 ahead by 3–9 % at
//     13.6 — 4096 rows × K 14336 — R4 at 27).
//       m ≤ 16   mma.sync, 8 or 16 tokens per pass
//       m ≤ 32   mma.sync R4 / wgmma R2, 32 tokens per pass (run 4: the better of the two at
//                each block size)
//       m > 32   wgmma, 64 tokens per pass.
//  3. n not a multiple of 128 (no striped block fits): the GEMV, 16 tokens per launch.
// A preferred variant that was not compiled for the format falls back to one every format has
// (GEMV W8-S2 with 8 or 16 tokens, mma R2-FN2-FM2, wgmma R2-FN1-FM8). fp4, int3 and int2 take
// int4's rule (not yet fit to their own measurements).
#include <algorithm>

#include "backend/cuda/tiled_gemm.h"
#include "backend/cuda/tiled_gemm_kernels.h"
#include "core/error.h"

namespace marlin::cuda {

namespace {

using tiled_detail::kPathMma;
using tiled_detail::kPathWgmma;

int find_striped(int row_tiles, int frags_n, int frags_m, int path, const WeightTileShape& shape) {
  int count = 0;
  const tiled_detail::KernelConfig* configs = tiled_detail::kernel_configs(&count);
  for (int i = 0; i < count; ++i) {
    const tiled_detail::KernelConfig& c = configs[i];
    if (c.path == path && c.row_tiles == row_tiles && c.frags_n == frags_n && c.frags_m == frags_m &&
        tiled_detail::same_format(c, shape))
      return i;
  }
  return -1;
}

int find_gemv(int warps, int strips_per_warp, int frags_m, const WeightTileShape& shape) {
  int count = 0;
  const tiled_detail::GemvConfig* configs = tiled_detail::gemv_configs(&count);
  for (int i = 0; i < count; ++i) {
    const tiled_detail::GemvConfig& c = configs[i];
    if (c.warps == warps && c.strips_per_warp == strips_per_warp && c.frags_m == frags_m &&
        tiled_detail::same_format(c, shape))
      return i;
  }
  return -1;
}

// The GEMV for up to 16 tokens per launch: W16-S1 (more warps to split K) for m ≤ 4, W8-S2 (two
// strips share each activation load) above; the other where one is missing.
int pick_gemv(const WeightTileShape& shape, int64_t m) {
  const int frags_m = m <= 8 ? 1 : 2;
  const int wide = find_gemv(16, 1, frags_m, shape), paired = find_gemv(8, 2, frags_m, shape);
  const int first = m <= 4 ? wide : paired, second = m <= 4 ? paired : wide;
  return first >= 0 ? first : second;
}

// Work items (128-column k-steps × token chunks × row blocks) per SM.
double items_per_sm(const WeightTileShape& shape, int64_t m, int block_rows, int chunk, int sms) {
  return double(shape.rows / block_rows) * double((m + chunk - 1) / chunk) * double(shape.col_blocks()) / sms;
}

// The most tokens for which every product takes the GEMV (below).
constexpr int64_t kGemvTokensInModel = 10;

}  // namespace

GemmTuning tiled_gemm_pick(const WeightTileShape& shape, int64_t m, int sms) {
  MARLIN_CHECK(sms > 0, "tiled gemm pick: {} SMs", sms);
  GemmTuning t;
  const double weight_bytes_per_sm = double(shape.total_bytes()) / sms;
  // Codes of at most 4 bits (int4, fp4, int3, int2) follow int4's measurements.
  const bool eight_bit = shape.code_bits() == 8;
  // Up to 10 tokens every product takes the GEMV, however many rows. Measured in a model, not
  // alone: a striped launch behind a small op (a norm) pays its ramp and its split-K tail in full,
  // where consecutive launches in a kernel bench hide them. Llama-3-8B int4-g128 (int8 head) on an
  // H200, 2026-11-28, decode tok/s striped → GEMV (each pair in one call): 359.7 → 416.9 at
  // batch 1, 1,348.9 → 1,499.1 at 4, 1,481.7 → 1,615.3 at 5, 2,336.7 → 2,375.8 at 8, 2,297.2 →
  // 2,432.2 at 9, 2,609.0 → 2,622.6 at 10, 2,865.7 → 2,834.6 at 11, 3,081.5 → 3,055.5 at 12 and
  // 4,098.2 → 3,674.4 at 16 (9–16: means of two runs; on an H100 2,282.4 → 2,423.7 at 9 and
  // 2,612.8 → 2,610.1 at 10); yet alone the gate|up product (28,672 rows) takes 26.5 µs striped
  // against 27.3 (m = 1), 30.1 (m = 4) and 41.5 (m = 8) on the GEMV. From 11 tokens on, the kernel
  // bench's rule (bench/gpu/NOTES.md).
  const bool gemv_fits = m <= kGemvTokensInModel || (m <= 16 && weight_bytes_per_sm <= 16e3);
  if (gemv_fits || shape.rows % 128 != 0) {
    t.gemv_variant = pick_gemv(shape, std::min<int64_t>(m, 16));
    MARLIN_CHECK(t.gemv_variant >= 0, "tiled gemm: no few-token kernel for {} tiles with {} groups per tile{}",
                 tile_codec_name(shape.codec), shape.groups_per_tile, shape.asymmetric ? ", asymmetric" : "");
    return t;
  }
  const int chunk = m <= 8 ? 8 : m <= 16 ? 16 : m <= 32 ? 32 : 64;
  const double enough_items = eight_bit && m <= 32 ? 16.0 : 6.0;
  const bool big_blocks = shape.rows % 256 == 0 && items_per_sm(shape, m, 256, chunk, sms) >= enough_items;
  const int row_tiles = big_blocks ? 4 : 2;
  if (m <= 16)
    t.variant = find_striped(row_tiles, 2, chunk / 8, kPathMma, shape);
  else if (m <= 32)
    t.variant = big_blocks ? find_striped(4, 2, 4, kPathMma, shape) : find_striped(2, 1, 4, kPathWgmma, shape);
  else
    t.variant = find_striped(row_tiles, 1, 8, kPathWgmma, shape);
  if (t.variant < 0)
    t.variant = m <= 16 ? find_striped(2, 2, 2, kPathMma, shape) : find_striped(2, 1, 8, kPathWgmma, shape);
  if (t.variant < 0 && m <= 16) {
    t.gemv_variant = pick_gemv(shape, m);
    if (t.gemv_variant >= 0) return t;
  }
  MARLIN_CHECK(t.variant >= 0, "tiled gemm: no kernel for {} tiles with {} groups per tile{}",
               tile_codec_name(shape.codec), shape.groups_per_tile, shape.asymmetric ? ", asymmetric" : "");
  return t;
}

}  // namespace marlin::cuda
