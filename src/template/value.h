// Values of the template language: Python's data model as Jinja sees it (undefined, None, bool,
// int, float, str, list/tuple, dict, namespace, callables). Strings, lists and dicts are immutable
// and shared (cheap to copy); a namespace is the one mutable, reference-shared object, as in
// Jinja's ImmutableSandboxedEnvironment.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <string_view>
#include <unordered_map>
#include <utility>
#include <variant>
#include <vector>

namespace marlin::tmpl {

class Value;
class Interpreter;

struct CallArgs {
  std::vector<Value> positional;
  std::vector<std::pair<std::string, Value>> keyword;
};

// Lists and dicts may nest this deep; deeper nesting is an error, which keeps every recursive walk
// over values (printing, comparison, destruction) within a bounded stack.
constexpr uint32_t kMaxValueNesting = 512;

struct List {
  std::vector<Value> items;
  bool is_tuple = false;
  uint32_t nesting = 1;  // 1 + the deepest nesting among the items
  // A one-pass iterator, which jinja2's map/select/unique/reverse... return: always truthy, no
  // len(), no indexing, not JSON-serializable, and iterating again yields only what is left.
  bool is_iterator = false;
  mutable size_t consumed = 0;
  // An error the generator raised after yielding `items`, reported when it is iterated that far.
  std::shared_ptr<const std::string> pending_error;
  // A Python range (what range() returns): prints as "range(start, stop[, step])", is not
  // JSON-serializable, and equals only ranges. `items` holds its values.
  bool is_range = false;
  int64_t range_start = 0, range_stop = 0, range_step = 1;
};

struct TransparentStringHash {
  using is_transparent = void;
  size_t operator()(std::string_view s) const { return std::hash<std::string_view>()(s); }
};

// Insertion-ordered mapping, like a Python dict.
class Dict {
 public:
  void set(Value key, Value value);
  // Appends an entry whose key the caller knows is not present yet (JSON objects, loop objects).
  void insert_new(Value key, Value value);
  const Value* find(const Value& key) const;
  const Value* find(std::string_view key) const;
  const std::vector<std::pair<Value, Value>>& entries() const { return entries_; }
  size_t size() const { return entries_.size(); }
  uint32_t nesting() const { return nesting_; }

 private:
  size_t find_index(const Value& key) const;
  std::vector<std::pair<Value, Value>> entries_;
  // String keys -> position, kept once the dict grows past a few entries.
  std::unordered_map<std::string, size_t, TransparentStringHash, std::equal_to<>> string_index_;
  uint32_t nesting_ = 1;
};

struct Namespace {
  Dict attributes;
};

struct Function {
  std::string name;
  std::function<Value(Interpreter&, CallArgs&)> call;
};

// A string; `markup` marks markupsafe.Markup text (from |safe or |escape), which escapes plain
// strings that are added to it.
struct Text {
  std::string text;
  bool markup = false;
};

struct UndefinedValue {
  // Why it is undefined, for error messages: "'x' is undefined".
  std::shared_ptr<const std::string> reason;
};

class Value {
 public:
  enum class Kind { kUndefined, kNone, kBool, kInt, kFloat, kString, kList, kDict, kNamespace, kFunction };

  Value() : data_(UndefinedValue{}) {}
  static Value undefined(std::string reason);
  static Value none() { return Value(Data(nullptr)); }
  static Value boolean(bool b) { return Value(Data(b)); }
  static Value integer(int64_t i) { return Value(Data(i)); }
  static Value number(double d) { return Value(Data(d)); }
  static Value string(std::string s, bool markup = false);
  static Value list(std::vector<Value> items, bool is_tuple = false);
  static Value iterator(std::vector<Value> items, std::string pending_error = "");
  // range(start, stop, step) with step != 0; the caller bounds its length.
  static Value range(int64_t start, int64_t stop, int64_t step);
  static Value dict(Dict d);
  static Value make_namespace(Dict attributes);
  static Value function(std::string name, std::function<Value(Interpreter&, CallArgs&)> call);

  Kind kind() const { return static_cast<Kind>(data_.index()); }
  bool is_undefined() const { return kind() == Kind::kUndefined; }
  bool is_none() const { return kind() == Kind::kNone; }
  bool is_bool() const { return kind() == Kind::kBool; }
  bool is_int() const { return kind() == Kind::kInt; }
  bool is_float() const { return kind() == Kind::kFloat; }
  bool is_number() const { return is_int() || is_float() || is_bool(); }
  bool is_string() const { return kind() == Kind::kString; }
  bool is_list() const { return kind() == Kind::kList; }
  bool is_iterator() const { return is_list() && as_list().is_iterator; }
  bool is_range() const { return is_list() && as_list().is_range; }
  // A list, tuple or range: a sequence that can be indexed and iterated again.
  bool is_sequence() const { return is_list() && !as_list().is_iterator; }
  bool is_dict() const { return kind() == Kind::kDict; }
  bool is_namespace() const { return kind() == Kind::kNamespace; }
  bool is_function() const { return kind() == Kind::kFunction; }

  bool as_bool() const { return std::get<bool>(data_); }
  int64_t as_int() const { return std::get<int64_t>(data_); }
  double as_float() const { return std::get<double>(data_); }
  // int, bool or float as a double.
  double to_double() const;
  const std::string& as_string() const { return std::get<StringPtr>(data_)->text; }
  bool is_markup() const { return is_string() && std::get<StringPtr>(data_)->markup; }
  const List& as_list() const { return *std::get<ListPtr>(data_); }
  const Dict& as_dict() const { return *std::get<DictPtr>(data_); }
  Namespace& as_namespace() const { return *std::get<NamespacePtr>(data_); }
  const Function& as_function() const { return *std::get<FunctionPtr>(data_); }
  const std::string& undefined_reason() const;

 private:
  using StringPtr = std::shared_ptr<const Text>;
  using ListPtr = std::shared_ptr<const List>;
  using DictPtr = std::shared_ptr<const Dict>;
  using NamespacePtr = std::shared_ptr<Namespace>;
  using FunctionPtr = std::shared_ptr<const Function>;
  using Data = std::variant<UndefinedValue, std::nullptr_t, bool, int64_t, double, StringPtr, ListPtr,
                            DictPtr, NamespacePtr, FunctionPtr>;
  explicit Value(Data data) : data_(std::move(data)) {}
  Data data_;
};

// Nesting level of a value: 0 for scalars, namespaces and functions.
uint32_t nesting_of(const Value& v);

// Python's type name ("str", "int", "list", "dict", "NoneType", ...) for error messages.
std::string type_name(const Value& v);

// Python truthiness (undefined is false).
bool truthy(const Value& v);

// Python ==, with Jinja's undefined equal only to undefined.
bool equals(const Value& a, const Value& b);

// Python ordering (<): numbers with numbers, strings with strings, lists/tuples element-wise.
// Throws marlin::Error for unorderable types, as Python raises TypeError.
bool less_than(const Value& a, const Value& b);

}  // namespace marlin::tmpl
