#include "template/parser.h"

#include <algorithm>
#include <charconv>
#include <initializer_list>
#include <unordered_map>

#include "core/error.h"
#include "template/lexer.h"
#include "template/static_checks.h"

namespace marlin::tmpl {
namespace {

uint32_t depth_of(const ExprPtr& e) { return e ? e->depth : 0; }

uint32_t depth_of(const Arguments& args) {
  uint32_t d = 0;
  for (const auto& a : args.positional) d = std::max(d, depth_of(a));
  for (const auto& [name, a] : args.keyword) d = std::max(d, depth_of(a));
  return d;
}

std::string describe_token(const Token& t) {
  switch (t.kind) {
    case TokenKind::kData: return "template text";
    case TokenKind::kVariableBegin: return "'{{'";
    case TokenKind::kVariableEnd: return "'}}'";
    case TokenKind::kBlockBegin: return "'{%'";
    case TokenKind::kBlockEnd: return "'%}'";
    case TokenKind::kString: return "string literal";
    case TokenKind::kEnd: return "end of template";
    default: return "'" + t.text + "'";
  }
}

class Parser {
 public:
  Parser(LexedTemplate lexed, const ParseLimits& limits)
      : source_(std::move(lexed.source)), tokens_(std::move(lexed.tokens)), limits_(limits) {}

  ParsedTemplate run() {
    ParsedTemplate result;
    result.body = parse_body({}, nullptr);
    result.source = std::move(source_);
    return result;
  }

 private:
  // ---- token stream ----

  const Token& peek(size_t ahead = 0) const {
    return tokens_[std::min(pos_ + ahead, tokens_.size() - 1)];
  }
  const Token& next() {
    const Token& t = peek();
    if (pos_ < tokens_.size() - 1) ++pos_;
    return t;
  }
  bool at_name(std::string_view name, size_t ahead = 0) const {
    return peek(ahead).kind == TokenKind::kName && peek(ahead).text == name;
  }
  bool at_op(std::string_view op, size_t ahead = 0) const {
    return peek(ahead).kind == TokenKind::kOperator && peek(ahead).text == op;
  }
  bool skip_name(std::string_view name) {
    if (!at_name(name)) return false;
    next();
    return true;
  }
  bool skip_op(std::string_view op) {
    if (!at_op(op)) return false;
    next();
    return true;
  }

  [[noreturn]] void error(size_t offset, std::string_view message) const {
    fail("template syntax error at {}: {}", describe_position(source_, offset), message);
  }
  [[noreturn]] void unexpected(std::string_view expected) const {
    error(peek().offset, fmt::format("expected {}, got {}", expected, describe_token(peek())));
  }

  void expect_op(std::string_view op) {
    if (!skip_op(op)) unexpected("'" + std::string(op) + "'");
  }
  std::string expect_name() {
    if (peek().kind != TokenKind::kName) unexpected("a name");
    return next().text;
  }
  void expect_block_end() {
    if (peek().kind != TokenKind::kBlockEnd) unexpected("'%}'");
    next();
  }

  class NestingGuard {
   public:
    NestingGuard(Parser& p, size_t offset) : p_(p) {
      if (++p_.nesting_ > p_.limits_.max_nesting) {
        p_.error(offset, fmt::format("template nesting limit exceeded ({} levels)",
                                     p_.limits_.max_nesting));
      }
    }
    ~NestingGuard() { --p_.nesting_; }

   private:
    Parser& p_;
  };

  template <typename T>
  std::unique_ptr<T> with_depth(std::unique_ptr<T> node, uint32_t child_depth) {
    node->depth = child_depth + 1;
    if (node->depth > limits_.max_expression_depth) {
      error(node->offset, fmt::format("template expression depth limit exceeded ({} levels)",
                                      limits_.max_expression_depth));
    }
    return node;
  }

  // ---- statements ----

