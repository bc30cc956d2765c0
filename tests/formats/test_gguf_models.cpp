// Parses the two real models and checks what the python `gguf` package (0.19.0, GGUFReader)
// reports for them; the expected values below were read with that package.
#include <fmt/format.h>
#include <gtest/gtest.h>

#include <chrono>
#include <filesystem>
#include <map>
#include <numeric>

#include "formats/gguf.h"

namespace marlin {
namespace {

std::string model_path(const char* name) { return std::string(MARLIN_MODELS_DIR) + "/" + name; }

std::unique_ptr<GgufFile> open_model(const char* name) {
  const std::string path = model_path(name);
  if (!std::filesystem::exists(path)) return nullptr;
  return GgufFile::open(path);
}

struct ExpectedTensor {
  const char* name;
  GgmlType type;
  std::vector<uint64_t> shape;
  uint64_t offset, bytes, elements;
  const char* first_bytes_hex;  // first 8 bytes of the data
};

void expect_tensor(const GgufFile& file, const ExpectedTensor& want) {
  SCOPED_TRACE(want.name);
  const GgufTensorInfo* t = file.find_tensor(want.name);
  ASSERT_NE(t, nullptr);
  EXPECT_EQ(t->type, want.type);
  EXPECT_EQ(t->shape, want.shape);
  EXPECT_EQ(t->offset, want.offset);
  EXPECT_EQ(t->bytes, want.bytes);
  EXPECT_EQ(t->elements, want.elements);
  const auto data = file.tensor_data(*t);
  ASSERT_EQ(data.size(), want.bytes);
  std::string hex;
  for (int i = 0; i < 8; ++i) hex += fmt::format("{:02x}", data[i]);
  EXPECT_EQ(hex, want.first_bytes_hex);
}

std::map<GgmlType, int> type_histogram(const GgufFile& file) {
  std::map<GgmlType, int> counts;
  for (const auto& t : file.tensors()) ++counts[t.type];
  return counts;
}

uint64_t total_bytes(const std::vector<std::string>& strings) {
  return std::accumulate(strings.begin(), strings.end(), uint64_t(0),
                         [](uint64_t sum, const std::string& s) { return sum + s.size(); });
}

TEST(GgufModels, SmolLM2) {
  const auto file = open_model("SmolLM2-135M-Instruct.Q4_1.gguf");
  if (!file) GTEST_SKIP() << "model file absent";
  EXPECT_EQ(file->version(), 3u);
  EXPECT_EQ(file->alignment(), 32u);
  EXPECT_EQ(file->data_offset(), 1785664u);
  EXPECT_EQ(file->file_size(), 98362432u);
  EXPECT_EQ(file->metadata().size(), 33u);
  EXPECT_EQ(file->metadata()[0].first, "general.architecture");
  EXPECT_EQ(file->metadata().back().first, "general.quantization_version");
  EXPECT_EQ(file->tensors().size(), 272u);

  EXPECT_EQ(file->get_string("general.architecture"), "llama");
  EXPECT_EQ(file->get_string("general.name"), "Smollm2 135M 8k Lc100K Mix1 Ep2");
  EXPECT_EQ(file->get_uint("llama.block_count"), 30u);
  EXPECT_EQ(file->get_uint("llama.context_length"), 8192u);
  EXPECT_EQ(file->get_uint("llama.embedding_length"), 576u);
  EXPECT_EQ(file->get_uint("llama.feed_forward_length"), 1536u);
  EXPECT_EQ(file->get_int("llama.attention.head_count"), 9);
  EXPECT_EQ(file->get_uint("llama.attention.head_count_kv"), 3u);
  EXPECT_EQ(file->get_uint("llama.vocab_size"), 49152u);
  EXPECT_EQ(file->get_float("llama.rope.freq_base"), 100000.0);
  EXPECT_EQ(file->get_float("llama.attention.layer_norm_rms_epsilon"), double(1e-5f));
  EXPECT_EQ(file->get_bool("tokenizer.ggml.add_bos_token"), false);
  EXPECT_EQ(file->get_string("tokenizer.ggml.model"), "gpt2");
  EXPECT_EQ(file->get_string("tokenizer.ggml.pre"), "smollm");
  EXPECT_EQ(file->get_uint("tokenizer.ggml.eos_token_id"), 2u);
  EXPECT_EQ(file->get_string_array("general.languages"), std::vector<std::string>{"en"});

  const auto tokens = file->get_string_array("tokenizer.ggml.tokens");
  ASSERT_TRUE(tokens);
  ASSERT_EQ(tokens->size(), 49152u);
  EXPECT_EQ(total_bytes(*tokens), 369170u);
  EXPECT_EQ((*tokens)[0], "<|endoftext|>");
  EXPECT_EQ((*tokens)[100], "t");
  EXPECT_EQ(tokens->back(), "ectable");
  const auto merges = file->get_string_array("tokenizer.ggml.merges");
  ASSERT_TRUE(merges);
  ASSERT_EQ(merges->size(), 48900u);
  EXPECT_EQ(total_bytes(*merges), 417477u);
  EXPECT_EQ(merges->front(), "\xc4\xa0 t");  // "Ġ t"
  EXPECT_EQ(merges->back(), "ect able");
  const auto token_types = file->get_int_array("tokenizer.ggml.token_type");
  ASSERT_TRUE(token_types);
  EXPECT_EQ(std::accumulate(token_types->begin(), token_types->end(), int64_t(0)), 49186);

  const auto chat_template = file->get_string("tokenizer.chat_template");
  ASSERT_TRUE(chat_template);
  EXPECT_EQ(chat_template->size(), 368u);
  EXPECT_TRUE(chat_template->starts_with(
      "{% for message in messages %}{% if loop.first and messages[0]['role'] != 'system"));

  EXPECT_EQ(type_histogram(*file),
            (std::map<GgmlType, int>{{GgmlType::Q4_1, 210}, {GgmlType::F32, 61}, {GgmlType::Q8_0, 1}}));
  uint64_t elements = 0, bytes = 0;
  for (const auto& t : file->tensors()) elements += t.elements, bytes += t.bytes;
  EXPECT_EQ(elements, 134515008u);
  EXPECT_EQ(bytes, 96576768u);
  EXPECT_EQ(file->tensors()[0].name, "token_embd.weight");
  EXPECT_EQ(file->tensors().back().name, "output_norm.weight");
  expect_tensor(*file, {"token_embd.weight", GgmlType::Q8_0, {576, 49152}, 1785664, 30081024, 28311552, "3219d60d13f7e5ee"});
  expect_tensor(*file, {"blk.0.attn_q.weight", GgmlType::Q4_1, {576, 576}, 33806656, 207360, 331776, "0f30d8b945876540"});
  expect_tensor(*file, {"blk.29.ffn_down.weight", GgmlType::Q4_1, {1536, 576}, 80630848, 552960, 884736, "e229d8b5f29c4cd9"});
  expect_tensor(*file, {"blk.3.attn_v.weight", GgmlType::Q4_1, {576, 192}, 84992320, 69120, 110592, "be28f8b59cb8bcbf"});
  EXPECT_EQ(file->find_tensor("blk.30.attn_q.weight"), nullptr);
}

TEST(GgufModels, Gemma3) {
  const auto started = std::chrono::steady_clock::now();
  const auto file = open_model("gemma-3-270m-q4_k_m.gguf");
  const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - started).count();
  if (!file) GTEST_SKIP() << "model file absent";
  RecordProperty("parse_seconds", fmt::format("{:.3f}", seconds));
  EXPECT_LT(seconds, 1.0) << "parsing the 253 MB gemma file should take well under a second";

