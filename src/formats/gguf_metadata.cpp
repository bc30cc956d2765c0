// GGUF metadata lookups: type names and the typed getters of GgufFile.
#include <array>
#include <limits>

#include "core/error.h"
#include "formats/gguf.h"

namespace marlin {
namespace {

constexpr std::array<std::string_view, 13> kTypeNames = {
    "UINT8", "INT8", "UINT16", "INT16", "UINT32", "INT32", "FLOAT32",
    "BOOL",  "STRING", "ARRAY", "UINT64", "INT64", "FLOAT64",
};

bool is_unsigned(GgufType t) {
  return t == GgufType::UINT8 || t == GgufType::UINT16 || t == GgufType::UINT32 || t == GgufType::UINT64;
}
bool is_signed(GgufType t) {
  return t == GgufType::INT8 || t == GgufType::INT16 || t == GgufType::INT32 || t == GgufType::INT64;
}
bool is_integer(GgufType t) { return is_unsigned(t) || is_signed(t); }
bool is_float(GgufType t) { return t == GgufType::FLOAT32 || t == GgufType::FLOAT64; }

std::string type_description(const GgufValue& v) {
  if (v.type != GgufType::ARRAY) return std::string(gguf_type_name(v.type));
  return fmt::format("ARRAY of {}", gguf_type_name(std::get<GgufArray>(v.value).element_type));
}

[[noreturn]] void type_mismatch(std::string_view key, const GgufValue& v, std::string_view expected) {
  fail("gguf: metadata key '{}' is {}, expected {}", key, type_description(v), expected);
}

// The value of an integer-typed GgufValue as uint64; `key` names it in errors.
uint64_t to_uint(const GgufValue& v, std::string_view key) {
  if (is_unsigned(v.type)) return std::get<uint64_t>(v.value);
  const int64_t i = std::get<int64_t>(v.value);
  if (i < 0) fail("gguf: metadata key '{}' holds {}, which is not a valid unsigned value", key, i);
  return uint64_t(i);
}

int64_t to_int(const GgufValue& v, std::string_view key) {
  if (is_signed(v.type)) return std::get<int64_t>(v.value);
  const uint64_t u = std::get<uint64_t>(v.value);
  if (u > uint64_t(std::numeric_limits<int64_t>::max()))
    fail("gguf: metadata key '{}' holds {}, which does not fit int64", key, u);
  return int64_t(u);
}

double to_double(const GgufValue& v) {
  if (is_float(v.type)) return std::get<double>(v.value);
  if (is_unsigned(v.type)) return double(std::get<uint64_t>(v.value));
  return double(std::get<int64_t>(v.value));
}

// The array under `key`, or nullptr when absent; a non-array value is a type error.
const GgufArray* find_array(const GgufFile& file, std::string_view key, std::string_view expected) {
  const GgufValue* v = file.find(key);
  if (!v) return nullptr;
  if (v->type != GgufType::ARRAY) type_mismatch(key, *v, expected);
  return &std::get<GgufArray>(v->value);
}

}  // namespace

std::string_view gguf_type_name(GgufType type) {
  const auto id = uint32_t(type);
  return id < kTypeNames.size() ? kTypeNames[id] : std::string_view("UNKNOWN");
}

const GgufValue* GgufFile::find(std::string_view key) const {
  const auto it = metadata_index_.find(std::string(key));
  return it == metadata_index_.end() ? nullptr : &metadata_[it->second].second;
}

std::optional<std::string> GgufFile::get_string(std::string_view key) const {
  const GgufValue* v = find(key);
  if (!v) return std::nullopt;
  if (v->type != GgufType::STRING) type_mismatch(key, *v, "STRING");
  return std::get<std::string>(v->value);
}

std::optional<uint64_t> GgufFile::get_uint(std::string_view key) const {
  const GgufValue* v = find(key);
  if (!v) return std::nullopt;
  if (!is_integer(v->type)) type_mismatch(key, *v, "an integer");
  return to_uint(*v, key);
}

std::optional<int64_t> GgufFile::get_int(std::string_view key) const {
  const GgufValue* v = find(key);
  if (!v) return std::nullopt;
  if (!is_integer(v->type)) type_mismatch(key, *v, "an integer");
  return to_int(*v, key);
}

std::optional<double> GgufFile::get_float(std::string_view key) const {
  const GgufValue* v = find(key);
  if (!v) return std::nullopt;
  if (!is_float(v->type) && !is_integer(v->type)) type_mismatch(key, *v, "a number");
  return to_double(*v);
}

std::optional<bool> GgufFile::get_bool(std::string_view key) const {
  const GgufValue* v = find(key);
  if (!v) return std::nullopt;
  if (v->type != GgufType::BOOL) type_mismatch(key, *v, "BOOL");
  return std::get<bool>(v->value);
}

std::optional<std::vector<std::string>> GgufFile::get_string_array(std::string_view key) const {
  const GgufArray* array = find_array(*this, key, "ARRAY of STRING");
  if (!array) return std::nullopt;
  if (array->element_type != GgufType::STRING) type_mismatch(key, *find(key), "ARRAY of STRING");
  std::vector<std::string> out;
  out.reserve(array->items.size());
  for (const auto& item : array->items) out.push_back(std::get<std::string>(item.value));
  return out;
}

std::optional<std::vector<double>> GgufFile::get_float_array(std::string_view key) const {
  const GgufArray* array = find_array(*this, key, "ARRAY of numbers");
  if (!array) return std::nullopt;
  if (!is_float(array->element_type) && !is_integer(array->element_type))
    type_mismatch(key, *find(key), "ARRAY of numbers");
  std::vector<double> out;
  out.reserve(array->items.size());
  for (const auto& item : array->items) out.push_back(to_double(item));
  return out;
}

std::optional<std::vector<int64_t>> GgufFile::get_int_array(std::string_view key) const {
  const GgufArray* array = find_array(*this, key, "ARRAY of integers");
  if (!array) return std::nullopt;
  if (!is_integer(array->element_type)) type_mismatch(key, *find(key), "ARRAY of integers");
  std::vector<int64_t> out;
  out.reserve(array->items.size());
  for (const auto& item : array->items) out.push_back(to_int(item, key));
  return out;
}

}  // namespace marlin
