// Recursive-descent parser for the Jinja subset chat templates use, following jinja2's grammar
// and operator precedence. Nesting is bounded so hostile templates cannot exhaust the stack.
#pragma once

#include <string>
#include <string_view>

#include "template/ast.h"

namespace marlin::tmpl {

struct ParseLimits {
  // Brackets, unary operators and nested statements, counted together.
  int max_nesting = 100;
  // Height of any expression tree (long operator chains such as a ~ b ~ c ~ ... count).
  uint32_t max_expression_depth = 256;
};

struct ParsedTemplate {
  std::string source;  // newline-normalized, for error positions
  Body body;
};

// Throws marlin::Error "template syntax error at L:C: ..." on invalid input.
ParsedTemplate parse_template(std::string_view source, const ParseLimits& limits = {});

}  // namespace marlin::tmpl
