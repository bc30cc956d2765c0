// Gemma 3 configs written as config.json (the form .marlin checkpoints store) read back as the
// same ModelConfig: from a Hugging Face config.json (norms stored as w) and from a GGUF file
// (norms stored as 1 + w, no vocabulary key).
#include <gtest/gtest.h>

#include "formats/gguf.h"
#include "formats/hf_config.h"
#include "formats/hf_json.h"

namespace marlin {
namespace {

const std::string kModels = std::string(MARLIN_FIXTURES_DIR) + "/model/";

void expect_same(const ModelConfig& back, const ModelConfig& c) {
  EXPECT_EQ(back.architecture, "gemma3");
  EXPECT_EQ(back.n_layers, c.n_layers);
  EXPECT_EQ(back.d_model, c.d_model);
  EXPECT_EQ(back.d_ffn, c.d_ffn);
  EXPECT_EQ(back.head_dim, c.head_dim);
  EXPECT_EQ(back.vocab_size, c.vocab_size);
  EXPECT_EQ(back.rms_eps, c.rms_eps);
  EXPECT_EQ(back.query_scale(), c.query_scale());
  EXPECT_EQ(back.embedding_scale, c.embedding_scale);
  EXPECT_EQ(back.norm_weight_offset, c.norm_weight_offset);
  EXPECT_EQ(back.sliding_window, c.sliding_window);
  EXPECT_EQ(back.rope.theta, c.rope.theta);
  EXPECT_EQ(back.rope.scaling, c.rope.scaling);
  EXPECT_EQ(back.rope.factor, c.rope.factor);
  EXPECT_EQ(back.rope.pairing, c.rope.pairing);
  const RopeConfig& local = c.sliding_rope ? *c.sliding_rope : c.rope;
  ASSERT_TRUE(back.sliding_rope.has_value());
  EXPECT_EQ(back.sliding_rope->theta, local.theta);
  EXPECT_EQ(back.sliding_rope->scaling, RopeScaling::kNone);
}

TEST(Gemma3Config, ConfigJsonRoundTrips) {
  for (const char* name : {"tiny_gemma3", "tiny_gemma3_scaled"}) {
    SCOPED_TRACE(name);
    const ModelConfig c = model_config_from_hf(read_json_object(kModels + name + "/config.json"));
    EXPECT_EQ(c.norm_weight_offset, 1.0f);
    expect_same(model_config_from_hf(hf_config_from_model_config(c)), c);
  }
}

TEST(Gemma3Config, GgufConfigRoundTrips) {
  const auto file = GgufFile::open(kModels + "tiny_gemma3.gguf");
  const ModelConfig c = model_config_from_gguf(*file);
  EXPECT_EQ(c.norm_weight_offset, 0.0f);  // GGUF stores 1 + w
  EXPECT_GT(c.vocab_size, 0);             // from the embedding table: the file has no vocab_size key
  expect_same(model_config_from_hf(hf_config_from_model_config(c)), c);
}

}  // namespace
}  // namespace marlin
