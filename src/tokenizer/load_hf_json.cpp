// Tokenizer::from_hf_json: a tokenizer.json (HF `tokenizers` serialization) with a BPE model.
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>

#include "core/error.h"
#include "tokenizer/hf_json_sections.h"
#include "tokenizer/tokenizer.h"
#include "tokenizer/tokenizer_parts.h"

namespace marlin {
namespace {

using nlohmann::json;
using tok::TokenizerParts;

// Keys/limits chosen so a hostile file cannot make us allocate without bound.
constexpr int64_t kMaxVocab = int64_t{1} << 24;

struct Context {
  std::string source;
  template <typename... Args>
  [[noreturn]] void error(fmt::format_string<Args...> format, Args&&... args) const {
    fail("tokenizer.json '{}': {}", source, fmt::format(format, std::forward<Args>(args)...));
  }
};

std::string type_of(const Context& ctx, const json& j, std::string_view what) {
  if (!j.is_object() || !j.contains("type") || !j["type"].is_string()) ctx.error("{} has no \"type\"", what);
  return j["type"].get<std::string>();
}

bool get_bool(const json& j, const char* key, bool fallback) {
  auto it = j.find(key);
  return it != j.end() && it->is_boolean() ? it->get<bool>() : fallback;
}

// A Split/Replace "pattern": {"String": s} or {"Regex": r}.
std::pair<std::string, bool> pattern_of(const Context& ctx, const json& j, std::string_view what) {
  if (j.is_object() && j.contains("String") && j["String"].is_string()) return {j["String"].get<std::string>(), false};
  if (j.is_object() && j.contains("Regex") && j["Regex"].is_string()) return {j["Regex"].get<std::string>(), true};
  ctx.error("{} has an unreadable \"pattern\"", what);
}

tok::SplitBehavior behavior_of(const Context& ctx, const json& j) {
  std::string b = j.is_string() ? j.get<std::string>() : "";
  if (b == "Removed") return tok::SplitBehavior::kRemoved;
  if (b == "Isolated") return tok::SplitBehavior::kIsolated;
  if (b == "MergedWithPrevious") return tok::SplitBehavior::kMergedWithPrevious;
  if (b == "MergedWithNext") return tok::SplitBehavior::kMergedWithNext;
  if (b == "Contiguous") return tok::SplitBehavior::kContiguous;
  ctx.error("unknown split behavior '{}'", b);
}

void load_normalizer(const Context& ctx, const json& j, tok::Normalizer& out) {
  if (j.is_null()) return;
  std::string type = type_of(ctx, j, "normalizer");
  if (type == "Sequence") {
    for (const auto& n : j.value("normalizers", json::array())) load_normalizer(ctx, n, out);
  } else if (type == "Replace") {
    auto [pattern, is_regex] = pattern_of(ctx, j.value("pattern", json()), "Replace normalizer");
    std::string content = j.value("content", "");
    if (is_regex) out.add_regex_replace(pattern, content); else out.add_replace(pattern, content);
  } else if (type == "Prepend") {
    out.add_prepend(j.value("prepend", ""));
  } else {
    ctx.error("normalizer '{}' is not supported (supported: Sequence, Replace, Prepend)", type);
  }
}

tok::PrependScheme prepend_scheme_of(const Context& ctx, const json& j) {
  if (j.contains("prepend_scheme") && j["prepend_scheme"].is_string()) {
    std::string s = j["prepend_scheme"].get<std::string>();
    if (s == "always") return tok::PrependScheme::kAlways;
    if (s == "first") return tok::PrependScheme::kFirst;
    if (s == "never") return tok::PrependScheme::kNever;
    ctx.error("unknown Metaspace prepend_scheme '{}'", s);
  }
  return get_bool(j, "add_prefix_space", true) ? tok::PrependScheme::kAlways : tok::PrependScheme::kNever;
}

// Returns true when the chain ends in ByteLevel (the model then sees raw bytes).
bool load_pre_tokenizer(const Context& ctx, const json& j, tok::PreTokenizer& out, bool& byte_level_seen) {
  if (j.is_null()) return false;
  if (byte_level_seen) ctx.error("a pre-tokenizer after ByteLevel is not supported");
  std::string type = type_of(ctx, j, "pre_tokenizer");
  if (type == "Sequence") {
    for (const auto& p : j.value("pretokenizers", json::array())) load_pre_tokenizer(ctx, p, out, byte_level_seen);
  } else if (type == "ByteLevel") {
    out.add(tok::make_byte_level(get_bool(j, "add_prefix_space", false), get_bool(j, "use_regex", true)));
    byte_level_seen = true;
  } else if (type == "Split") {
    auto [pattern, is_regex] = pattern_of(ctx, j.value("pattern", json()), "Split pre-tokenizer");
    auto behavior = behavior_of(ctx, j.value("behavior", json()));
    bool invert = get_bool(j, "invert", false);
    out.add(is_regex ? tok::make_regex_split(pattern, behavior, invert) : tok::make_literal_split(pattern, behavior, invert));
  } else if (type == "Digits") {
    out.add(tok::make_digits(get_bool(j, "individual_digits", false)));
  } else if (type == "Metaspace") {
    out.add(tok::make_metaspace(j.value("replacement", "\u2581"), prepend_scheme_of(ctx, j), get_bool(j, "split", true)));
  } else {
    ctx.error("pre_tokenizer '{}' is not supported (supported: Sequence, ByteLevel, Split, Digits, Metaspace)", type);
  }
  return byte_level_seen;
}

void load_decoder(const Context& ctx, const json& j, tok::Decoder& out) {
  std::string type = type_of(ctx, j, "decoder");
  if (type == "Sequence") {
    for (const auto& d : j.value("decoders", json::array())) load_decoder(ctx, d, out);
  } else if (type == "ByteLevel") {
    out.add_byte_level();
  } else if (type == "Replace") {
    auto [pattern, is_regex] = pattern_of(ctx, j.value("pattern", json()), "Replace decoder");
    if (is_regex) ctx.error("a Replace decoder with a regex pattern is not supported");
    out.add_replace(pattern, j.value("content", ""));
  } else if (type == "ByteFallback") {
    out.add_byte_fallback();
  } else if (type == "Fuse") {
    out.add_fuse();
  } else if (type == "Strip") {
    out.add_strip(j.value("content", " "), j.value("start", size_t{0}), j.value("stop", size_t{0}));
  } else if (type == "Metaspace") {
    out.add_metaspace(j.value("replacement", "\u2581"), prepend_scheme_of(ctx, j) != tok::PrependScheme::kNever);
  } else {
    ctx.error("decoder '{}' is not supported (supported: Sequence, ByteLevel, Replace, ByteFallback, Fuse, Strip, Metaspace)", type);
  }
}

std::unique_ptr<tok::BpeModel> load_model(const Context& ctx, const json& j, bool byte_level) {
  if (!j.is_object()) ctx.error("\"model\" is missing");
  std::string type = j.contains("type") && j["type"].is_string() ? j["type"].get<std::string>() : "BPE";
  if (type != "BPE") ctx.error("model type '{}' is not supported (only BPE)", type);
  for (const char* key : {"continuing_subword_prefix", "end_of_word_suffix"}) {
    if (j.contains(key) && j[key].is_string() && !j[key].get<std::string>().empty()) {
      ctx.error("BPE {} is not supported", key);
    }
  }
  if (j.contains("dropout") && j["dropout"].is_number() && j["dropout"].get<double>() > 0) {
    ctx.error("BPE dropout is not supported");
  }
  const json& vocab_json = j.value("vocab", json());
  if (!vocab_json.is_object()) ctx.error("model.vocab is not an object");
  int64_t max_id = -1;
  size_t bytes = 0;
  for (const auto& [text, id] : vocab_json.items()) {
    if (!id.is_number_integer() || id.get<int64_t>() < 0 || id.get<int64_t>() >= kMaxVocab) {
      ctx.error("model.vocab['{}'] is not a valid id", text);
    }
    max_id = std::max(max_id, id.get<int64_t>());
    bytes += text.size();
  }
  tok::Vocab vocab;
  vocab.resize(static_cast<int32_t>(max_id + 1), bytes);
  std::vector<bool> seen(static_cast<size_t>(max_id + 1));
  for (const auto& [text, id] : vocab_json.items()) {
    auto i = id.get<int32_t>();
    if (seen[static_cast<size_t>(i)]) ctx.error("model.vocab gives id {} to two tokens", i);
    seen[static_cast<size_t>(i)] = true;
    vocab.set(i, text);
  }
  vocab.build_index();

  const json& merges_json = j.value("merges", json::array());
  if (!merges_json.is_array()) ctx.error("model.merges is not an array");
  tok::MergeTable merges;
  merges.reserve(merges_json.size());
  std::string left, right;
  for (size_t rank = 0; rank < merges_json.size(); ++rank) {
    const json& m = merges_json[rank];
    if (m.is_string()) {
      const std::string& s = m.get_ref<const std::string&>();
      size_t space = s.find(' ');
      if (space == std::string::npos || s.find(' ', space + 1) != std::string::npos) ctx.error("merge {} ('{}') is not 'a b'", rank, s);
      left = s.substr(0, space);
      right = s.substr(space + 1);
    } else if (m.is_array() && m.size() == 2 && m[0].is_string() && m[1].is_string()) {
      left = m[0].get<std::string>();
      right = m[1].get<std::string>();
    } else {
      ctx.error("merge {} is neither 'a b' nor [a, b]", rank);
    }
    auto l = vocab.find(left), r = vocab.find(right), merged = vocab.find(left + right);
    if (!l || !r || !merged) ctx.error("merge {} ('{}' '{}') uses a token missing from the vocabulary", rank, left, right);
    merges.insert(*l, *r, {static_cast<int32_t>(rank), *merged});
  }

  tok::BpeOptions options;
  options.byte_level = byte_level;
  options.byte_fallback = get_bool(j, "byte_fallback", false);
  options.fuse_unk = get_bool(j, "fuse_unk", false);
  options.ignore_merges = get_bool(j, "ignore_merges", false);
  if (j.contains("unk_token") && j["unk_token"].is_string()) {
    auto unk = vocab.find(j["unk_token"].get<std::string>());
    if (!unk) ctx.error("model.unk_token '{}' is not in the vocabulary", j["unk_token"].get<std::string>());
    options.unk_id = unk;
  }
  return std::make_unique<tok::BpeModel>(std::move(vocab), std::move(merges), options);
}

// TemplateProcessing "single" -> ids before and after $A.
void load_post_processor(const Context& ctx, const json& j, TokenizerParts& parts) {
  if (j.is_null()) return;
  std::string type = type_of(ctx, j, "post_processor");
  if (type == "Sequence") {
    for (const auto& p : j.value("processors", json::array())) load_post_processor(ctx, p, parts);
  } else if (type == "ByteLevel") {
    return;  // offsets only
  } else if (type == "TemplateProcessing") {
    const json& specials = j.value("special_tokens", json::object());
    bool after_sequence = false;
    for (const auto& piece : j.value("single", json::array())) {
      if (piece.contains("Sequence")) {
        after_sequence = true;
        continue;
      }
      if (!piece.contains("SpecialToken")) ctx.error("unreadable TemplateProcessing piece");
      std::string name = piece["SpecialToken"].value("id", "");
      if (!specials.contains(name) || !specials[name].contains("ids")) ctx.error("template token '{}' has no ids", name);
      auto& target = after_sequence ? parts.suffix_ids : parts.prefix_ids;
      for (const auto& id : specials[name]["ids"]) target.push_back(id.get<int32_t>());
    }
  } else if (type == "RobertaProcessing" || type == "BertProcessing") {
    parts.prefix_ids.push_back(j.at("cls").at(1).get<int32_t>());
    parts.suffix_ids.push_back(j.at("sep").at(1).get<int32_t>());
  } else {
    ctx.error("post_processor '{}' is not supported", type);
  }
}

std::optional<std::string> config_token(const json& config, const char* key) {
  auto it = config.find(key);
  if (it == config.end()) return std::nullopt;
  if (it->is_string()) return it->get<std::string>();
  if (it->is_object() && it->contains("content") && (*it)["content"].is_string()) return (*it)["content"].get<std::string>();
  return std::nullopt;
}

std::string chat_template_of(const json& config) {
  auto it = config.find("chat_template");
  if (it == config.end()) return {};
  if (it->is_string()) return it->get<std::string>();
  if (it->is_array()) {
    for (const auto& t : *it) {
      if (t.value("name", "") == "default" && t.contains("template")) return t["template"].get<std::string>();
    }
  }
  return {};
}

json parse(const Context& ctx, std::string_view text, std::string_view what) {
  json j = json::parse(text, nullptr, false);
  if (j.is_discarded()) ctx.error("{} is not valid JSON", what);
  return j;
}

}  // namespace

std::unique_ptr<Tokenizer> Tokenizer::from_hf_json_text(std::string_view tokenizer_json, std::string_view config_json,
                                                        std::string_view source_name) {
  Context ctx{std::string(source_name)};
  json j = parse(ctx, tokenizer_json, "the file");
  if (!j.is_object()) ctx.error("the top level is not an object");
  json config = config_json.empty() ? json::object() : parse(ctx, config_json, "tokenizer_config.json");

  auto parts = std::make_unique<TokenizerParts>();
  load_normalizer(ctx, j.value("normalizer", json()), parts->normalizer);
  bool byte_level = false;
  load_pre_tokenizer(ctx, j.value("pre_tokenizer", json()), parts->pre_tokenizer, byte_level);
  if (j.value("decoder", json()).is_null()) ctx.error("a tokenizer without a decoder is not supported");
  load_decoder(ctx, j["decoder"], parts->decoder);
  parts->model = load_model(ctx, j.value("model", json()), byte_level);

  for (const auto& a : j.value("added_tokens", json::array())) {
    tok::AddedToken t;
    t.content = a.value("content", "");
    t.id = a.value("id", -1);
    t.special = a.value("special", false);
    t.normalized = a.value("normalized", !t.special);
    t.lstrip = a.value("lstrip", false);
    t.rstrip = a.value("rstrip", false);
    if (a.value("single_word", false)) ctx.error("added token '{}': single_word is not supported", t.content);
    if (t.id < 0 || t.id >= kMaxVocab || t.content.empty()) ctx.error("added token '{}' has an invalid id or content", t.content);
    parts->added_tokens.push_back(std::move(t));
  }
  load_post_processor(ctx, j.value("post_processor", json()), *parts);
  parts->chat_template = chat_template_of(config);

  auto tokenizer = from_parts(std::move(parts));
  TokenizerParts& p = *tokenizer->parts_;
  auto lookup = [&](const char* key) -> std::optional<int32_t> {
    auto text = config_token(config, key);
    if (!text) return std::nullopt;
    auto id = tokenizer->find_token(*text);
    if (!id) ctx.error("tokenizer_config.json {} '{}' is not a token", key, *text);
    return id;
  };
  p.bos_id = lookup("bos_token");
  p.eos_id = lookup("eos_token");
  if (!p.bos_id && !p.prefix_ids.empty()) p.bos_id = p.prefix_ids.front();
  auto apply_flag = [&](const char* key, std::optional<int32_t> id, std::vector<int32_t>& ids, bool front) {
    auto it = config.find(key);
    if (it == config.end() || !it->is_boolean() || !id) return;
    std::erase(ids, *id);
    if (it->get<bool>()) ids.insert(front ? ids.begin() : ids.end(), *id);
  };
  apply_flag("add_bos_token", p.bos_id, p.prefix_ids, true);
  apply_flag("add_eos_token", p.eos_id, p.suffix_ids, false);
  return tokenizer;
}

std::unique_ptr<Tokenizer> Tokenizer::from_hf_json(const std::string& path) {
  auto read = [](const std::filesystem::path& p) {
    std::ifstream in(p, std::ios::binary);
    MARLIN_CHECK(in, "cannot open '{}'", p.string());
    std::ostringstream ss;
    ss << in.rdbuf();
    return ss.str();
  };
  std::string text = read(path);
  auto config_path = std::filesystem::path(path).parent_path() / "tokenizer_config.json";
  std::string config = std::filesystem::exists(config_path) ? read(config_path) : std::string();
  return from_hf_json_text(text, config, path);
}

namespace tok {

void add_hf_normalizer(const json& section, std::string_view source, Normalizer& out) {
  load_normalizer(Context{std::string(source)}, section, out);
}

bool add_hf_pre_tokenizer(const json& section, std::string_view source, PreTokenizer& out) {
  bool byte_level = false;
  return load_pre_tokenizer(Context{std::string(source)}, section, out, byte_level);
}

void add_hf_decoder(const json& section, std::string_view source, Decoder& out) {
  if (section.is_null()) return;
  load_decoder(Context{std::string(source)}, section, out);
}

}  // namespace tok
}  // namespace marlin
