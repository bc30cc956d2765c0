// The paged KV cache under the model: a sequence that starts from another's prefix blocks (shared,
// copied when written) decodes exactly as if it had computed the prefix itself, the sequence it
// shares with is unaffected, and every block returns to the pool.
#include <gtest/gtest.h>

#include <vector>

#include "backend/cpu/matmul.h"
#include "core/error.h"
#include "model/model.h"
#include "model/synthetic_source.h"

namespace marlin {
namespace {

class PagedCache : public ::testing::Test {
 protected:
  void SetUp() override {
    cpu::set_exact_activations(true);
    source_ = make_synthetic_source("tiny", TensorFormat::parse("int4-g128"));
    model_ = load_model(*source_, pool_);
    vocab_ = model_->config().vocab_size;
  }
  void TearDown() override { cpu::set_exact_activations(false); }

  // Logits after `prompt`, then after each of `tail` fed one at a time, in a cache of its own.
  std::vector<float> alone(const std::vector<int32_t>& prompt, const std::vector<int32_t>& tail) {
    auto cache = model_->new_cache(32, 1, {4, 0});
    std::vector<float> out(static_cast<size_t>(vocab_)), all;
    model_->forward(prompt, *cache, out.data(), false);
    all = out;
    for (const int32_t t : tail) {
      model_->forward(std::span<const int32_t>(&t, 1), *cache, out.data(), false);
      all.insert(all.end(), out.begin(), out.end());
    }
    return all;
  }

  ThreadPool pool_{2};
  std::unique_ptr<ModelSource> source_;
  std::unique_ptr<Model> model_;
  int vocab_ = 0;
};

TEST_F(PagedCache, SharedPrefixDecodesExactlyAsComputedAlone) {
  const std::vector<int32_t> prompt = {5, 9, 100, 7, 3, 44, 21, 300, 12, 8};  // 2.5 blocks of 4
  const std::vector<int32_t> tail0 = {17, 18, 19, 20, 21}, tail1 = {400, 2, 2, 60, 61}, tail2 = {1, 511, 256, 8, 90};
  // Sequence 1 takes 6 prefix positions (the second block shared mid-way: copied when written),
  // sequence 2 takes 8 (two whole blocks); both then feed the rest of their own prompts.
  const std::vector<int32_t> prompt1 = {5, 9, 100, 7, 3, 44, 77, 78, 79}, prompt2 = {5, 9, 100, 7, 3, 44, 21, 300, 1};

  auto cache = model_->new_cache(32, 3, {4, 0});
  const KvBlockTable& blocks = cache->blocks();
  std::vector<float> logits(3 * size_t(vocab_)), got0, got1, got2;
  model_->forward_sequence(0, prompt, *cache, logits.data(), false);
  got0.assign(logits.begin(), logits.begin() + vocab_);
  EXPECT_EQ(blocks.page_table(0).size(), 3u);

  cache->share_prefix(1, 0, 6);
  cache->share_prefix(2, 0, 8);
  EXPECT_EQ(cache->length(1), 6);
  EXPECT_EQ(cache->length(2), 8);
  EXPECT_EQ(blocks.total_blocks() - blocks.free_blocks(), 3);  // nothing allocated by sharing
  EXPECT_EQ(blocks.references(blocks.page_table(0)[0]), 3);

  model_->forward_sequence(1, std::span(prompt1).subspan(6), *cache, logits.data(), false);
  got1.assign(logits.begin(), logits.begin() + vocab_);
  EXPECT_NE(blocks.page_table(1)[1], blocks.page_table(0)[1]);  // copied before position 6 was written
  EXPECT_EQ(blocks.page_table(1)[0], blocks.page_table(0)[0]);
  model_->forward_sequence(2, std::span(prompt2).subspan(8), *cache, logits.data(), false);
  got2.assign(logits.begin(), logits.begin() + vocab_);
  EXPECT_EQ(blocks.page_table(2)[1], blocks.page_table(0)[1]);  // whole blocks stay shared
  // Unshared, the three prompts would take 3 + 3 + 3 blocks.
  EXPECT_EQ(blocks.total_blocks() - blocks.free_blocks(), 3 + 2 + 1);

  for (size_t step = 0; step < tail0.size(); ++step) {
    const std::vector<int32_t> seqs = {0, 1, 2}, tokens = {tail0[step], tail1[step], tail2[step]};
    model_->decode_sequences(seqs, tokens, *cache, logits.data());
    got0.insert(got0.end(), logits.begin(), logits.begin() + vocab_);
    got1.insert(got1.end(), logits.begin() + vocab_, logits.begin() + 2 * vocab_);
    got2.insert(got2.end(), logits.begin() + 2 * vocab_, logits.end());
  }
  EXPECT_EQ(got0, alone(prompt, tail0));
  EXPECT_EQ(got1, alone(prompt1, tail1));
  EXPECT_EQ(got2, alone(prompt2, tail2));

  for (int s = 0; s < 3; ++s) cache->truncate(0, s);
  EXPECT_EQ(blocks.free_blocks(), blocks.total_blocks());
}

TEST_F(PagedCache, TruncatedIntoASharedBlockCopiesIt) {
  // A finished sequence's slot reused in place for a prompt that shares only part of it, while
  // another sequence still maps its blocks.
  const std::vector<int32_t> first = {5, 9, 100, 7, 3, 44, 21, 300}, second = {5, 9, 100, 7, 3, 1, 2};
  auto cache = model_->new_cache(32, 2, {4, 0});
  std::vector<float> logits(static_cast<size_t>(vocab_));
  model_->forward_sequence(0, first, *cache, logits.data(), false);
  cache->share_prefix(1, 0, 8);
  const int32_t shared = cache->blocks().page_table(0)[1];
  cache->truncate(5, 0);
  model_->forward_sequence(0, std::span(second).subspan(5), *cache, logits.data(), false);
  EXPECT_EQ(logits, alone(second, {}));
  EXPECT_NE(cache->blocks().page_table(0)[1], shared);
  // Sequence 1 still reads the original block, unchanged.
  const int32_t next = 6;
  model_->forward_sequence(1, std::span(&next, 1), *cache, logits.data(), false);
  std::vector<float> expected = alone(first, {next});
  EXPECT_EQ(logits, std::vector<float>(expected.end() - vocab_, expected.end()));
}

TEST_F(PagedCache, SmallPoolRunsOutWithAClearError) {
  auto cache = model_->new_cache(32, 2, {4, 3});  // 12 positions for two sequences of 32
  std::vector<float> logits(static_cast<size_t>(vocab_));
  const std::vector<int32_t> ten = {1, 2, 3, 4, 5, 6, 7, 8, 9, 10};
  model_->forward_sequence(0, ten, *cache, logits.data(), false);
  try {
    model_->forward_sequence(1, std::span(ten).first(5), *cache, logits.data(), false);
    FAIL() << "expected the pool to run out";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("out of blocks"), std::string::npos) << e.what();
  }
  EXPECT_EQ(cache->length(1), 0);
  cache->truncate(0, 0);
  model_->forward_sequence(1, std::span(ten).first(5), *cache, logits.data(), false);  // room again
  EXPECT_EQ(cache->length(1), 5);
}

}  // namespace
}  // namespace marlin
