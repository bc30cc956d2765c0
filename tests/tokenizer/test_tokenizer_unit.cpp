// Unit tests: UTF-8 repair, the byte-level alphabet, split behaviours (expected values are HF
// `tokenizers` outputs), special tokens, BOS/EOS, errors on bad input, invalid UTF-8, round trips
// and the streaming decoder.
#include <random>

#include "core/error.h"
#include "tokenizer/byte_level.h"
#include "tokenizer/pretokenizer.h"
#include "tokenizer/utf8.h"
#include "tokenizer_test_util.h"

namespace marlin::test {
namespace {

std::string lossy(std::string_view bytes) {
  std::string out;
  tok::utf8_append_lossy(out, bytes);
  return out;
}

std::string concat_pieces(const Tokenizer& t, const std::vector<int32_t>& ids) {
  std::string out;
  for (int32_t id : ids) out += t.piece(id);
  return out;
}

const Tokenizer& smollm2_json() {
  static auto t = Tokenizer::from_hf_json(fixture("smollm2_tokenizer.json"));
  return *t;
}

TEST(Utf8, LossyReplacesMaximalSubparts) {
  // Unicode's Table 3-8 example, which Rust's from_utf8_lossy (HF's decode) follows.
  EXPECT_EQ(lossy("\x61\xF1\x80\x80\xE1\x80\xC2\x62\x80\x63\x80\xBF\x64"),
            "a\uFFFD\uFFFD\uFFFDb\uFFFDc\uFFFD\uFFFDd");
  EXPECT_EQ(lossy("\xE0\x80\x80"), "\uFFFD\uFFFD\uFFFD");  // overlong
  EXPECT_EQ(lossy("\xED\xA0\x80"), "\uFFFD\uFFFD\uFFFD");  // surrogate
  EXPECT_EQ(lossy("\xF0\x9F\x98"), "\uFFFD");              // truncated emoji
  EXPECT_EQ(lossy("ok \xF0\x9F\x98\x80"), "ok \xF0\x9F\x98\x80");
  EXPECT_EQ(tok::utf8_valid_prefix("ab\xC3"), 2u);
}

TEST(ByteLevel, AlphabetMatchesGpt2) {
  EXPECT_EQ(tok::byte_to_code_point(' '), 0x120u);   // "Ġ"
  EXPECT_EQ(tok::byte_to_code_point('\n'), 0x10Au);  // "Ċ"
  EXPECT_EQ(tok::byte_to_code_point('A'), uint32_t('A'));
  EXPECT_EQ(tok::byte_to_code_point(0xAD), 0x143u);
  for (int b = 0; b < 256; ++b) EXPECT_EQ(tok::code_point_to_byte(tok::byte_to_code_point(uint8_t(b))), uint8_t(b));
  EXPECT_EQ(tok::byte_level_unspell("\xC4\xA0hi"), " hi");
  EXPECT_FALSE(tok::byte_level_unspell("a b").has_value());  // ' ' is not in the alphabet
}

std::vector<std::string> split_words(const tok::PreTokenizerStep& step, const std::string& text) {
  tok::PieceBuffer buf;
  buf.text = text;
  buf.pieces = {{0, static_cast<uint32_t>(text.size()), true}};
  step.apply(buf);
  std::vector<std::string> words;
  for (const auto& p : buf.pieces) words.emplace_back(buf.view(p));
  return words;
}

TEST(PreTokenizer, SplitBehavioursMatchHf) {
  using B = tok::SplitBehavior;
  using V = std::vector<std::string>;
  const std::string text = "a  b c ";
  EXPECT_EQ(split_words(*tok::make_literal_split(" ", B::kRemoved, false), text), (V{"a", "b", "c"}));
  EXPECT_EQ(split_words(*tok::make_literal_split(" ", B::kIsolated, false), text), (V{"a", " ", " ", "b", " ", "c", " "}));
  EXPECT_EQ(split_words(*tok::make_literal_split(" ", B::kMergedWithPrevious, false), text), (V{"a ", " ", "b ", "c "}));
  EXPECT_EQ(split_words(*tok::make_literal_split(" ", B::kMergedWithNext, false), text), (V{"a", " ", " b", " c", " "}));
  EXPECT_EQ(split_words(*tok::make_literal_split(" ", B::kContiguous, false), text), (V{"a", "  ", "b", " ", "c", " "}));
  EXPECT_EQ(split_words(*tok::make_literal_split(" ", B::kRemoved, true), text), (V{" ", " ", " ", " "}));
  EXPECT_EQ(split_words(*tok::make_literal_split(" ", B::kMergedWithPrevious, true), text), (V{"a", " ", " b", " c", " "}));
  EXPECT_EQ(split_words(*tok::make_metaspace("\u2581", tok::PrependScheme::kFirst, false), " Hey  you"),
            (V{"\u2581Hey\u2581\u2581you"}));
  EXPECT_EQ(split_words(*tok::make_metaspace("\u2581", tok::PrependScheme::kAlways, true), "Hey  you"),
            (V{"\u2581Hey", "\u2581", "\u2581you"}));
  EXPECT_EQ(split_words(*tok::make_byte_level(true, true), "Hey  you"), (V{" Hey", " ", " you"}));
  EXPECT_EQ(split_words(*tok::make_digits(true), "ab12 c\u00B2"), (V{"ab", "1", "2", " c", "\u00B2"}));
}

TEST(Tokenizer, SpecialTokensSmolLM2) {
  const Tokenizer& t = smollm2_json();
  auto ids = t.encode("Hi<|im_end|>\n");
  ASSERT_EQ(ids.size(), 3u);
  EXPECT_EQ(ids[1], 2);
  EXPECT_TRUE(t.is_special(2));
  EXPECT_FALSE(t.is_special(ids[0]));
  auto plain = t.encode("Hi<|im_end|>\n", false, /*parse_special=*/false);
  EXPECT_GT(plain.size(), 3u);
  EXPECT_EQ(std::count(plain.begin(), plain.end(), 2), 0);
  EXPECT_EQ(t.decode(plain), "Hi<|im_end|>\n");
  EXPECT_EQ(t.decode(ids, /*skip_special=*/true), "Hi\n");
  EXPECT_EQ(t.find_token("<|im_end|>"), 2);
  EXPECT_EQ(t.find_token(" the"), t.find_token("\xC4\xA0the"));  // raw text or byte-level spelling
  EXPECT_TRUE(t.is_end_of_turn(2));  // <|im_end|>
  EXPECT_TRUE(t.is_end_of_turn(0));  // <|endoftext|>
  EXPECT_FALSE(t.is_end_of_turn(ids[0]));
  EXPECT_THROW(t.decode(std::vector<int32_t>{t.vocab_size()}), Error);
  EXPECT_THROW(t.piece(-1), Error);
}

TEST(Tokenizer, SmolLM2GgufSettings) {
  const Tokenizer* t = model_tokenizer(kSmolLM2);
  MARLIN_REQUIRE_MODEL(t, kSmolLM2);
  EXPECT_EQ(t->vocab_size(), 49152);
  EXPECT_EQ(t->bos_id(), 1);
  EXPECT_EQ(t->eos_id(), 2);
  EXPECT_FALSE(t->add_bos());  // tokenizer.ggml.add_bos_token = false
  EXPECT_EQ(t->encode("Hi", true), t->encode("Hi", false));
  EXPECT_NE(t->chat_template().find("<|im_start|>"), std::string::npos);
}

TEST(Tokenizer, Gemma3GgufSettings) {
  const Tokenizer* t = model_tokenizer(kGemma3);
  MARLIN_REQUIRE_MODEL(t, kGemma3);
  EXPECT_EQ(t->vocab_size(), 262144);
  EXPECT_EQ(t->bos_id(), 2);
  EXPECT_EQ(t->eos_id(), 1);
  auto with_bos = t->encode("Hello", true);
  ASSERT_FALSE(with_bos.empty());
  EXPECT_EQ(with_bos.front(), 2);
  EXPECT_EQ(std::vector<int32_t>(with_bos.begin() + 1, with_bos.end()), t->encode("Hello"));
  auto eot = t->find_token("<end_of_turn>");
  ASSERT_TRUE(eot.has_value());
  EXPECT_TRUE(t->is_end_of_turn(*eot));
  EXPECT_TRUE(t->is_end_of_turn(1));
  EXPECT_EQ(t->piece(*t->find_token("<0x0A>")), "\n");
  EXPECT_EQ(t->piece(*t->find_token("\u2581the")), " the");
}

TEST(Tokenizer, ConfigJsonSetsBosAndEos) {
  const std::string json = read_file(fixture("smollm2_tokenizer.json"));
  auto t = Tokenizer::from_hf_json_text(
      json, R"({"add_bos_token": true, "bos_token": "<|im_start|>", "eos_token": {"content": "<|im_end|>"},
               "chat_template": "{{ messages }}"})", "test");
  EXPECT_EQ(t->bos_id(), 1);
  EXPECT_EQ(t->eos_id(), 2);
  EXPECT_EQ(t->encode("x", true).front(), 1);
  EXPECT_EQ(t->chat_template(), "{{ messages }}");
}

TEST(Tokenizer, BadTokenizerJsonIsAClearError) {
  auto expect_error = [](const std::string& json, const std::string& needle) {
    try {
      Tokenizer::from_hf_json_text(json, "", "bad.json");
      ADD_FAILURE() << "no error for " << json;
    } catch (const Error& e) {
      EXPECT_NE(std::string(e.what()).find(needle), std::string::npos) << e.what();
    }
  };
  const std::string decoder = R"("decoder": {"type": "ByteLevel"})";
  expect_error("{not json", "not valid JSON");
  expect_error(R"({"model": {"type": "WordPiece", "vocab": {}}, )" + decoder + "}", "WordPiece");
  expect_error(R"({"normalizer": {"type": "NFKC"}, "model": {"vocab": {}}, )" + decoder + "}", "NFKC");
  expect_error(R"({"model": {"type": "BPE", "vocab": {"a": 0}, "merges": ["a b"]}, )" + decoder + "}", "missing");
  expect_error(R"({"model": {"type": "BPE", "vocab": {"a": -3}}, )" + decoder + "}", "not a valid id");
  expect_error(R"({"pre_tokenizer": {"type": "Split", "pattern": {"Regex": "(["}, "behavior": "Isolated"},
                   "model": {"vocab": {}}, )" + decoder + "}", "invalid split regex");
  EXPECT_THROW(Tokenizer::from_hf_json("/nonexistent/tokenizer.json"), Error);
}

// Byte strings that are not UTF-8: deterministic random bytes and classic malformed sequences,
// around text and special tokens.
std::vector<std::string> invalid_inputs() {
  std::vector<std::string> out = {"\xFF", "\x80", "abc\xC3", "\xF0\x9F\x98", "\xE0\x80\x80 x", "\xED\xA0\x80",
                                  "<|im_end|>\xFE\xFF<end_of_turn>", "caf\xE9 cr\xE8me", "  \xC0\xAF  ", "\xF4\x90\x80\x80"};
  std::mt19937 rng(1234);
  for (int i = 0; i < 300; ++i) {
    std::string s;
    int n = static_cast<int>(rng() % 48);
    for (int k = 0; k < n; ++k) {
      uint32_t r = rng() % 10;
      if (r < 4) s += static_cast<char>(0x80 + rng() % 0x80);
      else if (r < 8) s += static_cast<char>(0x20 + rng() % 0x5F);
      else s += "\xE6\x97\xA5 ";
    }
    out.push_back(s);
  }
  return out;
}

// The bytes come back from the pieces, except bytes the vocabulary cannot spell at all (SmolLM2
// has no token for 0xFF, 0xC0, 0x04, ...), which HF drops too.
void expect_invalid_utf8_round_trip(const Tokenizer& t, bool check_decode) {
  std::string spellable;
  for (int b = 0; b < 256; ++b) {
    if (t.find_token(std::string(1, static_cast<char>(b))) || t.find_token(fmt::format("<0x{:02X}>", b))) {
      spellable += static_cast<char>(b);
    }
  }
  for (const auto& s : invalid_inputs()) {
    if (s.find("\u2581") != std::string::npos) continue;
    std::vector<int32_t> ids;
    ASSERT_NO_THROW(ids = t.encode(s));
    std::string kept;
    for (char c : s) {
      if (spellable.find(c) != std::string::npos) kept += c;
    }
    EXPECT_EQ(concat_pieces(t, ids), kept);
    if (check_decode) EXPECT_EQ(t.decode(ids), lossy(kept));
  }
}

TEST(Tokenizer, InvalidUtf8BecomesBytesSmolLM2) { expect_invalid_utf8_round_trip(smollm2_json(), true); }

TEST(Tokenizer, InvalidUtf8BecomesBytesGemma3) {
  const Tokenizer* t = model_tokenizer(kGemma3);
  MARLIN_REQUIRE_MODEL(t, kGemma3);
  // Gemma's ByteFallback decoder turns an invalid run into one U+FFFD per byte, unlike lossy().
  expect_invalid_utf8_round_trip(*t, false);
  EXPECT_EQ(t->decode(t->encode("a\xFF\xFE")), "a\uFFFD\uFFFD");
}

TEST(Tokenizer, DecodeRoundTripsValidText) {
  const Tokenizer* gemma = model_tokenizer(kGemma3);
  for (const auto& s : corpus()) {
    EXPECT_EQ(smollm2_json().decode(smollm2_json().encode(s)), s);
    if (gemma == nullptr) continue;
    // Gemma spells spaces "▁", so a literal "▁" in the input comes back as a space (as in HF).
    std::string want = s;
    for (size_t at = want.find("\u2581"); at != std::string::npos; at = want.find("\u2581")) want.replace(at, 3, " ");
    EXPECT_EQ(gemma->decode(gemma->encode(s)), want);
  }
}

void expect_stream_matches_decode(const Tokenizer& t, const std::string& s) {
  auto ids = t.encode(s);
  TokenStream stream(t);
  std::string streamed;
  for (int32_t id : ids) {
    std::string chunk = stream.push(id);
    EXPECT_TRUE(tok::utf8_is_valid(chunk));
    streamed += chunk;
  }
  streamed += stream.flush();
  EXPECT_EQ(streamed, lossy(concat_pieces(t, ids))) << nlohmann::json(s).dump();
}

TEST(TokenStream, MatchesDecodeOnCorpus) {
  for (const auto& s : corpus()) expect_stream_matches_decode(smollm2_json(), s);
  for (const auto& s : invalid_inputs()) expect_stream_matches_decode(smollm2_json(), s);
  if (const Tokenizer* gemma = model_tokenizer(kGemma3)) {
    for (const auto& s : corpus()) expect_stream_matches_decode(*gemma, s);
  }
}

TEST(TokenStream, HoldsBackIncompleteCharacters) {
  const Tokenizer& t = smollm2_json();
  // "日" is three byte-level tokens in SmolLM2's vocabulary: nothing shows until the last one.
  auto ids = t.encode("\xE6\x97\xA5");
  ASSERT_GE(ids.size(), 2u);
  TokenStream stream(t);
  for (size_t i = 0; i + 1 < ids.size(); ++i) EXPECT_EQ(stream.push(ids[i]), "");
  EXPECT_EQ(stream.push(ids.back()), "\xE6\x97\xA5");
  // A byte that cannot start a character is replaced at once; a dangling lead byte at flush.
  auto bad = t.encode("\x80");
  EXPECT_EQ(stream.push(bad[0]), "\uFFFD");
  auto lead = t.encode("\xE6");
  EXPECT_EQ(stream.push(lead[0]), "");
  EXPECT_EQ(stream.flush(), "\uFFFD");
  EXPECT_TRUE(TokenStream(t, true).push(2).empty());  // skip_special drops <|im_end|>
}

}  // namespace
}  // namespace marlin::test