  // Parses statements until "{% <one of end_names>", consuming "{%" and that name; the name found
  // is stored in *found. With no end names, parses to the end of the template.
  Body parse_body(std::initializer_list<std::string_view> end_names, std::string* found) {
    Body body;
    while (true) {
      const Token& t = peek();
      switch (t.kind) {
        case TokenKind::kData:
          body.push_back(std::make_unique<TextStmt>(t.offset, t.text));
          next();
          break;
        case TokenKind::kVariableBegin: {
          next();
          auto out = std::make_unique<OutputStmt>(t.offset);
          out->expr = parse_tuple(true, false, {});
          if (peek().kind != TokenKind::kVariableEnd) unexpected("'}}'");
          next();
          body.push_back(std::move(out));
          break;
        }
        case TokenKind::kBlockBegin: {
          const Token& name = peek(1);
          if (name.kind == TokenKind::kName &&
              std::find(end_names.begin(), end_names.end(), name.text) != end_names.end()) {
            next();
            *found = next().text;
            return body;
          }
          next();
          body.push_back(parse_statement());
          break;
        }
        case TokenKind::kEnd:
          if (end_names.size() != 0) {
            std::string names;
            for (std::string_view n : end_names) names += (names.empty() ? "'" : ", '") + std::string(n) + "'";
            error(t.offset, "unexpected end of template, expected " + names);
          }
          return body;
        default: unexpected("template text or a tag");
      }
    }
  }

  // The "%}" that opens a block's body (jinja2 allows a ":" before it), then the body.
  Body parse_block_body(std::initializer_list<std::string_view> end_names, std::string* found) {
    skip_op(":");
    expect_block_end();
    return parse_body(end_names, found);
  }

  StmtPtr parse_statement() {
    const Token& t = peek();
    NestingGuard guard(*this, t.offset);
    if (t.kind != TokenKind::kName) unexpected("a tag name");
    const std::string tag = t.text;
    const size_t offset = t.offset;
    next();
    if (tag == "if") return parse_if(offset);
    if (tag == "for") return parse_for(offset);
    if (tag == "set") return parse_set(offset);
    if (tag == "macro") return parse_macro(offset);
    if (tag == "call") return parse_call_block(offset);
    if (tag == "filter") return parse_filter_block(offset);
    if (tag == "with") return parse_with(offset);
    if (tag == "generation") return parse_generation(offset);
    if (tag == "print") {
      auto out = std::make_unique<OutputStmt>(offset);
      out->expr = parse_tuple(true, false, {});
      expect_block_end();
      return out;
    }
    if (tag == "break" || tag == "continue") {
      if (loop_depth_ == 0) error(offset, fmt::format("'{}' outside of a loop", tag));
      expect_block_end();
      if (tag == "break") return std::make_unique<BreakStmt>(offset);
      return std::make_unique<ContinueStmt>(offset);
    }
    static constexpr std::string_view kUnsupported[] = {"extends", "include", "import", "from",
                                                        "block", "autoescape", "do"};
    for (std::string_view u : kUnsupported) {
      if (tag == u) error(offset, fmt::format("the '{}' tag is not supported in chat templates", tag));
    }
    error(offset, fmt::format("unknown tag '{}'", tag));
  }

  StmtPtr parse_if(size_t offset) {
    auto node = std::make_unique<IfStmt>(offset);
    std::string found = "if";
    while (true) {
      ExprPtr test = parse_tuple(false, false, {});
      Body body = parse_block_body({"elif", "else", "endif"}, &found);
      node->branches.emplace_back(std::move(test), std::move(body));
      if (found == "elif") continue;
      if (found == "else") node->else_body = parse_block_body({"endif"}, &found);
      expect_block_end();
      return node;
    }
  }

  StmtPtr parse_for(size_t offset) {
    auto node = std::make_unique<ForStmt>(offset);
    node->target = parse_assign_target(/*with_tuple=*/true, /*with_namespace=*/false);
    if (!skip_name("in")) unexpected("'in'");
    node->iterable = parse_tuple(false, false, {"recursive"});
    if (skip_name("if")) node->filter = parse_expression(true);
    if (skip_name("recursive")) error(offset, "recursive for loops are not supported");
    std::string found;
    ++loop_depth_;
    const size_t loop_refs_before = name_refs_["loop"];
    node->body = parse_block_body({"endfor", "else"}, &found);
    node->uses_loop_variable = name_refs_["loop"] != loop_refs_before;
    --loop_depth_;
    if (found == "else") node->else_body = parse_block_body({"endfor"}, &found);
    expect_block_end();
    return node;
  }

