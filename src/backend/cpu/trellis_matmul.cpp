#include "backend/cpu/trellis_matmul.h"

#include <algorithm>
#include <vector>

#include "backend/cpu/cpu_isa.h"
#include "quant/hadamard.h"
#include "quant/trellis.h"
#include "quant/trellis_matrix.h"

namespace marlin::cpu {

namespace detail {

void trellis_strips_scalar(const QuantTensor& w, const float* x, int64_t m, int64_t s0, int64_t s1, float* y) {
  uint16_t words[kTrellisMaxTileWords];
  float tile[kTrellisTileValues];
  float acc[kTrellisActRows * 16];
  for (int64_t s = s0; s < s1; ++s) {
    for (int64_t c0 = 0; c0 < m; c0 += kTrellisActRows) {
      const int64_t rows_here = std::min(kTrellisActRows, m - c0);
      std::fill(acc, acc + rows_here * 16, 0.0f);
      for (int64_t j = 0; j < w.cols / 16; ++j) {
        trellis_load_tile(w, s, j, words);
        trellis_decode_tile(words, w.format.bits, tile);
        for (int64_t c = 0; c < rows_here; ++c) {
          const float* xc = x + (c0 + c) * w.cols + 16 * j;
          for (int rr = 0; rr < 16; ++rr) {
            float dot = 0.0f;
            for (int cc = 0; cc < 16; ++cc) dot += tile[rr * 16 + cc] * xc[cc];
            acc[c * 16 + rr] += dot;
          }
        }
      }
      for (int64_t c = 0; c < rows_here; ++c)
        for (int rr = 0; rr < 16; ++rr)
          y[(c0 + c) * w.rows + 16 * s + rr] = trellis_row_scale(w, 16 * s + rr) * acc[c * 16 + rr];
    }
  }
}

}  // namespace detail

void trellis_matmul(const QuantTensor& w, const float* x, int64_t m, float* y, ThreadPool& pool) {
  const Rotation r_in(w.cols, w.rotation_seed), r_out(w.rows, w.rotation_seed + 1);
  thread_local std::vector<float> rotated;
  rotated.assign(x, x + m * w.cols);
  r_in.apply(rotated.data(), m, &pool);
  const CpuIsa isa = active_cpu_isa();
  const detail::TrellisStripKernel kernel = isa == CpuIsa::Scalar       ? detail::trellis_strips_scalar
                                            : isa == CpuIsa::Avx512Fp16 ? detail::trellis_strips_avx512fp16
                                            : isa == CpuIsa::Avx512     ? detail::trellis_strips_avx512
                                                                        : detail::trellis_strips_avx2;
  const float* xr = rotated.data();
  pool.parallel_for(w.rows / 16, 1, [&](int64_t begin, int64_t end) { kernel(w, xr, m, begin, end, y); });
  r_out.apply_transpose(y, m, &pool);
}

}  // namespace marlin::cpu
