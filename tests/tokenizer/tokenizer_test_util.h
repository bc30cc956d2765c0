// Shared helpers for the tokenizer tests: fixture paths, corpus and expected-id readers, and
// the real models (tests that need one skip when models/ lacks it).
#pragma once

#include <gtest/gtest.h>

#include <filesystem>
#include <map>
#include <fstream>
#include <memory>
#include <nlohmann/json.hpp>
#include <optional>
#include <sstream>
#include <string>
#include <vector>

#include "formats/gguf.h"
#include "tokenizer/tokenizer.h"

namespace marlin::test {

inline std::string fixture(const std::string& name) { return std::string(MARLIN_FIXTURES_DIR) + "/tokenizer/" + name; }
inline std::string model_path(const std::string& name) { return std::string(MARLIN_MODELS_DIR) + "/" + name; }
inline const char* kSmolLM2 = "SmolLM2-135M-Instruct.Q4_1.gguf";
inline const char* kGemma3 = "gemma-3-270m-q4_k_m.gguf";

inline std::string read_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::ostringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

inline std::vector<nlohmann::json> read_jsonl(const std::string& path) {
  std::vector<nlohmann::json> rows;
  std::ifstream in(path, std::ios::binary);
  std::string line;
  while (std::getline(in, line)) rows.push_back(nlohmann::json::parse(line));
  return rows;
}

inline const std::vector<std::string>& corpus() {
  static const std::vector<std::string> strings = [] {
    std::vector<std::string> out;
    for (const auto& j : read_jsonl(fixture("corpus.jsonl"))) out.push_back(j.get<std::string>());
    return out;
  }();
  return strings;
}

// The tokenizer of a model in models/, loaded once per test binary; null when the model is absent.
inline const Tokenizer* model_tokenizer(const char* name) {
  static std::map<std::string, std::unique_ptr<Tokenizer>> cache;
  auto it = cache.find(name);
  if (it != cache.end()) return it->second.get();
  std::unique_ptr<Tokenizer> tokenizer;
  if (std::filesystem::exists(model_path(name))) {
    auto gguf = GgufFile::open(model_path(name));
    tokenizer = Tokenizer::from_gguf(*gguf);
  }
  return (cache[name] = std::move(tokenizer)).get();
}

#define MARLIN_REQUIRE_MODEL(ptr, name) \
  if ((ptr) == nullptr) GTEST_SKIP() << "models/" << (name) << " is missing (scripts/setup.sh fetches it)"

}  // namespace marlin::test
