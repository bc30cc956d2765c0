#include "template/lexer.h"

#include <algorithm>
#include <array>

#include "core/error.h"
#include "template/text.h"

namespace marlin::tmpl {
namespace {

bool is_digit(char c) { return c >= '0' && c <= '9'; }
bool is_name_start(char c) { return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_'; }
bool is_name_char(char c) { return is_name_start(c) || is_digit(c); }

int hex_value(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

// Length of the run of Python whitespace starting at `pos` (regex \s*).
size_t whitespace_run(std::string_view s, size_t pos) {
  size_t end = pos;
  while (end < s.size()) {
    const auto c = static_cast<unsigned char>(s[end]);
    if (c < 0x80) {
      if (!is_python_space(c)) break;
      ++end;
      continue;
    }
    // Decode one multi-byte character to test it.
    size_t len = (c & 0xE0) == 0xC0 ? 2 : (c & 0xF0) == 0xE0 ? 3 : (c & 0xF8) == 0xF0 ? 4 : 1;
    len = std::min(len, s.size() - end);
    const std::u32string cp = utf8_decode(s.substr(end, len));
    if (cp.size() != 1 || !is_python_space(cp[0])) break;
    end += len;
  }
  return end - pos;
}

// The code point starting at s[pos] and its length in bytes (invalid UTF-8 gives length 1 and a
// code point that is no identifier character).
std::pair<char32_t, size_t> code_point_at(std::string_view s, size_t pos) {
  const auto b = static_cast<unsigned char>(s[pos]);
  if (b < 0x80) return {b, 1};
  size_t len = (b & 0xE0) == 0xC0 ? 2 : (b & 0xF0) == 0xE0 ? 3 : (b & 0xF8) == 0xF0 ? 4 : 1;
  len = std::min(len, s.size() - pos);
  const std::u32string cp = utf8_decode(s.substr(pos, len));
  if (cp.size() != 1) return {0xDC00, 1};
  return {cp[0], len};
}

// Length of the name (Python identifier, as jinja2 allows) starting at s[pos], or 0.
size_t name_length(std::string_view s, size_t pos) {
  auto [first, len] = code_point_at(s, pos);
  if (!is_identifier_start(first)) return 0;
  size_t end = pos + len;
  while (end < s.size()) {
    auto [c, n] = code_point_at(s, end);
    if (!is_identifier_continue(c)) break;
    end += n;
  }
  return end - pos;
}

// Python's str.rstrip() on UTF-8 text.
std::string_view rstrip_view(std::string_view s) {
  size_t end = s.size();
  while (end > 0 && static_cast<unsigned char>(s[end - 1]) < 0x80 && is_python_space(s[end - 1])) --end;
  if (end == 0 || static_cast<unsigned char>(s[end - 1]) < 0x80) return s.substr(0, end);
  // A non-ASCII character ends the text: it may be Unicode whitespace.
  const std::u32string cps = utf8_decode(s);
  size_t keep = cps.size();
  while (keep > 0 && is_python_space(cps[keep - 1])) --keep;
  size_t bytes = 0;
  std::string encoded;
  for (size_t i = 0; i < keep; ++i) {
    encoded.clear();
    utf8_append(encoded, cps[i]);
    bytes += encoded.size();
  }
  return s.substr(0, bytes);
}

bool all_python_space(std::string_view s) {
  for (char32_t c : utf8_decode(s)) {
    if (!is_python_space(c)) return false;
  }
  return true;
}

std::string normalize_newlines(std::string_view source) {
  std::string out;
  out.reserve(source.size());
  for (size_t i = 0; i < source.size(); ++i) {
    if (source[i] == '\r') {
      out.push_back('\n');
      if (i + 1 < source.size() && source[i + 1] == '\n') ++i;
    } else {
      out.push_back(source[i]);
    }
  }
  if (!out.empty() && out.back() == '\n') out.pop_back();  // keep_trailing_newline=False
  return out;
}

class Lexer {
 public:
  explicit Lexer(std::string source) { result_.source = std::move(source); }

  LexedTemplate run() {
    const std::string_view src = result_.source;
    while (pos_ < src.size()) lex_root();
    result_.tokens.push_back({TokenKind::kEnd, "", src.size()});
    return std::move(result_);
  }

 private:
  [[noreturn]] void error(size_t offset, std::string_view message) {
    fail("template syntax error at {}: {}", describe_position(result_.source, offset), message);
  }

  void push(TokenKind kind, std::string text, size_t offset) {
    result_.tokens.push_back({kind, std::move(text), offset});
  }

  // Finds the next "{{", "{%" or "{#" at or after pos_.
  size_t find_tag(size_t from) const {
    const std::string_view src = result_.source;
    for (size_t at = src.find('{', from); at != std::string_view::npos; at = src.find('{', at + 1)) {
      if (at + 1 < src.size() && (src[at + 1] == '{' || src[at + 1] == '%' || src[at + 1] == '#')) {
        return at;
      }
    }
    return std::string_view::npos;
  }

  // Emits the text before a tag after applying "-" stripping or lstrip_blocks.
  void emit_text_before_tag(std::string_view text, size_t text_offset, char sign, bool is_variable) {
    if (sign == '-') {
      text = rstrip_view(text);
    } else if (sign != '+' && !is_variable) {
      const size_t nl = text.rfind('\n');
      const size_t line_start = nl == std::string_view::npos ? 0 : nl + 1;
      if ((line_start > 0 || line_starting_) && line_start < text.size() &&
          all_python_space(text.substr(line_start))) {
        text = text.substr(0, line_start);
      }
    }
    if (!text.empty()) push(TokenKind::kData, std::string(text), text_offset);
  }

  void lex_root() {
    const std::string_view src = result_.source;
    const size_t tag = find_tag(pos_);
    if (tag == std::string_view::npos) {
      push(TokenKind::kData, std::string(src.substr(pos_)), pos_);
      pos_ = src.size();
      return;
    }
    const char type = src[tag + 1];
    size_t after = tag + 2;
    char sign = 0;
    if (after < src.size() && (src[after] == '-' || src[after] == '+')) sign = src[after++];
    const std::string_view text = src.substr(pos_, tag - pos_);
    if (type == '%' && lex_raw(text, tag, after, sign)) return;
    emit_text_before_tag(text, pos_, sign, type == '{');
    line_starting_ = false;
    pos_ = after;
    if (type == '#') {
      lex_comment(tag);
    } else if (type == '%') {
      push(TokenKind::kBlockBegin, "{%", tag);
      lex_tag(tag, /*is_block=*/true);
    } else {
      push(TokenKind::kVariableBegin, "{{", tag);
      lex_tag(tag, /*is_block=*/false);
    }
  }

  // "{% raw %}...{% endraw %}": the body is literal text.
  bool lex_raw(std::string_view text, size_t tag, size_t after, char sign) {
    const std::string_view src = result_.source;
    size_t p = after + whitespace_run(src, after);
    if (src.compare(p, 3, "raw") != 0 || (p + 3 < src.size() && is_name_char(src[p + 3]))) {
      return false;
    }
    p += 3;
    p += whitespace_run(src, p);
    if (src.compare(p, 3, "-%}") == 0) {
      p += 3;
      p += whitespace_run(src, p);
    } else if (src.compare(p, 2, "%}") == 0) {
      p += 2;
    } else {
      return false;
    }
    emit_text_before_tag(text, pos_, sign, false);
    // Find "{%[-+]? endraw [-+]?%}".
    for (size_t at = find_tag(p); at != std::string_view::npos; at = find_tag(at + 1)) {
      if (src[at + 1] != '%') continue;
      size_t q = at + 2;
      char end_sign = 0;
      if (q < src.size() && (src[q] == '-' || src[q] == '+')) end_sign = src[q++];
      q += whitespace_run(src, q);
      if (src.compare(q, 6, "endraw") != 0) continue;
      q += 6;
      q += whitespace_run(src, q);
      size_t close = q;
      if (src.compare(q, 3, "+%}") == 0) {
        close = q + 3;
      } else if (src.compare(q, 3, "-%}") == 0) {
        close = q + 3;
        close += whitespace_run(src, close);
      } else if (src.compare(q, 2, "%}") == 0) {
        close = q + 2;
        if (close < src.size() && src[close] == '\n') ++close;  // trim_blocks
      } else {
        continue;
      }
      line_starting_ = src[p - 1] == '\n';
      emit_text_before_tag(src.substr(p, at - p), p, end_sign, false);
      line_starting_ = close > 0 && src[close - 1] == '\n';
      pos_ = close;
      return true;
    }
    error(tag, "missing end of raw directive");
  }

  void lex_comment(size_t tag) {
    const std::string_view src = result_.source;
    if (pos_ == src.size()) return;  // jinja2 quietly drops a "{#" that ends the template
    for (size_t at = src.find('#', pos_); at != std::string_view::npos; at = src.find('#', at + 1)) {
      if (at + 1 >= src.size() || src[at + 1] != '}') continue;
      size_t close = at + 2;
      const char before = at > pos_ ? src[at - 1] : 0;
      if (before == '-') {
        close += whitespace_run(src, close);
      } else if (before != '+' && close < src.size() && src[close] == '\n') {
        ++close;  // trim_blocks
      }
      line_starting_ = src[close - 1] == '\n';
      pos_ = close;
      return;
    }
    error(tag, "missing end of comment tag");
  }

  // Tokens inside {% ... %} or {{ ... }} up to and including the closing delimiter.
  void lex_tag(size_t tag, bool is_block) {
    const std::string_view src = result_.source;
    std::vector<char> brackets;  // closers expected, as jinja2 balances braces before tag ends
    while (true) {
      if (pos_ >= src.size()) error(tag, is_block ? "unexpected end of template, expected '%}'"
                                                  : "unexpected end of template, expected '}}'");
      if (brackets.empty() && lex_tag_end(is_block)) return;
      const size_t ws = whitespace_run(src, pos_);
      if (ws) {
        pos_ += ws;
        continue;
      }
      const char c = src[pos_];
      if (is_digit(c)) {
        lex_number();
      } else if (const size_t len = name_length(src, pos_)) {
        push(TokenKind::kName, std::string(src.substr(pos_, len)), pos_);
        pos_ += len;
      } else if (c == '\'' || c == '"') {
        lex_string();
      } else {
        lex_operator(brackets);
      }
    }
  }

  bool lex_tag_end(bool is_block) {
    const std::string_view src = result_.source;
    const size_t start = pos_;
    if (is_block) {
      if (src.compare(pos_, 3, "+%}") == 0) {
        pos_ += 3;
      } else if (src.compare(pos_, 3, "-%}") == 0) {
        pos_ += 3;
        pos_ += whitespace_run(src, pos_);
      } else if (src.compare(pos_, 2, "%}") == 0) {
        pos_ += 2;
        if (pos_ < src.size() && src[pos_] == '\n') ++pos_;  // trim_blocks
      } else {
        return false;
      }
      push(TokenKind::kBlockEnd, "%}", start);
    } else {
      if (src.compare(pos_, 3, "-}}") == 0) {
        pos_ += 3;
        pos_ += whitespace_run(src, pos_);
      } else if (src.compare(pos_, 2, "}}") == 0) {
        pos_ += 2;
      } else {
        return false;
      }
      push(TokenKind::kVariableEnd, "}}", start);
    }
    line_starting_ = src[pos_ - 1] == '\n';
    return true;
  }

  // Digits with optional "_" separators, as jinja2's integer and float patterns allow.
  size_t digit_run(size_t p) const {
    const std::string_view src = result_.source;
    if (p >= src.size() || !is_digit(src[p])) return 0;
    size_t end = p + 1;
    while (end < src.size()) {
      if (is_digit(src[end])) {
        ++end;
      } else if (src[end] == '_' && end + 1 < src.size() && is_digit(src[end + 1])) {
        end += 2;
      } else {
        break;
      }
    }
    return end - p;
  }

  void lex_number() {
    const std::string_view src = result_.source;
    const size_t start = pos_;
    // Radix-prefixed integers.
    if (src[pos_] == '0' && pos_ + 1 < src.size()) {
      const char r = static_cast<char>(src[pos_ + 1] | 0x20);
      const int base = r == 'x' ? 16 : r == 'o' ? 8 : r == 'b' ? 2 : 0;
      if (base) {
        size_t p = pos_ + 2;
        uint64_t value = 0;
        bool any = false;
        while (p < src.size()) {
          if (src[p] == '_') {
            ++p;
            continue;
          }
          const int d = hex_value(src[p]);
          if (d < 0 || d >= base) break;
          if (value > (UINT64_MAX - d) / base || value * base + d > INT64_MAX) {
            error(start, "integer literal too large");
          }
          value = value * base + d;
          any = true;
          ++p;
        }
        if (any) {
          push(TokenKind::kInteger, std::to_string(value), start);
          pos_ = p;
          return;
        }
      }
    }
    size_t p = pos_ + digit_run(pos_);
    bool is_float = false;
    if (p + 1 < src.size() && src[p] == '.' && is_digit(src[p + 1])) {
      p += 1 + digit_run(p + 1);
      is_float = true;
    }
    if (p < src.size() && (src[p] == 'e' || src[p] == 'E')) {
      size_t q = p + 1;
      if (q < src.size() && (src[q] == '+' || src[q] == '-')) ++q;
      const size_t exp_digits = digit_run(q);
      if (exp_digits) {
        p = q + exp_digits;
        is_float = true;
      }
    }
    if (!is_float && src[pos_] == '0') {
      // A decimal integer starting with 0 is zeros only ("01" lexes as 0 then 1, as in jinja2).
      p = pos_ + 1;
      while (p < src.size()) {
        if (src[p] == '0') {
          ++p;
        } else if (src[p] == '_' && p + 1 < src.size() && src[p + 1] == '0') {
          p += 2;
        } else {
          break;
        }
      }
    }
    std::string text(src.substr(pos_, p - pos_));
    text.erase(std::remove(text.begin(), text.end(), '_'), text.end());
    push(is_float ? TokenKind::kFloat : TokenKind::kInteger, std::move(text), start);
    pos_ = p;
  }

  void lex_string() {
    const std::string_view src = result_.source;
    const char quote = src[pos_];
    const size_t start = pos_;
    std::string value;
    size_t p = pos_ + 1;
    while (true) {
      if (p >= src.size()) error(start, "unterminated string literal");
      const char c = src[p];
      if (c == quote) break;
      if (c != '\\') {
        value.push_back(c);
        ++p;
        continue;
      }
      if (p + 1 >= src.size()) error(start, "unterminated string literal");
      p = unescape(src, p, value, start);
    }
    push(TokenKind::kString, std::move(value), start);
    pos_ = p + 1;
  }

  // Python "unicode-escape" decoding of one escape sequence at src[p] == '\\'; returns the
  // position after it.
  size_t unescape(std::string_view src, size_t p, std::string& out, size_t start) {
    const char e = src[p + 1];
    size_t next = p + 2;
    switch (e) {
      case '\n': return next;
      case '\\': out.push_back('\\'); return next;
      case '\'': out.push_back('\''); return next;
      case '"': out.push_back('"'); return next;
      case 'a': out.push_back('\a'); return next;
      case 'b': out.push_back('\b'); return next;
      case 'f': out.push_back('\f'); return next;
      case 'n': out.push_back('\n'); return next;
      case 'r': out.push_back('\r'); return next;
      case 't': out.push_back('\t'); return next;
      case 'v': out.push_back('\v'); return next;
      default: break;
    }
    if (e >= '0' && e <= '7') {
      char32_t value = 0;
      size_t q = p + 1;
      for (int i = 0; i < 3 && q < src.size() && src[q] >= '0' && src[q] <= '7'; ++i, ++q) {
        value = value * 8 + (src[q] - '0');
      }
      utf8_append(out, value);
      return q;
    }
    if (static_cast<unsigned char>(e) >= 0x80) {
      // jinja2 escapes non-ASCII text before decoding, so "\é" comes out as the text "\xe9".
      const auto [cp, len] = code_point_at(src, p + 1);
      out += cp <= 0xFF ? fmt::format("\\x{:02x}", static_cast<uint32_t>(cp))
             : cp <= 0xFFFF ? fmt::format("\\u{:04x}", static_cast<uint32_t>(cp))
                            : fmt::format("\\U{:08x}", static_cast<uint32_t>(cp));
      return p + 1 + len;
    }
    const int width = e == 'x' ? 2 : e == 'u' ? 4 : e == 'U' ? 8 : 0;
    if (width == 0) {
      if (e == 'N') error(start, "named unicode escapes (\\N{...}) are not supported");
      out.push_back('\\');  // unknown escapes keep the backslash
      return p + 1;
    }
    char32_t value = 0;
    for (int i = 0; i < width; ++i) {
      const int d = next + i < src.size() ? hex_value(src[next + i]) : -1;
      if (d < 0) error(start, "truncated \\" + std::string(1, e) + " escape in string literal");
      value = value * 16 + d;
    }
    if (value > 0x10FFFF) error(start, "illegal Unicode character in string literal");
    utf8_append(out, value);
    return next + width;
  }

  void lex_operator(std::vector<char>& brackets) {
    const std::string_view src = result_.source;
    static constexpr std::array<std::string_view, 6> kTwoChar = {"//", "**", "==", "!=", ">=", "<="};
    for (std::string_view op : kTwoChar) {
      if (src.compare(pos_, 2, op) == 0) {
        push(TokenKind::kOperator, std::string(op), pos_);
        pos_ += 2;
        return;
      }
    }
    const char c = src[pos_];
    static constexpr std::string_view kOneChar = "+-/*%~[](){}<>=.:|,;";
    if (kOneChar.find(c) == std::string_view::npos) {
      error(pos_, fmt::format("unexpected char '{}'", src.substr(pos_, code_point_at(src, pos_).second)));
    }
    if (c == '(' || c == '[' || c == '{') {
      brackets.push_back(c == '(' ? ')' : c == '[' ? ']' : '}');
    } else if (c == ')' || c == ']' || c == '}') {
      if (brackets.empty()) error(pos_, fmt::format("unexpected '{}'", std::string(1, c)));
      if (brackets.back() != c) {
        error(pos_, fmt::format("unexpected '{}', expected '{}'", std::string(1, c),
                                std::string(1, brackets.back())));
      }
      brackets.pop_back();
    }
    push(TokenKind::kOperator, std::string(1, c), pos_);
    ++pos_;
  }

  LexedTemplate result_;
  size_t pos_ = 0;
  bool line_starting_ = true;
};

}  // namespace

LexedTemplate lex_template(std::string_view source) {
  return Lexer(normalize_newlines(source)).run();
}

std::string describe_position(std::string_view source, size_t offset) {
  offset = std::min(offset, source.size());
  size_t line = 1;
  size_t line_start = 0;
  for (size_t i = 0; i < offset; ++i) {
    if (source[i] == '\n') {
      ++line;
      line_start = i + 1;
    }
  }
  return fmt::format("{}:{}", line, offset - line_start + 1);
}

}  // namespace marlin::tmpl
