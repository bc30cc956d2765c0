// Tokenizer for Jinja templates, configured as transformers configures jinja2 for chat templates:
// trim_blocks (drop the first newline after a block or comment tag), lstrip_blocks (drop spaces and
// tabs before a block or comment tag that starts a line), "-" / "+" whitespace control on either
// side of a tag, newlines normalized to "\n" and one trailing newline of the source dropped.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace marlin::tmpl {

enum class TokenKind {
  kData,           // literal template text (already whitespace-controlled)
  kVariableBegin,  // {{
  kVariableEnd,    // }}
  kBlockBegin,     // {%
  kBlockEnd,       // %}
  kName,
  kString,  // text holds the unescaped value
  kInteger,
  kFloat,
  kOperator,  // text holds the operator, e.g. "==", "(", "|"
  kEnd,
};

struct Token {
  TokenKind kind;
  std::string text;
  size_t offset;  // byte offset in the normalized source, for line:column in errors
};

struct LexedTemplate {
  std::string source;  // newline-normalized source that offsets refer to
  std::vector<Token> tokens;
};

// Throws marlin::Error "template syntax error at L:C: ..." on malformed input.
LexedTemplate lex_template(std::string_view source);

// "line L, column C" (1-based, columns in bytes) of an offset in `source`.
std::string describe_position(std::string_view source, size_t offset);

}  // namespace marlin::tmpl