  StmtPtr parse_set(size_t offset) {
    AssignTarget target = parse_assign_target(/*with_tuple=*/true, /*with_namespace=*/true);
    if (skip_op("=")) {
      auto node = std::make_unique<SetStmt>(offset);
      node->target = std::move(target);
      node->value = parse_tuple(true, false, {});
      expect_block_end();
      return node;
    }
    auto node = std::make_unique<SetBlockStmt>(offset);
    node->target = std::move(target);
    if (at_op("|")) node->filter = parse_filters(nullptr);
    std::string found;
    node->body = parse_block_body({"endset"}, &found);
    expect_block_end();
    return node;
  }

  void parse_signature(MacroStmt& macro) {
    expect_op("(");
    while (!at_op(")")) {
      if (!macro.params.empty()) expect_op(",");
      if (at_op(")")) break;
      macro.params.push_back(expect_name());
      if (skip_op("=")) {
        macro.defaults.push_back(parse_expression(true));
      } else {
        if (std::any_of(macro.defaults.begin(), macro.defaults.end(), [](auto& d) { return d != nullptr; })) {
          error(peek().offset, "non-default argument follows default argument");
        }
        macro.defaults.push_back(nullptr);
      }
    }
    expect_op(")");
  }

  // Parses a macro body and records which of the special names it reads.
  void parse_macro_body(MacroStmt& macro, std::string_view end_name) {
    const size_t varargs = name_refs_["varargs"], kwargs = name_refs_["kwargs"], caller = name_refs_["caller"];
    std::string found;
    const int saved_loop_depth = loop_depth_;
    loop_depth_ = 0;
    macro.body = parse_block_body({end_name}, &found);
    loop_depth_ = saved_loop_depth;
    macro.uses_varargs = name_refs_["varargs"] != varargs;
    macro.uses_kwargs = name_refs_["kwargs"] != kwargs;
    macro.uses_caller = name_refs_["caller"] != caller;
  }

  StmtPtr parse_macro(size_t offset) {
    auto node = std::make_unique<MacroStmt>(offset);
    node->name = expect_name();
    parse_signature(*node);
    parse_macro_body(*node, "endmacro");
    expect_block_end();
    return node;
  }

  StmtPtr parse_call_block(size_t offset) {
    auto node = std::make_unique<CallBlockStmt>(offset);
    node->caller = std::make_unique<MacroStmt>(offset);
    node->caller->name = "caller";
    if (at_op("(")) parse_signature(*node->caller);
    ExprPtr call = parse_expression(true);
    if (call->kind != ExprKind::kCall) error(call->offset, "expected a macro call after 'call'");
    node->call.reset(static_cast<CallExpr*>(call.release()));
    parse_macro_body(*node->caller, "endcall");
    expect_block_end();
    return node;
  }

  StmtPtr parse_filter_block(size_t offset) {
    auto node = std::make_unique<FilterBlockStmt>(offset);
    node->filter = parse_filter_chain(nullptr, /*first_without_pipe=*/true);
    std::string found;
    node->body = parse_block_body({"endfilter"}, &found);
    expect_block_end();
    return node;
  }

  StmtPtr parse_with(size_t offset) {
    auto node = std::make_unique<ScopeStmt>(offset);
    while (peek().kind != TokenKind::kBlockEnd && !at_op(":")) {
      if (!node->assignments.empty()) expect_op(",");
      AssignTarget target = parse_assign_target(/*with_tuple=*/false, /*with_namespace=*/false);
      expect_op("=");
      node->assignments.emplace_back(std::move(target), parse_expression(true));
    }
    std::string found;
    node->body = parse_block_body({"endwith"}, &found);
    expect_block_end();
    return node;
  }

  // transformers' AssistantTracker tag: renders its body in a scope of its own.
  StmtPtr parse_generation(size_t offset) {
    auto node = std::make_unique<ScopeStmt>(offset);
    std::string found;
    node->body = parse_block_body({"endgeneration"}, &found);
    expect_block_end();
    return node;
  }

  AssignTarget parse_assign_target(bool with_tuple, bool with_namespace) {
    AssignTarget target;
    if (with_namespace && peek().kind == TokenKind::kName && at_op(".", 1)) {
      target.names.push_back(next().text);
      next();
      target.namespace_attr = expect_name();
      return target;
    }
    if (!with_tuple) {
      target.names.push_back(expect_name());
      return target;
    }
    const bool parens = skip_op("(");
    if (parens) target.unpack = true;
    while (true) {
      target.names.push_back(expect_name());
      if (!skip_op(",")) break;
      target.unpack = true;
      if (peek().kind != TokenKind::kName) break;  // trailing comma
    }
    if (parens) expect_op(")");
    return target;
  }

