#include "template/static_checks.h"

#include "core/error.h"
#include "template/builtins.h"
#include "template/lexer.h"

namespace marlin::tmpl {
namespace {

class NameChecker {
 public:
  explicit NameChecker(const std::string& source) : source_(source) {}

  // `soft`: inside an {% if %}, where jinja2 defers unknown names to run time.
  void body(const Body& statements, bool soft) {
    for (const StmtPtr& s : statements) statement(*s, soft);
  }

 private:
  void statement(const Stmt& s, bool soft) {
    switch (s.kind) {
      case StmtKind::kText:
      case StmtKind::kBreak:
      case StmtKind::kContinue: return;
      case StmtKind::kOutput: expr(static_cast<const OutputStmt&>(s).expr.get(), soft); return;
      case StmtKind::kIf: {
        const auto& n = static_cast<const IfStmt&>(s);
        for (const auto& [test, branch] : n.branches) {
          expr(test.get(), true);
          body(branch, true);
        }
        body(n.else_body, true);
        return;
      }
      case StmtKind::kFor: {
        const auto& n = static_cast<const ForStmt&>(s);
        expr(n.iterable.get(), soft);
        expr(n.filter.get(), false);
        body(n.body, false);
        body(n.else_body, false);
        return;
      }
      case StmtKind::kSet: expr(static_cast<const SetStmt&>(s).value.get(), soft); return;
      case StmtKind::kSetBlock: {
        const auto& n = static_cast<const SetBlockStmt&>(s);
        expr(n.filter.get(), soft);
        body(n.body, false);
        return;
      }
      case StmtKind::kMacro: macro(static_cast<const MacroStmt&>(s), soft); return;
      case StmtKind::kCallBlock: {
        const auto& n = static_cast<const CallBlockStmt&>(s);
        expr(n.call.get(), soft);
        macro(*n.caller, soft);
        return;
      }
      case StmtKind::kFilterBlock: {
        const auto& n = static_cast<const FilterBlockStmt&>(s);
        expr(n.filter.get(), soft);
        body(n.body, false);
        return;
      }
      case StmtKind::kScope: {
        const auto& n = static_cast<const ScopeStmt&>(s);
        for (const auto& [target, value] : n.assignments) expr(value.get(), soft);
        body(n.body, false);
        return;
      }
    }
  }

  void macro(const MacroStmt& m, bool soft) {
    for (const ExprPtr& d : m.defaults) expr(d.get(), soft);
    body(m.body, false);
  }

  void args(const Arguments& a, bool soft) {
    for (const ExprPtr& e : a.positional) expr(e.get(), soft);
    for (const auto& [name, e] : a.keyword) expr(e.get(), soft);
  }

  void expr(const Expr* e, bool soft) {
    if (!e) return;
    switch (e->kind) {
      case ExprKind::kLiteral:
      case ExprKind::kName: return;
      case ExprKind::kAttribute: expr(static_cast<const AttributeExpr*>(e)->object.get(), soft); return;
      case ExprKind::kSubscript: {
        const auto* n = static_cast<const SubscriptExpr*>(e);
        expr(n->object.get(), soft);
        expr(n->index.get(), soft);
        return;
      }
      case ExprKind::kSlice: {
        const auto* n = static_cast<const SliceExpr*>(e);
        for (const Expr* part : {n->object.get(), n->start.get(), n->stop.get(), n->step.get()}) expr(part, soft);
        return;
      }
      case ExprKind::kCall: {
        const auto* n = static_cast<const CallExpr*>(e);
        expr(n->callee.get(), soft);
        args(n->args, soft);
        return;
      }
      case ExprKind::kFilter: {
        const auto* n = static_cast<const FilterExpr*>(e);
        if (!soft && !find_filter(n->name)) fail_at(e->offset, "no filter named '" + n->name + "'");
        expr(n->operand.get(), soft);
        args(n->args, soft);
        return;
      }
      case ExprKind::kTest: {
        const auto* n = static_cast<const TestExpr*>(e);
        if (!soft && !find_test(n->name)) fail_at(e->offset, "no test named '" + n->name + "'");
        expr(n->operand.get(), soft);
        args(n->args, soft);
        return;
      }
      case ExprKind::kUnary: expr(static_cast<const UnaryExpr*>(e)->operand.get(), soft); return;
      case ExprKind::kBinary: {
        const auto* n = static_cast<const BinaryExpr*>(e);
        expr(n->left.get(), soft);
        expr(n->right.get(), soft);
        return;
      }
      case ExprKind::kCompare: {
        const auto* n = static_cast<const CompareExpr*>(e);
        expr(n->first.get(), soft);
        for (const auto& [op, operand] : n->rest) expr(operand.get(), soft);
        return;
      }
      case ExprKind::kConditional: {
        const auto* n = static_cast<const ConditionalExpr*>(e);
        // jinja2 compiles "a if b else c" in a soft frame as well.
        for (const Expr* part : {n->condition.get(), n->then_value.get(), n->else_value.get()}) expr(part, true);
        return;
      }
      case ExprKind::kList:
        for (const ExprPtr& item : static_cast<const ListExpr*>(e)->items) expr(item.get(), soft);
        return;
      case ExprKind::kDict:
        for (const auto& [key, value] : static_cast<const DictExpr*>(e)->items) {
          expr(key.get(), soft);
          expr(value.get(), soft);
        }
        return;
    }
  }

  [[noreturn]] void fail_at(size_t offset, const std::string& message) const {
    fail("template syntax error at {}: {}", describe_position(source_, offset), message);
  }

  const std::string& source_;
};

}  // namespace

void check_filter_and_test_names(const ParsedTemplate& tpl) { NameChecker(tpl.source).body(tpl.body, false); }

}  // namespace marlin::tmpl
