#include "tokenizer/gguf_pipeline.h"

#include <array>
#include <string_view>

#include "core/error.h"
#include "formats/gguf.h"

namespace marlin::tok {
namespace {

using json = nlohmann::ordered_json;  // keys in the order HF writes them

// Split patterns by tokenizer.ggml.pre (transformers' GGUF_PRE_TOKENIZER_SPLITS, which follow
// the pre-tokenizer each model's own tokenizer.json uses).
constexpr std::string_view kLlama3Split =
    R"((?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+)";
constexpr std::string_view kQwen2Split =
    R"((?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+)";
constexpr std::string_view kQwen35Split =
    R"((?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?[\p{L}\p{M}]+|\p{N}| ?[^\s\p{L}\p{M}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+)";
constexpr std::string_view kTekkenSplit =
    R"([^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]*[\p{Ll}\p{Lm}\p{Lo}\p{M}]+|[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]+[\p{Ll}\p{Lm}\p{Lo}\p{M}]*|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n/]*|\s*[\r\n]+|\s+(?!\S)|\s+)";
constexpr std::string_view kGpt4oSplit =
    R"([^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]*[\p{Ll}\p{Lm}\p{Lo}\p{M}]+(?i:'s|'t|'re|'ve|'m|'ll|'d)?|[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]+[\p{Ll}\p{Lm}\p{Lo}\p{M}]*(?i:'s|'t|'re|'ve|'m|'ll|'d)?|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n/]*|\s*[\r\n]+|\s+(?!\S)|\s+)";

struct SplitByPre {
  std::string_view pre;
  std::string_view pattern;
};
constexpr std::array kSplits = {
    SplitByPre{"llama3", kLlama3Split},      SplitByPre{"llama-v3", kLlama3Split},
    SplitByPre{"llama-bpe", kLlama3Split},   SplitByPre{"falcon3", kLlama3Split},
    SplitByPre{"falcon-h1", kLlama3Split},   SplitByPre{"pixtral", kLlama3Split},
    SplitByPre{"midm-2.0", kLlama3Split},    SplitByPre{"lfm2", kLlama3Split},
    SplitByPre{"jina-v5-nano", kLlama3Split}, SplitByPre{"dbrx", kLlama3Split},
    SplitByPre{"smaug-bpe", kLlama3Split},   SplitByPre{"tekken", kTekkenSplit},
    SplitByPre{"qwen2", kQwen2Split},        SplitByPre{"deepseek-r1-qwen", kQwen2Split},
    SplitByPre{"kormo", kQwen2Split},        SplitByPre{"f2llmv2", kQwen2Split},
    SplitByPre{"megrez", kQwen2Split},       SplitByPre{"qwen35", kQwen35Split},
    SplitByPre{"gpt-4o", kGpt4oSplit},       SplitByPre{"llama4", kGpt4oSplit},
    SplitByPre{"kanana2", kGpt4oSplit},      SplitByPre{"talkie", kGpt4oSplit},
    SplitByPre{"minimax-m2", kGpt4oSplit},
};

constexpr std::string_view kMetaspace = "\u2581";

json byte_level(bool add_prefix_space, bool use_regex) {
  return {{"type", "ByteLevel"}, {"add_prefix_space", add_prefix_space}, {"trim_offsets", true}, {"use_regex", use_regex}};
}

json literal_replace(std::string_view from, std::string_view to) {
  return {{"type", "Replace"}, {"pattern", {{"String", from}}}, {"content", to}};
}

// Byte-level BPE: a split regex chosen by tokenizer.ggml.pre, then the byte alphabet.
void byte_level_pipeline(const std::string& pre, GgufPipeline& out) {
  for (const auto& s : kSplits) {
    if (s.pre != pre) continue;
    json split = {{"type", "Split"}, {"pattern", {{"Regex", s.pattern}}}, {"behavior", "Isolated"}, {"invert", false}};
    out.pre_tokenizer = {{"type", "Sequence"}, {"pretokenizers", {split, byte_level(false, false)}}};
  }
  if (out.pre_tokenizer.is_null()) {
    MARLIN_CHECK(pre == "smollm" || pre == "default" || pre == "gpt2",
                 "gguf tokenizer: tokenizer.ggml.pre '{}' is not supported", pre);
    if (pre == "smollm") {
      // SmolLM2's own tokenizer.json splits digits individually before the GPT-2 split.
      json digits = {{"type", "Digits"}, {"individual_digits", true}};
      out.pre_tokenizer = {{"type", "Sequence"}, {"pretokenizers", {digits, byte_level(false, true)}}};
    } else {
      out.pre_tokenizer = byte_level(false, true);
    }
  }
  out.decoder = byte_level(true, true);
}

// SentencePiece-style BPE with byte fallback: how spaces become "▁" depends on the family.
void sentencepiece_pipeline(GgufPipeline& out) {
  out.byte_fallback = true;
  out.fuse_unk = true;
  json decoders = {literal_replace(kMetaspace, " "), {{"type", "ByteFallback"}}, {{"type", "Fuse"}}};
  switch (out.kind) {
    case GgufVocabKind::kGemma:
      out.unk_token = "<unk>";
      out.normalizer = literal_replace(" ", kMetaspace);
      out.pre_tokenizer = {{"type", "Split"}, {"pattern", {{"String", " "}}}, {"behavior", "MergedWithPrevious"}, {"invert", false}};
      break;
    case GgufVocabKind::kPhi3:
      out.normalizer = {{"type", "Sequence"},
                        {"normalizers", {{{"type", "Prepend"}, {"prepend", kMetaspace}}, literal_replace(" ", kMetaspace)}}};
      break;
    default:
      out.pre_tokenizer = {{"type", "Metaspace"}, {"replacement", kMetaspace}, {"prepend_scheme", "first"}, {"split", false}};
      break;
  }
  // Gemma keeps the space its first token starts with; Llama's decoder drops it.
  if (out.kind != GgufVocabKind::kGemma) decoders.push_back({{"type", "Strip"}, {"content", " "}, {"start", 1}, {"stop", 0}});
  out.decoder = {{"type", "Sequence"}, {"decoders", std::move(decoders)}};
}

}  // namespace

GgufPipeline gguf_pipeline(const GgufFile& gguf) {
  const std::string model = gguf.get_string("tokenizer.ggml.model").value_or("");
  MARLIN_CHECK(gguf.find("tokenizer.ggml.model") != nullptr,
               "gguf tokenizer: tokenizer.ggml.model is missing (the file has no tokenizer)");
  MARLIN_CHECK(model == "gpt2" || model == "llama",
               "gguf tokenizer: tokenizer.ggml.model '{}' is not supported (supported: gpt2, llama)", model);
  GgufPipeline out;
  if (model == "gpt2") {
    out.kind = GgufVocabKind::kByteLevel;
    byte_level_pipeline(gguf.get_string("tokenizer.ggml.pre").value_or("default"), out);
    return out;
  }
  const std::string arch = gguf.get_string("general.architecture").value_or("");
  if (arch == "gemma" || arch == "gemma2" || arch == "gemma3") out.kind = GgufVocabKind::kGemma;
  else if (arch == "phi3") out.kind = GgufVocabKind::kPhi3;
  else out.kind = GgufVocabKind::kSentencePiece;
  sentencepiece_pipeline(out);
  return out;
}

}  // namespace marlin::tok
