#include "backend/cpu/matmul.h"

#include <atomic>
#include <vector>

#include "backend/cpu/cpu_isa.h"
#include "backend/cpu/kernels.h"
#include "backend/cpu/trellis_matmul.h"
#include "core/error.h"
#include "quant/dequant.h"
#include "quant/pack.h"

namespace marlin::cpu {

namespace detail {

std::optional<FormatKind> float_element(const TensorFormat& f) {
  switch (f.kind) {
    case FormatKind::kF32:
    case FormatKind::kF16:
    case FormatKind::kBF16:
    case FormatKind::kFp8E4M3: return f.kind;
    default: return std::nullopt;
  }
}

}  // namespace detail

namespace {

detail::KernelSet kernels_for(CpuIsa isa, const TensorFormat& f) {
  detail::KernelSet set{};
  switch (isa) {
    case CpuIsa::Avx512:
    case CpuIsa::Avx512Fp16: set = detail::kernels_avx512(f); break;
    case CpuIsa::Avx2Vnni: set = detail::kernels_avx2(f, true); break;
    case CpuIsa::Avx2: set = detail::kernels_avx2(f, false); break;
    case CpuIsa::Scalar: break;
  }
  if (!set.int8 && !set.floating) set = detail::kernels_scalar(f);
  return set;
}

void check_tensor(const QuantTensor& w, int64_t m) {
  MARLIN_CHECK(w.rows >= 0 && w.cols > 0 && m >= 0, "cpu matmul: bad shape rows={} cols={} m={}", w.rows,
               w.cols, m);
  if (w.rows == 0) return;
  w.validate();
  if (w.format.kind == FormatKind::kGgml)
    MARLIN_CHECK(ggml_type_info(w.format.ggml).supported, "cpu matmul: weight type {} is not supported",
                 ggml_type_info(w.format.ggml).name);
}

// Act order: x'[i][k] = x[i][perm[k]], built once per call (perm checked first, so a bad entry
// fails before any work).
const float* permuted_activations(const QuantTensor& w, const float* x, int64_t m, ThreadPool& pool) {
  for (int64_t k = 0; k < w.cols; ++k)
    MARLIN_CHECK(w.perm[k] >= 0 && w.perm[k] < w.cols, "cpu matmul: act-order permutation entry {} = {} is outside [0, {})",
                 k, w.perm[k], w.cols);
  thread_local std::vector<float> permuted;
  permuted.resize(size_t(m * w.cols));
  float* out = permuted.data();
  pool.parallel_for(m, 1, [&](int64_t begin, int64_t end) {
    for (int64_t i = begin; i < end; ++i)
      for (int64_t k = 0; k < w.cols; ++k) out[i * w.cols + k] = x[i * w.cols + w.perm[k]];
  });
  return out;
}

std::atomic<bool> g_exact_activations{false};

// The reference dequantizer throws on a malformed 2:4 pattern; pool workers must not throw, so the
// exact path checks every pattern on the calling thread first.
void check_sparse_patterns(const QuantTensor& w) {
  const uint64_t meta_row = sparse_meta_row_bytes(w.cols);
  for (int64_t r = 0; r < w.rows; ++r)
    for (int64_t j = 0; j < w.cols / 4; ++j) {
      int first, second;
      MARLIN_CHECK(sparse_positions(packed_code(w.sparse_meta + uint64_t(r) * meta_row, j, 4), first, second),
                   "cpu matmul: row {}: malformed 2:4 pattern at columns {}..{}", r, 4 * j, 4 * j + 3);
    }
}

void exact_rows(const QuantTensor& w, const float* x, int64_t m, int64_t r0, int64_t r1, float* y) {
  std::vector<float> row(static_cast<size_t>(w.cols));
  for (int64_t r = r0; r < r1; ++r) {
    dequantize_row(w, r, row.data());
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

void matmul(const QuantTensor& w, const float* x, int64_t m, float* y, ThreadPool& pool) {
  check_tensor(w, m);
  if (m == 0 || w.rows == 0) return;
  if (w.format.act_order) x = permuted_activations(w, x, m, pool);
  const bool exact = g_exact_activations.load(std::memory_order_relaxed);
  if (w.format.kind == FormatKind::kTrellis && !exact) return trellis_matmul(w, x, m, y, pool);
  if (exact) {
    if (w.format.sparse_24) check_sparse_patterns(w);
    pool.parallel_for(w.rows, kRowGrain, [&](int64_t begin, int64_t end) { exact_rows(w, x, m, begin, end, y); });
    return;
  }
  const detail::KernelSet kernels = kernels_for(active_cpu_isa(), w.format);
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
    kernels.quantize(kernels.form, x, 1, w.cols, act_data);
  } else {
    pool.parallel_for(m, 1, [&](int64_t begin, int64_t end) {
      kernels.quantize(kernels.form, x + begin * w.cols, end - begin, w.cols, act_data + begin * groups);
    });
  }
  pool.parallel_for(w.rows, kRowGrain, [&](int64_t begin, int64_t end) { kernels.int8(w, act_data, m, begin, end, y); });
}

void set_exact_activations(bool exact) { g_exact_activations.store(exact, std::memory_order_relaxed); }

}  // namespace marlin::cpu
