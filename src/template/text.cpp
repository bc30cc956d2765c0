#include "template/text.h"

#include <algorithm>

#include "core/error.h"
#include "template/unicode_case_table.h"

namespace marlin::tmpl {
namespace {

constexpr char32_t kEscapeBase = 0xDC00;  // lone surrogate U+DC80..U+DCFF stands for a raw byte

const CaseMapping* find_mapping(const CaseMapping* table, size_t count, char32_t c) {
  const CaseMapping* end = table + count;
  const CaseMapping* it =
      std::lower_bound(table, end, c, [](const CaseMapping& m, char32_t v) { return m.from < v; });
  return (it != end && it->from == c) ? it : nullptr;
}

// Appends the mapping of c (or c itself) as UTF-8.
void append_mapped(std::string& out, const CaseMapping* table, size_t count, char32_t c) {
  const CaseMapping* m = find_mapping(table, count, c);
  if (!m) {
    utf8_append(out, c);
    return;
  }
  for (char32_t t : m->to) {
    if (t) utf8_append(out, t);
  }
}

void append_upper(std::string& out, char32_t c) {
  append_mapped(out, kUpperMappings, kUpperMappingCount, c);
}
void append_lower(std::string& out, char32_t c) {
  append_mapped(out, kLowerMappings, kLowerMappingCount, c);
}
void append_title(std::string& out, char32_t c) {
  if (find_mapping(kTitleMappings, kTitleMappingCount, c)) {
    append_mapped(out, kTitleMappings, kTitleMappingCount, c);
  } else {
    append_upper(out, c);
  }
}

bool in_ranges(const CodePointRange* ranges, size_t count, char32_t c) {
  const CodePointRange* it = std::upper_bound(
      ranges, ranges + count, c, [](char32_t v, const CodePointRange& r) { return v < r.first; });
  return it != ranges && c <= (it - 1)->last;
}

bool is_cased(char32_t c) { return in_ranges(kCasedRanges, kCasedRangeCount, c); }

bool maps_to_itself(const CaseMapping* table, size_t count, char32_t c) {
  return find_mapping(table, count, c) == nullptr;
}

bool in_chars(char32_t c, const std::u32string& chars) {
  return chars.find(c) != std::u32string::npos;
}

}  // namespace

std::u32string utf8_decode(std::string_view text) {
  std::u32string out;
  out.reserve(text.size());
  size_t i = 0;
  const size_t n = text.size();
  while (i < n) {
    const auto b0 = static_cast<unsigned char>(text[i]);
    size_t len = 0;
    char32_t cp = 0;
    char32_t min = 0;
    if (b0 < 0x80) {
      out.push_back(b0);
      ++i;
      continue;
    } else if ((b0 & 0xE0) == 0xC0) {
      len = 2, cp = b0 & 0x1F, min = 0x80;
    } else if ((b0 & 0xF0) == 0xE0) {
      len = 3, cp = b0 & 0x0F, min = 0x800;
    } else if ((b0 & 0xF8) == 0xF0) {
      len = 4, cp = b0 & 0x07, min = 0x10000;
    }
    bool valid = len != 0 && i + len <= n;
    for (size_t k = 1; valid && k < len; ++k) {
      const auto b = static_cast<unsigned char>(text[i + k]);
      if ((b & 0xC0) != 0x80) valid = false;
      cp = (cp << 6) | (b & 0x3F);
    }
    valid = valid && cp >= min && cp <= 0x10FFFF && !(cp >= 0xD800 && cp < 0xE000);
    if (!valid) {
      out.push_back(kEscapeBase + b0);
      ++i;
      continue;
    }
    out.push_back(cp);
    i += len;
  }
  return out;
}

void utf8_append(std::string& out, char32_t c) {
  if (c >= kEscapeBase + 0x80 && c <= kEscapeBase + 0xFF) {
    out.push_back(static_cast<char>(c - kEscapeBase));
  } else if (c < 0x80) {
    out.push_back(static_cast<char>(c));
  } else if (c < 0x800) {
    out.push_back(static_cast<char>(0xC0 | (c >> 6)));
    out.push_back(static_cast<char>(0x80 | (c & 0x3F)));
  } else if (c < 0x10000) {
    out.push_back(static_cast<char>(0xE0 | (c >> 12)));
    out.push_back(static_cast<char>(0x80 | ((c >> 6) & 0x3F)));
    out.push_back(static_cast<char>(0x80 | (c & 0x3F)));
  } else {
    out.push_back(static_cast<char>(0xF0 | (c >> 18)));
    out.push_back(static_cast<char>(0x80 | ((c >> 12) & 0x3F)));
    out.push_back(static_cast<char>(0x80 | ((c >> 6) & 0x3F)));
    out.push_back(static_cast<char>(0x80 | (c & 0x3F)));
  }
}

std::string utf8_encode(std::u32string_view code_points) {
  std::string out;
  out.reserve(code_points.size());
  for (char32_t c : code_points) utf8_append(out, c);
  return out;
}

size_t utf8_length(std::string_view text) {
  bool ascii = std::all_of(text.begin(), text.end(),
                           [](char c) { return static_cast<unsigned char>(c) < 0x80; });
  return ascii ? text.size() : utf8_decode(text).size();
}

bool is_python_space(char32_t c) {
  if (c <= 0x20) return (c >= 0x09 && c <= 0x0D) || (c >= 0x1C && c <= 0x20);
  switch (c) {
    case 0x85: case 0xA0: case 0x1680: case 0x2028: case 0x2029: case 0x202F: case 0x205F:
    case 0x3000:
      return true;
    default:
      return c >= 0x2000 && c <= 0x200A;
  }
}

bool is_python_printable(char32_t c) {
  if (c >= 0x20 && c < 0x7F) return true;
  return !in_ranges(kNonPrintableRanges, kNonPrintableRangeCount, c);
}

bool is_identifier_start(char32_t c) {
  if (c < 0x80) return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_';
  return in_ranges(kIdentifierStartRanges, kIdentifierStartRangeCount, c);
}

bool is_identifier_continue(char32_t c) {
  if (c < 0x80) return is_identifier_start(c) || (c >= '0' && c <= '9');
  return in_ranges(kIdentifierContinueRanges, kIdentifierContinueRangeCount, c);
}

std::string str_upper(std::string_view text) {
  std::string out;
  out.reserve(text.size());
  for (char32_t c : utf8_decode(text)) append_upper(out, c);
  return out;
}

std::string str_lower(std::string_view text) {
  std::string out;
  out.reserve(text.size());
  for (char32_t c : utf8_decode(text)) append_lower(out, c);
  return out;
}

std::string str_title(std::string_view text) {
  std::string out;
  out.reserve(text.size());
  bool previous_is_cased = false;
  for (char32_t c : utf8_decode(text)) {
    if (previous_is_cased) {
      append_lower(out, c);
    } else {
      append_title(out, c);
    }
    previous_is_cased = is_cased(c);
  }
  return out;
}

std::string str_capitalize(std::string_view text) {
  std::string out;
  out.reserve(text.size());
  bool first = true;
  for (char32_t c : utf8_decode(text)) {
    if (first) {
      append_title(out, c);
      first = false;
    } else {
      append_lower(out, c);
    }
  }
  return out;
}

std::string jinja_title(std::string_view text) {
  std::string out;
  out.reserve(text.size());
  bool at_word_start = true;
  for (char32_t c : utf8_decode(text)) {
    const bool separator = is_python_space(c) || c == '-' || c == '(' || c == '{' || c == '[' ||
                           c == '<';
    if (separator) {
      utf8_append(out, c);
      at_word_start = true;
    } else if (at_word_start) {
      append_upper(out, c);
      at_word_start = false;
    } else {
      append_lower(out, c);
    }
  }
  return out;
}

bool str_is_upper(std::string_view text) {
  bool any_cased = false;
  for (char32_t c : utf8_decode(text)) {
    if (!is_cased(c)) continue;
    if (!maps_to_itself(kUpperMappings, kUpperMappingCount, c)) return false;
    any_cased = true;
  }
  return any_cased;
}

bool str_is_lower(std::string_view text) {
  bool any_cased = false;
  for (char32_t c : utf8_decode(text)) {
    if (!is_cased(c)) continue;
    if (!maps_to_itself(kLowerMappings, kLowerMappingCount, c)) return false;
    any_cased = true;
  }
  return any_cased;
}

std::string str_strip(std::string_view text, const std::optional<std::string>& chars, bool left,
                      bool right) {
  const std::u32string cps = utf8_decode(text);
  const std::u32string strip_set = chars ? utf8_decode(*chars) : std::u32string();
  auto strips = [&](char32_t c) { return chars ? in_chars(c, strip_set) : is_python_space(c); };
  size_t begin = 0;
  size_t end = cps.size();
  if (left) {
    while (begin < end && strips(cps[begin])) ++begin;
  }
  if (right) {
    while (end > begin && strips(cps[end - 1])) --end;
  }
  return utf8_encode(std::u32string_view(cps).substr(begin, end - begin));
}

std::vector<std::string> str_split(std::string_view text, const std::optional<std::string>& sep,
                                   long long maxsplit) {
  std::vector<std::string> parts;
  if (sep) {
    size_t start = 0;
    while (maxsplit < 0 || static_cast<long long>(parts.size()) < maxsplit) {
      const size_t at = text.find(*sep, start);
      if (at == std::string_view::npos) break;
      parts.emplace_back(text.substr(start, at - start));
      start = at + sep->size();
    }
    parts.emplace_back(text.substr(start));
    return parts;
  }
  const std::u32string cps = utf8_decode(text);
  size_t i = 0;
  const size_t n = cps.size();
  while (i < n) {
    while (i < n && is_python_space(cps[i])) ++i;
    if (i == n) break;
    if (maxsplit >= 0 && static_cast<long long>(parts.size()) == maxsplit) {
      parts.push_back(utf8_encode(std::u32string_view(cps).substr(i)));  // keeps trailing space
      break;
    }
    size_t j = i;
    while (j < n && !is_python_space(cps[j])) ++j;
    parts.push_back(utf8_encode(std::u32string_view(cps).substr(i, j - i)));
    i = j;
  }
  return parts;
}

std::vector<std::string> str_rsplit(std::string_view text, const std::optional<std::string>& sep,
                                    long long maxsplit) {
  std::vector<std::string> parts;
  if (sep) {
    size_t end = text.size();
    while (maxsplit < 0 || static_cast<long long>(parts.size()) < maxsplit) {
      if (end < sep->size()) break;
      const size_t at = text.rfind(*sep, end - sep->size());
      if (at == std::string_view::npos) break;
      parts.emplace_back(text.substr(at + sep->size(), end - at - sep->size()));
      end = at;
    }
    parts.emplace_back(text.substr(0, end));
    std::reverse(parts.begin(), parts.end());
    return parts;
  }
  const std::u32string cps = utf8_decode(text);
  size_t j = cps.size();
  while (j > 0) {
    while (j > 0 && is_python_space(cps[j - 1])) --j;
    if (j == 0) break;
    if (maxsplit >= 0 && static_cast<long long>(parts.size()) == maxsplit) {
      parts.push_back(utf8_encode(std::u32string_view(cps).substr(0, j)));  // keeps leading space
      break;
    }
    size_t i = j;
    while (i > 0 && !is_python_space(cps[i - 1])) --i;
    parts.push_back(utf8_encode(std::u32string_view(cps).substr(i, j - i)));
    j = i;
  }
  std::reverse(parts.begin(), parts.end());
  return parts;
}

std::vector<std::string> str_splitlines(std::string_view text) {
  // Python's line boundaries: \n \r \r\n \v \f \x1c \x1d \x1e \x85 \u2028 \u2029.
  const std::u32string cps = utf8_decode(text);
  std::vector<std::string> lines;
  size_t start = 0;
  size_t i = 0;
  const size_t n = cps.size();
  while (i < n) {
    const char32_t c = cps[i];
    const bool boundary = c == '\n' || c == '\r' || c == 0x0B || c == 0x0C || c == 0x1C ||
                          c == 0x1D || c == 0x1E || c == 0x85 || c == 0x2028 || c == 0x2029;
    if (!boundary) {
      ++i;
      continue;
    }
    lines.push_back(utf8_encode(std::u32string_view(cps).substr(start, i - start)));
    i += (c == '\r' && i + 1 < n && cps[i + 1] == '\n') ? 2 : 1;
    start = i;
  }
  if (start < n) lines.push_back(utf8_encode(std::u32string_view(cps).substr(start)));
  return lines;
}

std::string str_replace(std::string_view text, std::string_view old_text, std::string_view new_text,
                        long long count, size_t max_bytes) {
  std::string out;
  auto append = [&](std::string_view piece) {
    MARLIN_CHECK(out.size() + piece.size() <= max_bytes,
                 "template string limit exceeded: replace() result over {} bytes", max_bytes);
    out.append(piece);
  };
  if (old_text.empty()) {
    // Python inserts `new` before every code point and at the end.
    const std::u32string cps = utf8_decode(text);
    long long done = 0;
    std::string cp_text;
    for (char32_t c : cps) {
      if (count < 0 || done < count) {
        append(new_text);
        ++done;
      }
      cp_text.clear();
      utf8_append(cp_text, c);
      append(cp_text);
    }
    if (count < 0 || done < count) append(new_text);
    return out;
  }
  size_t start = 0;
  long long done = 0;
  while (count < 0 || done < count) {
    const size_t at = text.find(old_text, start);
    if (at == std::string_view::npos) break;
    append(text.substr(start, at - start));
    append(new_text);
    start = at + old_text.size();
    ++done;
  }
  append(text.substr(start));
  return out;
}

size_t str_count(std::string_view text, std::string_view needle) {
  if (needle.empty()) return utf8_length(text) + 1;
  size_t n = 0;
  for (size_t at = text.find(needle); at != std::string_view::npos;
       at = text.find(needle, at + needle.size())) {
    ++n;
  }
  return n;
}

std::string html_escape(std::string_view text) {
  std::string out;
  out.reserve(text.size());
  for (char c : text) {
    switch (c) {
      case '&': out += "&amp;"; break;
      case '<': out += "&lt;"; break;
      case '>': out += "&gt;"; break;
      case '"': out += "&#34;"; break;
      case '\'': out += "&#39;"; break;
      default: out.push_back(c);
    }
  }
  return out;
}

}  // namespace marlin::tmpl