  EXPECT_EQ(file->version(), 3u);
  EXPECT_EQ(file->data_offset(), 6525120u);
  EXPECT_EQ(file->metadata().size(), 33u);
  EXPECT_EQ(file->tensors().size(), 236u);
  EXPECT_EQ(file->get_string("general.architecture"), "gemma3");
  EXPECT_EQ(file->get_uint("gemma3.block_count"), 18u);
  EXPECT_EQ(file->get_uint("gemma3.attention.key_length"), 256u);
  EXPECT_EQ(file->get_uint("gemma3.attention.sliding_window"), 512u);
  EXPECT_EQ(file->get_float("gemma3.rope.freq_base"), 1e6);
  EXPECT_EQ(file->get_string("tokenizer.ggml.model"), "llama");
  EXPECT_EQ(file->get_bool("tokenizer.ggml.add_bos_token"), true);
  EXPECT_EQ(file->get_string_array("general.tags")->size(), 4u);
  EXPECT_EQ(file->find("tokenizer.chat_template"), nullptr);

  const auto tokens = file->get_string_array("tokenizer.ggml.tokens");
  ASSERT_TRUE(tokens);
  ASSERT_EQ(tokens->size(), 262144u);
  EXPECT_EQ(total_bytes(*tokens), 2315366u);
  EXPECT_EQ((*tokens)[0], "<pad>");
  EXPECT_EQ((*tokens)[100], "<unused94>");
  EXPECT_EQ(tokens->back(), "<unused6241>");
  const auto scores = file->get_float_array("tokenizer.ggml.scores");
  ASSERT_TRUE(scores);
  ASSERT_EQ(scores->size(), 262144u);
  EXPECT_EQ((*scores)[0], -1000.0);
  EXPECT_EQ((*scores)[1000], -506.0);
  // Scores are float32 integers here, so the float64 sum is exact.
  EXPECT_EQ(std::accumulate(scores->begin(), scores->end(), 0.0), -32640364576.0);
  const auto token_types = file->get_int_array("tokenizer.ggml.token_type");
  ASSERT_TRUE(token_types);
  EXPECT_EQ(std::accumulate(token_types->begin(), token_types->end(), int64_t(0)), 276417);

  EXPECT_EQ(type_histogram(*file), (std::map<GgmlType, int>{{GgmlType::F32, 109},
                                                            {GgmlType::Q5_0, 81},
                                                            {GgmlType::Q4_K, 27},
                                                            {GgmlType::Q8_0, 10},
                                                            {GgmlType::Q6_K, 9}}));
  uint64_t elements = 0, bytes = 0;
  for (const auto& t : file->tensors()) elements += t.elements, bytes += t.bytes;
  EXPECT_EQ(elements, 268098176u);
  EXPECT_EQ(bytes, 246587904u);
  expect_tensor(*file, {"token_embd.weight", GgmlType::Q8_0, {640, 262144}, 6527680, 178257920, 167772160, "f210f447c7ddec30"});
  expect_tensor(*file, {"blk.0.attn_q.weight", GgmlType::Q5_0, {640, 1024}, 185270464, 450560, 655360, "c017720b47dd3e64"});
  expect_tensor(*file, {"blk.5.ffn_down.weight", GgmlType::Q4_K, {2048, 640}, 205014208, 737280, 1310720, "6d080215a9f6aaff"});
  expect_tensor(*file, {"blk.17.ffn_down.weight", GgmlType::Q6_K, {2048, 640}, 250227904, 1075200, 1310720, "39d35eeba83883b2"});
}

}  // namespace
}  // namespace marlin
