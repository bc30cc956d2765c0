#include "backend/cpu/attention.h"

#include <algorithm>
#include <cmath>
#include <vector>

#include "backend/cpu/ops.h"

namespace marlin {

void causal_attention(const AttentionShape& shape, const float* q, int64_t q_stride, int64_t n_tokens,
                      int64_t pos0, const CpuKvCache& cache, int seq, int layer, float* out, ThreadPool& pool) {
  const int group = shape.n_heads / shape.n_kv_heads;
  const int64_t hd = shape.head_dim, items = n_tokens * shape.n_heads;
  const float scale = shape.scale;
  const int64_t max_ctx = pos0 + n_tokens;
  const int64_t bs = cache.block_size();
  const auto pages = cache.blocks().page_table(seq);
  MARLIN_CHECK(cache.blocks().blocks_for(max_ctx) <= int64_t(pages.size()),
               "attention: sequence {} has no blocks for {} positions", seq, max_ctx);

  pool.run([&](int index, int count) {
    thread_local std::vector<float> scores;
    if (int64_t(scores.size()) < max_ctx) scores.resize(size_t(max_ctx));
    for (int64_t item = items * index / count; item < items * (index + 1) / count; ++item) {
      const int64_t t = item / shape.n_heads;
      const int head = int(item % shape.n_heads), kv_head = head / group;
      const float* qv = q + t * q_stride + head * hd;
      // Keys [begin, ctx): scores[i] belongs to position begin + i.
      const int64_t ctx = pos0 + t + 1;
      const int64_t begin = shape.window > 0 ? std::max<int64_t>(0, ctx - shape.window) : 0;
      // A head's keys (and values) are consecutive rows within each block of the page table;
      // a run starts at `first` (within its block) and ends with the block or at ctx.
      auto for_each_run = [&](auto&& visit) {
        for (int64_t first = begin; first < ctx; first = (first / bs + 1) * bs) {
          const int32_t block = pages[size_t(first / bs)];
          visit(block, first % bs, std::min((first / bs + 1) * bs, ctx) - first, first - begin);
        }
      };
      for_each_run([&](int32_t block, int64_t row, int64_t count, int64_t at) {
        cpu::dot_rows(qv, cache.key_rows(block, layer, kv_head) + row * hd, count, hd, scale, scores.data() + at);
      });
      cpu::softmax(scores.data(), ctx - begin);
      float* o = out + item * hd;
      std::fill_n(o, hd, 0.0f);
      for_each_run([&](int32_t block, int64_t row, int64_t count, int64_t at) {
        cpu::weighted_row_accumulate(scores.data() + at, cache.value_rows(block, layer, kv_head) + row * hd, count,
                                     hd, o);
      });
    }
  });
}

}  // namespace marlin