  // ---- expressions ----

  bool is_tuple_end(std::initializer_list<std::string_view> extra_end_names) const {
    const Token& t = peek();
    if (t.kind == TokenKind::kVariableEnd || t.kind == TokenKind::kBlockEnd || at_op(")")) return true;
    if (t.kind == TokenKind::kEnd) return true;
    for (std::string_view n : extra_end_names) {
      if (at_name(n)) return true;
    }
    return false;
  }

  // Comma-separated expressions: one item without a comma is the item itself, otherwise a tuple.
  ExprPtr parse_tuple(bool with_conditional, bool explicit_parentheses,
                      std::initializer_list<std::string_view> extra_end_names) {
    const size_t offset = peek().offset;
    auto tuple = std::make_unique<ListExpr>(offset, /*tuple=*/true);
    bool is_tuple = false;
    uint32_t child_depth = 0;
    while (true) {
      if (!tuple->items.empty()) expect_op(",");
      if (is_tuple_end(extra_end_names)) break;
      tuple->items.push_back(parse_expression(with_conditional));
      child_depth = std::max(child_depth, tuple->items.back()->depth);
      if (!at_op(",")) break;
      is_tuple = true;
    }
    if (!is_tuple) {
      if (!tuple->items.empty()) return std::move(tuple->items[0]);
      if (!explicit_parentheses) unexpected("an expression");
    }
    return with_depth(std::move(tuple), child_depth);
  }

  ExprPtr parse_expression(bool with_conditional) {
    return with_conditional ? parse_conditional() : parse_or();
  }

  ExprPtr parse_conditional() {
    NestingGuard guard(*this, peek().offset);
    ExprPtr expr = parse_or();
    while (at_name("if")) {
      auto node = std::make_unique<ConditionalExpr>(next().offset);
      node->then_value = std::move(expr);
      node->condition = parse_or();
      if (skip_name("else")) node->else_value = parse_conditional();
      const uint32_t d = std::max({depth_of(node->then_value), depth_of(node->condition),
                                   depth_of(node->else_value)});
      expr = with_depth(std::move(node), d);
    }
    return expr;
  }

  ExprPtr binary(size_t offset, BinaryOp op, ExprPtr left, ExprPtr right) {
    auto node = std::make_unique<BinaryExpr>(offset, op);
    const uint32_t d = std::max(left->depth, right->depth);
    node->left = std::move(left);
    node->right = std::move(right);
    return with_depth(std::move(node), d);
  }

  ExprPtr parse_or() {
    ExprPtr left = parse_and();
    while (at_name("or")) {
      const size_t offset = next().offset;
      left = binary(offset, BinaryOp::kOr, std::move(left), parse_and());
    }
    return left;
  }

  ExprPtr parse_and() {
    ExprPtr left = parse_not();
    while (at_name("and")) {
      const size_t offset = next().offset;
      left = binary(offset, BinaryOp::kAnd, std::move(left), parse_not());
    }
    return left;
  }

  ExprPtr parse_not() {
    if (at_name("not")) {
      NestingGuard guard(*this, peek().offset);
      auto node = std::make_unique<UnaryExpr>(next().offset, UnaryOp::kNot);
      node->operand = parse_not();
      const uint32_t d = node->operand->depth;
      return with_depth(std::move(node), d);
    }
    return parse_compare();
  }

