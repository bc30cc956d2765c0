// Host side of the attention tests: a paged KV cache filled with fp16 data (everything a kernel
// must not read is NaN), and a double-precision attention with its error bound.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <numeric>
#include <random>
#include <vector>

#include "backend/cuda/ops.h"
#include "core/half.h"

namespace marlin::test {

constexpr uint16_t kPoison = 0xfe00;  // fp16 NaN

// A pool of pages laid out as ops.h describes ([page][kv_head][position in page][head_dim]).
struct HostPagedCache {
  int n_kv_heads, head_dim, page_size, pages;
  std::vector<uint16_t> keys, values;
  std::vector<int32_t> unused_pages;  // still free, all NaN

  HostPagedCache(int n_kv_heads_, int head_dim_, int page_size_, int pages_, std::mt19937& rng)
      : n_kv_heads(n_kv_heads_), head_dim(head_dim_), page_size(page_size_), pages(pages_),
        keys(size_t(pages_) * n_kv_heads_ * page_size_ * head_dim_, kPoison), values(keys) {
    unused_pages.resize(size_t(pages));
    std::iota(unused_pages.begin(), unused_pages.end(), 0);
    std::shuffle(unused_pages.begin(), unused_pages.end(), rng);
  }

  size_t at(int32_t page, int kv_head, int in_page) const {
    return ((size_t(page) * size_t(n_kv_heads) + size_t(kv_head)) * size_t(page_size) + size_t(in_page)) *
           size_t(head_dim);
  }

  // A block table row of `table_len` entries for a sequence of `len` positions with random K/V
  // (values in [-1, 1]); entries past the sequence's pages name a NaN page.
  std::vector<int32_t> add_sequence(int64_t len, int table_len, std::mt19937& rng) {
    const int needed = int((len + page_size - 1) / page_size);
    std::vector<int32_t> table(static_cast<size_t>(table_len));
    for (int i = 0; i < needed; ++i) {
      table[size_t(i)] = unused_pages.back();
      unused_pages.pop_back();
    }
    const int32_t spare = unused_pages.front();  // never handed out: stays NaN
    for (int i = needed; i < table_len; ++i) table[size_t(i)] = spare;
    std::uniform_real_distribution<float> dist(-1.0f, 1.0f);
    for (int64_t pos = 0; pos < len; ++pos)
      for (int h = 0; h < n_kv_heads; ++h)
        for (int d = 0; d < head_dim; ++d) {
          const size_t i = at(table[size_t(pos / page_size)], h, int(pos % page_size)) + size_t(d);
          keys[i] = fp32_to_fp16(dist(rng));
          values[i] = fp32_to_fp16(dist(rng));
        }
    return table;
  }
};

// Attention of one query head over positions [first, ctx) of a sequence, in double precision, with
// the tolerance a correct fp16/fp32 kernel meets:
//   fp16 output rounding                               2^-11·|out|
//   P rounded to fp16 before P·V                        2^-11·Σp|v|/l, plus 2^-25 absolute per
//                                                       p in fp16's subnormal range: ctx·2^-25·max|v|/l
//   fp32 scores (exact fp16 products, hd-term sums,     2·δ·Σp|v|/l with δ = hd·2^-24·scale·max Σ|q·k|
//   then ×scale·log2e, − max, exp2f: a few ulp of the    + 2^-22·(max |score|·log2e + 1)
//   log2-domain score)
//   fp32 sums and rescales of P·V over the context      (ctx + 64)·2^-24·Σp|v|/l
struct ReferenceHead {
  std::vector<double> out, tolerance;
};

inline ReferenceHead reference_attention(const HostPagedCache& cache, const std::vector<int32_t>& table,
                                         int kv_head, const float* q, int64_t ctx, double scale,
                                         int64_t first = 0) {
  const int hd = cache.head_dim;
  std::vector<double> scores(static_cast<size_t>(ctx), 0.0);
  double max_score = -INFINITY, max_abs_dot = 0;
  for (int64_t j = first; j < ctx; ++j) {
    const size_t base = cache.at(table[size_t(j / cache.page_size)], kv_head, int(j % cache.page_size));
    double dot = 0, abs_dot = 0;
    for (int d = 0; d < hd; ++d) {
      const double product = double(q[d]) * fp16_to_fp32(cache.keys[base + size_t(d)]);
      dot += product;
      abs_dot += std::abs(product);
    }
    scores[size_t(j)] = dot * scale;
    max_score = std::max(max_score, scores[size_t(j)]);
    max_abs_dot = std::max(max_abs_dot, abs_dot);
  }
  double l = 0;
  for (int64_t j = first; j < ctx; ++j) l += (scores[size_t(j)] = std::exp(scores[size_t(j)] - max_score));
  ReferenceHead r{std::vector<double>(size_t(hd), 0.0), std::vector<double>(size_t(hd), 0.0)};
  std::vector<double> abs_sum(size_t(hd), 0.0), max_v(size_t(hd), 0.0);
  for (int64_t j = first; j < ctx; ++j) {
    const size_t base = cache.at(table[size_t(j / cache.page_size)], kv_head, int(j % cache.page_size));
    for (int d = 0; d < hd; ++d) {
      const double v = fp16_to_fp32(cache.values[base + size_t(d)]);
      r.out[size_t(d)] += scores[size_t(j)] * v;
      abs_sum[size_t(d)] += scores[size_t(j)] * std::abs(v);
      max_v[size_t(d)] = std::max(max_v[size_t(d)], std::abs(v));
    }
  }
  const double delta = hd * 0x1p-24 * std::abs(scale) * max_abs_dot +
                       0x1p-22 * (std::abs(max_abs_dot * scale) * 1.4426950408889634 + 1);
  for (int d = 0; d < hd; ++d) {
    r.out[size_t(d)] /= l;
    const double bound = abs_sum[size_t(d)] / l;
    r.tolerance[size_t(d)] = 0x1p-11 * std::abs(r.out[size_t(d)]) +
                             bound * (0x1p-11 + 2 * delta + double(ctx + 64) * 0x1p-24) +
                             double(ctx) * 0x1p-25 * max_v[size_t(d)] / l + 0x1p-24;
  }
  return r;
}

}  // namespace marlin::test
