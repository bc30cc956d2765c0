#include "template/py_format.h"

#include <algorithm>
#include <charconv>
#include <cmath>

#include "core/error.h"
#include "template/text.h"

namespace marlin::tmpl {
namespace {

// Walks over values nest at most kMaxValueNesting deep through lists and dicts; namespaces can
// refer to themselves, so the walkers also stop at this depth.
constexpr int kMaxPrintDepth = static_cast<int>(kMaxValueNesting) + 8;

void check_depth(int depth) {
  MARLIN_CHECK(depth <= kMaxPrintDepth, "template value nesting limit exceeded while printing");
}

void check_size(const std::string& out, size_t max_bytes) {
  MARLIN_CHECK(out.size() <= max_bytes, "template string limit exceeded: text of a value over {} bytes",
               max_bytes);
}

void append_hex(std::string& out, char32_t c, int digits) {
  static const char* kHex = "0123456789abcdef";
  for (int shift = (digits - 1) * 4; shift >= 0; shift -= 4) out.push_back(kHex[(c >> shift) & 0xF]);
}

void append_repr_string(std::string& out, const std::string& s) {
  const std::u32string cps = utf8_decode(s);
  const bool has_single = cps.find(U'\'') != std::u32string::npos;
  const bool has_double = cps.find(U'"') != std::u32string::npos;
  const char quote = (has_single && !has_double) ? '"' : '\'';
  out.push_back(quote);
  for (char32_t c : cps) {
    if (c == static_cast<char32_t>(quote) || c == '\\') {
      out.push_back('\\');
      out.push_back(static_cast<char>(c));
    } else if (c == '\t') {
      out += "\\t";
    } else if (c == '\n') {
      out += "\\n";
    } else if (c == '\r') {
      out += "\\r";
    } else if (is_python_printable(c)) {
      utf8_append(out, c);
    } else if (c <= 0xFF) {
      out += "\\x";
      append_hex(out, c, 2);
    } else if (c <= 0xFFFF) {
      out += "\\u";
      append_hex(out, c, 4);
    } else {
      out += "\\U";
      append_hex(out, c, 8);
    }
  }
  out.push_back(quote);
}

void append_repr(std::string& out, const Value& v, int depth, size_t max_bytes);

void append_repr_dict(std::string& out, const Dict& d, int depth, size_t max_bytes) {
  out.push_back('{');
  bool first = true;
  for (const auto& [key, value] : d.entries()) {
    if (!first) out += ", ";
    first = false;
    append_repr(out, key, depth + 1, max_bytes);
    out += ": ";
    append_repr(out, value, depth + 1, max_bytes);
  }
  out.push_back('}');
}

void append_repr(std::string& out, const Value& v, int depth, size_t max_bytes) {
  check_depth(depth);
  check_size(out, max_bytes);
  switch (v.kind()) {
    case Value::Kind::kUndefined: out += "Undefined"; return;
    case Value::Kind::kString:
      if (v.is_markup()) {
        out += "Markup(";
        append_repr_string(out, v.as_string());
        out += ")";
        return;
      }
      append_repr_string(out, v.as_string());
      return;
    case Value::Kind::kList: {
      const List& list = v.as_list();
      if (list.is_iterator) {
        out += "<generator object>";
        return;
      }
      if (list.is_range) {
        out += fmt::format("range({}, {}", list.range_start, list.range_stop);
        out += list.range_step == 1 ? ")" : fmt::format(", {})", list.range_step);
        return;
      }
      out.push_back(list.is_tuple ? '(' : '[');
      for (size_t i = 0; i < list.items.size(); ++i) {
        if (i) out += ", ";
        append_repr(out, list.items[i], depth + 1, max_bytes);
      }
      if (list.is_tuple && list.items.size() == 1) out.push_back(',');
      out.push_back(list.is_tuple ? ')' : ']');
      return;
    }
    case Value::Kind::kDict: append_repr_dict(out, v.as_dict(), depth, max_bytes); return;
    case Value::Kind::kNamespace:
      out += "<Namespace ";
      append_repr_dict(out, v.as_namespace().attributes, depth, max_bytes);
      out.push_back('>');
      return;
    default: out += py_str(v); return;
  }
}

void append_json_string(std::string& out, const std::string& s, bool ensure_ascii) {
  out.push_back('"');
  for (char32_t c : utf8_decode(s)) {
    switch (c) {
      case '"': out += "\\\""; continue;
      case '\\': out += "\\\\"; continue;
      case '\n': out += "\\n"; continue;
      case '\r': out += "\\r"; continue;
      case '\t': out += "\\t"; continue;
      case '\b': out += "\\b"; continue;
      case '\f': out += "\\f"; continue;
      default: break;
    }
    if (c < 0x20 || (ensure_ascii && c >= 0x7F)) {
      if (c >= 0x10000) {
        const char32_t v = c - 0x10000;
        out += "\\u";
        append_hex(out, 0xD800 | (v >> 10), 4);
        out += "\\u";
        append_hex(out, 0xDC00 | (v & 0x3FF), 4);
      } else {
        out += "\\u";
        append_hex(out, c, 4);
      }
    } else {
      utf8_append(out, c);
    }
  }
  out.push_back('"');
}

std::string json_float(double d) {
  if (std::isnan(d)) return "NaN";
  if (std::isinf(d)) return d > 0 ? "Infinity" : "-Infinity";
  return float_repr(d);
}

// json.dumps turns non-string dict keys into strings.
std::string json_key(const Value& key) {
  switch (key.kind()) {
    case Value::Kind::kString: return key.as_string();
    case Value::Kind::kBool: return key.as_bool() ? "true" : "false";
    case Value::Kind::kNone: return "null";
    case Value::Kind::kInt: return std::to_string(key.as_int());
    case Value::Kind::kFloat: return json_float(key.as_float());
    default: fail("keys must be str, int, float, bool or None, not {}", type_name(key));
  }
}

class JsonWriter {
 public:
  JsonWriter(const JsonDumpOptions& options, std::string& out) : options_(options), out_(out) {}

