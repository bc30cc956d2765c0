// The tokenizer.json exporter: the exported files, loaded back with Tokenizer::from_hf_json_text,
// must behave exactly like Tokenizer::from_gguf on the same file (ids on the whole parity corpus,
// decode, special tokens, BOS/EOS settings), for the real models, a synthetic Llama-2-style
// SentencePiece file, and the byte-level split variants. The comparison with HF `tokenizers`
// itself is tests/python/test_tokenizer_export.py (which drives WriteFilesNamedByEnvironment).
#include <cstdlib>
#include <filesystem>
#include <set>

#include "../formats/gguf_test_writer.h"
#include "core/error.h"
#include "tokenizer/byte_level.h"
#include "tokenizer/export_hf_json.h"
#include "tokenizer/tokenizer_parts.h"
#include "tokenizer/utf8.h"
#include "tokenizer_test_util.h"

namespace marlin::test {
namespace {

using nlohmann::json;

// Text for a failure message (token text may be any bytes).
std::string show(std::string_view text) {
  return json(std::string(text)).dump(-1, ' ', false, json::error_handler_t::replace);
}

// Tokenizer metadata of a synthetic GGUF file (no tensors).
struct TokenizerMetadata {
  std::string arch = "llama";
  std::string model = "gpt2";
  std::optional<std::string> pre;
  std::vector<std::string> tokens, merges;
  std::vector<int32_t> types;
  std::vector<float> scores;
  std::optional<uint32_t> bos, eos, unk, pad;
  std::optional<bool> add_bos, add_eos;
  std::string chat_template;

