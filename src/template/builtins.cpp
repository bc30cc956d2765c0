// Globals and the helpers shared by filters, tests and methods.
#include "template/builtins.h"

#include <ctime>

#include "core/error.h"
#include "template/interpreter.h"
#include "template/py_format.h"
#include "template/text.h"

namespace marlin::tmpl {
namespace {

// jinja2's sandbox refuses range() results longer than this (MAX_RANGE).
constexpr int64_t kMaxRange = 100000;

Value global_range(Interpreter& in, CallArgs& args) {
  MARLIN_CHECK(args.keyword.empty(), "range() takes no keyword arguments");
  MARLIN_CHECK(!args.positional.empty() && args.positional.size() <= 3,
               "range expected 1 to 3 arguments, got {}", args.positional.size());
  std::vector<int64_t> bounds;
  for (const Value& v : args.positional) {
    MARLIN_CHECK(v.is_int() || v.is_bool(), "'{}' object cannot be interpreted as an integer", type_name(v));
    bounds.push_back(v.is_bool() ? int64_t(v.as_bool()) : v.as_int());
  }
  const int64_t start = bounds.size() == 1 ? 0 : bounds[0];
  const int64_t stop = bounds.size() == 1 ? bounds[0] : bounds[1];
  const int64_t step = bounds.size() == 3 ? bounds[2] : 1;
  MARLIN_CHECK(step != 0, "range() arg 3 must not be zero");
  // Count in 128 bits so extreme bounds cannot overflow.
  const __int128 span = step > 0 ? __int128(stop) - start : __int128(start) - stop;
  const __int128 count = span <= 0 ? 0 : (span + (step > 0 ? step : -__int128(step)) - 1) /
                                             (step > 0 ? step : -__int128(step));
  MARLIN_CHECK(count <= kMaxRange,
               "Range too big. The sandbox blocks ranges larger than MAX_RANGE ({}).", kMaxRange);
  in.charge(static_cast<uint64_t>(count));
  return Value::range(start, stop, step);
}

// dict(mapping_or_pairs, **kwargs), as Python's dict constructor.
Dict build_dict(Interpreter& in, CallArgs& args, std::string_view function) {
  MARLIN_CHECK(args.positional.size() <= 1, "{} expected at most 1 positional argument, got {}", function,
               args.positional.size());
  Dict d;
  if (!args.positional.empty()) {
    const Value& source = args.positional[0];
    if (source.is_undefined()) fail("{}", source.undefined_reason());  // dict() asks it for keys()
    if (source.is_dict()) {
      for (const auto& [k, v] : source.as_dict().entries()) d.set(k, v);
    } else if (source.is_namespace()) {
      for (const auto& [k, v] : source.as_namespace().attributes.entries()) d.set(k, v);
    } else {
      for (const Value& pair : iterate(in, source)) {
        const std::vector<Value> kv = iterate(in, pair);
        MARLIN_CHECK(kv.size() == 2, "dictionary update sequence element has length {}; 2 is required",
                     kv.size());
        d.set(kv[0], kv[1]);
      }
    }
  }
  for (auto& [name, value] : args.keyword) d.set(Value::string(name), value);
  return d;
}

Value global_dict(Interpreter& in, CallArgs& args) { return Value::dict(build_dict(in, args, "dict")); }

Value global_namespace(Interpreter& in, CallArgs& args) {
  Dict attributes = build_dict(in, args, "namespace");
  for (const auto& [key, value] : attributes.entries()) {
    if (key.is_string() && !key.as_string().empty() && key.as_string()[0] == '_') {
      fail("chat templates cannot store underscore-prefixed attributes on a namespace, but got '{}'",
           key.as_string());
    }
  }
  Value ns = Value::make_namespace(std::move(attributes));
  in.register_namespace(ns);
  return ns;
}

Value global_raise_exception(Interpreter& in, CallArgs& args) {
  ArgReader reader(args, "raise_exception", {"message"});
  const Value* message = reader.get(0);
  throw TemplateRaisedError(message ? py_str(*message, in.max_string_bytes()) : std::string());
}

Value global_strftime_now(Interpreter& in, CallArgs& args) {
  ArgReader reader(args, "strftime_now", {"format"});
  const std::optional<std::string> format = reader.get_string(0);
  MARLIN_CHECK(format, "strftime_now() requires a format string");
  MARLIN_CHECK(format->size() <= 256, "strftime_now() format longer than 256 bytes");
  const std::tm now = in.now();
  std::string buffer(1024, '\0');
  // strftime returns 0 both for an empty result and for a too-small buffer; the buffer is
  // large enough for any 256-byte format.
  const size_t n = std::strftime(buffer.data(), buffer.size(), format->c_str(), &now);
  buffer.resize(n);
  return Value::string(std::move(buffer));
}

// joiner(sep=", "): a callable that returns "" the first time and sep afterwards.
Value global_joiner(Interpreter&, CallArgs& args) {
  ArgReader reader(args, "joiner", {"sep"});
  const Value sep = reader.get_or(0, Value::string(", "));
  auto used = std::make_shared<bool>(false);
  return Value::function("joiner", [sep, used](Interpreter&, CallArgs& call_args) {
    ArgReader(call_args, "joiner", {});
    if (!*used) {
      *used = true;
      return Value::string("");
    }
    return sep;
  });
}

}  // namespace

std::optional<Value> find_global(std::string_view name) {
  static const Value kRange = Value::function("range", global_range);
  static const Value kDict = Value::function("dict", global_dict);
  static const Value kNamespace = Value::function("namespace", global_namespace);
  static const Value kRaise = Value::function("raise_exception", global_raise_exception);
  static const Value kStrftime = Value::function("strftime_now", global_strftime_now);
  static const Value kJoiner = Value::function("joiner", global_joiner);
  if (name == "range") return kRange;
  if (name == "dict") return kDict;
  if (name == "namespace") return kNamespace;
  if (name == "raise_exception") return kRaise;
  if (name == "strftime_now") return kStrftime;
  if (name == "joiner") return kJoiner;
  return std::nullopt;
}

ArgReader::ArgReader(CallArgs& args, std::string_view function,
                     std::initializer_list<std::string_view> names)
    : function_(function), names_(names), values_(names.size(), nullptr) {
  MARLIN_CHECK(args.positional.size() <= names_.size(), "{}() takes at most {} argument(s) ({} given)",
               function_, names_.size(), args.positional.size());
  for (size_t i = 0; i < args.positional.size(); ++i) values_[i] = &args.positional[i];
  for (const auto& [name, value] : args.keyword) {
    const auto it = std::find(names_.begin(), names_.end(), name);
    MARLIN_CHECK(it != names_.end(), "{}() got an unexpected keyword argument '{}'", function_, name);
    const size_t i = static_cast<size_t>(it - names_.begin());
    MARLIN_CHECK(!values_[i], "{}() got multiple values for argument '{}'", function_, name);
    values_[i] = &value;
  }
}

const Value* ArgReader::get(size_t index) const { return values_[index]; }

Value ArgReader::get_or(size_t index, const Value& fallback) const {
  return values_[index] ? *values_[index] : fallback;
}

void ArgReader::fail_arg(size_t index, std::string_view expected) const {
  fail("{}(): argument '{}' must be {}, not {}", function_, names_[index], expected,
       type_name(*values_[index]));
}

std::optional<std::string> ArgReader::get_string(size_t index) const {
  const Value* v = values_[index];
  if (!v || v->is_none()) return std::nullopt;
  if (!v->is_string()) fail_arg(index, "str");
  return v->as_string();
}

std::optional<int64_t> ArgReader::get_int(size_t index) const {
  const Value* v = values_[index];
  if (!v || v->is_none()) return std::nullopt;
  if (v->is_bool()) return int64_t(v->as_bool());
  if (!v->is_int()) fail_arg(index, "int");
  return v->as_int();
}

bool ArgReader::get_bool(size_t index, bool fallback) const {
  const Value* v = values_[index];
  return v ? truthy(*v) : fallback;
}

bool ArgReader::get_flag(size_t index, bool fallback) const {
  const Value* v = values_[index];
  if (!v) return fallback;
  if (v->is_bool()) return v->as_bool();
  if (v->is_int()) return v->as_int() != 0;
  fail("'{}' object cannot be interpreted as an integer", type_name(*v));
}

std::vector<Value> iterate(Interpreter& in, const Value& v) {
  switch (v.kind()) {
    case Value::Kind::kUndefined: return {};
    case Value::Kind::kList: {
      const List& list = v.as_list();
      in.charge(list.items.size());
      if (!list.is_iterator) return list.items;
      std::vector<Value> rest(list.items.begin() + static_cast<ptrdiff_t>(list.consumed), list.items.end());
      list.consumed = list.items.size();
      if (list.pending_error) fail("{}", *list.pending_error);
      return rest;
    }
    case Value::Kind::kDict: {
      in.charge(v.as_dict().size());
      std::vector<Value> keys;
      keys.reserve(v.as_dict().size());
      for (const auto& [key, value] : v.as_dict().entries()) keys.push_back(key);
      return keys;
    }
    case Value::Kind::kString: {
      in.charge_bytes(v.as_string().size() * 16);
      std::vector<Value> chars;
      std::string one;
      for (char32_t c : utf8_decode(v.as_string())) {
        one.clear();
        utf8_append(one, c);
        chars.push_back(Value::string(one));
      }
      return chars;
    }
    default: fail("'{}' object is not iterable", type_name(v));
  }
}

bool contains(const Value& container, const Value& needle) {
  switch (container.kind()) {
    case Value::Kind::kUndefined: return false;
    case Value::Kind::kString:
      MARLIN_CHECK(needle.is_string(), "'in <string>' requires string as left operand, not {}",
                   type_name(needle));
      return container.as_string().find(needle.as_string()) != std::string::npos;
    case Value::Kind::kList: {
      const List& list = container.as_list();
      for (size_t i = list.is_iterator ? list.consumed : 0; i < list.items.size(); ++i) {
        if (list.is_iterator) list.consumed = i + 1;  // `in` consumes an iterator up to the match
        if (equals(list.items[i], needle)) return true;
      }
      if (list.pending_error) fail("{}", *list.pending_error);
      return false;
    }
    case Value::Kind::kDict:
      MARLIN_CHECK(!needle.is_list() || needle.as_list().is_tuple, "unhashable type: 'list'");
      MARLIN_CHECK(!needle.is_dict(), "unhashable type: 'dict'");
      return container.as_dict().find(needle) != nullptr;
    default: fail("argument of type '{}' is not iterable", type_name(container));
  }
}

}  // namespace marlin::tmpl
