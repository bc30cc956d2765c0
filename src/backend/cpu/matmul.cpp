#include "backend/cpu/matmul.h"

#include <atomic>
#include <vector>

#include "backend/cpu/cpu_isa.h"
#include "backend/cpu/kernels.h"
#include "core/error.h"
#include "quant/dequant.h"
#include "quant/ggml_dequant.h"

namespace marlin::cpu {
namespace {

detail::KernelSet kernels_for(CpuIsa isa, GgmlType type) {
  detail::KernelSet set{};
  switch (isa) {
    case CpuIsa::Avx512: set = detail::kernels_avx512(type); break;
    case CpuIsa::Avx2Vnni: set = detail::kernels_avx2(type, true); break;
    case CpuIsa::Avx2: set = detail::kernels_avx2(type, false); break;
    case CpuIsa::Scalar: break;
  }
  if (!set.int8 && !set.floating) set = detail::kernels_scalar(type);
  return set;
}

void check_matrix(const QuantMatrix& w, int64_t m) {
  const GgmlTypeInfo& info = ggml_type_info(w.type);
  MARLIN_CHECK(info.supported, "cpu matmul: weight type {} is not supported", info.name);
  MARLIN_CHECK(w.rows >= 0 && w.cols > 0 && m >= 0, "cpu matmul: bad shape rows={} cols={} m={}", w.rows,
               w.cols, m);
  const auto row_bytes = ggml_row_bytes(w.type, uint64_t(w.cols));
  MARLIN_CHECK(row_bytes, "cpu matmul: {} columns is not a whole number of {} blocks of {}", w.cols, info.name,
               info.block_elements);
  MARLIN_CHECK(w.row_bytes >= *row_bytes, "cpu matmul: row stride {} is less than the {} bytes of a {} row",
               w.row_bytes, *row_bytes, info.name);
  MARLIN_CHECK(w.data || w.rows == 0, "cpu matmul: null weight data");
}

std::atomic<bool> g_exact_activations{false};

void exact_rows(const QuantMatrix& w, const float* x, int64_t m, int64_t r0, int64_t r1, float* y) {
  std::vector<float> row(static_cast<size_t>(w.cols));
  for (int64_t r = r0; r < r1; ++r) {
    dequantize_row(w.type, w.data + r * w.row_bytes, row.data(), w.cols);
    for (int64_t c = 0; c < m; ++c) {
      double acc = 0;
      for (int64_t k = 0; k < w.cols; ++k) acc += double(x[c * w.cols + k]) * double(row[size_t(k)]);
      y[c * w.rows + r] = float(acc);
    }
  }
}

// Rows handed to a thread come in multiples of this, so threads never share a cache line of y
// for m = 1 and every thread streams a long contiguous stretch of weights.
constexpr int64_t kRowGrain = 16;

}  // namespace

void matmul(const QuantMatrix& w, const float* x, int64_t m, float* y, ThreadPool& pool) {
  check_matrix(w, m);
  if (m == 0 || w.rows == 0) return;
  if (g_exact_activations.load(std::memory_order_relaxed)) {
    pool.parallel_for(w.rows, kRowGrain, [&](int64_t begin, int64_t end) { exact_rows(w, x, m, begin, end, y); });
    return;
  }
  const detail::KernelSet kernels = kernels_for(active_cpu_isa(), w.type);
  if (kernels.floating) {
    pool.parallel_for(w.rows, kRowGrain, [&](int64_t begin, int64_t end) { kernels.floating(w, x, m, begin, end, y); });
    return;
  }
  // Activations are quantized once per call into a buffer reused across calls on this thread.
  thread_local std::vector<ActGroup> act;
  const int64_t groups = groups_for(w.cols);
  act.resize(size_t(m * groups));
  ActGroup* act_data = act.data();
  if (m == 1) {
    kernels.quantize(w.type, x, 1, w.cols, act_data);
  } else {
    pool.parallel_for(m, 1, [&](int64_t begin, int64_t end) {
      kernels.quantize(w.type, x + begin * w.cols, end - begin, w.cols, act_data + begin * groups);
    });
  }
  pool.parallel_for(w.rows, kRowGrain, [&](int64_t begin, int64_t end) { kernels.int8(w, act_data, m, begin, end, y); });
}

void matmul(const QuantTensor& w, const float* x, int64_t m, float* y, ThreadPool& pool) {
  GgmlType type = GgmlType::F32;
  switch (w.format.kind) {
    case FormatKind::kF32: type = GgmlType::F32; break;
    case FormatKind::kF16: type = GgmlType::F16; break;
    case FormatKind::kBF16: type = GgmlType::BF16; break;
    case FormatKind::kGgml: type = w.format.ggml; break;
    default:
      // Planar formats have no fast kernel yet: the reference path (dequantized rows, fp64 sums).
      pool.parallel_for(w.rows, kRowGrain, [&](int64_t begin, int64_t end) {
        std::vector<float> row(static_cast<size_t>(w.cols));
        for (int64_t r = begin; r < end; ++r) {
          dequantize_row(w, r, row.data());
          for (int64_t c = 0; c < m; ++c) {
            double acc = 0;
            const float* xc = x + c * w.cols;
            for (int64_t k = 0; k < w.cols; ++k) acc += double(xc[w.perm ? w.perm[k] : k]) * double(row[size_t(k)]);
            y[c * w.rows + r] = float(acc);
          }
        }
      });
      return;
  }
  matmul(QuantMatrix{type, w.rows, w.cols, w.codes, w.code_row_bytes}, x, m, y, pool);
}

void set_exact_activations(bool exact) { g_exact_activations.store(exact, std::memory_order_relaxed); }

}  // namespace marlin::cpu