  ExprPtr parse_compare() {
    const size_t offset = peek().offset;
    ExprPtr first = parse_math1();
    auto node = std::make_unique<CompareExpr>(offset);
    uint32_t d = first->depth;
    while (true) {
      CompareOp op;
      const Token& t = peek();
      if (t.kind == TokenKind::kOperator && t.text == "==") {
        op = CompareOp::kEq;
      } else if (t.kind == TokenKind::kOperator && t.text == "!=") {
        op = CompareOp::kNe;
      } else if (t.kind == TokenKind::kOperator && t.text == "<") {
        op = CompareOp::kLt;
      } else if (t.kind == TokenKind::kOperator && t.text == "<=") {
        op = CompareOp::kLe;
      } else if (t.kind == TokenKind::kOperator && t.text == ">") {
        op = CompareOp::kGt;
      } else if (t.kind == TokenKind::kOperator && t.text == ">=") {
        op = CompareOp::kGe;
      } else if (at_name("in")) {
        op = CompareOp::kIn;
      } else if (at_name("not") && at_name("in", 1)) {
        next();
        op = CompareOp::kNotIn;
      } else {
        break;
      }
      next();
      node->rest.emplace_back(op, parse_math1());
      d = std::max(d, node->rest.back().second->depth);
    }
    if (node->rest.empty()) return first;
    node->first = std::move(first);
    return with_depth(std::move(node), d);
  }

  ExprPtr parse_math1() {
    ExprPtr left = parse_concat();
    while (at_op("+") || at_op("-")) {
      const Token& t = next();
      const BinaryOp op = t.text == "+" ? BinaryOp::kAdd : BinaryOp::kSub;
      left = binary(t.offset, op, std::move(left), parse_concat());
    }
    return left;
  }

  ExprPtr parse_concat() {
    ExprPtr left = parse_math2();
    while (at_op("~")) {
      const size_t offset = next().offset;
      left = binary(offset, BinaryOp::kConcat, std::move(left), parse_math2());
    }
    return left;
  }

  ExprPtr parse_math2() {
    ExprPtr left = parse_pow();
    while (at_op("*") || at_op("/") || at_op("//") || at_op("%")) {
      const Token& t = next();
      const BinaryOp op = t.text == "*"    ? BinaryOp::kMul
                          : t.text == "/"  ? BinaryOp::kDiv
                          : t.text == "//" ? BinaryOp::kFloorDiv
                                           : BinaryOp::kMod;
      left = binary(t.offset, op, std::move(left), parse_pow());
    }
    return left;
  }

  ExprPtr parse_pow() {
    ExprPtr left = parse_unary(true);
    while (at_op("**")) {
      const size_t offset = next().offset;
      left = binary(offset, BinaryOp::kPow, std::move(left), parse_unary(true));
    }
    return left;
  }

  ExprPtr parse_unary(bool with_filter) {
    ExprPtr node;
    if (at_op("-") || at_op("+")) {
      NestingGuard guard(*this, peek().offset);
      const Token& t = next();
      auto unary = std::make_unique<UnaryExpr>(t.offset, t.text == "-" ? UnaryOp::kNegate : UnaryOp::kPlus);
      unary->operand = parse_unary(false);
      const uint32_t d = unary->operand->depth;
      node = with_depth(std::move(unary), d);
    } else {
      node = parse_primary();
    }
    node = parse_postfix(std::move(node));
    if (with_filter) node = parse_filter_expr(std::move(node));
    return node;
  }

  ExprPtr parse_primary() {
    const Token& t = peek();
    switch (t.kind) {
      case TokenKind::kName: {
        next();
        if (t.text == "true" || t.text == "True") return std::make_unique<LiteralExpr>(t.offset, Value::boolean(true));
        if (t.text == "false" || t.text == "False") return std::make_unique<LiteralExpr>(t.offset, Value::boolean(false));
        if (t.text == "none" || t.text == "None") return std::make_unique<LiteralExpr>(t.offset, Value::none());
        ++name_refs_[t.text];
        return std::make_unique<NameExpr>(t.offset, t.text);
      }
      case TokenKind::kString: {
        std::string text;
        const size_t offset = t.offset;
        while (peek().kind == TokenKind::kString) text += next().text;
        return std::make_unique<LiteralExpr>(offset, Value::string(std::move(text)));
      }
      case TokenKind::kInteger: {
        next();
        int64_t v = 0;
        const auto r = std::from_chars(t.text.data(), t.text.data() + t.text.size(), v);
        if (r.ec != std::errc() || r.ptr != t.text.data() + t.text.size()) {
          error(t.offset, "integer literal too large");
        }
        return std::make_unique<LiteralExpr>(t.offset, Value::integer(v));
      }
      case TokenKind::kFloat: {
        next();
        double v = 0;
        const auto r = std::from_chars(t.text.data(), t.text.data() + t.text.size(), v);
        if (r.ec == std::errc::result_out_of_range) {
          v = std::strtod(t.text.c_str(), nullptr);  // Python rounds to inf/0 like strtod
        } else if (r.ec != std::errc()) {
          error(t.offset, "invalid float literal");
        }
        return std::make_unique<LiteralExpr>(t.offset, Value::number(v));
      }
      case TokenKind::kOperator:
        if (t.text == "(") {
          next();
          ExprPtr inner = parse_tuple(true, true, {});
          expect_op(")");
          return inner;
        }
        if (t.text == "[") return parse_list();
        if (t.text == "{") return parse_dict();
        break;
      default: break;
    }
    unexpected("an expression");
  }

