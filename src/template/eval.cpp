// Expression evaluation of the Interpreter (statements are in interpreter.cpp).
#include <algorithm>

#include "template/builtins.h"
#include "template/interpreter.h"
#include "template/operators.h"
#include "template/py_format.h"
#include "template/text.h"

namespace marlin::tmpl {
namespace {

std::string object_description(const Value& v) {
  if (v.is_none()) return "None";
  return fmt::format("{} object", type_name(v));
}

Value missing_attribute(const Value& object, const std::string& name) {
  return Value::undefined(fmt::format("'{}' has no attribute '{}'", object_description(object), name));
}

// Python slice bounds for a sequence of length n.
struct SliceRange {
  int64_t start, stop, step;
  int64_t count() const {
    if (step > 0) return start < stop ? (stop - start + step - 1) / step : 0;
    return start > stop ? (start - stop - step - 1) / (-step) : 0;
  }
};

std::optional<int64_t> slice_bound(const Value& v) {
  if (v.is_none()) return std::nullopt;
  if (v.is_int()) return v.as_int();
  if (v.is_bool()) return int64_t(v.as_bool());
  fail("slice indices must be integers or None, not {}", type_name(v));
}

SliceRange resolve_slice(const Value& start_v, const Value& stop_v, const Value& step_v, int64_t n) {
  const int64_t step = slice_bound(step_v).value_or(1);
  MARLIN_CHECK(step != 0, "slice step cannot be zero");
  const std::optional<int64_t> start = slice_bound(start_v);
  const std::optional<int64_t> stop = slice_bound(stop_v);
  auto clamp = [&](int64_t i, int64_t low, int64_t high) {
    if (i < 0) i += n;
    return std::clamp(i, low, high);
  };
  SliceRange r{0, 0, step};
  if (step > 0) {
    r.start = start ? clamp(*start, 0, n) : 0;
    r.stop = stop ? clamp(*stop, 0, n) : n;
  } else {
    r.start = start ? clamp(*start, -1, n - 1) : n - 1;
    r.stop = stop ? clamp(*stop, -1, n - 1) : -1;
  }
  return r;
}

bool hashable(const Value& v) {
  if (v.is_list()) {
    if (!v.as_list().is_tuple) return false;
    return std::all_of(v.as_list().items.begin(), v.as_list().items.end(), hashable);
  }
  return !v.is_dict() && !v.is_namespace();
}

}  // namespace

Value Interpreter::eval(const Expr& expr) {
  DepthGuard depth(*this);
  charge(1);
  current_offset_ = expr.offset;
  switch (expr.kind) {
    case ExprKind::kLiteral: return static_cast<const LiteralExpr&>(expr).value;
    case ExprKind::kName: return lookup(static_cast<const NameExpr&>(expr).name);
    case ExprKind::kAttribute: {
      const auto& e = static_cast<const AttributeExpr&>(expr);
      const Value object = eval(*e.object);
      current_offset_ = expr.offset;
      return get_attribute(object, e.name);
    }
    case ExprKind::kSubscript: {
      const auto& e = static_cast<const SubscriptExpr&>(expr);
      const Value object = eval(*e.object);
      const Value key = eval(*e.index);
      current_offset_ = expr.offset;
      return get_item(object, key);
    }
    case ExprKind::kSlice: {
      const auto& e = static_cast<const SliceExpr&>(expr);
      const Value object = eval(*e.object);
      const Value start = e.start ? eval(*e.start) : Value::none();
      const Value stop = e.stop ? eval(*e.stop) : Value::none();
      const Value step = e.step ? eval(*e.step) : Value::none();
      current_offset_ = expr.offset;
      require_defined(object);
      // jinja2 slices with Python directly (not through the sandbox's forgiving getitem), so
      // wrong types are errors.
      MARLIN_CHECK((object.is_string() || object.is_list()) && !object.is_iterator(),
                   "'{}' object is not subscriptable", type_name(object));
      if (object.is_string()) {
        charge_bytes(object.as_string().size());
        const std::u32string cps = utf8_decode(object.as_string());
        const SliceRange r = resolve_slice(start, stop, step, static_cast<int64_t>(cps.size()));
        std::u32string out;
        for (int64_t i = r.start, k = 0; k < r.count(); ++k, i += r.step) out.push_back(cps[i]);
        return make_string(utf8_encode(out), object.is_markup());
      }
      const List& list = object.as_list();
      const SliceRange r = resolve_slice(start, stop, step, static_cast<int64_t>(list.items.size()));
      charge(static_cast<uint64_t>(r.count()));
      if (list.is_range) {  // a slice of a range is a range
        const __int128 first = __int128(list.range_start) + __int128(r.start) * list.range_step;
        const __int128 last = __int128(list.range_start) + __int128(r.stop) * list.range_step;
        const __int128 stride = __int128(list.range_step) * r.step;
        auto fits = [](__int128 v) { return v >= INT64_MIN && v <= INT64_MAX; };
        MARLIN_CHECK(fits(first) && fits(last) && fits(stride), "range slice out of 64-bit range");
        return Value::range(int64_t(first), int64_t(last), int64_t(stride));
      }
      std::vector<Value> items;
      items.reserve(r.count());
      for (int64_t i = r.start, k = 0; k < r.count(); ++k, i += r.step) items.push_back(list.items[i]);
      return Value::list(std::move(items), list.is_tuple);
    }
    case ExprKind::kCall: return eval_call(static_cast<const CallExpr&>(expr));
    case ExprKind::kFilter: return eval_filter(static_cast<const FilterExpr&>(expr), nullptr);
    case ExprKind::kTest: {
      const auto& e = static_cast<const TestExpr&>(expr);
      const Value operand = eval(*e.operand);
      CallArgs args = eval_args(e.args);
      current_offset_ = expr.offset;
      const bool result = apply_test(e.name, operand, args);
      return Value::boolean(result != e.negated);
    }
    case ExprKind::kUnary: {
      const auto& e = static_cast<const UnaryExpr&>(expr);
      const Value v = eval(*e.operand);
      if (e.op == UnaryOp::kNot) return Value::boolean(!truthy(v));
      require_defined(v);
      MARLIN_CHECK(v.is_number(), "bad operand type for unary {}: '{}'", e.op == UnaryOp::kNegate ? "-" : "+",
                   type_name(v));
      if (e.op == UnaryOp::kPlus) return v.is_bool() ? Value::integer(v.as_bool()) : v;
      if (v.is_float()) return Value::number(-v.as_float());
      const int64_t i = v.is_bool() ? int64_t(v.as_bool()) : v.as_int();
      MARLIN_CHECK(i != INT64_MIN, "integer overflow in template arithmetic (beyond 64 bits)");
      return Value::integer(-i);
    }
    case ExprKind::kBinary: return eval_binary(static_cast<const BinaryExpr&>(expr));
    case ExprKind::kCompare: return eval_compare(static_cast<const CompareExpr&>(expr));
    case ExprKind::kConditional: {
      const auto& e = static_cast<const ConditionalExpr&>(expr);
      if (truthy(eval(*e.condition))) return eval(*e.then_value);
      if (e.else_value) return eval(*e.else_value);
      return Value::undefined("the inline if-expression evaluated to false and no else section was defined");
    }
    case ExprKind::kList: {
      const auto& e = static_cast<const ListExpr&>(expr);
      std::vector<Value> items;
      items.reserve(e.items.size());
      for (const ExprPtr& item : e.items) items.push_back(eval(*item));
      return Value::list(std::move(items), e.is_tuple);
    }
    case ExprKind::kDict: {
      const auto& e = static_cast<const DictExpr&>(expr);
      Dict d;
      for (const auto& [key_expr, value_expr] : e.items) {
        Value key = eval(*key_expr);
        MARLIN_CHECK(hashable(key), "unhashable type: '{}'", type_name(key));
        d.set(std::move(key), eval(*value_expr));
      }
      return Value::dict(std::move(d));
    }
  }
  fail("internal error: unknown expression kind");
}

Value Interpreter::eval_binary(const BinaryExpr& expr) {
  if (expr.op == BinaryOp::kAnd) {
    Value left = eval(*expr.left);
    return truthy(left) ? eval(*expr.right) : left;
  }
  if (expr.op == BinaryOp::kOr) {
    Value left = eval(*expr.left);
    return truthy(left) ? left : eval(*expr.right);
  }
  const Value left = eval(*expr.left);
  const Value right = eval(*expr.right);
  current_offset_ = expr.offset;
  if (expr.op == BinaryOp::kConcat) {
    std::string text = py_str(left, limits_.max_output_bytes);
    const std::string right_text = py_str(right, limits_.max_output_bytes);
    check_string_size(text.size() + right_text.size());
    text += right_text;
    return make_string(std::move(text));
  }
  return arithmetic(*this, expr.op, left, right);
}

Value Interpreter::eval_compare(const CompareExpr& expr) {
  Value left = eval(*expr.first);
  for (const auto& [op, right_expr] : expr.rest) {
    Value right = eval(*right_expr);
    current_offset_ = right_expr->offset;
    bool result = false;
    switch (op) {
      case CompareOp::kEq: result = equals(left, right); break;
      case CompareOp::kNe: result = !equals(left, right); break;
      case CompareOp::kIn: result = contains(right, left); break;
      case CompareOp::kNotIn: result = !contains(right, left); break;
      default:
        require_defined(left);
        require_defined(right);
        if (op == CompareOp::kLt) result = less_than(left, right);
        if (op == CompareOp::kGt) result = less_than(right, left);
        if (op == CompareOp::kLe) result = less_than(left, right) || equals(left, right);
        if (op == CompareOp::kGe) result = less_than(right, left) || equals(left, right);
        break;
    }
    if (!result) return Value::boolean(false);
    left = std::move(right);
  }
  return Value::boolean(true);
}

CallArgs Interpreter::eval_args(const Arguments& args) {
  CallArgs out;
  out.positional.reserve(args.positional.size());
  for (const ExprPtr& e : args.positional) out.positional.push_back(eval(*e));
  for (const auto& [name, e] : args.keyword) out.keyword.emplace_back(name, eval(*e));
  return out;
}

Value Interpreter::eval_call(const CallExpr& expr) {
  const Value callee = eval(*expr.callee);
  CallArgs args = eval_args(expr.args);
  current_offset_ = expr.offset;
  return call(callee, args);
}

Value Interpreter::call(const Value& callee, CallArgs& args) {
  require_defined(callee);
  MARLIN_CHECK(callee.is_function(), "'{}' object is not callable", type_name(callee));
  return callee.as_function().call(*this, args);
}

Value Interpreter::eval_filter(const FilterExpr& expr, const Value* block_input) {
  Value input;
  if (!expr.operand) {
    input = *block_input;
  } else if (block_input && expr.operand->kind == ExprKind::kFilter) {
    input = eval_filter(static_cast<const FilterExpr&>(*expr.operand), block_input);
  } else {
    input = eval(*expr.operand);
  }
  CallArgs args = eval_args(expr.args);
  current_offset_ = expr.offset;
  return apply_filter(expr.name, input, args);
}

Value Interpreter::apply_filter(const std::string& name, const Value& input, CallArgs& args) {
  const FilterFn filter = find_filter(name);
  MARLIN_CHECK(filter, "no filter named '{}'", name);
  return filter(*this, input, args);
}

bool Interpreter::apply_test(const std::string& name, const Value& input, CallArgs& args) {
  const TestFn test = find_test(name);
  MARLIN_CHECK(test, "no test named '{}'", name);
  return test(*this, input, args);
}

Value Interpreter::get_attribute(const Value& object, const std::string& name) {
  require_defined(object);
  if (auto method = find_method(object, name)) return *method;
  if (object.is_dict()) {
    if (const Value* v = object.as_dict().find(name)) return *v;
  } else if (object.is_namespace()) {
    if (const Value* v = object.as_namespace().attributes.find(name)) return *v;
  }
  return missing_attribute(object, name);
}

Value Interpreter::get_item(const Value& object, const Value& key) {
  require_defined(object);
  switch (object.kind()) {
    case Value::Kind::kDict:
      if (hashable(key)) {
        if (const Value* v = object.as_dict().find(key)) return *v;
      }
      break;
    case Value::Kind::kNamespace:
      if (key.is_string()) {
        if (const Value* v = object.as_namespace().attributes.find(key.as_string())) return *v;
      }
      break;
    case Value::Kind::kList:
    case Value::Kind::kString:
      if (object.is_iterator()) break;
      if (key.is_int() || key.is_bool()) {
        int64_t i = key.is_bool() ? int64_t(key.as_bool()) : key.as_int();
        if (object.is_list()) {
          const auto& items = object.as_list().items;
          const auto n = static_cast<int64_t>(items.size());
          if (i < 0) i += n;
          if (i >= 0 && i < n) return items[i];
        } else {
          charge_bytes(object.as_string().size());
          const std::u32string cps = utf8_decode(object.as_string());
          const auto n = static_cast<int64_t>(cps.size());
          if (i < 0) i += n;
          if (i >= 0 && i < n) return Value::string(utf8_encode(std::u32string(1, cps[i])), object.is_markup());
        }
        return Value::undefined(fmt::format("{} index out of range", type_name(object)));
      }
      break;
    default: break;
  }
  if (key.is_string()) {
    if (auto method = find_method(object, key.as_string())) return *method;
    return missing_attribute(object, key.as_string());
  }
  return Value::undefined(fmt::format("'{}' has no item {}", object_description(object), py_repr(key)));
}

}  // namespace marlin::tmpl
