// Tree-walking evaluator for parsed templates. One Interpreter renders one template once; it holds
// all per-render state (scopes, output, budgets), so concurrent renders of the same parsed
// template each use their own Interpreter.
//
// Sandbox: templates see only the variables passed in and a fixed set of builtins; there is no
// file, import or attribute access beyond plain data. Every budget breach is a marlin::Error that
// names the limit.
#pragma once

#include <ctime>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "core/error.h"
#include "template/ast.h"
#include "template/parser.h"
#include "template/value.h"

namespace marlin::tmpl {

struct RenderLimits {
  // Work units: one per evaluated node, plus one per list element or 16 bytes of text that an
  // operation builds, so no single operation escapes the budget.
  uint64_t max_steps = 10'000'000;
  uint64_t max_loop_iterations = 1'000'000;  // all loops of one render together
  size_t max_output_bytes = 16u << 20;       // also the largest string a template may build
  int max_call_depth = 64;                   // nested macro calls
  // Nested evaluation (expressions within statements within macro calls...). At this default the
  // deepest render needs about 0.5 MB of stack in a Release build (measured; more in debug and
  // sanitizer builds), so render on threads with at least 2 MB of stack.
  int max_eval_depth = 1024;
};

// Raised by the template itself through raise_exception(message).
class TemplateRaisedError : public Error {
 public:
  explicit TemplateRaisedError(const std::string& message)
      : Error("chat template error: " + message), message_(message) {}
  const std::string& template_message() const { return message_; }

 private:
  std::string message_;
};

// Local time for strftime_now(); injectable so renders can be reproduced.
using Clock = std::function<std::tm()>;
std::tm system_local_time();

class Interpreter {
 public:
  Interpreter(const ParsedTemplate& tpl, const RenderLimits& limits, Clock clock);
  ~Interpreter();

  // `context` must be a dict: its entries are the template's variables.
  std::string render(const Value& context);

  // ---- services for builtins ----
  Value call(const Value& callee, CallArgs& args);
  void charge(uint64_t units);
  void charge_bytes(size_t bytes) { charge(bytes / 16); }
  // Fails when a string of `bytes` would exceed the string limit.
  void check_string_size(size_t bytes) const;
  Value make_string(std::string s, bool markup = false);
  size_t max_string_bytes() const { return limits_.max_output_bytes; }
  std::tm now() const { return clock_(); }
  void register_namespace(const Value& ns);
  Value apply_filter(const std::string& name, const Value& input, CallArgs& args);
  bool apply_test(const std::string& name, const Value& input, CallArgs& args);
  Value get_attribute(const Value& object, const std::string& name);
  Value get_item(const Value& object, const Value& key);
  [[noreturn]] void error_at(size_t offset, const std::string& message);

 private:
  struct Frame;
  enum class Flow { kNormal, kBreak, kContinue };
  class DepthGuard {
   public:
    explicit DepthGuard(Interpreter& in) : in_(in) {
      if (++in_.eval_depth_ > in_.limits_.max_eval_depth) {
        --in_.eval_depth_;
        fail("template evaluation depth limit exceeded ({} levels)", in_.limits_.max_eval_depth);
      }
    }
    ~DepthGuard() { --in_.eval_depth_; }

   private:
    Interpreter& in_;
  };

  Flow exec_body(const Body& body);
  Flow exec(const Stmt& stmt);
  void exec_for(const ForStmt& stmt);
  static Value make_loop_object(const std::vector<Value>& items, int64_t index);
  void exec_set(const AssignTarget& target, const Value& value, size_t offset);
  std::string capture(const Body& body);
  void define_macro(const MacroStmt& macro);
  Value make_macro(const MacroStmt& macro, std::shared_ptr<Frame> closure);
  Value call_macro(const MacroStmt& macro, const std::shared_ptr<Frame>& closure, CallArgs& args);

  Value eval(const Expr& expr);
  Value eval_binary(const BinaryExpr& expr);
  Value eval_compare(const CompareExpr& expr);
  Value eval_call(const CallExpr& expr);
  Value eval_filter(const FilterExpr& expr, const Value* block_input);
  CallArgs eval_args(const Arguments& args);
  Value lookup(const std::string& name) const;
  void emit(const std::string& text);

  const ParsedTemplate& template_;
  RenderLimits limits_;
  Clock clock_;
  uint64_t steps_ = 0;
  uint64_t loop_iterations_ = 0;
  int eval_depth_ = 0;
  int call_depth_ = 0;
  size_t current_offset_ = 0;  // innermost node being evaluated, for error positions
  std::string* out_ = nullptr;
  std::shared_ptr<Frame> frame_;
  Value context_;
  // Frames captured by macros and namespaces created during the render; emptied at the end to
  // break reference cycles.
  std::vector<std::shared_ptr<Frame>> closure_frames_;
  std::vector<Value> namespaces_;
};

}  // namespace marlin::tmpl
