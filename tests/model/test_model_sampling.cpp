// Sampling where the model runs (Model::forward_sample, decode_batch_sample) picks what the rule
// picks from the logits forward()/decode_batch() return; bad requests fail before the cache moves.
#include <gtest/gtest.h>

#include <random>
#include <vector>

#include "backend/sampling.h"
#include "core/error.h"
#include "model/model.h"
#include "model/synthetic_source.h"

namespace marlin {
namespace {

SampleBatch requests(int rows, int vocab, std::mt19937_64& rng) {
  SampleBatch b;
  for (int r = 0; r < rows; ++r) {
    SampleRow row;
    row.temperature = r % 2 ? 0.9f : 0.0f;
    row.top_k = 30;
    row.top_p = 0.9f;
    row.frequency_penalty = 0.5f;
    row.draw = rng() >> 11;
    row.penalty_begin = int32_t(b.penalties.size());
    row.penalty_count = 2;
    b.penalties.push_back({(r * 7 + 1) % vocab, 1});
    b.penalties.push_back({(r * 7 + 2) % vocab, 3});
    b.rows.push_back(row);
  }
  return b;
}

TEST(ModelSampling, MatchesTheRuleOnReturnedLogits) {
  auto source = make_synthetic_source("tiny", TensorFormat::parse("int4-g128"));
  ThreadPool pool(2);
  auto model = load_model(*source, pool);
  const int vocab = model->config().vocab_size;
  std::mt19937_64 rng(11);
  SampleScratch scratch;

  auto with_logits = model->new_cache(32), sampled = model->new_cache(32);
  std::vector<float> logits(static_cast<size_t>(vocab));
  std::vector<int32_t> tokens = {3, 1, 4, 1, 5};
  for (int step = 0; step < 4; ++step) {
    const SampleBatch b = requests(1, vocab, rng);
    model->forward(tokens, *with_logits, logits.data(), false);
    const int32_t expected = sample_row(logits.data(), vocab, b.rows[0], b.penalties, scratch);
    EXPECT_EQ(model->forward_sample(tokens, *sampled, b), expected) << "step " << step;
    tokens = {expected};
  }

  const int batch = 3;
  auto batch_logits = model->new_cache(32, batch), batch_sampled = model->new_cache(32, batch);
  std::vector<float> rows(size_t(batch) * size_t(vocab));
  std::vector<int32_t> step_tokens = {9, 8, 7}, next(static_cast<size_t>(batch));
  for (int step = 0; step < 4; ++step) {
    const SampleBatch b = requests(batch, vocab, rng);
    model->decode_batch(step_tokens, *batch_logits, rows.data());
    model->decode_batch_sample(step_tokens, *batch_sampled, b, next.data());
    for (int r = 0; r < batch; ++r)
      EXPECT_EQ(next[size_t(r)], sample_row(&rows[size_t(r) * size_t(vocab)], vocab, b.rows[size_t(r)], b.penalties,
                                            scratch))
          << "step " << step << " sequence " << r;
    step_tokens = next;
  }
}

TEST(ModelSampling, BadRequestsLeaveTheCache) {
  auto source = make_synthetic_source("tiny", TensorFormat::parse("int4-g128"));
  ThreadPool pool(1);
  auto model = load_model(*source, pool);
  auto cache = model->new_cache(8);
  SampleBatch b;
  b.rows.resize(1);
  b.rows[0].top_p = 2.0f;
  const std::vector<int32_t> tokens = {1, 2};
  EXPECT_THROW(model->forward_sample(tokens, *cache, b), Error);
  EXPECT_EQ(cache->length(), 0);
  b.rows.resize(2);
  b.rows[0].top_p = 1.0f;
  EXPECT_THROW(model->forward_sample(tokens, *cache, b), Error);  // two requests for one sequence
  auto batch_cache = model->new_cache(8, 2);
  EXPECT_THROW(model->decode_batch_sample(tokens, *batch_cache, SampleBatch{}, nullptr), Error);
  EXPECT_EQ(batch_cache->length(), 0);
}

}  // namespace
}  // namespace marlin
