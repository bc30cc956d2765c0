#include "quant/gptq.h"

#include <algorithm>
#include <cmath>
#include <numeric>
#include <vector>

#include "core/error.h"
#include "quant/cholesky.h"
#include "quant/dense_kernels.h"
#include "quant/group_grid.h"
#include "quant/hessian.h"
#include "quant/pack.h"
#include "quant/parallel.h"
#include "quant/rtn.h"

namespace marlin {
namespace {

constexpr int64_t kTile = 8;  // rows that share each pass over a block of U

struct Problem {
  int64_t cols;
  const TensorFormat& format;
  const std::vector<float>& u;  // upper factor of H⁻¹, float, cols × cols
  int64_t block;
};

// Quantizes rows [begin, end) of w (stored column order, updated in place) into out.
void quantize_rows(const Problem& p, const GroupQuantizer& quantizer, std::vector<float>& w, int64_t begin,
                   int64_t end, QuantBuffers& out, std::vector<double>& row_loss) {
  const int64_t n = p.cols, group = p.format.group_size;
  const bool sparse = p.format.sparse_24;
  const int bits = format_info(p.format.kind).code_bits;
  const int64_t stored = sparse ? n / 2 : n;
  std::vector<float> errors(size_t(kTile * p.block));
  std::vector<uint8_t> codes(size_t(kTile * stored)), patterns(size_t(kTile * (n / 4)));
  GroupGrid grid[kTile];
  int64_t kept[kTile];
  uint8_t keep_mask[kTile];

  for (int64_t r0 = begin; r0 < end; r0 += kTile) {
    const int64_t tile = std::min(kTile, end - r0);
    float* rows[kTile];
    for (int64_t t = 0; t < tile; ++t) {
      rows[t] = &w[size_t((r0 + t) * n)];
      kept[t] = 0;
      keep_mask[t] = 0xf;
      row_loss[size_t(r0 + t)] = 0.0;
      if (group == 0) {
        grid[t] = quantizer.fit(rows[t], n);
        quantizer.store(grid[t], out, r0 + t, 0);
      }
    }
    for (int64_t b0 = 0; b0 < n; b0 += p.block) {
      const int64_t b1 = std::min(n, b0 + p.block);
      for (int64_t i = b0; i < b1; ++i) {
        const float* ui = &p.u[size_t(i * n)];
        const float d = ui[i];
        for (int64_t t = 0; t < tile; ++t) {
          float* row = rows[t];
          if (group != 0 && i % group == 0) {
            grid[t] = quantizer.fit(row + i, std::min(group, n - i));
            quantizer.store(grid[t], out, r0 + t, i / group);
          }
          if (sparse && i % 4 == 0) {
            float saliency[4];
            for (int j = 0; j < 4; ++j) {
              const float dj = p.u[size_t((i + j) * n + i + j)];
              saliency[j] = row[i + j] * row[i + j] / (dj * dj);
            }
            int first, second;
            keep_largest_two(saliency, first, second);
            keep_mask[t] = uint8_t((1 << first) | (1 << second));
            patterns[size_t(t * (n / 4) + i / 4)] = sparse_pattern(first, second);
          }
          const float x = row[i];
          float q = 0.0f;
          if (keep_mask[t] >> (i % 4) & 1) {
            const uint8_t c = quantizer.encode(x, grid[t]);
            q = quantizer.decode(c, grid[t]);
            codes[size_t(t * stored + kept[t]++)] = c;
          }
          const float err = (x - q) / d;
          row_loss[size_t(r0 + t)] += 0.5 * double(err) * double(err);
          errors[size_t(t * p.block + (i - b0))] = err;
          for (int64_t j = i + 1; j < b1; ++j) row[j] -= err * ui[j];
        }
      }
      // The block's errors reach the later columns: 4 rows of U at a time, shared by the tile.
      for (int64_t k = b0; k < b1 && b1 < n; k += 4)
        for (int64_t t = 0; t < tile; ++t)
          subtract_combination(rows[t] + b1, &errors[size_t(t * p.block + (k - b0))], &p.u[size_t(k * n + b1)], n,
                               std::min<int64_t>(4, b1 - k), n - b1);
    }
    for (int64_t t = 0; t < tile; ++t) {
      pack_codes(&codes[size_t(t * stored)], stored, bits, &out.codes[size_t(r0 + t) * out.code_row_bytes]);
      if (sparse)
        pack_codes(&patterns[size_t(t * (n / 4))], n / 4, 4,
                   &out.sparse_meta[size_t(r0 + t) * sparse_meta_row_bytes(n)]);
    }
  }
}

// Inputs that never fire (H_ii = 0) get H_ii = 1 and weight 0, as in GPTQ; returns their count.
int64_t drop_dead_inputs(std::vector<double>& h, std::vector<float>& w, int64_t rows, int64_t n) {
  int64_t dead = 0;
  for (int64_t i = 0; i < n; ++i) {
    if (h[size_t(i * n + i)] != 0.0) continue;
    ++dead;
    h[size_t(i * n + i)] = 1.0;
    for (int64_t r = 0; r < rows; ++r) w[size_t(r * n + i)] = 0.0f;
  }
  return dead;
}

// Act-order: permutes H and the columns of w by decreasing diag H (stable); returns the order.
std::vector<int32_t> sort_by_activation(std::vector<double>& h, std::vector<float>& w, int64_t rows, int64_t n) {
  std::vector<int32_t> perm(static_cast<size_t>(n));
  std::iota(perm.begin(), perm.end(), 0);
  std::stable_sort(perm.begin(), perm.end(),
                   [&](int32_t a, int32_t b) { return h[size_t(a) * size_t(n + 1)] > h[size_t(b) * size_t(n + 1)]; });
  std::vector<double> hp(h.size());
  for (int64_t i = 0; i < n; ++i)
    for (int64_t j = 0; j < n; ++j) hp[size_t(i * n + j)] = h[size_t(perm[size_t(i)]) * n + perm[size_t(j)]];
  h.swap(hp);
  std::vector<float> row(static_cast<size_t>(n));
  for (int64_t r = 0; r < rows; ++r) {
    for (int64_t k = 0; k < n; ++k) row[size_t(k)] = w[size_t(r * n + perm[size_t(k)])];
    std::copy(row.begin(), row.end(), w.begin() + r * n);
  }
  return perm;
}

// The factor of (H + λI)⁻¹ with λ = percdamp·mean(diag H), percdamp growing 10× per failed try;
// returns the percdamp that worked.
double factor_with_dampening(const std::vector<double>& h, int64_t n, const GptqOptions& options,
                             std::vector<double>& factor) {
  double mean_diag = 0.0;
  for (int64_t i = 0; i < n; ++i) mean_diag += h[size_t(i * n + i)];
  mean_diag /= double(n);
  MARLIN_CHECK(mean_diag > 0.0, "GPTQ: the Hessian's mean diagonal is {}, not positive", mean_diag);
  double percdamp = options.percdamp;
  for (int attempt = 0;; ++attempt, percdamp *= 10.0) {
    if (inverse_hessian_factor(h, n, percdamp * mean_diag, factor, options.pool)) return percdamp;
    MARLIN_CHECK(attempt < options.damping_retries,
                 "GPTQ: the Hessian of {} columns is not positive definite even with dampening {}·mean(diag H)", n,
                 percdamp);
  }
}

}  // namespace

GptqResult quantize_gptq(const float* w, int64_t rows, int64_t cols, const TensorFormat& format,
                         std::span<const double> hessian, const GptqOptions& options) {
  format.check_shape(rows, cols);
  MARLIN_CHECK(format.quantized() && format.kind != FormatKind::kGgml, "GPTQ cannot quantize into {}",
               format.name());
  MARLIN_CHECK(w != nullptr, "GPTQ: no weights");
  MARLIN_CHECK(cols <= kMaxHessianCols, "GPTQ: {} columns, more than the {} a Hessian may have", cols,
               kMaxHessianCols);
  MARLIN_CHECK(int64_t(hessian.size()) == cols * cols, "GPTQ: Hessian has {} entries, {} columns need {}",
               hessian.size(), cols, cols * cols);
  MARLIN_CHECK(options.percdamp > 0.0 && std::isfinite(options.percdamp), "GPTQ: dampening {} is not positive",
               options.percdamp);
  MARLIN_CHECK(options.block_size > 0 && options.block_size % std::max(1, format.group_size) == 0 &&
                   options.block_size % 4 == 0,
               "GPTQ: block size {} is not a positive multiple of the group size {} and of 4", options.block_size,
               format.group_size);
  MARLIN_CHECK(options.damping_retries >= 0 && options.damping_retries <= 20, "GPTQ: {} dampening retries",
               options.damping_retries);
  check_finite(w, rows, cols);
  for (size_t i = 0; i < hessian.size(); ++i)
    MARLIN_CHECK(std::isfinite(hessian[i]), "GPTQ: Hessian entry ({}, {}) is {}", i / size_t(cols),
                 i % size_t(cols), hessian[i]);

  const int64_t n = cols;
  GptqResult result;
  std::vector<double> h(hessian.begin(), hessian.end());
  std::vector<float> wq(w, w + rows * cols);
  result.dead_columns = drop_dead_inputs(h, wq, rows, n);
  std::vector<int32_t> perm;
  if (format.act_order) perm = sort_by_activation(h, wq, rows, n);
  std::vector<double> factor;
  result.percdamp = factor_with_dampening(h, n, options, factor);
  h = {};
  const std::vector<float> u(factor.begin(), factor.end());
  factor = {};

  QuantBuffers out = QuantBuffers::allocate(format, rows, cols);
  if (format.act_order) out.perm = perm;
  if (format.kind == FormatKind::kNvFp4) out.tensor_scale = nvfp4_tensor_scale(wq.data(), rows * cols);
  const GroupQuantizer quantizer(format, out.tensor_scale);
  const Problem problem{cols, format, u, options.block_size};
  std::vector<double> row_loss(static_cast<size_t>(rows));
  parallel_ranges(options.pool, rows, kTile, [&](int64_t begin, int64_t end) {
    quantize_rows(problem, quantizer, wq, begin, end, out, row_loss);
  });
  for (double l : row_loss) result.loss += l;
  result.weights = std::move(out);
  return result;
}

}  // namespace marlin
