// marlin tokenize: token ids and pieces of a text, or of every line of a JSONL file.
#include <chrono>
#include <cstdio>
#include <fstream>
#include <iostream>
#include <nlohmann/json.hpp>
#include <string>

#include "cli/commands.h"
#include "cli/common.h"
#include "core/error.h"
#include "formats/gguf.h"
#include "tokenizer/tokenizer.h"

namespace marlin::cli {
namespace {

struct TokenizeOptions {
  std::string model;
  std::string text;
  std::string file;
  bool json = false;
  bool add_special = false;
  bool no_parse_special = false;
  bool time = false;
};

bool ends_with(const std::string& s, std::string_view suffix) {
  return s.size() >= suffix.size() && std::string_view(s).substr(s.size() - suffix.size()) == suffix;
}

double seconds_since(std::chrono::steady_clock::time_point start) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
}

std::unique_ptr<Tokenizer> load_tokenizer(const std::string& path, bool report_time) {
  auto start = std::chrono::steady_clock::now();
  if (ends_with(path, ".json")) {
    auto tokenizer = Tokenizer::from_hf_json(path);
    if (report_time) std::fprintf(stderr, "loaded tokenizer.json in %.3f s\n", seconds_since(start));
    return tokenizer;
  }
  auto gguf = GgufFile::open(path);
  double open_s = seconds_since(start);
  start = std::chrono::steady_clock::now();
  auto tokenizer = Tokenizer::from_gguf(*gguf);
  if (report_time) {
    std::fprintf(stderr, "opened GGUF in %.3f s, built tokenizer (%d tokens) in %.3f s\n", open_s,
                 tokenizer->vocab_size(), seconds_since(start));
  }
  return tokenizer;
}

std::string dump(const nlohmann::json& j) { return j.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace); }

// A piece for humans: printable text, other bytes as \xNN.
std::string escape_piece(const std::string& piece) {
  std::string out;
  for (unsigned char c : piece) {
    if (c == '\n') out += "\\n";
    else if (c == '\t') out += "\\t";
    else if (c == '\r') out += "\\r";
    else if (c < 0x20 || c == 0x7F) out += fmt::format("\\x{:02X}", c);
    else out += static_cast<char>(c);
  }
  return out;
}

// One JSONL line: a JSON string, {"text": s}, or {"hex": "..."} for arbitrary bytes.
std::string line_text(const std::string& line, size_t number) {
  auto j = nlohmann::json::parse(line, nullptr, false);
  MARLIN_CHECK(!j.is_discarded(), "line {} is not valid JSON", number);
  if (j.is_string()) return j.get<std::string>();
  if (j.is_object() && j.contains("text") && j["text"].is_string()) return j["text"].get<std::string>();
  if (j.is_object() && j.contains("hex") && j["hex"].is_string()) {
    std::string hex = j["hex"].get<std::string>(), out;
    MARLIN_CHECK(hex.size() % 2 == 0, "line {}: odd-length hex", number);
    auto nibble = [&](char c) {
      if (c >= '0' && c <= '9') return c - '0';
      if (c >= 'a' && c <= 'f') return c - 'a' + 10;
      if (c >= 'A' && c <= 'F') return c - 'A' + 10;
      fail("line {}: '{}' is not a hex digit", number, c);
    };
    for (size_t i = 0; i < hex.size(); i += 2) out += static_cast<char>(nibble(hex[i]) * 16 + nibble(hex[i + 1]));
    return out;
  }
  fail("line {} is neither a JSON string, {{\"text\": ...}} nor {{\"hex\": ...}}", number);
}

void run_file(const Tokenizer& tokenizer, const TokenizeOptions& o) {
  std::ifstream in(o.file, std::ios::binary);
  MARLIN_CHECK(in, "cannot open '{}'", o.file);
  std::string line;
  size_t number = 0, bytes = 0, tokens = 0;
  double seconds = 0;
  while (std::getline(in, line)) {
    ++number;
    if (line.empty()) continue;
    std::string text = line_text(line, number);
    auto start = std::chrono::steady_clock::now();
    auto ids = tokenizer.encode(text, o.add_special, !o.no_parse_special);
    seconds += seconds_since(start);
    bytes += text.size();
    tokens += ids.size();
    nlohmann::json out;
    out["ids"] = ids;
    out["decoded"] = tokenizer.decode(ids);
    std::cout << dump(out) << '\n';
  }
  if (o.time) {
    std::fprintf(stderr, "encoded %zu bytes into %zu tokens in %.3f s (%.2f MB/s)\n", bytes, tokens, seconds,
                 seconds > 0 ? bytes / seconds / 1e6 : 0.0);
  }
}

void run(const TokenizeOptions& o) {
  const std::string path = resolve_model_path(o.model);
  auto tokenizer = load_tokenizer(path, o.time);
  if (!o.file.empty()) {
    run_file(*tokenizer, o);
    return;
  }
  auto ids = tokenizer->encode(o.text, o.add_special, !o.no_parse_special);
  if (o.json) {
    nlohmann::json out;
    out["ids"] = ids;
    out["pieces"] = nlohmann::json::array();
    for (int32_t id : ids) out["pieces"].push_back(tokenizer->piece(id));
    std::cout << dump(out) << '\n';
    return;
  }
  for (int32_t id : ids) std::cout << id << '\t' << '"' << escape_piece(tokenizer->piece(id)) << '"' << '\n';
  std::cout << ids.size() << " tokens\n";
}

}  // namespace

void register_tokenize(CLI::App& app) {
  auto options = std::make_shared<TokenizeOptions>();
  auto* cmd = app.add_subcommand("tokenize", "Print the token ids and pieces of a text");
  cmd->add_option("text", options->text, "Text to tokenize (taken literally; use --file for many texts)");
  cmd->add_option("-m,--model", options->model,
                  "GGUF model or tokenizer.json whose tokenizer to use (default: the default model)");
  cmd->add_flag("--json", options->json, "Print one JSON object {\"ids\": [...], \"pieces\": [...]}");
  cmd->add_flag("--add-special", options->add_special, "Add the model's BOS/EOS tokens as configured");
  cmd->add_flag("--no-parse-special", options->no_parse_special,
                "Treat special tokens written in the text (e.g. <|im_end|>) as plain text");
  cmd->add_option("--file", options->file,
                  "JSONL file: each line a JSON string, {\"text\": s} or {\"hex\": bytes}; prints one JSON line "
                  "{\"ids\", \"decoded\"} per input line")
      ->check(CLI::ExistingFile);
  cmd->add_flag("--time", options->time, "Report load time and encode throughput on stderr");
  cmd->callback([options] { run(*options); });
}

}  // namespace marlin::cli