  std::unique_ptr<GgufFile> write() const {
    GgufSpec spec;
    spec.add("general.architecture", string_value(arch));
    spec.add("tokenizer.ggml.model", string_value(model));
    if (pre) spec.add("tokenizer.ggml.pre", string_value(*pre));
    auto strings = [](const std::vector<std::string>& items) {
      Bytes b = array_value(GgufType::STRING, items.size());
      for (const auto& s : items) b.str(s);
      return b;
    };
    spec.add("tokenizer.ggml.tokens", strings(tokens));
    if (!merges.empty()) spec.add("tokenizer.ggml.merges", strings(merges));
    if (!types.empty()) {
      Bytes b = array_value(GgufType::INT32, types.size());
      for (int32_t t : types) b.put(t);
      spec.add("tokenizer.ggml.token_type", std::move(b));
    }
    if (!scores.empty()) {
      Bytes b = array_value(GgufType::FLOAT32, scores.size());
      for (float s : scores) b.put(s);
      spec.add("tokenizer.ggml.scores", std::move(b));
    }
    const std::pair<const char*, std::optional<uint32_t>> ids[] = {
        {"tokenizer.ggml.bos_token_id", bos}, {"tokenizer.ggml.eos_token_id", eos},
        {"tokenizer.ggml.unknown_token_id", unk}, {"tokenizer.ggml.padding_token_id", pad}};
    for (const auto& [key, id] : ids) {
      if (id) spec.add(key, scalar(GgufType::UINT32, *id));
    }
    if (add_bos) spec.add("tokenizer.ggml.add_bos_token", scalar(GgufType::BOOL, uint8_t(*add_bos)));
    if (add_eos) spec.add("tokenizer.ggml.add_eos_token", scalar(GgufType::BOOL, uint8_t(*add_eos)));
    if (!chat_template.empty()) spec.add("tokenizer.chat_template", string_value(chat_template));
    return open_bytes(spec.serialize());
  }
};

// SmolLM2's byte-level tokenizer metadata (tokens, merges, types), read from the model.
std::optional<TokenizerMetadata> smollm2_metadata() {
  if (!std::filesystem::exists(model_path(kSmolLM2))) return std::nullopt;
  auto gguf = GgufFile::open(model_path(kSmolLM2));
  TokenizerMetadata m;
  m.pre = gguf->get_string("tokenizer.ggml.pre");
  m.tokens = *gguf->get_string_array("tokenizer.ggml.tokens");
  m.merges = *gguf->get_string_array("tokenizer.ggml.merges");
  // Held in a named variable: a range-for over *temporary_optional would read freed memory.
  const auto types = gguf->get_int_array("tokenizer.ggml.token_type");
  for (int64_t t : *types) m.types.push_back(static_cast<int32_t>(t));
  m.bos = 1;
  m.eos = 2;
  m.add_bos = false;
  return m;
}

// A Llama-2-style SentencePiece vocabulary (<unk> <s> </s>, 256 byte tokens, then pieces with
// falling scores) made of SmolLM2's tokens respelled with "▁" for spaces, as the pytest
// write_spm_gguf builds it.
TokenizerMetadata sentencepiece_metadata(const TokenizerMetadata& smollm2, const std::string& arch) {
  TokenizerMetadata m;
  m.arch = arch;
  m.model = "llama";
  m.tokens = {"<unk>", "<s>", "</s>"};
  m.types = {2, 3, 3};
  for (int b = 0; b < 256; ++b) {
    m.tokens.push_back(fmt::format("<0x{:02X}>", b));
    m.types.push_back(6);
  }
  m.scores.assign(m.tokens.size(), 0.0f);
  std::set<std::string> seen(m.tokens.begin(), m.tokens.end());
  for (size_t rank = 0; rank < smollm2.tokens.size(); ++rank) {
    auto bytes = tok::byte_level_unspell(smollm2.tokens[rank]);
    if (!bytes || bytes->empty() || !tok::utf8_is_valid(*bytes)) continue;
    std::string text;
    for (char c : *bytes) text += c == ' ' ? std::string("\u2581") : std::string(1, c);
    if (!seen.insert(text).second) continue;
    m.tokens.push_back(text);
    m.scores.push_back(-static_cast<float>(rank));
    m.types.push_back(1);
  }
  m.bos = 1;
  m.eos = 2;
  m.unk = 0;
  return m;
}

struct Exported {
  HfTokenizerFiles files;
  std::unique_ptr<Tokenizer> tokenizer;  // loaded back from the files
};

Exported export_and_reload(const GgufFile& gguf) {
  Exported e{hf_tokenizer_files_from_gguf(gguf), nullptr};
  e.tokenizer = Tokenizer::from_hf_json_text(e.files.tokenizer_json, e.files.tokenizer_config_json, "exported");
  return e;
}

// Texts that exercise every added token: each one alone, inside words, and next to spaces.
std::vector<std::string> added_token_texts(const Tokenizer& t) {
  std::vector<std::string> texts;
  for (const auto& a : t.parts().added_tokens) {
    texts.push_back(a.content);
    texts.push_back("x" + a.content + "y " + a.content + " \n" + a.content + "1");
  }
  return texts;
}

// The two tokenizers must agree on everything a caller can observe. `every` thins the corpus
// for the many-variant tests (the split regexes differ on most lines anyway).
void expect_same_behaviour(const Tokenizer& want, const Tokenizer& got, size_t every = 1) {
  ASSERT_EQ(got.vocab_size(), want.vocab_size());
  EXPECT_EQ(got.bos_id(), want.bos_id());
  EXPECT_EQ(got.eos_id(), want.eos_id());
  EXPECT_EQ(got.add_bos(), want.add_bos());
  EXPECT_EQ(got.add_eos(), want.add_eos());
  EXPECT_EQ(got.chat_template(), want.chat_template());
  EXPECT_EQ(got.stream_leading_spaces_to_strip(), want.stream_leading_spaces_to_strip());
  size_t token_mismatches = 0;
  for (int32_t id = 0; id < want.vocab_size(); ++id) {
    if (got.token_text(id) != want.token_text(id) || got.is_special(id) != want.is_special(id) ||
        got.is_end_of_turn(id) != want.is_end_of_turn(id) || got.piece(id) != want.piece(id)) {
      if (++token_mismatches <= 5) ADD_FAILURE() << "token " << id << " (" << show(want.token_text(id)) << ") differs";
    }
  }
  EXPECT_EQ(token_mismatches, 0u);

  std::vector<std::string> texts;
  for (size_t i = 0; i < corpus().size(); i += every) texts.push_back(corpus()[i]);
  for (auto& s : added_token_texts(want)) texts.push_back(std::move(s));
  size_t mismatches = 0;
  for (const auto& text : texts) {
    for (bool add_special : {false, true}) {
      for (bool parse_special : {true, false}) {
        const auto ids = want.encode(text, add_special, parse_special);
        const auto got_ids = got.encode(text, add_special, parse_special);
        bool same = got_ids == ids;
        for (bool skip : {false, true}) same = same && got.decode(ids, skip) == want.decode(ids, skip);
        if (!same && ++mismatches <= 5) {
          ADD_FAILURE() << "text " << show(text) << " (add_special " << add_special << ", parse_special "
                        << parse_special << ")\n  want: " << json(ids).dump() << "\n  got:  " << json(got_ids).dump();
        }
      }
    }
  }
  EXPECT_EQ(mismatches, 0u) << "of " << texts.size() << " texts x 4 settings";
}

// HF `tokenizers` writes merges as pairs; older files as "a b" strings.
std::vector<std::pair<std::string, std::string>> merge_pairs(const json& merges) {
  std::vector<std::pair<std::string, std::string>> out;
  for (const auto& m : merges) {
    if (m.is_array()) {
      out.emplace_back(m[0], m[1]);
    } else {
      const std::string s = m.get<std::string>();
      out.emplace_back(s.substr(0, s.find(' ')), s.substr(s.find(' ') + 1));
    }
  }
  return out;
}

TEST(ExportHfJson, SmolLM2BehavesAsTheGgufTokenizer) {
  const Tokenizer* gguf_tokenizer = model_tokenizer(kSmolLM2);
  MARLIN_REQUIRE_MODEL(gguf_tokenizer, kSmolLM2);
  auto gguf = GgufFile::open(model_path(kSmolLM2));
  auto exported = export_and_reload(*gguf);
  expect_same_behaviour(*gguf_tokenizer, *exported.tokenizer);
}

// For SmolLM2 the tokenizer.json a HF user has is the published one: the same vocabulary,
// merges, pre-tokenizer, decoder and added tokens.
TEST(ExportHfJson, SmolLM2MatchesThePublishedTokenizerJson) {
  if (!std::filesystem::exists(model_path(kSmolLM2))) GTEST_SKIP() << "models/" << kSmolLM2 << " is missing";
  auto gguf = GgufFile::open(model_path(kSmolLM2));
  const auto files = hf_tokenizer_files_from_gguf(*gguf);
  const json got = json::parse(files.tokenizer_json);
  const json published = json::parse(read_file(fixture("smollm2_tokenizer.json")));
  EXPECT_EQ(got["model"]["vocab"], published["model"]["vocab"]);
  EXPECT_TRUE(merge_pairs(got["model"]["merges"]) == merge_pairs(published["model"]["merges"]));
  EXPECT_EQ(got["pre_tokenizer"], published["pre_tokenizer"]);
  EXPECT_EQ(got["decoder"], published["decoder"]);
  EXPECT_EQ(got["normalizer"], published["normalizer"]);
  EXPECT_EQ(got["added_tokens"], published["added_tokens"]);
  for (const char* key : {"unk_token", "fuse_unk", "byte_fallback"}) EXPECT_EQ(got["model"][key], published["model"][key]) << key;

  const json config = json::parse(files.tokenizer_config_json);
  EXPECT_EQ(config["bos_token"], "<|im_start|>");
  EXPECT_EQ(config["eos_token"], "<|im_end|>");
  EXPECT_EQ(config["unk_token"], "<|endoftext|>");
  EXPECT_EQ(config["pad_token"], "<|im_end|>");
  EXPECT_EQ(config["add_bos_token"], false);
  EXPECT_EQ(config["add_eos_token"], false);
  EXPECT_EQ(config["chat_template"], *gguf->get_string("tokenizer.chat_template"));
  EXPECT_EQ(config["model_max_length"], *gguf->get_uint("llama.context_length"));
}

TEST(ExportHfJson, SmolLM2ExportMatchesHfReferenceIds) {
  if (!std::filesystem::exists(model_path(kSmolLM2))) GTEST_SKIP() << "models/" << kSmolLM2 << " is missing";
  auto exported = export_and_reload(*GgufFile::open(model_path(kSmolLM2)));
  const auto expected = read_jsonl(fixture("expected_smollm2.jsonl"));
  ASSERT_EQ(expected.size(), corpus().size());
  size_t mismatches = 0;
  for (size_t i = 0; i < corpus().size(); ++i) {
    mismatches += exported.tokenizer->encode(corpus()[i]) != expected[i]["ids"].get<std::vector<int32_t>>();
  }
  EXPECT_EQ(mismatches, 0u);
}

TEST(ExportHfJson, Gemma3BehavesAsTheGgufTokenizer) {
  const Tokenizer* gguf_tokenizer = model_tokenizer(kGemma3);
  MARLIN_REQUIRE_MODEL(gguf_tokenizer, kGemma3);
  auto gguf = GgufFile::open(model_path(kGemma3));
  auto exported = export_and_reload(*gguf);
  expect_same_behaviour(*gguf_tokenizer, *exported.tokenizer);

  // Against HF's own ids (tools/make_tokenizer_fixtures.py), not only our GGUF loader.
  const auto expected = read_jsonl(fixture("expected_gemma3.jsonl"));
  ASSERT_EQ(expected.size(), corpus().size());
  size_t mismatches = 0;
  for (size_t i = 0; i < corpus().size(); ++i) {
    mismatches += exported.tokenizer->encode(corpus()[i]) != expected[i]["ids"].get<std::vector<int32_t>>();
  }
  EXPECT_EQ(mismatches, 0u);

  const json tokenizer_json = json::parse(exported.files.tokenizer_json);
  EXPECT_EQ(tokenizer_json["model"]["vocab"].size(), 262144u);
  EXPECT_EQ(tokenizer_json["model"]["unk_token"], "<unk>");
  EXPECT_EQ(tokenizer_json["model"]["byte_fallback"], true);
  EXPECT_EQ(tokenizer_json["post_processor"]["single"][0]["SpecialToken"]["id"], "<bos>");
  const json config = json::parse(exported.files.tokenizer_config_json);
  EXPECT_EQ(config["bos_token"], "<bos>");
  EXPECT_EQ(config["eos_token"], "<eos>");
  EXPECT_EQ(config["add_bos_token"], true);
}

class ExportSentencePiece : public ::testing::TestWithParam<const char*> {};

// Llama-2 layout (Metaspace prefix space, merges recovered from scores) and Phi-3's variant
// (prefix space from the normalizer).
TEST_P(ExportSentencePiece, BehavesAsTheGgufTokenizer) {
  auto smollm2 = smollm2_metadata();
  if (!smollm2) GTEST_SKIP() << "models/" << kSmolLM2 << " is missing";
  auto metadata = sentencepiece_metadata(*smollm2, GetParam());
  metadata.chat_template = "{{ bos_token }}{% for m in messages %}{{ m['content'] }}{% endfor %}";
  auto gguf = metadata.write();
  auto want = Tokenizer::from_gguf(*gguf);
  auto exported = export_and_reload(*gguf);
  EXPECT_TRUE(want->add_bos());  // llama.cpp's default for a SentencePiece vocabulary
  expect_same_behaviour(*want, *exported.tokenizer);
  const json config = json::parse(exported.files.tokenizer_config_json);
  EXPECT_EQ(config["unk_token"], "<unk>");
  EXPECT_FALSE(config.contains("pad_token"));
  EXPECT_FALSE(config.contains("model_max_length"));
}

INSTANTIATE_TEST_SUITE_P(Archs, ExportSentencePiece, ::testing::Values("llama", "phi3"));

// One tokenizer.ggml.pre per distinct split (Llama-3, Qwen2, Qwen3.5, Tekken, GPT-4o, GPT-2),
// over SmolLM2's vocabulary.
TEST(ExportHfJson, ByteLevelSplitVariantsBehaveAsTheGgufTokenizer) {
  auto metadata = smollm2_metadata();
  if (!metadata) GTEST_SKIP() << "models/" << kSmolLM2 << " is missing";
  for (const char* pre : {"llama-bpe", "qwen2", "qwen35", "tekken", "gpt-4o", "default"}) {
    SCOPED_TRACE(pre);
    metadata->pre = pre;
    auto gguf = metadata->write();
    auto want = Tokenizer::from_gguf(*gguf);
    auto exported = export_and_reload(*gguf);
    expect_same_behaviour(*want, *exported.tokenizer, 4);
  }
}

// Every pre the loader accepts exports, and the file says the split that was used.
TEST(ExportHfJson, EveryByteLevelPreExports) {
  TokenizerMetadata m;
  m.tokens = {"a", "b", "ab", "\xC4\xA0", "<|endoftext|>"};
  m.merges = {"a b"};
  m.types = {1, 1, 1, 1, 3};
  for (const char* pre : {"llama3", "llama-v3", "llama-bpe", "falcon3", "falcon-h1", "pixtral", "midm-2.0", "lfm2",
                          "jina-v5-nano", "dbrx", "smaug-bpe", "tekken", "qwen2", "deepseek-r1-qwen", "kormo",
                          "f2llmv2", "megrez", "qwen35", "gpt-4o", "llama4", "kanana2", "talkie", "minimax-m2"}) {
    m.pre = pre;
    const json j = json::parse(tokenizer_json_from_gguf(*m.write()));
    EXPECT_EQ(j["pre_tokenizer"]["pretokenizers"][0]["type"], "Split") << pre;
    EXPECT_EQ(j["pre_tokenizer"]["pretokenizers"][1]["use_regex"], false) << pre;
  }
  m.pre = std::nullopt;  // GPT-2's own split
  const json j = json::parse(tokenizer_json_from_gguf(*m.write()));
  EXPECT_EQ(j["pre_tokenizer"]["type"], "ByteLevel");
  EXPECT_EQ(j["model"]["merges"], json::parse(R"([["a", "b"]])"));
  EXPECT_EQ(j["model"]["vocab"].size(), 5u);
}

// add_bos / add_eos from the file reach the post-processor and tokenizer_config.json alike.
TEST(ExportHfJson, BosAndEosFlags) {
  TokenizerMetadata m;
  m.tokens = {"<s>", "</s>", "a", "b", "ab", "\xC4\xA0"};
  m.merges = {"a b"};
  m.types = {3, 3, 1, 1, 1, 1};
  m.bos = 0;
  m.eos = 1;
  m.add_bos = true;
  m.add_eos = true;
  auto gguf = m.write();
  auto exported = export_and_reload(*gguf);
  EXPECT_EQ(exported.tokenizer->encode("ab", true), (std::vector<int32_t>{0, 4, 1}));
  const json j = json::parse(exported.files.tokenizer_json);
  EXPECT_EQ(j["post_processor"]["single"].size(), 3u);
  EXPECT_EQ(j["post_processor"]["pair"].size(), 6u);
  const json config = json::parse(exported.files.tokenizer_config_json);
  EXPECT_EQ(config["add_bos_token"], true);
  EXPECT_EQ(config["add_eos_token"], true);
  // Without the config file the post-processor alone adds them (HF `tokenizers` reads only it).
  auto bare = Tokenizer::from_hf_json_text(exported.files.tokenizer_json, "", "bare");
  EXPECT_EQ(bare->encode("ab", true), (std::vector<int32_t>{0, 4, 1}));

  m.add_bos = false;
  m.add_eos = std::nullopt;
  auto plain = export_and_reload(*m.write());
  EXPECT_EQ(plain.tokenizer->encode("ab", true), (std::vector<int32_t>{4}));
  EXPECT_EQ(json::parse(plain.files.tokenizer_json)["post_processor"]["single"].size(), 1u);
}

// Quotes, backslashes and control characters in tokens survive the hand-written JSON.
TEST(ExportHfJson, EscapesTokenText) {
  TokenizerMetadata m;
  m.model = "llama";
  m.tokens = {"<unk>", "\"", "\\", "\"\\", "\n", "\x01", "<ctl\x01>", "\u2581"};
  m.scores = {0, -1, -2, -3, -4, -5, -6, -7};
  m.types = {2, 1, 1, 1, 1, 1, 4, 1};
  auto gguf = m.write();
  auto exported = export_and_reload(*gguf);
  expect_same_behaviour(*Tokenizer::from_gguf(*gguf), *exported.tokenizer);
  EXPECT_EQ(exported.tokenizer->encode("\"\\\n<ctl\x01>"), (std::vector<int32_t>{7, 3, 4, 6}));
}

TEST(ExportHfJson, UnsupportedTokenizersAreErrors) {
  TokenizerMetadata m;
  m.tokens = {"a"};
  m.model = "bert";
  EXPECT_THROW(
      {
        try {
          hf_tokenizer_files_from_gguf(*m.write());
        } catch (const Error& e) {
          EXPECT_NE(std::string(e.what()).find("'bert' is not supported"), std::string::npos) << e.what();
          throw;
        }
      },
      Error);
  m.model = "gpt2";
  m.pre = "no-such-pre";
  m.tokens = {"a", "b", "ab"};
  m.merges = {"a b"};
  try {
    tokenizer_json_from_gguf(*m.write());
    ADD_FAILURE() << "an unknown pre exported";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("tokenizer.ggml.pre 'no-such-pre' is not supported"), std::string::npos) << e.what();
  }
  GgufSpec no_tokenizer;
  no_tokenizer.add("general.architecture", string_value("llama"));
  try {
    tokenizer_config_json_from_gguf(*open_bytes(no_tokenizer.serialize()));
    ADD_FAILURE() << "a file without a tokenizer exported";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("tokenizer.ggml.model is missing"), std::string::npos) << e.what();
  }
}

