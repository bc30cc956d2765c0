#include "template/value.h"

#include <algorithm>

#include "core/error.h"

namespace marlin::tmpl {
namespace {

// Dicts this size or larger keep a hash index of their string keys (smaller ones, such as
// messages and loop objects, are searched linearly).
constexpr size_t kIndexThreshold = 16;

}  // namespace

uint32_t nesting_of(const Value& v) {
  if (v.is_list()) return v.as_list().nesting;
  if (v.is_dict()) return v.as_dict().nesting();
  return 0;
}

void Dict::set(Value key, Value value) {
  const size_t at = find_index(key);
  if (at != entries_.size()) {
    const uint32_t nesting = 1 + nesting_of(value);
    MARLIN_CHECK(nesting <= kMaxValueNesting, "template value nesting limit exceeded ({} levels)",
                 kMaxValueNesting);
    nesting_ = std::max(nesting_, nesting);
    entries_[at].second = std::move(value);
    return;
  }
  insert_new(std::move(key), std::move(value));
}

void Dict::insert_new(Value key, Value value) {
  const uint32_t nesting = 1 + std::max(nesting_of(key), nesting_of(value));
  MARLIN_CHECK(nesting <= kMaxValueNesting, "template value nesting limit exceeded ({} levels)",
               kMaxValueNesting);
  nesting_ = std::max(nesting_, nesting);
  entries_.emplace_back(std::move(key), std::move(value));
  if (entries_.size() == kIndexThreshold) {
    for (size_t i = 0; i < entries_.size(); ++i) {
      if (entries_[i].first.is_string()) string_index_.emplace(entries_[i].first.as_string(), i);
    }
  } else if (entries_.size() > kIndexThreshold && entries_.back().first.is_string()) {
    string_index_.emplace(entries_.back().first.as_string(), entries_.size() - 1);
  }
}

size_t Dict::find_index(const Value& key) const {
  if (key.is_string() && entries_.size() >= kIndexThreshold) {
    auto it = string_index_.find(key.as_string());
    return it == string_index_.end() ? entries_.size() : it->second;
  }
  for (size_t i = 0; i < entries_.size(); ++i) {
    if (equals(entries_[i].first, key)) return i;
  }
  return entries_.size();
}

const Value* Dict::find(const Value& key) const {
  const size_t at = find_index(key);
  return at == entries_.size() ? nullptr : &entries_[at].second;
}

const Value* Dict::find(std::string_view key) const {
  if (entries_.size() >= kIndexThreshold) {
    auto it = string_index_.find(key);
    return it == string_index_.end() ? nullptr : &entries_[it->second].second;
  }
  for (const auto& [k, v] : entries_) {
    if (k.is_string() && k.as_string() == key) return &v;
  }
  return nullptr;
}

Value Value::undefined(std::string reason) {
  return Value(Data(UndefinedValue{std::make_shared<const std::string>(std::move(reason))}));
}

Value Value::string(std::string s, bool markup) {
  return Value(Data(std::make_shared<const Text>(Text{std::move(s), markup})));
}

Value Value::list(std::vector<Value> items, bool is_tuple) {
  uint32_t nesting = 1;
  for (const Value& item : items) nesting = std::max(nesting, 1 + nesting_of(item));
  MARLIN_CHECK(nesting <= kMaxValueNesting, "template value nesting limit exceeded ({} levels)",
               kMaxValueNesting);
  auto l = std::make_shared<List>();
  l->items = std::move(items);
  l->is_tuple = is_tuple;
  l->nesting = nesting;
  return Value(Data(std::shared_ptr<const List>(std::move(l))));
}

Value Value::iterator(std::vector<Value> items, std::string pending_error) {
  Value v = list(std::move(items));
  List& l = const_cast<List&>(v.as_list());  // freshly made, not yet shared
  l.is_iterator = true;
  if (!pending_error.empty()) l.pending_error = std::make_shared<const std::string>(std::move(pending_error));
  return v;
}

Value Value::range(int64_t start, int64_t stop, int64_t step) {
  std::vector<Value> items;
  for (int64_t v = start; step > 0 ? v < stop : v > stop; v += step) {
    items.push_back(Value::integer(v));
    if (step > 0 ? v > INT64_MAX - step : v < INT64_MIN - step) break;
  }
  Value r = list(std::move(items));
  List& l = const_cast<List&>(r.as_list());  // freshly made, not yet shared
  l.is_range = true;
  l.range_start = start, l.range_stop = stop, l.range_step = step;
  return r;
}

Value Value::dict(Dict d) { return Value(Data(std::make_shared<const Dict>(std::move(d)))); }

Value Value::make_namespace(Dict attributes) {
  return Value(Data(std::make_shared<Namespace>(Namespace{std::move(attributes)})));
}

Value Value::function(std::string name, std::function<Value(Interpreter&, CallArgs&)> call) {
  return Value(Data(std::make_shared<const Function>(Function{std::move(name), std::move(call)})));
}

double Value::to_double() const {
  switch (kind()) {
    case Kind::kBool: return as_bool() ? 1.0 : 0.0;
    case Kind::kInt: return static_cast<double>(as_int());
    case Kind::kFloat: return as_float();
    default: fail("expected a number, got {}", type_name(*this));
  }
}

const std::string& Value::undefined_reason() const {
  static const std::string kNone = "value is undefined";
  const auto& reason = std::get<UndefinedValue>(data_).reason;
  return reason ? *reason : kNone;
}

std::string type_name(const Value& v) {
  switch (v.kind()) {
    case Value::Kind::kUndefined: return "Undefined";
    case Value::Kind::kNone: return "NoneType";
    case Value::Kind::kBool: return "bool";
    case Value::Kind::kInt: return "int";
    case Value::Kind::kFloat: return "float";
    case Value::Kind::kString: return v.is_markup() ? "Markup" : "str";
    case Value::Kind::kList:
      if (v.as_list().is_iterator) return "generator";
      if (v.as_list().is_range) return "range";
      return v.as_list().is_tuple ? "tuple" : "list";
    case Value::Kind::kDict: return "dict";
    case Value::Kind::kNamespace: return "Namespace";
    case Value::Kind::kFunction: return "function";
  }
  return "object";
}

bool truthy(const Value& v) {
  switch (v.kind()) {
    case Value::Kind::kUndefined:
    case Value::Kind::kNone: return false;
    case Value::Kind::kBool: return v.as_bool();
    case Value::Kind::kInt: return v.as_int() != 0;
    case Value::Kind::kFloat: return v.as_float() != 0.0;
    case Value::Kind::kString: return !v.as_string().empty();
    case Value::Kind::kList: return v.as_list().is_iterator || !v.as_list().items.empty();
    case Value::Kind::kDict: return v.as_dict().size() != 0;
    case Value::Kind::kNamespace:
    case Value::Kind::kFunction: return true;
  }
  return false;
}

bool equals(const Value& a, const Value& b) {
  if (a.is_number() && b.is_number()) {
    if (a.is_float() || b.is_float()) return a.to_double() == b.to_double();
    const int64_t x = a.is_bool() ? a.as_bool() : a.as_int();
    const int64_t y = b.is_bool() ? b.as_bool() : b.as_int();
    return x == y;
  }
  if (a.kind() != b.kind()) return false;
  switch (a.kind()) {
    case Value::Kind::kUndefined:
    case Value::Kind::kNone: return true;
    case Value::Kind::kString: return a.as_string() == b.as_string();
    case Value::Kind::kList: {
      const List& x = a.as_list();
      const List& y = b.as_list();
      if (x.is_iterator || y.is_iterator) return &x == &y;
      if (x.is_range != y.is_range) return false;
      if (x.is_tuple != y.is_tuple || x.items.size() != y.items.size()) return false;
      for (size_t i = 0; i < x.items.size(); ++i) {
        if (!equals(x.items[i], y.items[i])) return false;
      }
      return true;
    }
    case Value::Kind::kDict: {
      const Dict& x = a.as_dict();
      const Dict& y = b.as_dict();
      if (x.size() != y.size()) return false;
      for (const auto& [key, value] : x.entries()) {
        const Value* other = y.find(key);
        if (!other || !equals(value, *other)) return false;
      }
      return true;
    }
    case Value::Kind::kNamespace: return &a.as_namespace() == &b.as_namespace();
    case Value::Kind::kFunction: return &a.as_function() == &b.as_function();
    default: return false;
  }
}

bool less_than(const Value& a, const Value& b) {
  if (a.is_number() && b.is_number()) {
    if (a.is_float() || b.is_float()) return a.to_double() < b.to_double();
    const int64_t x = a.is_bool() ? a.as_bool() : a.as_int();
    const int64_t y = b.is_bool() ? b.as_bool() : b.as_int();
    return x < y;
  }
  if (a.is_string() && b.is_string()) {
    // UTF-8 byte order equals code-point order.
    return a.as_string() < b.as_string();
  }
  if (a.is_list() && b.is_list() && !a.is_iterator() && !b.is_iterator() && !a.is_range() &&
      !b.is_range() && a.as_list().is_tuple == b.as_list().is_tuple) {
    const auto& x = a.as_list().items;
    const auto& y = b.as_list().items;
    for (size_t i = 0; i < std::min(x.size(), y.size()); ++i) {
      if (!equals(x[i], y[i])) return less_than(x[i], y[i]);
    }
    return x.size() < y.size();
  }
  fail("'<' not supported between instances of '{}' and '{}'", type_name(a), type_name(b));
}

}  // namespace marlin::tmpl