  void write(const Value& v, int depth) {
    check_depth(depth);
    check_size(out_, options_.max_bytes);
    switch (v.kind()) {
      case Value::Kind::kNone: out_ += "null"; return;
      case Value::Kind::kBool: out_ += v.as_bool() ? "true" : "false"; return;
      case Value::Kind::kInt: out_ += std::to_string(v.as_int()); return;
      case Value::Kind::kFloat: out_ += json_float(v.as_float()); return;
      case Value::Kind::kString: append_json_string(out_, v.as_string(), options_.ensure_ascii); return;
      case Value::Kind::kList:
        if (v.is_iterator() || v.is_range()) break;
        write_list(v.as_list(), depth);
        return;
      case Value::Kind::kDict: write_dict(v.as_dict(), depth); return;
      default: break;
    }
    fail("Object of type {} is not JSON serializable", type_name(v));
  }

 private:
  void newline(int depth) {
    if (!options_.indent) return;
    out_.push_back('\n');
    for (int i = 0; i < depth; ++i) out_ += *options_.indent;
  }

  void write_list(const List& list, int depth) {
    if (list.items.empty()) {
      out_ += "[]";
      return;
    }
    out_.push_back('[');
    for (size_t i = 0; i < list.items.size(); ++i) {
      if (i) out_ += options_.item_separator;
      newline(depth + 1);
      write(list.items[i], depth + 1);
    }
    newline(depth);
    out_.push_back(']');
  }

  void write_dict(const Dict& dict, int depth) {
    if (dict.size() == 0) {
      out_ += "{}";
      return;
    }
    std::vector<std::pair<std::string, const Value*>> items;
    items.reserve(dict.size());
    for (const auto& [key, value] : dict.entries()) items.emplace_back(json_key(key), &value);
    if (options_.sort_keys) {
      std::stable_sort(items.begin(), items.end(),
                       [](const auto& a, const auto& b) { return a.first < b.first; });
    }
    out_.push_back('{');
    for (size_t i = 0; i < items.size(); ++i) {
      if (i) out_ += options_.item_separator;
      newline(depth + 1);
      append_json_string(out_, items[i].first, options_.ensure_ascii);
      out_ += options_.key_separator;
      write(*items[i].second, depth + 1);
    }
    newline(depth);
    out_.push_back('}');
  }

  const JsonDumpOptions& options_;
  std::string& out_;
};

}  // namespace

std::string float_repr(double d) {
  if (std::isnan(d)) return "nan";
  if (std::isinf(d)) return d > 0 ? "inf" : "-inf";
  char buf[64];
  const auto result = std::to_chars(buf, buf + sizeof(buf), d, std::chars_format::scientific);
  std::string sci(buf, result.ptr);
  // sci looks like "-1.2345e+17": split sign, digits and exponent.
  std::string sign;
  if (sci[0] == '-') {
    sign = "-";
    sci.erase(0, 1);
  }
  const size_t e = sci.find('e');
  std::string digits = sci.substr(0, e);
  digits.erase(std::remove(digits.begin(), digits.end(), '.'), digits.end());
  const int exponent = std::stoi(sci.substr(e + 1));
  while (digits.size() > 1 && digits.back() == '0') digits.pop_back();
  const int decpt = exponent + 1;  // value = 0.DIGITS * 10^decpt
  const int ndigits = static_cast<int>(digits.size());
  std::string out = sign;
  if (decpt > -4 && decpt <= 16) {
    if (decpt <= 0) {
      out += "0." + std::string(-decpt, '0') + digits;
    } else if (decpt >= ndigits) {
      out += digits + std::string(decpt - ndigits, '0') + ".0";
    } else {
      out += digits.substr(0, decpt) + "." + digits.substr(decpt);
    }
    return out;
  }
  out += digits.substr(0, 1);
  if (ndigits > 1) out += "." + digits.substr(1);
  const int exp10 = decpt - 1;
  out += exp10 < 0 ? "e-" : "e+";
  const std::string exp_digits = std::to_string(std::abs(exp10));
  if (exp_digits.size() < 2) out.push_back('0');
  out += exp_digits;
  return out;
}

std::string py_str(const Value& v, size_t max_bytes) {
  switch (v.kind()) {
    case Value::Kind::kUndefined: return "";
    case Value::Kind::kNone: return "None";
    case Value::Kind::kBool: return v.as_bool() ? "True" : "False";
    case Value::Kind::kInt: return std::to_string(v.as_int());
    case Value::Kind::kFloat: return float_repr(v.as_float());
    case Value::Kind::kString: return v.as_string();
    case Value::Kind::kFunction: return "<function " + v.as_function().name + ">";
    default: return py_repr(v, max_bytes);
  }
}

std::string py_repr(const Value& v, size_t max_bytes) {
  std::string out;
  append_repr(out, v, 0, max_bytes);
  check_size(out, max_bytes);
  return out;
}

std::string json_dumps(const Value& v, const JsonDumpOptions& options) {
  std::string out;
  JsonWriter(options, out).write(v, 0);
  check_size(out, options.max_bytes);
  return out;
}

}  // namespace marlin::tmpl