  ExprPtr parse_list() {
    auto node = std::make_unique<ListExpr>(next().offset, /*tuple=*/false);
    uint32_t d = 0;
    while (!at_op("]")) {
      if (!node->items.empty()) expect_op(",");
      if (at_op("]")) break;
      node->items.push_back(parse_expression(true));
      d = std::max(d, node->items.back()->depth);
    }
    expect_op("]");
    return with_depth(std::move(node), d);
  }

  ExprPtr parse_dict() {
    auto node = std::make_unique<DictExpr>(next().offset);
    uint32_t d = 0;
    while (!at_op("}")) {
      if (!node->items.empty()) expect_op(",");
      if (at_op("}")) break;
      ExprPtr key = parse_expression(true);
      expect_op(":");
      ExprPtr value = parse_expression(true);
      d = std::max({d, key->depth, value->depth});
      node->items.emplace_back(std::move(key), std::move(value));
    }
    expect_op("}");
    return with_depth(std::move(node), d);
  }

  ExprPtr parse_postfix(ExprPtr node) {
    while (true) {
      if (at_op(".") || at_op("[")) {
        node = parse_subscript(std::move(node));
      } else if (at_op("(")) {
        node = parse_call(std::move(node));
      } else {
        return node;
      }
    }
  }

  ExprPtr parse_filter_expr(ExprPtr node) {
    while (true) {
      if (at_op("|")) {
        node = parse_filter_chain(std::move(node), /*first_without_pipe=*/false);
      } else if (at_name("is")) {
        node = parse_test(std::move(node));
      } else if (at_op("(")) {
        node = parse_call(std::move(node));
      } else {
        return node;
      }
    }
  }

  ExprPtr parse_subscript(ExprPtr object) {
    const Token& t = next();
    if (t.text == ".") {
      const Token& attr = next();
      if (attr.kind == TokenKind::kName) {
        auto node = std::make_unique<AttributeExpr>(t.offset);
        node->name = attr.text;
        const uint32_t d = object->depth;
        node->object = std::move(object);
        return with_depth(std::move(node), d);
      }
      if (attr.kind != TokenKind::kInteger) error(attr.offset, "expected a name or an integer after '.'");
      auto node = std::make_unique<SubscriptExpr>(t.offset);
      int64_t index = 0;
      std::from_chars(attr.text.data(), attr.text.data() + attr.text.size(), index);
      node->index = std::make_unique<LiteralExpr>(attr.offset, Value::integer(index));
      const uint32_t d = object->depth;
      node->object = std::move(object);
      return with_depth(std::move(node), d);
    }
    // "[": an index, a tuple of indices ("a[]" and "a[1, 2]", as jinja2 allows) or a slice.
    ExprPtr start;
    if (at_op("]")) {
      auto empty = std::make_unique<ListExpr>(peek().offset, /*tuple=*/true);
      next();
      auto node = std::make_unique<SubscriptExpr>(t.offset);
      const uint32_t d = object->depth;
      node->object = std::move(object);
      node->index = std::move(empty);
      return with_depth(std::move(node), d);
    }
    if (!at_op(":")) {
      start = parse_expression(true);
      if (at_op(",")) {
        auto tuple = std::make_unique<ListExpr>(start->offset, /*tuple=*/true);
        uint32_t d = start->depth;
        tuple->items.push_back(std::move(start));
        while (skip_op(",")) {  // no trailing comma, as in jinja2
          tuple->items.push_back(parse_expression(true));
          d = std::max(d, tuple->items.back()->depth);
        }
        start = with_depth(std::move(tuple), d);
        if (!at_op("]")) unexpected("']'");
      }
      if (skip_op("]")) {
        auto node = std::make_unique<SubscriptExpr>(t.offset);
        const uint32_t d = std::max(object->depth, start->depth);
        node->object = std::move(object);
        node->index = std::move(start);
        return with_depth(std::move(node), d);
      }
    }
    auto node = std::make_unique<SliceExpr>(t.offset);
    node->start = std::move(start);
    expect_op(":");
    if (!at_op("]") && !at_op(":")) node->stop = parse_expression(true);
    if (skip_op(":")) {
      if (!at_op("]")) node->step = parse_expression(true);
    }
    expect_op("]");
    const uint32_t d = std::max({object->depth, depth_of(node->start), depth_of(node->stop),
                                 depth_of(node->step)});
    node->object = std::move(object);
    return with_depth(std::move(node), d);
  }

