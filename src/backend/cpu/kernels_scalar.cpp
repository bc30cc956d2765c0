// Portable kernels: the fallback on CPUs without AVX2, and a second opinion in tests.
#include <cstring>
#include <vector>

#include "backend/cpu/kernels.h"
#include "core/error.h"
#include "quant/ggml_dequant.h"

namespace marlin::cpu::detail {
namespace {

void int8_rows(const QuantMatrix& w, const ActGroup* act, int64_t m, int64_t r0, int64_t r1, float* y) {
  const int64_t groups = groups_for(w.cols);
  thread_local std::vector<WeightGroup> unpacked;
  unpacked.resize(size_t(groups));
  for (int64_t r = r0; r < r1; ++r) {
    const uint8_t* row = w.data + r * w.row_bytes;
    for (int64_t g = 0; g < groups; ++g) unpack_group_scalar(w.type, row, w.cols, g, unpacked[size_t(g)]);
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

void float_rows(const QuantMatrix& w, const float* x, int64_t m, int64_t r0, int64_t r1, float* y) {
  thread_local std::vector<float> row_values;
  row_values.resize(size_t(w.cols));
  for (int64_t r = r0; r < r1; ++r) {
    dequantize_row(w.type, w.data + r * w.row_bytes, row_values.data(), w.cols);
    for (int64_t c = 0; c < m; ++c) {
      const float* xc = x + c * w.cols;
      float acc = 0.0f;
      for (int64_t k = 0; k < w.cols; ++k) acc += xc[k] * row_values[size_t(k)];
      y[c * w.rows + r] = acc;
    }
  }
}

}  // namespace

KernelSet kernels_scalar(GgmlType type) {
  switch (type) {
    case GgmlType::F32:
    case GgmlType::F16:
    case GgmlType::BF16: return {nullptr, float_rows, nullptr};
    default: int8_format(type); return {int8_rows, nullptr, quantize_activations};
  }
}

}  // namespace marlin::cpu::detail
