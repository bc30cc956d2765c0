#include "backend/cpu/mla_attention.h"

#include <algorithm>
#include <vector>

#include "backend/cpu/ops.h"

namespace marlin {

void mla_causal_attention(const MlaShape& shape, const float* q, int64_t q_stride, int64_t n_tokens, int64_t pos0,
                          const float* kv_up, const CpuKvCache& cache, int seq, int layer, float* out,
                          ThreadPool& pool) {
  const int64_t row = int64_t(shape.kv_lora) + shape.qk_rope;  // a cache row: [c_kv | k_pe]
  const int64_t q_head = int64_t(shape.qk_nope) + shape.qk_rope;
  const int64_t up_head = (int64_t(shape.qk_nope) + shape.v_dim) * shape.kv_lora;  // W_UK and W_UV of a head
  const int64_t items = n_tokens * shape.n_heads;
  const int64_t max_ctx = pos0 + n_tokens;
  const int64_t bs = cache.block_size();
  const auto pages = cache.blocks().page_table(seq);
  MARLIN_CHECK(cache.geometry().heads == 1 && cache.geometry().key_width == row,
               "mla attention: the cache rows are {} values, expected {}", cache.geometry().key_width, row);
  MARLIN_CHECK(cache.blocks().blocks_for(max_ctx) <= int64_t(pages.size()),
               "mla attention: sequence {} has no blocks for {} positions", seq, max_ctx);

  pool.run([&](int index, int count) {
    thread_local std::vector<float> scores, query, latent;
    if (int64_t(scores.size()) < max_ctx) scores.resize(size_t(max_ctx));
    query.resize(size_t(row));
    latent.resize(size_t(row));
    for (int64_t item = items * index / count; item < items * (index + 1) / count; ++item) {
      const int64_t t = item / shape.n_heads;
      const int head = int(item % shape.n_heads);
      const float* qh = q + t * q_stride + head * q_head;
      const float* w_uk = kv_up + head * up_head;                          // qk_nope rows of kv_lora
      const float* w_uv = w_uk + int64_t(shape.qk_nope) * shape.kv_lora;  // v_dim rows of kv_lora
      // The absorbed query [W_UKᵀ q_nope | q_pe] meets each cache row in one dot product.
      std::fill_n(query.data(), shape.kv_lora, 0.0f);
      cpu::weighted_row_accumulate(qh, w_uk, shape.qk_nope, shape.kv_lora, query.data());
      std::copy_n(qh + shape.qk_nope, shape.qk_rope, query.data() + shape.kv_lora);
      const int64_t ctx = pos0 + t + 1;
      for (int64_t first = 0; first < ctx; first += bs) {
        const int32_t block = pages[size_t(first / bs)];
        cpu::dot_rows(query.data(), cache.key_rows(block, layer, 0), std::min(bs, ctx - first), row, shape.scale,
                      scores.data() + first);
      }
      cpu::softmax(scores.data(), ctx);
      // Σ_j p_j [c_kv_j | k_pe_j]; only the latent part is used.
      std::fill(latent.begin(), latent.end(), 0.0f);
      for (int64_t first = 0; first < ctx; first += bs) {
        const int32_t block = pages[size_t(first / bs)];
        cpu::weighted_row_accumulate(scores.data() + first, cache.key_rows(block, layer, 0), std::min(bs, ctx - first),
                                     row, latent.data());
      }
      cpu::dot_rows(latent.data(), w_uv, shape.v_dim, shape.kv_lora, 1.0f, out + item * shape.v_dim);
    }
  });
}

}  // namespace marlin
