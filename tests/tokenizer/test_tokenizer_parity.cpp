// Parity with HF `tokenizers`: ids (and decoded text) for every corpus line, against the
// references that tools/make_tokenizer_fixtures.py recorded from HF.
#include <map>

#include "tokenizer/pretokenizer.h"
#include "tokenizer_test_util.h"

namespace marlin::test {
namespace {

// Compares every corpus line; reports the first few mismatches in full and counts the rest.
void expect_parity(const Tokenizer& tokenizer, const std::string& expected_file) {
  const auto expected = read_jsonl(fixture(expected_file));
  const auto& lines = corpus();
  ASSERT_EQ(expected.size(), lines.size()) << expected_file;
  size_t id_mismatches = 0, decode_mismatches = 0;
  for (size_t i = 0; i < lines.size(); ++i) {
    const auto want = expected[i]["ids"].get<std::vector<int32_t>>();
    const auto got = tokenizer.encode(lines[i]);
    if (got != want) {
      if (++id_mismatches <= 5) {
        ADD_FAILURE() << expected_file << " line " << i + 1 << ": ids differ\n  text: "
                      << nlohmann::json(lines[i]).dump() << "\n  want: " << nlohmann::json(want).dump()
                      << "\n  got:  " << nlohmann::json(got).dump();
      }
      continue;
    }
    const std::string want_text = expected[i].contains("decoded") ? expected[i]["decoded"].get<std::string>() : lines[i];
    if (tokenizer.decode(got) != want_text && ++decode_mismatches <= 5) {
      ADD_FAILURE() << expected_file << " line " << i + 1 << ": decode differs\n  want: "
                    << nlohmann::json(want_text).dump() << "\n  got:  " << nlohmann::json(tokenizer.decode(got)).dump();
    }
  }
  EXPECT_EQ(id_mismatches, 0u) << "of " << lines.size() << " lines";
  EXPECT_EQ(decode_mismatches, 0u) << "of " << lines.size() << " lines";
}

TEST(TokenizerParity, CorpusIsLargeAndVaried) {
  EXPECT_GE(corpus().size(), 2000u);
}

TEST(TokenizerParity, SmolLM2TokenizerJson) {
  auto tokenizer = Tokenizer::from_hf_json(fixture("smollm2_tokenizer.json"));
  EXPECT_EQ(tokenizer->vocab_size(), 49152);
  expect_parity(*tokenizer, "expected_smollm2.jsonl");
}

TEST(TokenizerParity, SmolLM2Gguf) {
  const Tokenizer* tokenizer = model_tokenizer(kSmolLM2);
  MARLIN_REQUIRE_MODEL(tokenizer, kSmolLM2);
  expect_parity(*tokenizer, "expected_smollm2.jsonl");
}

// The SmolLM2 vocabulary with the split regexes transformers uses for Llama-3 and Qwen2 files.
TEST(TokenizerParity, Llama3AndQwen2SplitVariants) {
  auto base = nlohmann::json::parse(read_file(fixture("smollm2_tokenizer.json")));
  auto variants = nlohmann::json::parse(read_file(fixture("smollm2_pre_variants.json")));
  for (const char* name : {"llama3", "qwen2"}) {
    SCOPED_TRACE(name);
    auto spec = base;
    spec["pre_tokenizer"] = variants[name]["pre_tokenizer"];
    auto tokenizer = Tokenizer::from_hf_json_text(spec.dump(), "", name);
    expect_parity(*tokenizer, variants[name]["expected"].get<std::string>());
  }
}

// The split regexes alone, where Llama-3's and Qwen2's digit grouping give different words.
TEST(TokenizerParity, SplitRegexWords) {
  auto variants = nlohmann::json::parse(read_file(fixture("smollm2_pre_variants.json")));
  const auto rows = read_jsonl(fixture("pre_splits.jsonl"));
  ASSERT_GE(rows.size(), 100u);
  for (const char* name : {"llama3", "qwen2"}) {
    const auto pattern = variants[name]["pre_tokenizer"]["pretokenizers"][0]["pattern"]["Regex"].get<std::string>();
    auto split = tok::make_regex_split(pattern, tok::SplitBehavior::kIsolated, false);
    size_t mismatches = 0;
    for (const auto& row : rows) {
      const std::string& text = corpus()[row["line"].get<size_t>()];
      tok::PieceBuffer buf;
      buf.text = text;
      buf.pieces = {{0, static_cast<uint32_t>(text.size()), true}};
      split->apply(buf);
      std::vector<std::string> words;
      for (const auto& p : buf.pieces) words.emplace_back(buf.view(p));
      if (words != row[name].get<std::vector<std::string>>() && ++mismatches <= 3) {
        ADD_FAILURE() << name << " line " << row["line"] << ": " << nlohmann::json(words).dump() << " vs "
                      << row[name].dump();
      }
    }
    EXPECT_EQ(mismatches, 0u) << name;
  }
}

TEST(TokenizerParity, Gemma3Gguf) {
  const Tokenizer* tokenizer = model_tokenizer(kGemma3);
  MARLIN_REQUIRE_MODEL(tokenizer, kGemma3);
  expect_parity(*tokenizer, "expected_gemma3.jsonl");
}

}  // namespace
}  // namespace marlin::test
