// Syntax tree of a parsed template. Nodes are immutable after parsing, so one tree serves any
// number of concurrent renders. Every node keeps its source offset for error messages.
#pragma once

#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "template/value.h"

namespace marlin::tmpl {

// ---- expressions ----

enum class ExprKind {
  kLiteral, kName, kAttribute, kSubscript, kSlice, kCall, kFilter, kTest, kUnary, kBinary,
  kCompare, kConditional, kList, kDict,
};

struct Expr {
  Expr(ExprKind k, size_t off) : kind(k), offset(off) {}
  virtual ~Expr() = default;
  ExprKind kind;
  size_t offset;
  uint32_t depth = 1;  // height of this subtree, bounded by the parser
};
using ExprPtr = std::unique_ptr<Expr>;

struct Arguments {
  std::vector<ExprPtr> positional;
  std::vector<std::pair<std::string, ExprPtr>> keyword;
};

struct LiteralExpr : Expr {
  LiteralExpr(size_t off, Value v) : Expr(ExprKind::kLiteral, off), value(std::move(v)) {}
  Value value;
};

struct NameExpr : Expr {
  NameExpr(size_t off, std::string n) : Expr(ExprKind::kName, off), name(std::move(n)) {}
  std::string name;
};

// a.b (also a.0: jinja2 looks the name up as an attribute first, then as an item)
struct AttributeExpr : Expr {
  AttributeExpr(size_t off) : Expr(ExprKind::kAttribute, off) {}
  ExprPtr object;
  std::string name;
};

// a[b]
struct SubscriptExpr : Expr {
  SubscriptExpr(size_t off) : Expr(ExprKind::kSubscript, off) {}
  ExprPtr object;
  ExprPtr index;
};

// a[start:stop:step], each part optional
struct SliceExpr : Expr {
  SliceExpr(size_t off) : Expr(ExprKind::kSlice, off) {}
  ExprPtr object;
  ExprPtr start, stop, step;
};

struct CallExpr : Expr {
  CallExpr(size_t off) : Expr(ExprKind::kCall, off) {}
  ExprPtr callee;
  Arguments args;
};

// operand | name(args); operand is null inside {% filter %} blocks (the block's text is the input)
struct FilterExpr : Expr {
  FilterExpr(size_t off) : Expr(ExprKind::kFilter, off) {}
  ExprPtr operand;
  std::string name;
  Arguments args;
};

// operand is [not] name(args)
struct TestExpr : Expr {
  TestExpr(size_t off) : Expr(ExprKind::kTest, off) {}
  ExprPtr operand;
  std::string name;
  Arguments args;
  bool negated = false;
};

enum class UnaryOp { kNegate, kPlus, kNot };

struct UnaryExpr : Expr {
  UnaryExpr(size_t off, UnaryOp o) : Expr(ExprKind::kUnary, off), op(o) {}
  UnaryOp op;
  ExprPtr operand;
};

enum class BinaryOp { kAdd, kSub, kMul, kDiv, kFloorDiv, kMod, kPow, kConcat, kAnd, kOr };

struct BinaryExpr : Expr {
  BinaryExpr(size_t off, BinaryOp o) : Expr(ExprKind::kBinary, off), op(o) {}
  BinaryOp op;
  ExprPtr left, right;
};

enum class CompareOp { kEq, kNe, kLt, kLe, kGt, kGe, kIn, kNotIn };

// a < b <= c: chained like Python
struct CompareExpr : Expr {
  CompareExpr(size_t off) : Expr(ExprKind::kCompare, off) {}
  ExprPtr first;
  std::vector<std::pair<CompareOp, ExprPtr>> rest;
};

// then_value if condition else else_value (else_value may be null: undefined)
struct ConditionalExpr : Expr {
  ConditionalExpr(size_t off) : Expr(ExprKind::kConditional, off) {}
  ExprPtr condition, then_value, else_value;
};

struct ListExpr : Expr {
  ListExpr(size_t off, bool tuple) : Expr(ExprKind::kList, off), is_tuple(tuple) {}
  std::vector<ExprPtr> items;
  bool is_tuple;
};

struct DictExpr : Expr {
  DictExpr(size_t off) : Expr(ExprKind::kDict, off) {}
  std::vector<std::pair<ExprPtr, ExprPtr>> items;
};

// ---- statements ----

enum class StmtKind {
  kText, kOutput, kIf, kFor, kSet, kSetBlock, kMacro, kCallBlock, kFilterBlock, kScope, kBreak,
  kContinue,
};

struct Stmt {
  Stmt(StmtKind k, size_t off) : kind(k), offset(off) {}
  virtual ~Stmt() = default;
  StmtKind kind;
  size_t offset;
};
using StmtPtr = std::unique_ptr<Stmt>;
using Body = std::vector<StmtPtr>;

// Left side of {% set %} / {% for %}: one name, a tuple of names to unpack, or ns.attr.
struct AssignTarget {
  std::vector<std::string> names;
  bool unpack = false;         // "a, b" (even with a single name: "a,")
  std::string namespace_attr;  // non-empty for "ns.attr" (names holds "ns")
};

struct TextStmt : Stmt {
  TextStmt(size_t off, std::string t) : Stmt(StmtKind::kText, off), text(std::move(t)) {}
  std::string text;
};

struct OutputStmt : Stmt {
  OutputStmt(size_t off) : Stmt(StmtKind::kOutput, off) {}
  ExprPtr expr;
};

struct IfStmt : Stmt {
  IfStmt(size_t off) : Stmt(StmtKind::kIf, off) {}
  std::vector<std::pair<ExprPtr, Body>> branches;  // if, elif...
  Body else_body;
};

struct ForStmt : Stmt {
  ForStmt(size_t off) : Stmt(StmtKind::kFor, off) {}
  AssignTarget target;
  ExprPtr iterable;
  ExprPtr filter;  // {% for x in xs if cond %}, may be null
  Body body;
  Body else_body;
  // Whether the body mentions `loop` anywhere (conservatively, nested loops included); the loop
  // object is only built when it may be read.
  bool uses_loop_variable = true;
};

struct SetStmt : Stmt {
  SetStmt(size_t off) : Stmt(StmtKind::kSet, off) {}
  AssignTarget target;
  ExprPtr value;
};

// {% set x %}...{% endset %} or {% set x | filter %}...{% endset %}
struct SetBlockStmt : Stmt {
  SetBlockStmt(size_t off) : Stmt(StmtKind::kSetBlock, off) {}
  AssignTarget target;
  ExprPtr filter;  // FilterExpr chain whose innermost operand is null, or null
  Body body;
};

struct MacroStmt : Stmt {
  MacroStmt(size_t off) : Stmt(StmtKind::kMacro, off) {}
  std::string name;
  std::vector<std::string> params;
  std::vector<ExprPtr> defaults;  // parallel to params; null where a parameter has no default
  Body body;
  // Whether the body reads these names; like jinja2, a macro accepts extra positional / keyword
  // arguments or a caller only when it does.
  bool uses_varargs = false;
  bool uses_kwargs = false;
  bool uses_caller = false;
};

// {% call(params) macro(args) %}body{% endcall %}: body becomes `caller` inside the macro.
struct CallBlockStmt : Stmt {
  CallBlockStmt(size_t off) : Stmt(StmtKind::kCallBlock, off) {}
  std::unique_ptr<CallExpr> call;
  std::unique_ptr<MacroStmt> caller;  // the body as a macro named "caller"
};

struct FilterBlockStmt : Stmt {
  FilterBlockStmt(size_t off) : Stmt(StmtKind::kFilterBlock, off) {}
  ExprPtr filter;  // FilterExpr chain whose innermost operand is null
  Body body;
};

// {% with a = 1 %}...{% endwith %} and {% generation %}...{% endgeneration %}: a body in its own
// variable scope.
struct ScopeStmt : Stmt {
  ScopeStmt(size_t off) : Stmt(StmtKind::kScope, off) {}
  std::vector<std::pair<AssignTarget, ExprPtr>> assignments;
  Body body;
};

struct BreakStmt : Stmt {
  BreakStmt(size_t off) : Stmt(StmtKind::kBreak, off) {}
};

struct ContinueStmt : Stmt {
  ContinueStmt(size_t off) : Stmt(StmtKind::kContinue, off) {}
};

}  // namespace marlin::tmpl
