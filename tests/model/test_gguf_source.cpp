// The GGUF model source: Hugging Face names mapped onto GGUF tensors.
#include <gtest/gtest.h>

#include <filesystem>

#include "model/gguf_source.h"
#include "tokenizer/tokenizer.h"

namespace marlin {
namespace {

const std::string kModel = std::string(MARLIN_MODELS_DIR) + "/SmolLM2-135M-Instruct.Q4_1.gguf";

TEST(GgufSource, MapsNamesBothWays) {
  EXPECT_EQ(gguf_tensor_name("model.layers.12.mlp.up_proj.weight"), "blk.12.ffn_up.weight");
  EXPECT_EQ(gguf_tensor_name("model.layers.0.self_attn.q_proj.weight"), "blk.0.attn_q.weight");
  EXPECT_EQ(gguf_tensor_name("model.embed_tokens.weight"), "token_embd.weight");
  EXPECT_EQ(gguf_tensor_name("lm_head.weight"), "output.weight");
  EXPECT_EQ(gguf_tensor_name("model.layers.x.mlp.up_proj.weight"), "");
  EXPECT_EQ(gguf_tensor_name("model.layers.1.mlp.unknown.weight"), "");
  EXPECT_EQ(gguf_tensor_name("model.layers..mlp.up_proj.weight"), "");
}

TEST(GgufSource, DefaultModel) {
  if (!std::filesystem::exists(kModel)) GTEST_FAIL() << kModel << " is missing: run scripts/setup.sh";
  auto source = open_gguf_source(kModel);
  const ModelConfig& c = source->config();
  EXPECT_EQ(c.architecture, "llama");
  EXPECT_EQ(c.n_layers, 30);
  EXPECT_EQ(c.rope.pairing, RopePairing::kAdjacent);
  auto q = source->tensor("model.layers.0.self_attn.q_proj.weight");
  ASSERT_TRUE(q.has_value());
  EXPECT_EQ(q->rows, 576);
  EXPECT_EQ(q->cols, 576);
  EXPECT_EQ(q->format.kind, FormatKind::kGgml);
  EXPECT_EQ(q->format.ggml, GgmlType::Q4_1);
  EXPECT_EQ(q->code_row_bytes, 576u / 32u * 20u);
  auto norm = source->tensor("model.norm.weight");
  ASSERT_TRUE(norm.has_value());
  EXPECT_EQ(norm->rows, 1);
  EXPECT_EQ(norm->format.kind, FormatKind::kF32);
  EXPECT_FALSE(source->tensor("lm_head.weight").has_value());  // tied
  const auto names = source->tensor_names();
  EXPECT_EQ(names.size(), 272u);
  EXPECT_NE(std::find(names.begin(), names.end(), "model.layers.29.mlp.down_proj.weight"), names.end());
  EXPECT_EQ(source->tokenizer()->vocab_size(), 49152);
  EXPECT_NE(source->chat_template().find("<|im_start|>"), std::string::npos);
}

}  // namespace
}  // namespace marlin
