#include "template/operators.h"

#include <cmath>
#include <cctype>
#include <cstdio>

#include "core/error.h"
#include "template/interpreter.h"
#include "template/py_format.h"
#include "template/text.h"

namespace marlin::tmpl {
namespace {

const char* symbol(BinaryOp op) {
  switch (op) {
    case BinaryOp::kAdd: return "+";
    case BinaryOp::kSub: return "-";
    case BinaryOp::kMul: return "*";
    case BinaryOp::kDiv: return "/";
    case BinaryOp::kFloorDiv: return "//";
    case BinaryOp::kMod: return "%";
    case BinaryOp::kPow: return "** or pow()";
    default: return "?";
  }
}

[[noreturn]] void unsupported(BinaryOp op, const Value& a, const Value& b) {
  fail("unsupported operand type(s) for {}: '{}' and '{}'", symbol(op), type_name(a), type_name(b));
}

bool is_integral(const Value& v) { return v.is_int() || v.is_bool(); }
int64_t integral(const Value& v) { return v.is_bool() ? int64_t(v.as_bool()) : v.as_int(); }

[[noreturn]] void overflow() { fail("integer overflow in template arithmetic (beyond 64 bits)"); }

Value int_pow(int64_t base, int64_t exponent) {
  int64_t result = 1;
  while (exponent > 0) {
    if (exponent & 1) {
      if (__builtin_mul_overflow(result, base, &result)) overflow();
    }
    exponent >>= 1;
    if (exponent > 0 && __builtin_mul_overflow(base, base, &base)) overflow();
  }
  return Value::integer(result);
}

Value integer_op(BinaryOp op, int64_t x, int64_t y) {
  int64_t r = 0;
  switch (op) {
    case BinaryOp::kAdd:
      if (__builtin_add_overflow(x, y, &r)) overflow();
      return Value::integer(r);
    case BinaryOp::kSub:
      if (__builtin_sub_overflow(x, y, &r)) overflow();
      return Value::integer(r);
    case BinaryOp::kMul:
      if (__builtin_mul_overflow(x, y, &r)) overflow();
      return Value::integer(r);
    case BinaryOp::kDiv:
      MARLIN_CHECK(y != 0, "division by zero");
      return Value::number(static_cast<double>(x) / static_cast<double>(y));
    case BinaryOp::kFloorDiv: {
      MARLIN_CHECK(y != 0, "integer division or modulo by zero");
      if (x == INT64_MIN && y == -1) overflow();
      int64_t q = x / y;
      if ((x % y != 0) && ((x < 0) != (y < 0))) --q;
      return Value::integer(q);
    }
    case BinaryOp::kMod: {
      MARLIN_CHECK(y != 0, "integer division or modulo by zero");
      if (y == -1) return Value::integer(0);
      int64_t m = x % y;
      if (m != 0 && ((m < 0) != (y < 0))) m += y;
      return Value::integer(m);
    }
    case BinaryOp::kPow:
      if (y < 0) {
        MARLIN_CHECK(x != 0, "0.0 cannot be raised to a negative power");
        return Value::number(std::pow(static_cast<double>(x), static_cast<double>(y)));
      }
      return int_pow(x, y);
    default: fail("internal error: not an arithmetic operator");
  }
}

Value float_op(BinaryOp op, double x, double y) {
  switch (op) {
    case BinaryOp::kAdd: return Value::number(x + y);
    case BinaryOp::kSub: return Value::number(x - y);
    case BinaryOp::kMul: return Value::number(x * y);
    case BinaryOp::kDiv:
      MARLIN_CHECK(y != 0.0, "float division by zero");
      return Value::number(x / y);
    case BinaryOp::kFloorDiv:
      MARLIN_CHECK(y != 0.0, "float floor division by zero");
      return Value::number(std::floor(x / y));
    case BinaryOp::kMod: {
      MARLIN_CHECK(y != 0.0, "float modulo");
      double m = std::fmod(x, y);
      if (m != 0.0) {
        if ((y < 0) != (m < 0)) m += y;
      } else {
        m = std::copysign(0.0, y);
      }
      return Value::number(m);
    }
    case BinaryOp::kPow:
      MARLIN_CHECK(!(x == 0.0 && y < 0), "0.0 cannot be raised to a negative power");
      MARLIN_CHECK(!(x < 0 && y != std::floor(y)), "negative number cannot be raised to a fractional power");
      return Value::number(std::pow(x, y));
    default: fail("internal error: not an arithmetic operator");
  }
}

Value repeat(Interpreter& in, const Value& seq, int64_t times) {
  if (times <= 0) {
    return seq.is_string() ? Value::string("", seq.is_markup()) : Value::list({}, seq.as_list().is_tuple);
  }
  if (seq.is_string()) {
    const std::string& s = seq.as_string();
    in.check_string_size(s.size() * static_cast<uint64_t>(std::min<int64_t>(times, int64_t(1) << 40)));
    std::string out;
    out.reserve(s.size() * times);
    for (int64_t i = 0; i < times; ++i) out += s;
    return in.make_string(std::move(out), seq.is_markup());
  }
  const List& list = seq.as_list();
  const uint64_t total = list.items.size() * static_cast<uint64_t>(std::min<int64_t>(times, int64_t(1) << 40));
  in.charge(total);
  std::vector<Value> items;
  items.reserve(total);
  for (int64_t i = 0; i < times; ++i) items.insert(items.end(), list.items.begin(), list.items.end());
  return Value::list(std::move(items), list.is_tuple);
}

}  // namespace

void require_defined(const Value& v) {
  if (v.is_undefined()) fail("{}", v.undefined_reason());
}

Value arithmetic(Interpreter& in, BinaryOp op, const Value& a, const Value& b) {
  require_defined(a);
  require_defined(b);
  if (is_integral(a) && is_integral(b)) return integer_op(op, integral(a), integral(b));
  if (a.is_number() && b.is_number()) return float_op(op, a.to_double(), b.to_double());
  switch (op) {
    case BinaryOp::kAdd:
      if (a.is_string() && b.is_string()) {
        if (a.is_markup() || b.is_markup()) {  // markupsafe escapes the plain operand
          const std::string left = a.is_markup() ? a.as_string() : html_escape(a.as_string());
          const std::string right = b.is_markup() ? b.as_string() : html_escape(b.as_string());
          in.check_string_size(left.size() + right.size());
          return in.make_string(left + right, /*markup=*/true);
        }
        in.check_string_size(a.as_string().size() + b.as_string().size());
        return in.make_string(a.as_string() + b.as_string());
      }
      if (a.is_string()) fail("can only concatenate str (not \"{}\") to str", type_name(b));
      if (a.is_list() && b.is_list() && !a.is_iterator() && !b.is_iterator() && !a.is_range() &&
          !b.is_range() && a.as_list().is_tuple == b.as_list().is_tuple) {
        const auto& x = a.as_list().items;
        const auto& y = b.as_list().items;
        in.charge(x.size() + y.size());
        std::vector<Value> items;
        items.reserve(x.size() + y.size());
        items.insert(items.end(), x.begin(), x.end());
        items.insert(items.end(), y.begin(), y.end());
        return Value::list(std::move(items), a.as_list().is_tuple);
      }
      if (a.is_list() && !a.as_list().is_tuple && !a.is_iterator() && !a.is_range()) {
        fail("can only concatenate list (not \"{}\") to list", type_name(b));
      }
      break;
    case BinaryOp::kMul:
      if ((a.is_string() || (a.is_sequence() && !a.is_range())) && is_integral(b)) return repeat(in, a, integral(b));
      if (is_integral(a) && (b.is_string() || (b.is_sequence() && !b.is_range()))) return repeat(in, b, integral(a));
      break;
    case BinaryOp::kMod:
      if (a.is_string()) {
        return in.make_string(percent_format(in, a.as_string(), b, a.is_markup()), a.is_markup());
      }
      break;
    default: break;
  }
  unsupported(op, a, b);
}

std::string percent_format(Interpreter& in, const std::string& format, const Value& args, bool escape_args) {
  std::vector<Value> positional;
  const Dict* mapping = nullptr;
  if (args.is_list() && args.as_list().is_tuple) {
    positional = args.as_list().items;
  } else if (args.is_dict()) {
    mapping = &args.as_dict();
    positional.push_back(args);
  } else {
    positional.push_back(args);
  }
  size_t next_arg = 0;
  bool used_mapping = false;
  std::string out;
  auto take = [&]() -> const Value& {
    MARLIN_CHECK(next_arg < positional.size(), "not enough arguments for format string");
    return positional[next_arg++];
  };
  for (size_t i = 0; i < format.size(); ++i) {
    if (format[i] != '%') {
      out.push_back(format[i]);
      continue;
    }
    MARLIN_CHECK(++i < format.size(), "incomplete format");
    const Value* arg = nullptr;
    if (format[i] == '(') {
      const size_t close = format.find(')', i);
      MARLIN_CHECK(close != std::string::npos && mapping, "format requires a mapping");
      const Value* found = mapping->find(std::string_view(format).substr(i + 1, close - i - 1));
      MARLIN_CHECK(found, "format key '{}' not found", format.substr(i + 1, close - i - 1));
      arg = found;
      used_mapping = true;
      i = close + 1;
    }
    std::string spec = "%";
    while (i < format.size() && std::string_view("-+ #0").find(format[i]) != std::string_view::npos) {
      spec += format[i++];
    }
    size_t digits = 0;
    while (i < format.size() && std::isdigit(static_cast<unsigned char>(format[i]))) {
      spec += format[i++];
      ++digits;
    }
    if (i < format.size() && format[i] == '.') {
      spec += format[i++];
      while (i < format.size() && std::isdigit(static_cast<unsigned char>(format[i]))) {
        spec += format[i++];
        ++digits;
      }
    }
    // Widths and precisions stay small so every conversion fits the buffer below.
    MARLIN_CHECK(digits <= 2, "format width or precision over 99 is not supported");
    MARLIN_CHECK(i < format.size(), "incomplete format");
    const char conv = format[i];
    if (conv == '%') {
      out.push_back('%');
      continue;
    }
    const Value& value = arg ? *arg : take();
    char buf[512];
    switch (conv) {
      case 's':
      case 'r': {
        std::string text = conv == 's' ? py_str(value, in.max_string_bytes())
                                       : py_repr(value, in.max_string_bytes());
        if (escape_args && !(conv == 's' && value.is_markup())) text = html_escape(text);
        in.check_string_size(text.size() + out.size() + 200);
        const int n = std::snprintf(nullptr, 0, (spec + "s").c_str(), text.c_str());
        std::string formatted(static_cast<size_t>(n) + 1, '\0');
        std::snprintf(formatted.data(), formatted.size(), (spec + "s").c_str(), text.c_str());
        formatted.pop_back();
        out += formatted;
        break;
      }
      case 'd': case 'i': case 'x': case 'X': case 'o': case 'c': {
        MARLIN_CHECK(value.is_number(), "%{} format: a real number is required, not {}", conv, type_name(value));
        const long long n = value.is_float() ? static_cast<long long>(value.as_float()) : integral(value);
        if (conv == 'c') {
          utf8_append(out, static_cast<char32_t>(n));
          break;
        }
        const char c_conv = conv == 'i' ? 'd' : conv;
        std::snprintf(buf, sizeof(buf), (spec + "ll" + c_conv).c_str(), n);
        out += buf;
        break;
      }
      case 'f': case 'F': case 'e': case 'E': case 'g': case 'G': {
        MARLIN_CHECK(value.is_number(), "must be real number, not {}", type_name(value));
        std::snprintf(buf, sizeof(buf), (spec + conv).c_str(), value.to_double());
        out += buf;
        break;
      }
      default: fail("unsupported format character '{}'", std::string(1, conv));
    }
  }
  MARLIN_CHECK(used_mapping || mapping || next_arg == positional.size(),
               "not all arguments converted during string formatting");
  return out;
}

}  // namespace marlin::tmpl
