#include "quant/rtn.h"

#include <cmath>
#include <cstring>
#include <optional>
#include <vector>

#include "core/error.h"
#include "core/half.h"
#include "quant/dequant.h"
#include "quant/ggml_quantize.h"
#include "quant/group_grid.h"
#include "quant/pack.h"
#include "quant/parallel.h"

namespace marlin {
namespace {

void store_plain_row(FormatKind kind, const float* x, int64_t n, uint8_t* out) {
  for (int64_t k = 0; k < n; ++k) {
    if (kind == FormatKind::kF32) {
      std::memcpy(out + 4 * k, &x[k], 4);
      continue;
    }
    const uint16_t h = kind == FormatKind::kF16 ? fp32_to_fp16(x[k]) : fp32_to_bf16(x[k]);
    std::memcpy(out + 2 * k, &h, 2);
  }
}

// One row of a quantized (non-ggml) format: x is the row in stored column order.
void quantize_row_grid(const GroupQuantizer& quantizer, const float* x, int64_t row, QuantBuffers& out) {
  const TensorFormat& f = out.format;
  const int64_t cols = out.cols;
  std::vector<float> kept;  // the values that get codes, in order
  if (f.sparse_24) {
    kept.resize(size_t(cols / 2));
    std::vector<uint8_t> patterns(static_cast<size_t>(cols / 4));
    for (int64_t j = 0; j < cols / 4; ++j) {
      int first, second;
      keep_largest_two(x + 4 * j, first, second);
      patterns[size_t(j)] = sparse_pattern(first, second);
      kept[size_t(2 * j)] = x[4 * j + first];
      kept[size_t(2 * j + 1)] = x[4 * j + second];
    }
    pack_codes(patterns.data(), cols / 4, 4, &out.sparse_meta[size_t(row) * sparse_meta_row_bytes(cols)]);
  } else {
    kept.assign(x, x + cols);
  }

  // Group g covers stored columns [g·group, (g+1)·group), i.e. kept values [g·span, (g+1)·span).
  const int64_t n = int64_t(kept.size());
  const int64_t span = f.group_size == 0 ? n : (f.sparse_24 ? f.group_size / 2 : f.group_size);
  std::vector<uint8_t> codes(kept.size());
  for (int64_t g = 0, begin = 0; begin < n; ++g, begin += span) {
    const int64_t count = std::min(span, n - begin);
    const GroupGrid grid = quantizer.fit(&kept[size_t(begin)], count);
    quantizer.store(grid, out, row, g);
    for (int64_t i = begin; i < begin + count; ++i) codes[size_t(i)] = quantizer.encode(kept[size_t(i)], grid);
  }
  pack_codes(codes.data(), n, format_info(f.kind).code_bits, &out.codes[size_t(row) * out.code_row_bytes]);
}

}  // namespace

void check_finite(const float* w, int64_t rows, int64_t cols) {
  for (int64_t r = 0; r < rows; ++r)
    for (int64_t k = 0; k < cols; ++k)
      MARLIN_CHECK(std::isfinite(w[r * cols + k]), "weight at row {}, column {} is {}", r, k, w[r * cols + k]);
}

void keep_largest_two(const float* four, int& first, int& second) {
  int a = 0;
  for (int i = 1; i < 4; ++i)
    if (std::fabs(four[i]) > std::fabs(four[a])) a = i;
  int b = a == 0 ? 1 : 0;
  for (int i = 0; i < 4; ++i)
    if (i != a && std::fabs(four[i]) > std::fabs(four[b])) b = i;
  first = std::min(a, b);
  second = std::max(a, b);
}

QuantBuffers quantize_rtn(const float* w, int64_t rows, int64_t cols, const TensorFormat& format,
                          std::span<const int32_t> perm, ThreadPool* pool) {
  format.check_shape(rows, cols);
  MARLIN_CHECK(w != nullptr, "quantize_rtn: no weights");
  if (format.act_order) {
    MARLIN_CHECK(int64_t(perm.size()) == cols, "format {} needs a permutation of {} columns, got {}",
                 format.name(), cols, perm.size());
    check_permutation(perm.data(), cols);
  } else {
    MARLIN_CHECK(perm.empty(), "format {} takes no column permutation (add -act)", format.name());
  }
  check_finite(w, rows, cols);

  QuantBuffers out = QuantBuffers::allocate(format, rows, cols);
  if (format.act_order) out.perm.assign(perm.begin(), perm.end());
  if (format.kind == FormatKind::kNvFp4) out.tensor_scale = nvfp4_tensor_scale(w, rows * cols);
  std::optional<GroupQuantizer> quantizer;
  if (format.quantized() && format.kind != FormatKind::kGgml) quantizer.emplace(format, out.tensor_scale);
  if (format.kind == FormatKind::kGgml)
    MARLIN_CHECK(ggml_type_info(format.ggml).block_elements == 32, "no RTN quantizer for {}", format.name());

  auto do_rows = [&](int64_t begin, int64_t end) {
    std::vector<float> stored(static_cast<size_t>(cols));
    for (int64_t r = begin; r < end; ++r) {
      const float* x = w + r * cols;
      if (format.act_order) {
        for (int64_t k = 0; k < cols; ++k) stored[size_t(k)] = x[perm[size_t(k)]];
        x = stored.data();
      }
      uint8_t* dst = &out.codes[size_t(r) * out.code_row_bytes];
      if (!format.quantized()) store_plain_row(format.kind, x, cols, dst);
      else if (format.kind == FormatKind::kGgml) quantize_row(format.ggml, x, dst, cols);
      else quantize_row_grid(*quantizer, x, r, out);
    }
  };
  parallel_ranges(pool, rows, 1, do_rows);
  return out;
}

}  // namespace marlin
