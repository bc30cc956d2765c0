// Python's text forms of values, as the Jinja templates see them: str() (what {{ x }} prints),
// repr() (how containers print their items), float repr, and json.dumps (transformers' tojson).
#pragma once

#include <optional>
#include <string>

#include "template/value.h"

namespace marlin::tmpl {

// Python float.__repr__: shortest round-trip digits, "1.0", "1e+16", "1e-05", "inf", "nan".
std::string float_repr(double d);

// Results longer than about `max_bytes` are an error (a list may hold the same long string many
// times, so its text can be far larger than the memory it takes).
constexpr size_t kNoTextLimit = static_cast<size_t>(-1);

// Python str(v) as Jinja prints it: undefined prints as "", strings as themselves.
std::string py_str(const Value& v, size_t max_bytes = kNoTextLimit);

// Python repr(v): 'quoted' strings, [lists], (tuples,), {'dicts': 1}, None/True/False.
std::string py_repr(const Value& v, size_t max_bytes = kNoTextLimit);

struct JsonDumpOptions {
  std::optional<std::string> indent;  // json.dumps(indent=...), already turned into a string
  std::string item_separator = ", ";
  std::string key_separator = ": ";
  bool sort_keys = false;
  bool ensure_ascii = false;
  size_t max_bytes = kNoTextLimit;
};

// Python json.dumps(v, ...). Undefined, namespaces and functions are not serializable (error).
std::string json_dumps(const Value& v, const JsonDumpOptions& options);

}  // namespace marlin::tmpl
