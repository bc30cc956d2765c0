// Filters (jinja2 3.1 semantics; tojson as transformers overrides it). Filters that return
// generators in jinja2 (map, select, unique, reverse...) return lists here: identical when
// iterated, joined or passed to |list, which is how templates use them.
#include <algorithm>
#include <charconv>
#include <cmath>
#include <unordered_map>

#include "core/error.h"
#include "template/builtins.h"
#include "template/interpreter.h"
#include "template/operators.h"
#include "template/py_format.h"
#include "template/text.h"

namespace marlin::tmpl {
namespace {

std::string to_text(Interpreter& in, const Value& v) { return py_str(v, in.max_string_bytes()); }

// jinja2 runs map/select/unique/items... as generators, so their errors surface only when the
// result is iterated: `produce` fills the items, and an error it raises is kept for later.
template <typename Produce>
Value lazy_iterator(Produce produce) {
  std::vector<Value> items;
  try {
    produce(items);
  } catch (const TemplateRaisedError&) {
    throw;
  } catch (const Error& e) {
    return Value::iterator(std::move(items), e.what());
  }
  return Value::iterator(std::move(items));
}

// jinja2's make_attrgetter: "a.b.0" looks up a, then b, then item 0.
Value get_path(Interpreter& in, const Value& item, const std::string& path) {
  Value v = item;
  size_t start = 0;
  while (true) {
    const size_t dot = path.find('.', start);
    const std::string part = path.substr(start, dot == std::string::npos ? std::string::npos : dot - start);
    const bool numeric = !part.empty() && std::all_of(part.begin(), part.end(), ::isdigit);
    int64_t index = 0;
    if (numeric) std::from_chars(part.data(), part.data() + part.size(), index);
    v = in.get_item(v, numeric ? Value::integer(index) : Value::string(part));
    if (dot == std::string::npos) return v;
    start = dot + 1;
  }
}

Value lower_if_string(const Value& v) {
  return v.is_string() ? Value::string(str_lower(v.as_string())) : v;
}

// The comparison key of an item for sort/unique/min/max.
Value sort_key(Interpreter& in, const Value& item, const std::optional<std::string>& attribute,
               bool case_sensitive) {
  Value key = attribute ? get_path(in, item, *attribute) : item;
  return case_sensitive ? key : lower_if_string(key);
}

Value filter_abs(Interpreter&, const Value& input, CallArgs& args) {
  ArgReader(args, "abs", {});
  require_defined(input);
  if (input.is_float()) return Value::number(std::fabs(input.as_float()));
  MARLIN_CHECK(input.is_int() || input.is_bool(), "bad operand type for abs(): '{}'", type_name(input));
  const int64_t i = input.is_bool() ? int64_t(input.as_bool()) : input.as_int();
  MARLIN_CHECK(i != INT64_MIN, "integer overflow in template arithmetic (beyond 64 bits)");
  return Value::integer(i < 0 ? -i : i);
}

Value filter_attr(Interpreter& in, const Value& input, CallArgs& args) {
  ArgReader reader(args, "attr", {"name"});
  const std::optional<std::string> name = reader.get_string(0);
  MARLIN_CHECK(name, "attr() requires an attribute name");
  require_defined(input);
  if (auto method = find_method(input, *name)) return *method;
  if (input.is_namespace()) {
    if (const Value* v = input.as_namespace().attributes.find(*name)) return *v;
  }
  return Value::undefined(fmt::format("'{} object' has no attribute '{}'", type_name(input), *name));
}

Value filter_capitalize(Interpreter& in, const Value& input, CallArgs& args) {
  ArgReader(args, "capitalize", {});
  return in.make_string(str_capitalize(to_text(in, input)), input.is_markup());
}

Value filter_default(Interpreter&, const Value& input, CallArgs& args) {
  ArgReader reader(args, "default", {"default_value", "boolean"});
  const Value fallback = reader.get_or(0, Value::string(""));
  if (input.is_undefined() || (reader.get_bool(1, false) && !truthy(input))) return fallback;
  return input;
}

Value filter_dictsort(Interpreter& in, const Value& input, CallArgs& args) {
  ArgReader reader(args, "dictsort", {"case_sensitive", "by", "reverse"});
  MARLIN_CHECK(input.is_dict(), "dictsort() requires a mapping, got {}", type_name(input));
  const bool case_sensitive = reader.get_bool(0, false);
  const std::string by = reader.get_string(1).value_or("key");
  MARLIN_CHECK(by == "key" || by == "value", "You can only sort by either \"key\" or \"value\"");
  const bool reverse = reader.get_flag(2, false);
  std::vector<std::pair<Value, Value>> entries = input.as_dict().entries();
  in.charge(entries.size());
  auto key_of = [&](const std::pair<Value, Value>& e) {
    const Value& k = by == "key" ? e.first : e.second;
    return case_sensitive ? k : lower_if_string(k);
  };
  std::stable_sort(entries.begin(), entries.end(), [&](const auto& a, const auto& b) {
    return reverse ? less_than(key_of(b), key_of(a)) : less_than(key_of(a), key_of(b));
  });
  std::vector<Value> items;
  for (auto& [k, v] : entries) items.push_back(Value::list({k, v}, /*is_tuple=*/true));
  return Value::list(std::move(items));
}

Value filter_escape(Interpreter& in, const Value& input, CallArgs& args) {
  ArgReader(args, "escape", {});
  if (input.is_markup()) return input;
  std::string text = html_escape(to_text(in, input));
  in.check_string_size(text.size());
  return Value::string(std::move(text), /*markup=*/true);
}

Value filter_first(Interpreter& in, const Value& input, CallArgs& args) {
  ArgReader(args, "first", {});
  if (input.is_iterator()) {  // next(): takes one item off the iterator
    const List& list = input.as_list();
    if (list.consumed == list.items.size() && list.pending_error) fail("{}", *list.pending_error);
    if (list.consumed == list.items.size()) return Value::undefined("No first item, sequence was empty.");
    return list.items[list.consumed++];
  }
  const std::vector<Value> items = iterate(in, input);
  if (items.empty()) return Value::undefined("No first item, sequence was empty.");
  return items.front();
}

Value filter_last(Interpreter& in, const Value& input, CallArgs& args) {
  ArgReader(args, "last", {});
  MARLIN_CHECK(!input.is_iterator(), "'generator' object is not reversible");
  const std::vector<Value> items = iterate(in, input);
  if (items.empty()) return Value::undefined("No last item, sequence was empty.");
  return items.back();
}

// Python float(str): surrounding whitespace, "_" between digits, inf/nan accepted.
std::optional<double> parse_python_float(const std::string& text) {
  std::string s = str_strip(text, std::nullopt, true, true);
  std::string cleaned;
  for (size_t i = 0; i < s.size(); ++i) {
    if (s[i] == '_') {
      if (i == 0 || i + 1 == s.size() || !isdigit(static_cast<unsigned char>(s[i - 1])) ||
          !isdigit(static_cast<unsigned char>(s[i + 1]))) {
        return std::nullopt;
      }
      continue;
    }
    cleaned.push_back(s[i]);
  }
  std::string lower = str_lower(cleaned);
  const size_t sign = (!lower.empty() && (lower[0] == '+' || lower[0] == '-')) ? 1 : 0;
  const std::string body = lower.substr(sign);
  const double sign_mult = (sign && lower[0] == '-') ? -1.0 : 1.0;
  if (body == "inf" || body == "infinity") return sign_mult * INFINITY;
  if (body == "nan") return NAN;
  if (body.empty()) return std::nullopt;
  double v = 0;
  const char* begin = cleaned.data() + sign;
  const char* end = cleaned.data() + cleaned.size();
  const auto r = std::from_chars(begin, end, v);
  if (r.ptr != end) return std::nullopt;
  if (r.ec == std::errc::result_out_of_range) v = std::strtod(begin, nullptr);
  else if (r.ec != std::errc()) return std::nullopt;
  return sign_mult * v;
}

// Python int(str, base=10).
std::optional<int64_t> parse_python_int(const std::string& text) {
  std::string s = str_strip(text, std::nullopt, true, true);
  std::string cleaned;
  for (size_t i = 0; i < s.size(); ++i) {
    if (s[i] == '_' && i > 0 && i + 1 < s.size() && isdigit(static_cast<unsigned char>(s[i - 1])) &&
        isdigit(static_cast<unsigned char>(s[i + 1]))) {
      continue;
    }
    cleaned.push_back(s[i]);
  }
  if (!cleaned.empty() && cleaned[0] == '+') cleaned.erase(0, 1);
  if (cleaned.empty() || cleaned == "-") return std::nullopt;
  int64_t v = 0;
  const auto r = std::from_chars(cleaned.data(), cleaned.data() + cleaned.size(), v);
  if (r.ec != std::errc() || r.ptr != cleaned.data() + cleaned.size()) return std::nullopt;
  return v;
}

Value float_to_int(double d) {
  MARLIN_CHECK(std::isfinite(d), "cannot convert float {} to integer", float_repr(d));
  MARLIN_CHECK(std::fabs(d) < 9.2e18, "integer overflow in template arithmetic (beyond 64 bits)");
  return Value::integer(static_cast<int64_t>(d));
}

Value filter_int(Interpreter&, const Value& input, CallArgs& args) {
  ArgReader reader(args, "int", {"default", "base"});
  const Value fallback = reader.get_or(0, Value::integer(0));
  MARLIN_CHECK(reader.get_int(1).value_or(10) == 10, "int(): only base 10 is supported");
  require_defined(input);  // int(Undefined) raises rather than falling back
  if (input.is_int()) return input;
  if (input.is_bool()) return Value::integer(input.as_bool());
  if (input.is_float()) {
    if (std::isnan(input.as_float())) return fallback;
    return float_to_int(input.as_float());
  }
  if (input.is_string()) {
    if (auto i = parse_python_int(input.as_string())) return Value::integer(*i);
    if (auto d = parse_python_float(input.as_string())) {
      if (std::isnan(*d)) return fallback;
      return float_to_int(*d);
    }
  }
  return fallback;
}

Value filter_float(Interpreter&, const Value& input, CallArgs& args) {
  ArgReader reader(args, "float", {"default"});
  const Value fallback = reader.get_or(0, Value::number(0.0));
  require_defined(input);  // float(Undefined) raises rather than falling back
  if (input.is_number()) return Value::number(input.to_double());
  if (input.is_string()) {
    if (auto d = parse_python_float(input.as_string())) return Value::number(*d);
  }
  return fallback;
}

Value filter_format(Interpreter& in, const Value& input, CallArgs& args) {
  MARLIN_CHECK(args.positional.empty() || args.keyword.empty(),
               "can't handle positional and keyword arguments at the same time");
  Value format_args;
  if (!args.keyword.empty()) {
    Dict d;
    for (auto& [k, v] : args.keyword) d.set(Value::string(k), v);
    format_args = Value::dict(std::move(d));
  } else {
    format_args = Value::list(args.positional, /*is_tuple=*/true);
  }
  return in.make_string(percent_format(in, to_text(in, input), format_args, input.is_markup()),
                        input.is_markup());
}

// jinja2's indent filter, including its trailing-newline quirk.
Value filter_indent(Interpreter& in, const Value& input, CallArgs& args) {
  ArgReader reader(args, "indent", {"width", "first", "blank"});
  std::string indention;
  const Value width = reader.get_or(0, Value::integer(4));
  if (width.is_string()) {
    indention = width.as_string();
  } else {
    const int64_t n = reader.get_int(0).value_or(4);
    in.check_string_size(static_cast<size_t>(std::max<int64_t>(n, 0)));
    indention.assign(static_cast<size_t>(std::max<int64_t>(n, 0)), ' ');
  }
  const bool first = reader.get_bool(1, false);
  const bool blank = reader.get_bool(2, false);
  const std::vector<std::string> lines = str_splitlines(to_text(in, input) + "\n");
  std::string out;
  auto append = [&](const std::string& piece) {
    in.check_string_size(out.size() + piece.size());
    out += piece;
  };
  for (size_t i = 0; i < lines.size(); ++i) {
    if (i > 0) {
      append("\n");
      if (blank || !lines[i].empty()) append(indention);
    }
    append(lines[i]);
  }
  if (first) out = indention + out;
  return in.make_string(std::move(out), input.is_markup());
}

Value filter_items(Interpreter& in, const Value& input, CallArgs& args) {
  return lazy_iterator([&](std::vector<Value>& out) {
    ArgReader(args, "items", {});
    if (input.is_undefined()) return;
    MARLIN_CHECK(input.is_dict(), "Can only get item pairs from a mapping.");
    in.charge(input.as_dict().size());
    for (const auto& [k, v] : input.as_dict().entries()) out.push_back(Value::list({k, v}, true));
  });
}

Value filter_join(Interpreter& in, const Value& input, CallArgs& args) {
  ArgReader reader(args, "join", {"d", "attribute"});
  const std::string separator = to_text(in, reader.get_or(0, Value::string("")));
  const std::optional<std::string> attribute = reader.get_string(1);
  std::string out;
  bool first = true;
  for (const Value& item : iterate(in, input)) {
    const std::string text = to_text(in, attribute ? get_path(in, item, *attribute) : item);
    in.check_string_size(out.size() + separator.size() + text.size());
    if (!first) out += separator;
    first = false;
    out += text;
  }
  return in.make_string(std::move(out));
}

Value filter_length(Interpreter&, const Value& input, CallArgs& args) {
  ArgReader(args, "length", {});
  switch (input.kind()) {
    case Value::Kind::kUndefined: return Value::integer(0);
    case Value::Kind::kString: return Value::integer(static_cast<int64_t>(utf8_length(input.as_string())));
    case Value::Kind::kList:
      if (input.is_iterator()) break;
      return Value::integer(static_cast<int64_t>(input.as_list().items.size()));
    case Value::Kind::kDict: return Value::integer(static_cast<int64_t>(input.as_dict().size()));
    default: break;
  }
  fail("object of type '{}' has no len()", type_name(input));
}

Value filter_list(Interpreter& in, const Value& input, CallArgs& args) {
  ArgReader(args, "list", {});
  return Value::list(iterate(in, input));
}

Value filter_lower(Interpreter& in, const Value& input, CallArgs& args) {
  ArgReader(args, "lower", {});
  return in.make_string(str_lower(to_text(in, input)), input.is_markup());
}

Value filter_upper(Interpreter& in, const Value& input, CallArgs& args) {
  ArgReader(args, "upper", {});
  return in.make_string(str_upper(to_text(in, input)), input.is_markup());
}

Value filter_map(Interpreter& in, const Value& input, CallArgs& args) {
  return lazy_iterator([&](std::vector<Value>& out) {
    // jinja2 maps nothing over a falsy input (None, empty) instead of failing.
    if (!truthy(input)) return;
    if (args.positional.empty()) {
      ArgReader reader(args, "map", {"attribute", "default"});
      const std::optional<std::string> attribute = reader.get_string(0);
      MARLIN_CHECK(attribute, "map() requires a filter name or attribute=");
      const Value* fallback = reader.get(1);
      for (const Value& item : iterate(in, input)) {
        Value v = get_path(in, item, *attribute);
        if (v.is_undefined() && fallback) v = *fallback;
        out.push_back(std::move(v));
      }
      return;
    }
    MARLIN_CHECK(args.positional[0].is_string(), "map() filter name must be a string");
    const std::string name = args.positional[0].as_string();
    CallArgs rest{std::vector<Value>(args.positional.begin() + 1, args.positional.end()), args.keyword};
    for (const Value& item : iterate(in, input)) {
      CallArgs call_args = rest;
      out.push_back(in.apply_filter(name, item, call_args));
    }
  });
}

Value min_max(Interpreter& in, const Value& input, CallArgs& args, bool want_max) {
  ArgReader reader(args, want_max ? "max" : "min", {"case_sensitive", "attribute"});
  const bool case_sensitive = reader.get_bool(0, false);
  const std::optional<std::string> attribute = reader.get_string(1);
  const std::vector<Value> items = iterate(in, input);
  if (items.empty()) return Value::undefined("No aggregated item, sequence was empty.");
  size_t best = 0;
  Value best_key = sort_key(in, items[0], attribute, case_sensitive);
  for (size_t i = 1; i < items.size(); ++i) {
    Value key = sort_key(in, items[i], attribute, case_sensitive);
    if (want_max ? less_than(best_key, key) : less_than(key, best_key)) {
      best = i;
      best_key = std::move(key);
    }
  }
  return items[best];
}

Value filter_max(Interpreter& in, const Value& input, CallArgs& args) { return min_max(in, input, args, true); }
Value filter_min(Interpreter& in, const Value& input, CallArgs& args) { return min_max(in, input, args, false); }

Value filter_replace(Interpreter& in, const Value& input, CallArgs& args) {
  ArgReader reader(args, "replace", {"old", "new", "count"});
  MARLIN_CHECK(reader.get(0) && reader.get(1), "replace() requires old and new");
  const std::string old_text = to_text(in, *reader.get(0));
  const std::string new_text = to_text(in, *reader.get(1));
  const int64_t count = reader.get_int(2).value_or(-1);
  const std::string text = to_text(in, input);
  in.charge_bytes(text.size());
  return in.make_string(str_replace(text, old_text, new_text, count, in.max_string_bytes()));
}

Value filter_reverse(Interpreter& in, const Value& input, CallArgs& args) {
  ArgReader(args, "reverse", {});
  if (input.is_string()) {
    std::u32string cps = utf8_decode(input.as_string());
    std::reverse(cps.begin(), cps.end());
    return in.make_string(utf8_encode(cps), input.is_markup());
  }
  // reversed() of a list or dict is an iterator; a generator is not reversible, so jinja2 falls
  // back to a reversed list.
  const bool reversible = !input.is_iterator();
  std::vector<Value> items = iterate(in, input);
  std::reverse(items.begin(), items.end());
  return reversible ? Value::iterator(std::move(items)) : Value::list(std::move(items));
}

// Python round(x, ndigits): correctly rounded decimal, ties to even.
double python_round(double x, int64_t ndigits) {
  if (!std::isfinite(x)) return x;
  if (ndigits > 300) return x;
  if (ndigits < -308) return 0.0 * x;
  if (ndigits < 0) {
    const double scale = std::pow(10.0, static_cast<double>(-ndigits));
    return std::nearbyint(x / scale) * scale;
  }
  char buf[512];
  const auto r = std::to_chars(buf, buf + sizeof(buf), x, std::chars_format::fixed, static_cast<int>(ndigits));
  double out = x;
  std::from_chars(buf, r.ptr, out);
  return out;
}

// Python round(int, ndigits): for ndigits < 0, the nearest multiple of 10^-ndigits, ties to even.
int64_t round_int(int64_t value, int64_t ndigits) {
  if (ndigits >= 0) return value;
  if (ndigits < -18) return 0;
  int64_t unit = 1;
  for (int64_t k = 0; k < -ndigits; ++k) unit *= 10;
  int64_t q = value / unit;
  int64_t r = value % unit;
  if (r < 0) {  // floor division
    r += unit;
    --q;
  }
  if (2 * r > unit || (2 * r == unit && (q & 1))) ++q;
  int64_t out = 0;
  MARLIN_CHECK(!__builtin_mul_overflow(q, unit, &out), "integer overflow in template arithmetic (beyond 64 bits)");
  return out;
}

Value filter_round(Interpreter&, const Value& input, CallArgs& args) {
  ArgReader reader(args, "round", {"precision", "method"});
  const int64_t precision = reader.get_int(0).value_or(0);
  const std::string method = reader.get_string(1).value_or("common");
  MARLIN_CHECK(method == "common" || method == "ceil" || method == "floor",
               "method must be common, ceil or floor");
  require_defined(input);
  MARLIN_CHECK(input.is_number(), "type {} doesn't define __round__ method", type_name(input));
  if (method == "common") {
    if (input.is_float()) return Value::number(python_round(input.as_float(), precision));
    const int64_t i = input.is_bool() ? int64_t(input.as_bool()) : input.as_int();
    return Value::integer(round_int(i, precision));
  }
  const double scale = std::pow(10.0, static_cast<double>(precision));
  const double scaled = input.to_double() * scale;
  return Value::number((method == "ceil" ? std::ceil(scaled) : std::floor(scaled)) / scale);
}

Value filter_safe(Interpreter& in, const Value& input, CallArgs& args) {
  ArgReader(args, "safe", {});
  return Value::string(to_text(in, input), /*markup=*/true);
}

// select/reject/selectattr/rejectattr.
Value select_items(Interpreter& in, const Value& input, CallArgs& args, bool with_attribute, bool keep) {
  return lazy_iterator([&](std::vector<Value>& out) {
    // jinja2 selects nothing from a falsy input (None, empty) instead of failing.
    if (!truthy(input)) return;
    size_t next = 0;
    std::optional<std::string> attribute;
    if (with_attribute) {
      MARLIN_CHECK(!args.positional.empty() && args.positional[0].is_string(),
                   "selectattr/rejectattr require an attribute name");
      attribute = args.positional[next++].as_string();
    }
    std::optional<std::string> test;
    if (next < args.positional.size()) {
      MARLIN_CHECK(args.positional[next].is_string(), "test name must be a string");
      test = args.positional[next++].as_string();
    }
    CallArgs test_args{std::vector<Value>(args.positional.begin() + next, args.positional.end()), args.keyword};
    for (const Value& item : iterate(in, input)) {
      const Value subject = attribute ? get_path(in, item, *attribute) : item;
      bool passed;
      if (test) {
        CallArgs call_args = test_args;
        passed = in.apply_test(*test, subject, call_args);
      } else {
        passed = truthy(subject);
      }
      if (passed == keep) out.push_back(item);
    }
  });
}

Value filter_select(Interpreter& in, const Value& input, CallArgs& args) { return select_items(in, input, args, false, true); }
Value filter_reject(Interpreter& in, const Value& input, CallArgs& args) { return select_items(in, input, args, false, false); }
Value filter_selectattr(Interpreter& in, const Value& input, CallArgs& args) { return select_items(in, input, args, true, true); }
Value filter_rejectattr(Interpreter& in, const Value& input, CallArgs& args) { return select_items(in, input, args, true, false); }

// jinja2 sorts by a list of keys, one per comma-separated attribute ("age,name"); comparing lists
// compares equal items (undefined ones included) without ordering them.
Value multi_sort_key(Interpreter& in, const Value& item, const std::optional<std::string>& attributes,
                     bool case_sensitive) {
  std::vector<Value> keys;
  if (!attributes) {
    keys.push_back(sort_key(in, item, std::nullopt, case_sensitive));
  } else {
    for (const std::string& attribute : str_split(*attributes, std::string(","), -1)) {
      keys.push_back(sort_key(in, item, attribute, case_sensitive));
    }
  }
  return Value::list(std::move(keys));
}

Value filter_sort(Interpreter& in, const Value& input, CallArgs& args) {
  ArgReader reader(args, "sort", {"reverse", "case_sensitive", "attribute"});
  const bool reverse = reader.get_flag(0, false);
  const bool case_sensitive = reader.get_bool(1, false);
  const std::optional<std::string> attribute = reader.get_string(2);
  std::vector<Value> items = iterate(in, input);
  std::vector<std::pair<Value, size_t>> keyed;
  for (size_t i = 0; i < items.size(); ++i) {
    keyed.emplace_back(multi_sort_key(in, items[i], attribute, case_sensitive), i);
  }
  std::stable_sort(keyed.begin(), keyed.end(), [&](const auto& a, const auto& b) {
    return reverse ? less_than(b.first, a.first) : less_than(a.first, b.first);
  });
  std::vector<Value> out;
  out.reserve(items.size());
  for (const auto& [key, i] : keyed) out.push_back(items[i]);
  return Value::list(std::move(out));
}

Value filter_string(Interpreter& in, const Value& input, CallArgs& args) {
  ArgReader(args, "string", {});
  return input.is_string() ? input : in.make_string(to_text(in, input));
}

Value filter_sum(Interpreter& in, const Value& input, CallArgs& args) {
  ArgReader reader(args, "sum", {"attribute", "start"});
  const std::optional<std::string> attribute = reader.get_string(0);
  Value total = reader.get_or(1, Value::integer(0));
  for (const Value& item : iterate(in, input)) {
    total = arithmetic(in, BinaryOp::kAdd, total, attribute ? get_path(in, item, *attribute) : item);
  }
  return total;
}

Value filter_title(Interpreter& in, const Value& input, CallArgs& args) {
  ArgReader(args, "title", {});
  return in.make_string(jinja_title(to_text(in, input)), input.is_markup());
}

// transformers' tojson: json.dumps(x, ensure_ascii=False, indent=None, separators=None, sort_keys=False).
Value filter_tojson(Interpreter& in, const Value& input, CallArgs& args) {
  ArgReader reader(args, "tojson", {"ensure_ascii", "indent", "separators", "sort_keys"});
  JsonDumpOptions options;
  options.max_bytes = in.max_string_bytes();
  options.ensure_ascii = reader.get_bool(0, false);
  if (const Value* indent = reader.get(1); indent && !indent->is_none()) {
    if (indent->is_string()) {
      options.indent = indent->as_string();
    } else {
      const int64_t n = reader.get_int(1).value_or(0);
      MARLIN_CHECK(n <= 1024, "tojson indent over 1024 is not supported");
      options.indent = std::string(static_cast<size_t>(std::max<int64_t>(n, 0)), ' ');
    }
    options.item_separator.assign(1, ',');  // json.dumps drops the space when indenting
  }
  if (const Value* separators = reader.get(2); separators && !separators->is_none()) {
    const std::vector<Value> parts = iterate(in, *separators);
    MARLIN_CHECK(parts.size() == 2 && parts[0].is_string() && parts[1].is_string(),
                 "tojson separators must be a pair of strings");
    options.item_separator = parts[0].as_string();
    options.key_separator = parts[1].as_string();
  }
  options.sort_keys = reader.get_bool(3, false);
  std::string text = json_dumps(input, options);
  return in.make_string(std::move(text));
}

Value filter_trim(Interpreter& in, const Value& input, CallArgs& args) {
  ArgReader reader(args, "trim", {"chars"});
  return in.make_string(str_strip(to_text(in, input), reader.get_string(0), true, true), input.is_markup());
}

Value filter_unique(Interpreter& in, const Value& input, CallArgs& args) {
  return lazy_iterator([&](std::vector<Value>& out) {
    ArgReader reader(args, "unique", {"case_sensitive", "attribute"});
    const bool case_sensitive = reader.get_bool(0, false);
    const std::optional<std::string> attribute = reader.get_string(1);
    std::vector<Value> seen;
    for (const Value& item : iterate(in, input)) {
      Value key = sort_key(in, item, attribute, case_sensitive);
      in.charge(seen.size());
      if (std::any_of(seen.begin(), seen.end(), [&](const Value& s) { return equals(s, key); })) continue;
      seen.push_back(std::move(key));
      out.push_back(item);
    }
  });
}

Value filter_wordcount(Interpreter& in, const Value& input, CallArgs& args) {
  ArgReader(args, "wordcount", {});
  // jinja2 counts matches of \w+.
  int64_t words = 0;
  bool in_word = false;
  for (char32_t c : utf8_decode(to_text(in, input))) {
    const bool word_char = c == '_' || (c < 0x80 ? std::isalnum(static_cast<int>(c)) != 0
                                                 : !is_python_space(c) && is_python_printable(c));
    if (word_char && !in_word) ++words;
    in_word = word_char;
  }
  return Value::integer(words);
}

const std::unordered_map<std::string_view, FilterFn>& filter_table() {
  static const std::unordered_map<std::string_view, FilterFn> table = {
      {"abs", filter_abs},         {"attr", filter_attr},
      {"capitalize", filter_capitalize},
      {"count", filter_length},    {"d", filter_default},
      {"default", filter_default}, {"dictsort", filter_dictsort},
      {"e", filter_escape},        {"escape", filter_escape},
      {"first", filter_first},     {"float", filter_float},
      {"format", filter_format},   {"indent", filter_indent},
      {"int", filter_int},         {"items", filter_items},
      {"join", filter_join},       {"last", filter_last},
      {"length", filter_length},   {"list", filter_list},
      {"lower", filter_lower},     {"map", filter_map},
      {"max", filter_max},         {"min", filter_min},
      {"reject", filter_reject},   {"rejectattr", filter_rejectattr},
      {"replace", filter_replace}, {"reverse", filter_reverse},
      {"round", filter_round},     {"safe", filter_safe},
      {"select", filter_select},   {"selectattr", filter_selectattr},
      {"sort", filter_sort},       {"string", filter_string},
      {"sum", filter_sum},         {"title", filter_title},
      {"tojson", filter_tojson},   {"trim", filter_trim},
      {"unique", filter_unique},   {"upper", filter_upper},
      {"wordcount", filter_wordcount},
  };
  return table;
}

}  // namespace

FilterFn find_filter(std::string_view name) {
  const auto& table = filter_table();
  const auto it = table.find(name);
  return it == table.end() ? nullptr : it->second;
}

}  // namespace marlin::tmpl
