#include "template/interpreter.h"

#include <algorithm>
#include <cstdint>

#include "template/builtins.h"
#include "template/lexer.h"
#include "template/operators.h"
#include "template/py_format.h"
#include "template/text.h"

namespace marlin::tmpl {

// Variables of one scope. Loop iterations, macro calls and {% with %} bodies get a frame of their
// own whose parent is the enclosing scope; {% if %} bodies share their parent's frame.
struct Interpreter::Frame {
  explicit Frame(std::shared_ptr<Frame> p) : parent(std::move(p)) {}
  const Value* find(const std::string& name) const {
    for (const auto& [n, v] : vars) {
      if (n == name) return &v;
    }
    return nullptr;
  }
  void set(const std::string& name, Value value) {
    for (auto& [n, v] : vars) {
      if (n == name) {
        v = std::move(value);
        return;
      }
    }
    vars.emplace_back(name, std::move(value));
  }
  std::shared_ptr<Frame> parent;
  std::vector<std::pair<std::string, Value>> vars;
};

std::tm system_local_time() {
  const std::time_t t = std::time(nullptr);
  std::tm out{};
  localtime_r(&t, &out);
  return out;
}

Interpreter::Interpreter(const ParsedTemplate& tpl, const RenderLimits& limits, Clock clock)
    : template_(tpl), limits_(limits), clock_(clock ? std::move(clock) : Clock(system_local_time)) {}

Interpreter::~Interpreter() {
  // Closures (macros) and namespaces may refer to each other in cycles; emptying them frees
  // everything the render built.
  for (const auto& frame : closure_frames_) frame->vars.clear();
  for (const Value& ns : namespaces_) ns.as_namespace().attributes = Dict();
}

std::string Interpreter::render(const Value& context) {
  MARLIN_CHECK(context.is_dict(), "template context must be a dict, got {}", type_name(context));
  context_ = context;
  frame_ = std::make_shared<Frame>(nullptr);
  std::string output;
  out_ = &output;
  try {
    exec_body(template_.body);
  } catch (const TemplateRaisedError&) {
    throw;
  } catch (const Error& e) {
    fail("template error at {}: {}", describe_position(template_.source, current_offset_), e.what());
  }
  return output;
}

void Interpreter::error_at(size_t offset, const std::string& message) {
  current_offset_ = offset;  // render() adds the position
  fail("{}", message);
}

void Interpreter::charge(uint64_t units) {
  steps_ += units;
  if (steps_ > limits_.max_steps) {
    fail("template step limit exceeded ({} steps)", limits_.max_steps);
  }
}

void Interpreter::check_string_size(size_t bytes) const {
  if (bytes > limits_.max_output_bytes) {
    fail("template string limit exceeded ({} bytes)", limits_.max_output_bytes);
  }
}

Value Interpreter::make_string(std::string s, bool markup) {
  check_string_size(s.size());
  charge_bytes(s.size());
  return Value::string(std::move(s), markup);
}

void Interpreter::register_namespace(const Value& ns) { namespaces_.push_back(ns); }

void Interpreter::emit(const std::string& text) {
  if (out_->size() + text.size() > limits_.max_output_bytes) {
    fail("template output limit exceeded ({} bytes)", limits_.max_output_bytes);
  }
  charge_bytes(text.size());
  out_->append(text);
}

Value Interpreter::lookup(const std::string& name) const {
  for (const Frame* f = frame_.get(); f; f = f->parent.get()) {
    if (const Value* v = f->find(name)) return *v;
  }
  if (const Value* v = context_.as_dict().find(name)) return *v;
  if (auto g = find_global(name)) return *g;
  return Value::undefined("'" + name + "' is undefined");
}

// ---- statements ----

Interpreter::Flow Interpreter::exec_body(const Body& body) {
  for (const StmtPtr& stmt : body) {
    const Flow flow = exec(*stmt);
    if (flow != Flow::kNormal) return flow;
  }
  return Flow::kNormal;
}

Interpreter::Flow Interpreter::exec(const Stmt& stmt) {
  DepthGuard depth(*this);
  charge(1);
  current_offset_ = stmt.offset;
  switch (stmt.kind) {
    case StmtKind::kText: emit(static_cast<const TextStmt&>(stmt).text); break;
    case StmtKind::kOutput: {
      const Value v = eval(*static_cast<const OutputStmt&>(stmt).expr);
      emit(py_str(v, limits_.max_output_bytes));
      break;
    }
    case StmtKind::kIf: {
      const auto& s = static_cast<const IfStmt&>(stmt);
      for (const auto& [test, body] : s.branches) {
        if (truthy(eval(*test))) return exec_body(body);
      }
      return exec_body(s.else_body);
    }
    case StmtKind::kFor: exec_for(static_cast<const ForStmt&>(stmt)); break;
    case StmtKind::kSet: {
      const auto& s = static_cast<const SetStmt&>(stmt);
      exec_set(s.target, eval(*s.value), s.offset);
      break;
    }
    case StmtKind::kSetBlock: {
      const auto& s = static_cast<const SetBlockStmt&>(stmt);
      Value text = make_string(capture(s.body));
      if (s.filter) text = eval_filter(static_cast<const FilterExpr&>(*s.filter), &text);
      exec_set(s.target, text, s.offset);
      break;
    }
    case StmtKind::kMacro: define_macro(static_cast<const MacroStmt&>(stmt)); break;
    case StmtKind::kCallBlock: {
      const auto& s = static_cast<const CallBlockStmt&>(stmt);
      closure_frames_.push_back(frame_);
      const Value caller = make_macro(*s.caller, frame_);
      const Value callee = eval(*s.call->callee);
      CallArgs args = eval_args(s.call->args);
      args.keyword.emplace_back("caller", caller);
      emit(py_str(call(callee, args), limits_.max_output_bytes));
      break;
    }
    case StmtKind::kFilterBlock: {
      const auto& s = static_cast<const FilterBlockStmt&>(stmt);
      const Value text = make_string(capture(s.body));
      emit(py_str(eval_filter(static_cast<const FilterExpr&>(*s.filter), &text), limits_.max_output_bytes));
      break;
    }
    case StmtKind::kScope: {
      const auto& s = static_cast<const ScopeStmt&>(stmt);
      auto frame = std::make_shared<Frame>(frame_);
      for (const auto& [target, value] : s.assignments) frame->set(target.names[0], eval(*value));
      std::swap(frame_, frame);
      try {
        exec_body(s.body);
      } catch (...) {
        std::swap(frame_, frame);
        throw;
      }
      std::swap(frame_, frame);
      break;
    }
    case StmtKind::kBreak: return Flow::kBreak;
    case StmtKind::kContinue: return Flow::kContinue;
  }
  return Flow::kNormal;
}

void Interpreter::exec_set(const AssignTarget& target, const Value& value, size_t offset) {
  if (!target.namespace_attr.empty()) {
    const Value ns = lookup(target.names[0]);
    if (!ns.is_namespace()) error_at(offset, "cannot assign attribute on non-namespace object");
    if (target.namespace_attr[0] == '_') {
      error_at(offset, fmt::format("chat templates cannot store underscore-prefixed attributes on a "
                                   "namespace, but got '{}'", target.namespace_attr));
    }
    ns.as_namespace().attributes.set(Value::string(target.namespace_attr), value);
    return;
  }
  if (!target.unpack) {
    frame_->set(target.names[0], value);
    return;
  }
  const std::vector<Value> items = iterate(*this, value);
  if (items.size() != target.names.size()) {
    error_at(offset, items.size() < target.names.size()
                         ? fmt::format("not enough values to unpack (expected {}, got {})",
                                       target.names.size(), items.size())
                         : fmt::format("too many values to unpack (expected {})", target.names.size()));
  }
  for (size_t i = 0; i < items.size(); ++i) frame_->set(target.names[i], items[i]);
}

void Interpreter::exec_for(const ForStmt& stmt) {
  const Value iterable = eval(*stmt.iterable);
  if (iterable.is_none()) error_at(stmt.iterable->offset, "'NoneType' object is not iterable");
  std::vector<Value> items = iterate(*this, iterable);
  const std::shared_ptr<Frame> outer = frame_;
  auto bind = [&](Frame& frame, const Value& item) {
    if (!stmt.target.unpack) {
      frame.set(stmt.target.names[0], item);
      return;
    }
    const std::vector<Value> parts = iterate(*this, item);
    if (parts.size() != stmt.target.names.size()) {
      error_at(stmt.offset, fmt::format("cannot unpack {} values into {} loop variables", parts.size(),
                                        stmt.target.names.size()));
    }
    for (size_t i = 0; i < parts.size(); ++i) frame.set(stmt.target.names[i], parts[i]);
  };
  if (stmt.filter) {
    std::vector<Value> kept;
    for (Value& item : items) {
      auto frame = std::make_shared<Frame>(outer);
      bind(*frame, item);
      frame_ = frame;
      const bool keep = truthy(eval(*stmt.filter));
      frame_ = outer;
      if (keep) kept.push_back(std::move(item));
    }
    items = std::move(kept);
  }
  if (items.empty()) {
    exec_body(stmt.else_body);
    return;
  }
  const int64_t length = static_cast<int64_t>(items.size());
  for (int64_t i = 0; i < length; ++i) {
    if (++loop_iterations_ > limits_.max_loop_iterations) {
      frame_ = outer;
      fail("template loop iteration limit exceeded ({} iterations)", limits_.max_loop_iterations);
    }
    auto frame = std::make_shared<Frame>(outer);
    bind(*frame, items[i]);
    if (stmt.uses_loop_variable) frame->set("loop", make_loop_object(items, i));
    frame_ = frame;
    Flow flow;
    try {
      flow = exec_body(stmt.body);
    } catch (...) {
      frame_ = outer;
      throw;
    }
    frame_ = outer;
    if (flow == Flow::kBreak) break;
  }
}

// jinja2's LoopContext as a dict (recursive loops are not supported, so depth is always 1).
Value Interpreter::make_loop_object(const std::vector<Value>& items, int64_t i) {
  static const Value kIndex = Value::string("index"), kIndex0 = Value::string("index0"),
                     kRevindex = Value::string("revindex"), kRevindex0 = Value::string("revindex0"),
                     kFirst = Value::string("first"), kLast = Value::string("last"),
                     kLength = Value::string("length"), kDepth = Value::string("depth"),
                     kDepth0 = Value::string("depth0"), kPrevitem = Value::string("previtem"),
                     kNextitem = Value::string("nextitem"), kCycle = Value::string("cycle");
  const int64_t length = static_cast<int64_t>(items.size());
  Dict loop;
  loop.insert_new(kIndex, Value::integer(i + 1));
  loop.insert_new(kIndex0, Value::integer(i));
  loop.insert_new(kRevindex, Value::integer(length - i));
  loop.insert_new(kRevindex0, Value::integer(length - i - 1));
  loop.insert_new(kFirst, Value::boolean(i == 0));
  loop.insert_new(kLast, Value::boolean(i == length - 1));
  loop.insert_new(kLength, Value::integer(length));
  loop.insert_new(kDepth, Value::integer(1));
  loop.insert_new(kDepth0, Value::integer(0));
  if (i > 0) loop.insert_new(kPrevitem, items[i - 1]);
  if (i + 1 < length) loop.insert_new(kNextitem, items[i + 1]);
  loop.insert_new(kCycle, Value::function("loop.cycle", [i](Interpreter&, CallArgs& args) {
                    MARLIN_CHECK(!args.positional.empty(), "no items for cycling given");
                    return args.positional[static_cast<size_t>(i) % args.positional.size()];
                  }));
  return Value::dict(std::move(loop));
}

std::string Interpreter::capture(const Body& body) {
  std::string buffer;
  std::string* saved = out_;
  out_ = &buffer;
  try {
    exec_body(body);
  } catch (...) {
    out_ = saved;
    throw;
  }
  out_ = saved;
  return buffer;
}

void Interpreter::define_macro(const MacroStmt& macro) {
  closure_frames_.push_back(frame_);
  frame_->set(macro.name, make_macro(macro, frame_));
}

Value Interpreter::make_macro(const MacroStmt& macro, std::shared_ptr<Frame> closure) {
  const MacroStmt* m = &macro;
  return Value::function(macro.name, [m, closure](Interpreter& in, CallArgs& args) {
    return in.call_macro(*m, closure, args);
  });
}

Value Interpreter::call_macro(const MacroStmt& macro, const std::shared_ptr<Frame>& closure,
                              CallArgs& args) {
  if (++call_depth_ > limits_.max_call_depth) {
    --call_depth_;
    fail("template macro call depth limit exceeded ({} nested calls)", limits_.max_call_depth);
  }
  auto frame = std::make_shared<Frame>(closure);
  std::vector<bool> bound(macro.params.size(), false);
  std::vector<Value> extra_positional;
  auto refuse = [&](const std::string& message) {
    --call_depth_;
    fail("{}", message);
  };
  if (args.positional.size() > macro.params.size() && !macro.uses_varargs) {
    refuse(fmt::format("macro '{}' takes not more than {} argument(s)", macro.name, macro.params.size()));
  }
  for (size_t i = 0; i < args.positional.size(); ++i) {
    if (i < macro.params.size()) {
      frame->set(macro.params[i], args.positional[i]);
      bound[i] = true;
    } else {
      extra_positional.push_back(args.positional[i]);
    }
  }
  Dict extra_keyword;
  bool has_caller = false;
  for (auto& [name, value] : args.keyword) {
    const auto it = std::find(macro.params.begin(), macro.params.end(), name);
    if (it != macro.params.end()) {
      const size_t i = static_cast<size_t>(it - macro.params.begin());
      if (bound[i]) refuse(fmt::format("macro '{}' got multiple values for argument '{}'", macro.name, name));
      frame->set(name, value);
      bound[i] = true;
    } else if (name == "caller" && macro.uses_caller) {
      frame->set("caller", value);
      has_caller = true;
    } else if (macro.uses_kwargs) {
      extra_keyword.set(Value::string(name), value);
    } else {
      refuse(fmt::format("macro '{}' takes no keyword argument '{}'", macro.name, name));
    }
  }
  std::shared_ptr<Frame> saved = frame_;
  frame_ = frame;
  std::string body;
  try {
    for (size_t i = 0; i < macro.params.size(); ++i) {
      if (bound[i]) continue;
      const ExprPtr& fallback = macro.defaults[i];
      frame->set(macro.params[i], fallback ? eval(*fallback)
                                           : Value::undefined("parameter '" + macro.params[i] +
                                                              "' was not provided"));
    }
    frame->set("varargs", Value::list(std::move(extra_positional), /*is_tuple=*/true));
    frame->set("kwargs", Value::dict(std::move(extra_keyword)));
    if (!has_caller && !frame->find("caller")) {
      frame->set("caller", Value::undefined("No caller defined"));
    }
    body = capture(macro.body);
  } catch (...) {
    frame_ = saved;
    --call_depth_;
    throw;
  }
  frame_ = saved;
  --call_depth_;
  return make_string(std::move(body));
}

}  // namespace marlin::tmpl
