// Small helpers for the JSON files of Hugging Face checkpoints (config.json, tokenizer files,
// index files): bounded reads and parse errors as one line naming the file.
#pragma once

#include <cstdint>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <string_view>

namespace marlin {

// Checkpoint side files are small; anything larger is not what it claims to be.
inline constexpr uint64_t kMaxSideFileBytes = uint64_t(256) << 20;

// The whole file; marlin::Error naming the path when it cannot be read or is over `max_bytes`.
std::string read_side_file(const std::string& path, uint64_t max_bytes = kMaxSideFileBytes);

// Parses `text` (from `source`); marlin::Error "<source>: not valid JSON (...)".
nlohmann::json parse_json_text(std::string_view text, std::string_view source);

// read_side_file + parse_json_text, requiring a JSON object.
nlohmann::json read_json_object(const std::string& path);

// Typed lookups in a JSON object with one-line errors naming `source` and the key.
// nullopt when absent (or null); marlin::Error when present with another type.
std::optional<int64_t> json_int(const nlohmann::json& object, std::string_view key, std::string_view source);
std::optional<double> json_number(const nlohmann::json& object, std::string_view key, std::string_view source);
std::optional<bool> json_bool(const nlohmann::json& object, std::string_view key, std::string_view source);
std::optional<std::string> json_string(const nlohmann::json& object, std::string_view key, std::string_view source);

}  // namespace marlin
