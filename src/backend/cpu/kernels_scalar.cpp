// Portable kernels: the fallback on CPUs without AVX2, and a second opinion in tests. They cover
// every format matmul accepts.
#include <cstring>
#include <vector>

#include "backend/cpu/kernels.h"
#include "backend/cpu/planar.h"
#include "core/error.h"
#include "quant/dequant.h"

namespace marlin::cpu::detail {
namespace {

template <bool kPlanar>
void int8_rows(const QuantTensor& w, const ActGroup* act, int64_t m, int64_t r0, int64_t r1, float* y) {
  const int64_t groups = groups_for(w.cols);
  const PlanarGeometry geo = kPlanar ? planar_geometry(w) : PlanarGeometry{};
  thread_local std::vector<WeightGroup> unpacked;
  unpacked.resize(size_t(groups));
  for (int64_t r = r0; r < r1; ++r) {
    for (int64_t g = 0; g < groups; ++g) {
      if constexpr (kPlanar) unpack_planar_group_scalar(w, geo, r, g, unpacked[size_t(g)]);
      else unpack_group_scalar(w.format.ggml, w.codes + r * w.code_row_bytes, w.cols, g, unpacked[size_t(g)]);
    }
    for (int64_t c = 0; c < m; ++c) {
      float acc = 0.0f;
      for (int64_t g = 0; g < groups; ++g) {
        const WeightGroup& wg = unpacked[size_t(g)];
        const ActGroup& ag = act[c * groups + g];
        for (int lane = 0; lane < 32; ++lane) {
          int dot = 0;
          for (int k = 4 * lane; k < 4 * lane + 4; ++k) dot += int(wg.u[k]) * int(ag.q[k]);
          acc += wg.scale[lane] * (ag.d[lane] * float(dot));
          acc += wg.min[lane] * ag.s[lane];
        }
      }
      y[c * w.rows + r] = acc;
    }
  }
}

void float_rows(const QuantTensor& w, const float* x, int64_t m, int64_t r0, int64_t r1, float* y) {
  thread_local std::vector<float> row_values;
  row_values.resize(size_t(w.cols));
  for (int64_t r = r0; r < r1; ++r) {
    dequantize_row(w, r, row_values.data());
    for (int64_t c = 0; c < m; ++c) {
      const float* xc = x + c * w.cols;
      float acc = 0.0f;
      for (int64_t k = 0; k < w.cols; ++k) acc += xc[k] * row_values[size_t(k)];
      y[c * w.rows + r] = acc;
    }
  }
}

}  // namespace

KernelSet kernels_scalar(const TensorFormat& f) {
  KernelSet set;
  if (float_element(f)) {
    set.floating = float_rows;
  } else if (f.kind == FormatKind::kGgml) {
    set.int8 = int8_rows<false>;
    set.quantize = quantize_activations;
    set.form = int8_format(f.ggml);
  } else {
    set.int8 = int8_rows<true>;
    set.quantize = quantize_activations;
    set.form = planar_int8_format(f);
  }
  return set;
}

}  // namespace marlin::cpu::detail
