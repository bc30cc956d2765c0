#include "tokenizer/export_hf_json.h"

#include <algorithm>
#include <nlohmann/json.hpp>

#include "core/error.h"
#include "formats/gguf.h"
#include "tokenizer/gguf_pipeline.h"
#include "tokenizer/tokenizer.h"
#include "tokenizer/tokenizer_parts.h"
#include "tokenizer/utf8.h"

namespace marlin {
namespace {

using nlohmann::ordered_json;

// Token text headed for JSON, which holds only UTF-8.
std::string_view checked_text(std::string_view text, int32_t id) {
  MARLIN_CHECK(tok::utf8_is_valid(text), "tokenizer export: token {} is not valid UTF-8, which tokenizer.json cannot hold",
               id);
  return text;
}

// A JSON string literal (the vocabulary and merges are written by hand: building them as a
// JSON tree would cost a node and an allocation per token).
void append_json_string(std::string& out, std::string_view text) {
  out += '"';
  for (char c : text) {
    switch (c) {
      case '"': out += "\\\""; break;
      case '\\': out += "\\\\"; break;
      case '\n': out += "\\n"; break;
      case '\r': out += "\\r"; break;
      case '\t': out += "\\t"; break;
      case '\b': out += "\\b"; break;
      case '\f': out += "\\f"; break;
      default:
        if (static_cast<unsigned char>(c) < 0x20) out += fmt::format("\\u{:04x}", static_cast<unsigned char>(c));
        else out += c;
    }
  }
  out += '"';
}

ordered_json added_tokens_json(const tok::TokenizerParts& parts) {
  std::vector<tok::AddedToken> tokens = parts.added_tokens;
  std::stable_sort(tokens.begin(), tokens.end(), [](const auto& a, const auto& b) { return a.id < b.id; });
  ordered_json out = ordered_json::array();
  for (size_t i = 0; i < tokens.size(); ++i) {
    const tok::AddedToken& t = tokens[i];
    if (i > 0 && t.id == tokens[i - 1].id && t.content == tokens[i - 1].content) continue;
    out.push_back({{"id", t.id},
                   {"content", checked_text(t.content, t.id)},
                   {"single_word", false},
                   {"lstrip", t.lstrip},
                   {"rstrip", t.rstrip},
                   {"normalized", t.normalized},
                   {"special", t.special}});
  }
  return out;
}

// The ids encode(add_special=true) puts around the text, as transformers writes them:
// single = prefix $A suffix, pair = prefix $A suffix prefix $B suffix.
ordered_json post_processor_json(const Tokenizer& tokenizer) {
  const tok::TokenizerParts& parts = tokenizer.parts();
  ordered_json special_tokens = ordered_json::object();
  auto append = [&](ordered_json& pieces, const std::vector<int32_t>& ids, int type_id) {
    for (int32_t id : ids) {
      std::string name(checked_text(tokenizer.token_text(id), id));
      pieces.push_back({{"SpecialToken", {{"id", name}, {"type_id", type_id}}}});
      special_tokens[name] = {{"id", name}, {"ids", {id}}, {"tokens", {name}}};
    }
  };
  auto sequence = [](const char* which, int type_id) { return ordered_json{{"Sequence", {{"id", which}, {"type_id", type_id}}}}; };
  ordered_json single = ordered_json::array(), pair = ordered_json::array();
  append(single, parts.prefix_ids, 0);
  single.push_back(sequence("A", 0));
  append(single, parts.suffix_ids, 0);
  pair = single;
  append(pair, parts.prefix_ids, 1);
  pair.push_back(sequence("B", 1));
  append(pair, parts.suffix_ids, 1);
  return {{"type", "TemplateProcessing"}, {"single", single}, {"pair", pair}, {"special_tokens", special_tokens}};
}

// "vocab": every token that owns its text (for a text held by several ids, the last).
void append_vocab(std::string& out, const tok::Vocab& vocab) {
  out += "{";
  bool first = true;
  for (int32_t id = 0; id < vocab.size(); ++id) {
    std::string_view text = vocab.text(id);
    if (text.empty() || vocab.find(text) != id) continue;
    out += first ? "\n      " : ",\n      ";
    first = false;
    append_json_string(out, checked_text(text, id));
    out += ": ";
    out += std::to_string(id);
  }
  out += first ? "}" : "\n    }";
}

void append_merges(std::string& out, const tok::BpeModel& model) {
  const auto merges = model.merges().by_rank();
  out += "[";
  for (size_t i = 0; i < merges.size(); ++i) {
    out += i == 0 ? "\n      [" : ",\n      [";
    append_json_string(out, model.vocab().text(merges[i].left));
    out += ", ";
    append_json_string(out, model.vocab().text(merges[i].right));
    out += "]";
  }
  out += merges.empty() ? "]" : "\n    ]";
}

std::string tokenizer_json(const Tokenizer& tokenizer, const tok::GgufPipeline& pipeline) {
  const tok::TokenizerParts& parts = tokenizer.parts();
  const tok::BpeModel& model = *parts.model;
  const tok::BpeOptions& options = model.options();
  ordered_json unk_token = nullptr;
  if (options.unk_id) unk_token = checked_text(model.vocab().text(*options.unk_id), *options.unk_id);

  // Sections small enough for a JSON tree, one per line (arrays one element a line); then the
  // model by hand.
  const std::pair<const char*, ordered_json> sections[] = {
      {"version", "1.0"},
      {"truncation", nullptr},
      {"padding", nullptr},
      {"added_tokens", added_tokens_json(parts)},
      {"normalizer", pipeline.normalizer},
      {"pre_tokenizer", pipeline.pre_tokenizer},
      {"post_processor", post_processor_json(tokenizer)},
      {"decoder", pipeline.decoder},
  };
  const std::pair<const char*, ordered_json> model_fields[] = {
      {"type", "BPE"},
      {"dropout", nullptr},
      {"unk_token", unk_token},
      {"continuing_subword_prefix", nullptr},
      {"end_of_word_suffix", nullptr},
      {"fuse_unk", options.fuse_unk},
      {"byte_fallback", options.byte_fallback},
      {"ignore_merges", options.ignore_merges},
  };
  std::string out = "{\n";
  for (const auto& [key, value] : sections) {
    if (!value.is_array() || value.empty()) {
      out += fmt::format("  \"{}\": {},\n", key, value.dump());
      continue;
    }
    out += fmt::format("  \"{}\": [", key);
    for (size_t i = 0; i < value.size(); ++i) out += fmt::format("{}\n    {}", i ? "," : "", value[i].dump());
    out += "\n  ],\n";
  }
  out += "  \"model\": {\n";
  for (const auto& [key, value] : model_fields) out += fmt::format("    \"{}\": {},\n", key, value.dump());
  out += "    \"vocab\": ";
  append_vocab(out, model.vocab());
  out += ",\n    \"merges\": ";
  append_merges(out, model);
  out += "\n  }\n}\n";
  return out;
}

std::optional<int32_t> gguf_token_id(const GgufFile& gguf, std::string_view key, const Tokenizer& tokenizer) {
  auto id = gguf.get_int(key);
  if (!id || *id < 0 || *id >= tokenizer.vocab_size()) return std::nullopt;
  return static_cast<int32_t>(*id);
}

std::string tokenizer_config_json(const Tokenizer& tokenizer, const GgufFile& gguf) {
  ordered_json config = ordered_json::object();
  config["add_bos_token"] = tokenizer.add_bos();
  config["add_eos_token"] = tokenizer.add_eos();
  const std::pair<const char*, std::optional<int32_t>> specials[] = {
      {"bos_token", tokenizer.bos_id()},
      {"eos_token", tokenizer.eos_id()},
      {"unk_token", gguf_token_id(gguf, "tokenizer.ggml.unknown_token_id", tokenizer)},
      {"pad_token", gguf_token_id(gguf, "tokenizer.ggml.padding_token_id", tokenizer)},
  };
  for (const auto& [key, id] : specials) {
    if (id) config[key] = checked_text(tokenizer.token_text(*id), *id);
  }
  const std::string& chat_template = tokenizer.chat_template();
  if (!chat_template.empty()) {
    MARLIN_CHECK(tok::utf8_is_valid(chat_template), "tokenizer export: tokenizer.chat_template is not valid UTF-8");
    config["chat_template"] = chat_template;
  }
  config["clean_up_tokenization_spaces"] = false;
  const std::string arch = gguf.get_string("general.architecture").value_or("");
  if (auto context = gguf.get_uint(arch + ".context_length")) config["model_max_length"] = *context;
  // The class that loads tokenizer.json as it is (transformers 4 and 5).
  config["tokenizer_class"] = "PreTrainedTokenizerFast";
  return config.dump(2) + "\n";
}

}  // namespace

HfTokenizerFiles hf_tokenizer_files_from_gguf(const GgufFile& gguf) {
  auto tokenizer = Tokenizer::from_gguf(gguf);
  return {tokenizer_json(*tokenizer, tok::gguf_pipeline(gguf)), tokenizer_config_json(*tokenizer, gguf)};
}

std::string tokenizer_json_from_gguf(const GgufFile& gguf) {
  return tokenizer_json(*Tokenizer::from_gguf(gguf), tok::gguf_pipeline(gguf));
}

std::string tokenizer_config_json_from_gguf(const GgufFile& gguf) {
  return tokenizer_config_json(*Tokenizer::from_gguf(gguf), gguf);
}

}  // namespace marlin