// JSON holds only UTF-8; a SentencePiece token of raw bytes cannot be written.
TEST(ExportHfJson, InvalidUtf8TokenIsAnError) {
  TokenizerMetadata m;
  m.model = "llama";
  m.tokens = {"<unk>", "a", "\xFF\xFE"};
  m.scores = {0, -1, -2};
  m.types = {2, 1, 1};
  auto gguf = m.write();
  try {
    tokenizer_json_from_gguf(*gguf);
    ADD_FAILURE() << "invalid UTF-8 exported";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("token 2 is not valid UTF-8"), std::string::npos) << e.what();
  }
}

// tests/python/test_tokenizer_export.py runs this with both variables set to get the files of
// a GGUF (marlin has no command that writes them yet).
TEST(ExportHfJson, WriteFilesNamedByEnvironment) {
  const char* gguf_path = std::getenv("MARLIN_EXPORT_HF_GGUF");
  const char* dir = std::getenv("MARLIN_EXPORT_HF_DIR");
  if (gguf_path == nullptr || dir == nullptr) GTEST_SKIP() << "MARLIN_EXPORT_HF_GGUF / MARLIN_EXPORT_HF_DIR not set";
  const auto files = hf_tokenizer_files_from_gguf(*GgufFile::open(gguf_path));
  std::filesystem::create_directories(dir);
  for (const auto& [name, text] : {std::pair{"tokenizer.json", &files.tokenizer_json},
                                   std::pair{"tokenizer_config.json", &files.tokenizer_config_json}}) {
    std::ofstream out(std::filesystem::path(dir) / name, std::ios::binary);
    out << *text;
    ASSERT_TRUE(out.good()) << "cannot write " << dir << "/" << name;
  }
}

}  // namespace
}  // namespace marlin::test