  Arguments parse_call_args() {
    Arguments args;
    const size_t offset = peek().offset;
    expect_op("(");
    bool first = true;
    while (!at_op(")")) {
      if (!first) {
        expect_op(",");
        if (at_op(")")) break;
      }
      first = false;
      if (at_op("*") || at_op("**")) error(peek().offset, "*args and **kwargs in calls are not supported");
      if (peek().kind == TokenKind::kName && at_op("=", 1)) {
        std::string key = next().text;
        next();
        args.keyword.emplace_back(std::move(key), parse_expression(true));
      } else {
        if (!args.keyword.empty()) error(offset, "invalid syntax for function call expression");
        args.positional.push_back(parse_expression(true));
      }
    }
    expect_op(")");
    return args;
  }

  ExprPtr parse_call(ExprPtr callee) {
    auto node = std::make_unique<CallExpr>(peek().offset);
    node->args = parse_call_args();
    const uint32_t d = std::max(callee->depth, depth_of(node->args));
    node->callee = std::move(callee);
    return with_depth(std::move(node), d);
  }

  // "| name(args) | name ..." applied to operand (null for filter blocks).
  ExprPtr parse_filter_chain(ExprPtr operand, bool first_without_pipe) {
    bool first = true;
    while ((first && first_without_pipe) || at_op("|")) {
      if (!(first && first_without_pipe)) next();
      first = false;
      auto node = std::make_unique<FilterExpr>(peek().offset);
      node->name = expect_name();
      while (skip_op(".")) node->name.append(".").append(expect_name());
      if (at_op("(")) node->args = parse_call_args();
      const uint32_t d = std::max(depth_of(operand), depth_of(node->args));
      node->operand = std::move(operand);
      operand = with_depth(std::move(node), d);
    }
    return operand;
  }

  ExprPtr parse_filters(ExprPtr operand) { return parse_filter_chain(std::move(operand), false); }

  ExprPtr parse_test(ExprPtr operand) {
    auto node = std::make_unique<TestExpr>(next().offset);
    node->negated = skip_name("not");
    node->name = expect_name();
    while (skip_op(".")) node->name.append(".").append(expect_name());
    const Token& t = peek();
    const bool starts_argument =
        t.kind == TokenKind::kName || t.kind == TokenKind::kString || t.kind == TokenKind::kInteger ||
        t.kind == TokenKind::kFloat || at_op("(") || at_op("[") || at_op("{");
    if (at_op("(")) {
      node->args = parse_call_args();
    } else if (starts_argument && !at_name("else") && !at_name("or") && !at_name("and")) {
      if (at_name("is")) error(t.offset, "you cannot chain multiple tests with is");
      node->args.positional.push_back(parse_postfix(parse_primary()));
    }
    const uint32_t d = std::max(operand->depth, depth_of(node->args));
    node->operand = std::move(operand);
    return with_depth(std::move(node), d);
  }

  std::string source_;
  std::vector<Token> tokens_;
  ParseLimits limits_;
  size_t pos_ = 0;
  int nesting_ = 0;
  int loop_depth_ = 0;
  std::unordered_map<std::string, size_t> name_refs_;  // NameExpr parsed so far, by name
};

}  // namespace

ParsedTemplate parse_template(std::string_view source, const ParseLimits& limits) {
  ParsedTemplate tpl = Parser(lex_template(source), limits).run();
  check_filter_and_test_names(tpl);
  return tpl;
}

}  // namespace marlin::tmpl
