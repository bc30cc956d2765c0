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

// Continuous batching: sequences of one cache at different lengths decode together, join after a
// prompt of their own, and leave (their slot reused by a new sequence); each gets exactly the
// logits it gets alone.
TEST(BatchDecode, SequencesJoinAndLeaveAtTheirOwnLengths) {
  cpu::set_exact_activations(true);
  auto source = make_synthetic_source("tiny", TensorFormat::parse("int4-g128"));
  ThreadPool pool(2);
  auto model = load_model(*source, pool);
  const int vocab = model->config().vocab_size;
  auto shared = model->new_cache(32, 3);
  std::vector<float> logits(3 * size_t(vocab));

  // The reference: each request alone in a cache of its own.
  struct Request {
    std::vector<int32_t> prompt;
    std::vector<float> expected;  // logits after the prompt, then after each decoded token
    std::vector<float> got;
  };
  std::vector<Request> requests = {{{5, 9, 100, 7, 3}, {}, {}}, {{400, 2}, {}, {}}, {{1, 511, 256}, {}, {}},
                                   {{17, 18, 19, 20}, {}, {}}};
  const auto feed = [](int i, int step) { return int32_t((i * 131 + step * 17 + 1) % 512); };
  for (size_t i = 0; i < requests.size(); ++i) {
    auto cache = model->new_cache(32);
    std::vector<float> one(static_cast<size_t>(vocab));
    model->forward(requests[i].prompt, *cache, one.data(), false);
    requests[i].expected = one;
    for (int step = 0; step < 4; ++step) {
      const int32_t token = feed(int(i), step);
      model->forward(std::span<const int32_t>(&token, 1), *cache, one.data(), false);
      requests[i].expected.insert(requests[i].expected.end(), one.begin(), one.end());
    }
  }

  // Slots: request 0 in slot 0, request 1 in slot 2; request 2 joins in slot 1 after two steps;
  // request 0 leaves after four and request 3 takes its slot.
  std::vector<int> slot_of = {0, 2, 1, 0}, steps_done(4, 0);
  const auto prefill = [&](int r) {
    std::vector<float> one(static_cast<size_t>(vocab));
    model->forward_sequence(slot_of[size_t(r)], requests[size_t(r)].prompt, *shared, one.data(), false);
    requests[size_t(r)].got = one;
  };
  const auto decode = [&](const std::vector<int>& active) {
    std::vector<int32_t> seqs, tokens;
    for (int r : active) {
      seqs.push_back(slot_of[size_t(r)]);
      tokens.push_back(feed(r, steps_done[size_t(r)]++));
    }
    model->decode_sequences(seqs, tokens, *shared, logits.data());
    for (size_t i = 0; i < active.size(); ++i) {
      auto& got = requests[size_t(active[i])].got;
      got.insert(got.end(), logits.begin() + long(i) * vocab, logits.begin() + long(i + 1) * vocab);
    }
  };
  prefill(1);
  prefill(0);
  decode({1, 0});
  decode({0, 1});
  prefill(2);
  decode({2, 0, 1});
  decode({0, 2});
  shared->truncate(0, slot_of[3]);  // request 0 is done: its slot starts over
  prefill(3);
  decode({3, 1, 2});
  decode({2, 3});
  decode({3});
  decode({3});
  EXPECT_EQ(shared->length(0), 4 + 4);
  EXPECT_EQ(shared->length(1), 3 + 4);
  EXPECT_EQ(shared->length(2), 2 + 4);
  for (size_t r = 0; r < requests.size(); ++r) EXPECT_EQ(requests[r].got, requests[r].expected) << "request " << r;
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
  EXPECT_THROW(model->forward_sequence(2, two, *batch_cache, logits.data(), false), Error);   // no sequence 2
  EXPECT_THROW(model->forward_sequence(-1, two, *batch_cache, logits.data(), false), Error);
  const std::vector<int32_t> twice = {1, 1}, outside = {0, 2};
  EXPECT_THROW(model->decode_sequences(twice, two, *batch_cache, logits.data()), Error);    // a sequence twice
  EXPECT_THROW(model->decode_sequences(outside, two, *batch_cache, logits.data()), Error);  // no sequence 2
  EXPECT_THROW(model->decode_sequences(one, two, *batch_cache, logits.data()), Error);      // 1 sequence, 2 tokens
  EXPECT_THROW(model->new_cache(4, 0), Error);
  for (int s = 0; s < 4; ++s) model->decode_batch(two, *batch_cache, logits.data());
  EXPECT_THROW(model->decode_batch(two, *batch_cache, logits.data()), Error);  // full
}

}  // namespace
}  // namespace marlin
