// Tests ("x is defined", "x is divisibleby 3", ...) with jinja2 3.1 semantics, including the
// quirks of its Undefined (which counts as iterable and as a sequence).
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

const Value& only_argument(CallArgs& args, std::string_view test) {
  MARLIN_CHECK(args.positional.size() == 1 && args.keyword.empty(), "test '{}' takes one argument", test);
  return args.positional[0];
}

void no_arguments(CallArgs& args, std::string_view test) {
  MARLIN_CHECK(args.positional.empty() && args.keyword.empty(), "test '{}' takes no arguments", test);
}

#define SIMPLE_TEST(fn_name, test_name, expr)                      \
  bool fn_name(Interpreter&, const Value& v, CallArgs& args) {     \
    no_arguments(args, test_name);                                 \
    return (expr);                                                 \
  }

SIMPLE_TEST(test_defined, "defined", !v.is_undefined())
SIMPLE_TEST(test_undefined, "undefined", v.is_undefined())
SIMPLE_TEST(test_none, "none", v.is_none())
SIMPLE_TEST(test_boolean, "boolean", v.is_bool())
SIMPLE_TEST(test_false, "false", v.is_bool() && !v.as_bool())
SIMPLE_TEST(test_true, "true", v.is_bool() && v.as_bool())
SIMPLE_TEST(test_integer, "integer", v.is_int())
SIMPLE_TEST(test_float, "float", v.is_float())
SIMPLE_TEST(test_number, "number", v.is_number())
SIMPLE_TEST(test_string, "string", v.is_string())
SIMPLE_TEST(test_mapping, "mapping", v.is_dict())
SIMPLE_TEST(test_iterable, "iterable", v.is_undefined() || v.is_string() || v.is_list() || v.is_dict())
SIMPLE_TEST(test_sequence, "sequence", v.is_undefined() || v.is_string() || (v.is_list() && !v.is_iterator()) || v.is_dict())
SIMPLE_TEST(test_callable, "callable", v.is_function() || v.is_undefined())

#undef SIMPLE_TEST

bool test_lower(Interpreter& in, const Value& v, CallArgs& args) {
  no_arguments(args, "lower");
  return str_is_lower(py_str(v, in.max_string_bytes()));
}

bool test_upper(Interpreter& in, const Value& v, CallArgs& args) {
  no_arguments(args, "upper");
  return str_is_upper(py_str(v, in.max_string_bytes()));
}

// Python value % n.
Value modulo(Interpreter& in, const Value& v, const Value& n) { return arithmetic(in, BinaryOp::kMod, v, n); }

bool test_odd(Interpreter& in, const Value& v, CallArgs& args) {
  no_arguments(args, "odd");
  return equals(modulo(in, v, Value::integer(2)), Value::integer(1));
}

bool test_even(Interpreter& in, const Value& v, CallArgs& args) {
  no_arguments(args, "even");
  return equals(modulo(in, v, Value::integer(2)), Value::integer(0));
}

bool test_divisibleby(Interpreter& in, const Value& v, CallArgs& args) {
  return equals(modulo(in, v, only_argument(args, "divisibleby")), Value::integer(0));
}

bool test_eq(Interpreter&, const Value& v, CallArgs& args) { return equals(v, only_argument(args, "eq")); }
bool test_ne(Interpreter&, const Value& v, CallArgs& args) { return !equals(v, only_argument(args, "ne")); }

bool test_lt(Interpreter&, const Value& v, CallArgs& args) {
  const Value& other = only_argument(args, "lt");
  require_defined(v);
  require_defined(other);
  return less_than(v, other);
}
bool test_gt(Interpreter&, const Value& v, CallArgs& args) {
  const Value& other = only_argument(args, "gt");
  require_defined(v);
  require_defined(other);
  return less_than(other, v);
}
bool test_le(Interpreter&, const Value& v, CallArgs& args) {
  const Value& other = only_argument(args, "le");
  require_defined(v);
  require_defined(other);
  return less_than(v, other) || equals(v, other);
}
bool test_ge(Interpreter&, const Value& v, CallArgs& args) {
  const Value& other = only_argument(args, "ge");
  require_defined(v);
  require_defined(other);
  return less_than(other, v) || equals(v, other);
}

bool test_in(Interpreter&, const Value& v, CallArgs& args) { return contains(only_argument(args, "in"), v); }

// Python `is`: identity for containers, value identity for the singletons and small scalars.
bool test_sameas(Interpreter&, const Value& v, CallArgs& args) {
  const Value& other = only_argument(args, "sameas");
  if (v.kind() != other.kind()) return false;
  switch (v.kind()) {
    case Value::Kind::kList: return &v.as_list() == &other.as_list();
    case Value::Kind::kDict: return &v.as_dict() == &other.as_dict();
    case Value::Kind::kString: return &v.as_string() == &other.as_string() || v.as_string() == other.as_string();
    default: return equals(v, other);
  }
}

bool test_filter(Interpreter&, const Value& v, CallArgs& args) {
  no_arguments(args, "filter");
  return v.is_string() && find_filter(v.as_string()) != nullptr;
}

bool test_test(Interpreter&, const Value& v, CallArgs& args) {
  no_arguments(args, "test");
  return v.is_string() && find_test(v.as_string()) != nullptr;
}

const std::unordered_map<std::string_view, TestFn>& test_table() {
  static const std::unordered_map<std::string_view, TestFn> table = {
      {"defined", test_defined},   {"undefined", test_undefined},     {"none", test_none},
      {"boolean", test_boolean},   {"false", test_false},             {"true", test_true},
      {"integer", test_integer},   {"float", test_float},             {"number", test_number},
      {"string", test_string},     {"mapping", test_mapping},         {"iterable", test_iterable},
      {"sequence", test_sequence}, {"callable", test_callable},       {"lower", test_lower},
      {"upper", test_upper},       {"odd", test_odd},                 {"even", test_even},
      {"divisibleby", test_divisibleby},
      {"eq", test_eq},             {"equalto", test_eq},              {"==", test_eq},
      {"ne", test_ne},             {"!=", test_ne},                   {"lt", test_lt},
      {"lessthan", test_lt},       {"<", test_lt},                    {"gt", test_gt},
      {"greaterthan", test_gt},    {">", test_gt},                    {"le", test_le},
      {"<=", test_le},             {"ge", test_ge},                   {">=", test_ge},
      {"in", test_in},             {"sameas", test_sameas},           {"filter", test_filter},
      {"test", test_test},
  };
  return table;
}

}  // namespace

TestFn find_test(std::string_view name) {
  const auto& table = test_table();
  const auto it = table.find(name);
  return it == table.end() ? nullptr : it->second;
}

}  // namespace marlin::tmpl
