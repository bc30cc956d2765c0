#include "formats/hf_json.h"

#include <sys/stat.h>

#include <cerrno>
#include <cmath>
#include <cstring>
#include <fstream>

#include "core/error.h"
#include "formats/gguf_text.h"

namespace marlin {

std::string read_side_file(const std::string& path, uint64_t max_bytes) {
  struct stat st {};
  if (::stat(path.c_str(), &st) != 0) fail("cannot open '{}': {}", path, std::strerror(errno));
  MARLIN_CHECK(S_ISREG(st.st_mode), "cannot read '{}': not a regular file", path);
  MARLIN_CHECK(uint64_t(st.st_size) <= max_bytes, "'{}' has {} bytes, more than the {} such a file may have", path,
               uint64_t(st.st_size), max_bytes);
  std::ifstream in(path, std::ios::binary);
  MARLIN_CHECK(in, "cannot open '{}'", path);
  std::string text(size_t(st.st_size), '\0');
  in.read(text.data(), std::streamsize(text.size()));
  MARLIN_CHECK(in.gcount() == std::streamsize(text.size()), "cannot read '{}': it changed while being read", path);
  return text;
}

nlohmann::json parse_json_text(std::string_view text, std::string_view source) {
  try {
    return nlohmann::json::parse(text.begin(), text.end());
  } catch (const nlohmann::json::exception& e) {
    std::string what = e.what();
    if (auto colon = what.find("] "); colon != std::string::npos) what = what.substr(colon + 2);
    fail("{}: not valid JSON ({})", source, gguf_escape(what.substr(0, 240)));
  }
}

nlohmann::json read_json_object(const std::string& path) {
  auto json = parse_json_text(read_side_file(path), path);
  MARLIN_CHECK(json.is_object(), "{}: the JSON is {}, not an object", path, json.type_name());
  return json;
}

namespace {

const nlohmann::json* member(const nlohmann::json& object, std::string_view key) {
  if (!object.is_object()) return nullptr;
  auto it = object.find(key);
  if (it == object.end() || it->is_null()) return nullptr;
  return &*it;
}

}  // namespace

std::optional<int64_t> json_int(const nlohmann::json& object, std::string_view key, std::string_view source) {
  const auto* v = member(object, key);
  if (!v) return std::nullopt;
  if (v->is_number_unsigned()) {
    MARLIN_CHECK(v->get<uint64_t>() <= uint64_t(INT64_MAX), "{}: '{}' = {} is too large", source, key, v->dump());
    return int64_t(v->get<uint64_t>());
  }
  if (v->is_number_integer()) return v->get<int64_t>();
  // Some writers store whole numbers as floats ("num_key_value_heads": 8.0).
  if (v->is_number_float()) {
    const double d = v->get<double>();
    if (std::isfinite(d) && d == std::floor(d) && std::fabs(d) < 9.0e15) return int64_t(d);
  }
  fail("{}: '{}' is {}, not an integer", source, key, gguf_quote(v->dump(), 60));
}

std::optional<double> json_number(const nlohmann::json& object, std::string_view key, std::string_view source) {
  const auto* v = member(object, key);
  if (!v) return std::nullopt;
  MARLIN_CHECK(v->is_number(), "{}: '{}' is {}, not a number", source, key, gguf_quote(v->dump(), 60));
  return v->get<double>();
}

std::optional<bool> json_bool(const nlohmann::json& object, std::string_view key, std::string_view source) {
  const auto* v = member(object, key);
  if (!v) return std::nullopt;
  MARLIN_CHECK(v->is_boolean(), "{}: '{}' is {}, not true or false", source, key, gguf_quote(v->dump(), 60));
  return v->get<bool>();
}

std::optional<std::string> json_string(const nlohmann::json& object, std::string_view key, std::string_view source) {
  const auto* v = member(object, key);
  if (!v) return std::nullopt;
  MARLIN_CHECK(v->is_string(), "{}: '{}' is {}, not a string", source, key, gguf_quote(v->dump(), 60));
  return v->get<std::string>();
}

}  // namespace marlin
