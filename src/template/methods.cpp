// Methods of str, dict and list values that templates call ("abc".strip(), d.items(), ...).
// Mutating methods are refused the way jinja2's ImmutableSandboxedEnvironment refuses them.
#include <algorithm>
#include <unordered_map>
#include <unordered_set>

#include "core/error.h"
#include "template/builtins.h"
#include "template/interpreter.h"
#include "template/py_format.h"
#include "template/text.h"

namespace marlin::tmpl {
namespace {

using StringMethod = Value (*)(Interpreter&, const std::string& self, CallArgs& args);
using ValueMethod = Value (*)(Interpreter&, const Value& self, CallArgs& args);

Value string_list(std::vector<std::string> parts) {
  std::vector<Value> items;
  items.reserve(parts.size());
  for (std::string& p : parts) items.push_back(Value::string(std::move(p)));
  return Value::list(std::move(items));
}

Value str_strip_method(Interpreter& in, const std::string& self, CallArgs& args, bool left, bool right) {
  ArgReader reader(args, left && right ? "strip" : left ? "lstrip" : "rstrip", {"chars"});
  in.charge_bytes(self.size());
  return Value::string(str_strip(self, reader.get_string(0), left, right));
}
Value m_strip(Interpreter& in, const std::string& s, CallArgs& a) { return str_strip_method(in, s, a, true, true); }
Value m_lstrip(Interpreter& in, const std::string& s, CallArgs& a) { return str_strip_method(in, s, a, true, false); }
Value m_rstrip(Interpreter& in, const std::string& s, CallArgs& a) { return str_strip_method(in, s, a, false, true); }

Value split_method(Interpreter& in, const std::string& self, CallArgs& args, bool from_right) {
  ArgReader reader(args, from_right ? "rsplit" : "split", {"sep", "maxsplit"});
  const std::optional<std::string> sep = reader.get_string(0);
  MARLIN_CHECK(!sep || !sep->empty(), "empty separator");
  const int64_t maxsplit = reader.get_int(1).value_or(-1);
  in.charge_bytes(self.size() * 2);
  std::vector<std::string> parts = from_right ? str_rsplit(self, sep, maxsplit) : str_split(self, sep, maxsplit);
  in.charge(parts.size());
  return string_list(std::move(parts));
}
Value m_split(Interpreter& in, const std::string& s, CallArgs& a) { return split_method(in, s, a, false); }
Value m_rsplit(Interpreter& in, const std::string& s, CallArgs& a) { return split_method(in, s, a, true); }

Value m_splitlines(Interpreter& in, const std::string& self, CallArgs& args) {
  ArgReader reader(args, "splitlines", {"keepends"});
  MARLIN_CHECK(!reader.get_bool(0, false), "splitlines(keepends=True) is not supported");
  in.charge_bytes(self.size() * 2);
  return string_list(str_splitlines(self));
}

// startswith/endswith: a string or a tuple of strings.
Value affix_method(const std::string& self, CallArgs& args, bool prefix) {
  ArgReader reader(args, prefix ? "startswith" : "endswith", {"affix"});
  const Value* affix = reader.get(0);
  MARLIN_CHECK(affix, "{}() takes at least 1 argument", prefix ? "startswith" : "endswith");
  auto matches = [&](const Value& v) {
    MARLIN_CHECK(v.is_string(), "{} first arg must be str or a tuple of str, not {}",
                 prefix ? "startswith" : "endswith", type_name(v));
    const std::string& a = v.as_string();
    if (a.size() > self.size()) return false;
    return prefix ? self.compare(0, a.size(), a) == 0 : self.compare(self.size() - a.size(), a.size(), a) == 0;
  };
  if (affix->is_list() && affix->as_list().is_tuple) {
    const auto& items = affix->as_list().items;
    return Value::boolean(std::any_of(items.begin(), items.end(), matches));
  }
  return Value::boolean(matches(*affix));
}
Value m_startswith(Interpreter&, const std::string& s, CallArgs& a) { return affix_method(s, a, true); }
Value m_endswith(Interpreter&, const std::string& s, CallArgs& a) { return affix_method(s, a, false); }

Value m_upper(Interpreter& in, const std::string& s, CallArgs& a) {
  ArgReader(a, "upper", {});
  return in.make_string(str_upper(s));
}
Value m_lower(Interpreter& in, const std::string& s, CallArgs& a) {
  ArgReader(a, "lower", {});
  return in.make_string(str_lower(s));
}
Value m_title(Interpreter& in, const std::string& s, CallArgs& a) {
  ArgReader(a, "title", {});
  return in.make_string(str_title(s));
}
Value m_capitalize(Interpreter& in, const std::string& s, CallArgs& a) {
  ArgReader(a, "capitalize", {});
  return in.make_string(str_capitalize(s));
}

Value m_replace(Interpreter& in, const std::string& self, CallArgs& args) {
  ArgReader reader(args, "replace", {"old", "new", "count"});
  const std::optional<std::string> old_text = reader.get_string(0);
  const std::optional<std::string> new_text = reader.get_string(1);
  MARLIN_CHECK(old_text && new_text, "replace() requires old and new strings");
  in.charge_bytes(self.size());
  return in.make_string(str_replace(self, *old_text, *new_text, reader.get_int(2).value_or(-1),
                                    in.max_string_bytes()));
}

// Code-point index of a byte offset.
int64_t code_point_index(const std::string& s, size_t byte_offset) {
  return static_cast<int64_t>(utf8_length(std::string_view(s).substr(0, byte_offset)));
}

Value find_method_impl(Interpreter& in, const std::string& self, CallArgs& args, bool from_right,
                       bool must_find, const char* name) {
  ArgReader reader(args, name, {"sub"});
  const std::optional<std::string> sub = reader.get_string(0);
  MARLIN_CHECK(sub, "{}() requires a string argument", name);
  in.charge_bytes(self.size());
  const size_t at = from_right ? self.rfind(*sub) : self.find(*sub);
  if (at == std::string::npos) {
    MARLIN_CHECK(!must_find, "substring not found");
    return Value::integer(-1);
  }
  return Value::integer(code_point_index(self, at));
}
Value m_find(Interpreter& in, const std::string& s, CallArgs& a) { return find_method_impl(in, s, a, false, false, "find"); }
Value m_rfind(Interpreter& in, const std::string& s, CallArgs& a) { return find_method_impl(in, s, a, true, false, "rfind"); }
Value m_index(Interpreter& in, const std::string& s, CallArgs& a) { return find_method_impl(in, s, a, false, true, "index"); }
Value m_rindex(Interpreter& in, const std::string& s, CallArgs& a) { return find_method_impl(in, s, a, true, true, "rindex"); }

Value m_count(Interpreter& in, const std::string& self, CallArgs& args) {
  ArgReader reader(args, "count", {"sub"});
  const std::optional<std::string> sub = reader.get_string(0);
  MARLIN_CHECK(sub, "count() requires a string argument");
  in.charge_bytes(self.size());
  return Value::integer(static_cast<int64_t>(str_count(self, *sub)));
}

Value m_join(Interpreter& in, const std::string& self, CallArgs& args) {
  ArgReader reader(args, "join", {"iterable"});
  const Value* iterable = reader.get(0);
  MARLIN_CHECK(iterable, "join() takes exactly one argument");
  std::string out;
  size_t index = 0;
  for (const Value& item : iterate(in, *iterable)) {
    MARLIN_CHECK(item.is_string(), "sequence item {}: expected str instance, {} found", index, type_name(item));
    in.check_string_size(out.size() + self.size() + item.as_string().size());
    if (index++) out += self;
    out += item.as_string();
  }
  return in.make_string(std::move(out));
}

Value affix_removal(Interpreter& in, const std::string& self, CallArgs& args, bool prefix) {
  ArgReader reader(args, prefix ? "removeprefix" : "removesuffix", {"affix"});
  const std::optional<std::string> affix = reader.get_string(0);
  MARLIN_CHECK(affix, "{}() requires a string argument", prefix ? "removeprefix" : "removesuffix");
  in.charge_bytes(self.size());
  if (affix->size() <= self.size()) {
    if (prefix && self.compare(0, affix->size(), *affix) == 0) return Value::string(self.substr(affix->size()));
    if (!prefix && self.compare(self.size() - affix->size(), affix->size(), *affix) == 0) {
      return Value::string(self.substr(0, self.size() - affix->size()));
    }
  }
  return Value::string(self);
}
Value m_removeprefix(Interpreter& in, const std::string& s, CallArgs& a) { return affix_removal(in, s, a, true); }
Value m_removesuffix(Interpreter& in, const std::string& s, CallArgs& a) { return affix_removal(in, s, a, false); }

template <bool (*Pred)(char32_t)>
Value char_class(Interpreter& in, const std::string& self, CallArgs& args) {
  ArgReader(args, "is...", {});
  in.charge_bytes(self.size());
  const std::u32string cps = utf8_decode(self);
  return Value::boolean(!cps.empty() && std::all_of(cps.begin(), cps.end(), Pred));
}
bool ascii_digit(char32_t c) { return c >= '0' && c <= '9'; }
bool ascii_alpha(char32_t c) { return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z'); }
bool ascii_alnum(char32_t c) { return ascii_digit(c) || ascii_alpha(c); }

Value m_isupper(Interpreter&, const std::string& s, CallArgs& a) {
  ArgReader(a, "isupper", {});
  return Value::boolean(str_is_upper(s));
}
Value m_islower(Interpreter&, const std::string& s, CallArgs& a) {
  ArgReader(a, "islower", {});
  return Value::boolean(str_is_lower(s));
}

// str.format with "{}", "{0}" and "{name}" fields (no format specs or conversions).
Value m_format(Interpreter& in, const std::string& self, CallArgs& args) {
  std::string out;
  size_t auto_index = 0;
  for (size_t i = 0; i < self.size(); ++i) {
    const char c = self[i];
    if (c == '}') {
      MARLIN_CHECK(i + 1 < self.size() && self[i + 1] == '}', "Single '}}' encountered in format string");
      out.push_back('}');
      ++i;
      continue;
    }
    if (c != '{') {
      out.push_back(c);
      continue;
    }
    if (i + 1 < self.size() && self[i + 1] == '{') {
      out.push_back('{');
      ++i;
      continue;
    }
    const size_t close = self.find('}', i);
    MARLIN_CHECK(close != std::string::npos, "Single '{{' encountered in format string");
    const std::string field = self.substr(i + 1, close - i - 1);
    MARLIN_CHECK(field.find_first_of(":!.[") == std::string::npos,
                 "str.format() field '{}' uses unsupported format specs", field);
    const Value* value = nullptr;
    if (field.empty() || std::all_of(field.begin(), field.end(), ::isdigit)) {
      const size_t index = field.empty() ? auto_index++ : std::stoul(field);
      MARLIN_CHECK(index < args.positional.size(), "Replacement index {} out of range for positional args tuple", index);
      value = &args.positional[index];
    } else {
      for (const auto& [name, v] : args.keyword) {
        if (name == field) value = &v;
      }
      MARLIN_CHECK(value, "KeyError: '{}'", field);
    }
    const std::string text = py_str(*value, in.max_string_bytes());
    in.check_string_size(out.size() + text.size());
    out += text;
    i = close;
  }
  return in.make_string(std::move(out));
}

const std::unordered_map<std::string_view, StringMethod>& string_methods() {
  static const std::unordered_map<std::string_view, StringMethod> table = {
      {"strip", m_strip},           {"lstrip", m_lstrip},       {"rstrip", m_rstrip},
      {"split", m_split},           {"rsplit", m_rsplit},       {"splitlines", m_splitlines},
      {"startswith", m_startswith}, {"endswith", m_endswith},   {"upper", m_upper},
      {"lower", m_lower},           {"title", m_title},         {"capitalize", m_capitalize},
      {"replace", m_replace},       {"find", m_find},           {"rfind", m_rfind},
      {"index", m_index},           {"rindex", m_rindex},       {"count", m_count},
      {"join", m_join},             {"removeprefix", m_removeprefix},
      {"removesuffix", m_removesuffix},
      {"isdigit", char_class<ascii_digit>},
      {"isalpha", char_class<ascii_alpha>},
      {"isalnum", char_class<ascii_alnum>},
      {"isspace", char_class<is_python_space>},
      {"isupper", m_isupper},       {"islower", m_islower},     {"format", m_format},
  };
  return table;
}

Value d_get(Interpreter&, const Value& self, CallArgs& args) {
  ArgReader reader(args, "get", {"key", "default"});
  MARLIN_CHECK(reader.get(0), "get expected at least 1 argument, got 0");
  if (const Value* v = self.as_dict().find(*reader.get(0))) return *v;
  return reader.get_or(1, Value::none());
}

Value d_items(Interpreter& in, const Value& self, CallArgs& args) {
  ArgReader(args, "items", {});
  in.charge(self.as_dict().size());
  std::vector<Value> items;
  for (const auto& [k, v] : self.as_dict().entries()) items.push_back(Value::list({k, v}, /*is_tuple=*/true));
  return Value::list(std::move(items));
}

Value d_keys(Interpreter& in, const Value& self, CallArgs& args) {
  ArgReader(args, "keys", {});
  return Value::list(iterate(in, self));
}

Value d_values(Interpreter& in, const Value& self, CallArgs& args) {
  ArgReader(args, "values", {});
  in.charge(self.as_dict().size());
  std::vector<Value> values;
  for (const auto& [k, v] : self.as_dict().entries()) values.push_back(v);
  return Value::list(std::move(values));
}

Value l_count(Interpreter& in, const Value& self, CallArgs& args) {
  ArgReader reader(args, "count", {"value"});
  MARLIN_CHECK(reader.get(0), "count() takes exactly one argument");
  in.charge(self.as_list().items.size());
  const auto& items = self.as_list().items;
  return Value::integer(std::count_if(items.begin(), items.end(), [&](const Value& v) { return equals(v, *reader.get(0)); }));
}

Value l_index(Interpreter& in, const Value& self, CallArgs& args) {
  ArgReader reader(args, "index", {"value"});
  MARLIN_CHECK(reader.get(0), "index() takes at least 1 argument");
  in.charge(self.as_list().items.size());
  const auto& items = self.as_list().items;
  for (size_t i = 0; i < items.size(); ++i) {
    if (equals(items[i], *reader.get(0))) return Value::integer(static_cast<int64_t>(i));
  }
  fail("{} is not in list", py_repr(*reader.get(0)));
}

Value escaped(const Value& v, size_t max_bytes) {
  if (v.is_markup()) return v;
  return Value::string(html_escape(py_str(v, max_bytes)), /*markup=*/true);
}

// markupsafe.Markup's versions of str methods: arguments that end up in the text are escaped and
// text results stay Markup.
Value call_markup_method(Interpreter& in, const Value& self, const std::string& name, StringMethod method,
                         CallArgs& args) {
  static const std::unordered_set<std::string_view> kMarkupResult = {
      "strip", "lstrip", "rstrip", "upper", "lower", "title", "capitalize", "replace",
      "removeprefix", "removesuffix", "join", "format"};
  CallArgs call_args = args;
  if (name == "replace" && call_args.positional.size() >= 2) {
    call_args.positional[1] = escaped(call_args.positional[1], in.max_string_bytes());
  } else if (name == "join" && !call_args.positional.empty()) {
    std::vector<Value> items;
    for (const Value& item : iterate(in, call_args.positional[0])) items.push_back(escaped(item, in.max_string_bytes()));
    call_args.positional[0] = Value::list(std::move(items));
  } else if (name == "format") {
    for (Value& v : call_args.positional) v = escaped(v, in.max_string_bytes());
    for (auto& [k, v] : call_args.keyword) v = escaped(v, in.max_string_bytes());
  }
  Value result = method(in, self.as_string(), call_args);
  if (result.is_string() && kMarkupResult.count(name)) return Value::string(result.as_string(), true);
  if (result.is_list() && (name == "split" || name == "rsplit" || name == "splitlines")) {
    std::vector<Value> items;
    for (const Value& item : result.as_list().items) items.push_back(Value::string(item.as_string(), true));
    return Value::list(std::move(items));
  }
  return result;
}

Value bind(const Value& self, const std::string& name, ValueMethod method) {
  return Value::function(name, [self, method](Interpreter& in, CallArgs& args) { return method(in, self, args); });
}

Value unsafe(const Value& self, const std::string& name) {
  return Value::undefined(fmt::format("access to attribute '{}' of '{}' object is unsafe.", name, type_name(self)));
}

}  // namespace

std::optional<Value> find_method(const Value& object, const std::string& name) {
  if (object.is_string()) {
    const auto& table = string_methods();
    const auto it = table.find(name);
    if (it == table.end()) return std::nullopt;
    const StringMethod method = it->second;
    return Value::function(name, [object, method, name](Interpreter& in, CallArgs& args) {
      if (object.is_markup()) return call_markup_method(in, object, name, method, args);
      return method(in, object.as_string(), args);
    });
  }
  if (object.is_dict()) {
    if (name == "get") return bind(object, name, d_get);
    if (name == "items") return bind(object, name, d_items);
    if (name == "keys") return bind(object, name, d_keys);
    if (name == "values") return bind(object, name, d_values);
    static const std::unordered_set<std::string_view> kMutating = {"clear", "pop", "popitem", "setdefault",
                                                                   "update"};
    if (kMutating.count(name)) return unsafe(object, name);
    return std::nullopt;
  }
  if (object.is_list() && !object.is_iterator()) {
    if (name == "count") return bind(object, name, l_count);
    if (name == "index") return bind(object, name, l_index);
    static const std::unordered_set<std::string_view> kMutating = {"append", "clear", "extend", "insert",
                                                                   "pop",    "remove", "reverse", "sort"};
    if (kMutating.count(name)) return unsafe(object, name);
  }
  return std::nullopt;
}

}  // namespace marlin::tmpl
