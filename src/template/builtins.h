// The template language's library: filters, tests, methods of str/dict/list, and globals
// (range, dict, namespace, joiner, raise_exception, strftime_now), matching jinja2 3.1 as configured by
// transformers for chat templates.
#pragma once

#include <initializer_list>
#include <optional>
#include <string>
#include <string_view>

#include "template/value.h"

namespace marlin::tmpl {

class Interpreter;

using FilterFn = Value (*)(Interpreter&, const Value& input, CallArgs& args);
using TestFn = bool (*)(Interpreter&, const Value& input, CallArgs& args);

// nullptr when there is no such filter/test.
FilterFn find_filter(std::string_view name);
TestFn find_test(std::string_view name);

// A bound method such as "abc".upper or d.items; nullopt when `object` has no method `name`.
// Methods that would mutate a value are refused (as jinja2's ImmutableSandboxedEnvironment does).
std::optional<Value> find_method(const Value& object, const std::string& name);

// A builtin global function, or nullopt.
std::optional<Value> find_global(std::string_view name);

// Reads call arguments by position or keyword, like a Python signature with defaults.
class ArgReader {
 public:
  ArgReader(CallArgs& args, std::string_view function, std::initializer_list<std::string_view> names);
  // The argument for parameter `index`, or nullptr if not given.
  const Value* get(size_t index) const;
  Value get_or(size_t index, const Value& fallback) const;
  std::optional<std::string> get_string(size_t index) const;
  std::optional<int64_t> get_int(size_t index) const;
  bool get_bool(size_t index, bool fallback) const;
  // A Python argument that must be an int or bool (sorted(reverse=...)).
  bool get_flag(size_t index, bool fallback) const;
  [[noreturn]] void fail_arg(size_t index, std::string_view expected) const;

 private:
  std::string function_;
  std::vector<std::string_view> names_;
  std::vector<const Value*> values_;
};

// Python iteration over a value: list/tuple items, dict keys, string characters; undefined is
// empty. Anything else is an error.
std::vector<Value> iterate(Interpreter& in, const Value& v);

// Python `needle in container`.
bool contains(const Value& container, const Value& needle);

}  // namespace marlin::tmpl
