// Decoding several sequences together (one batch cache, one token per sequence per step) gives
// each sequence what decoding it alone gives. With exact activations the CPU's arithmetic per row
// does not depend on how many rows a step has, so the logits must be identical.
#include <gtest/gtest.h>

#include <vector>

#include "backend/cpu/matmul.h"
#include "model/model.h"
#include "model/synthetic_source.h"

namespace marlin {
namespace {

TEST(BatchDecode, EachSequenceAsIfAlone) {
  cpu::set_exact_activations(true);
  auto source = make_synthetic_source("tiny", TensorFormat::parse("int4-g128"));
  ThreadPool pool(2);
  auto model = load_model(*source, pool);
  const int vocab = model->config().vocab_size, batch = 3, steps = 5;
  const std::vector<std::vector<int32_t>> tokens = {{5, 9, 100, 7, 3}, {400, 2, 2, 2, 60}, {1, 511, 256, 8, 90}};

  auto batch_cache = model->new_cache(16, batch);
  std::vector<std::vector<float>> batched(static_cast<size_t>(batch));
  std::vector<float> logits(size_t(batch) * size_t(vocab));
  for (int s = 0; s < steps; ++s) {
    const std::vector<int32_t> step = {tokens[0][size_t(s)], tokens[1][size_t(s)], tokens[2][size_t(s)]};
    model->decode_batch(step, *batch_cache, logits.data());
    for (int b = 0; b < batch; ++b)
      batched[size_t(b)].insert(batched[size_t(b)].end(), logits.begin() + b * vocab, logits.begin() + (b + 1) * vocab);
  }
  EXPECT_EQ(batch_cache->length(), steps);
  for (int b = 0; b < batch; ++b) {
    auto cache = model->new_cache(16);
    std::vector<float> alone, one(static_cast<size_t>(vocab));
    for (int s = 0; s < steps; ++s) {
      model->forward(std::span<const int32_t>(&tokens[size_t(b)][size_t(s)], 1), *cache, one.data(), false);
      alone.insert(alone.end(), one.begin(), one.end());
    }
    EXPECT_EQ(alone, batched[size_t(b)]) << "sequence " << b;
  }
  cpu::set_exact_activations(false);
}

TEST(BatchDecode, WrongUseIsAnError) {
  auto source = make_synthetic_source("tiny", TensorFormat::parse("int4-g128"));
  ThreadPool pool(1);
  auto model = load_model(*source, pool);
  auto batch_cache = model->new_cache(4, 2);
  std::vector<float> logits(2 * size_t(model->config().vocab_size));
  const std::vector<int32_t> one = {1}, two = {1, 2};
  EXPECT_THROW(model->decode_batch(one, *batch_cache, logits.data()), Error);
  EXPECT_THROW(model->forward(two, *batch_cache, logits.data(), false), Error);
  EXPECT_THROW(model->new_cache(4, 0), Error);
  for (int s = 0; s < 4; ++s) model->decode_batch(two, *batch_cache, logits.data());
  EXPECT_THROW(model->decode_batch(two, *batch_cache, logits.data()), Error);  // full
}

}  // namespace
}  // namespace marlin
