// Text helpers with Python str semantics for the template interpreter: strings are UTF-8 bytes,
// but length, indexing, slicing, case mapping and whitespace follow Python's code-point view.
// Invalid UTF-8 bytes survive a round trip: each decodes to a lone surrogate (U+DC80 + byte,
// like Python's "surrogateescape") and encodes back to the same byte.
#pragma once

#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace marlin::tmpl {

std::u32string utf8_decode(std::string_view text);
void utf8_append(std::string& out, char32_t code_point);
std::string utf8_encode(std::u32string_view code_points);

// Number of code points (Python len()).
size_t utf8_length(std::string_view text);

// Python str.isspace() for one code point.
bool is_python_space(char32_t c);
// Python str.isprintable() for one code point (repr() escapes the others).
bool is_python_printable(char32_t c);
// Whether c may start / continue a Python identifier (as jinja2 names).
bool is_identifier_start(char32_t c);
bool is_identifier_continue(char32_t c);

// Python's full case mappings (str.upper/lower, including one-to-many ones such as
// "ß".upper() == "SS"); Greek final-sigma context is not applied.
std::string str_upper(std::string_view text);
std::string str_lower(std::string_view text);
std::string str_title(std::string_view text);       // Python str.title()
std::string str_capitalize(std::string_view text);  // Python str.capitalize()
// Jinja's `title` filter: uppercase after a run of "-", whitespace or "([{<", lowercase elsewhere.
std::string jinja_title(std::string_view text);
bool str_is_upper(std::string_view text);  // Python str.isupper()
bool str_is_lower(std::string_view text);  // Python str.islower()

// Python str.strip/lstrip/rstrip: without chars, strips Unicode whitespace; with chars, strips any
// code point in chars.
std::string str_strip(std::string_view text, const std::optional<std::string>& chars, bool left,
                      bool right);

// Python str.split(sep, maxsplit) and str.rsplit: without sep, splits on runs of whitespace and
// drops empty pieces. maxsplit < 0 means no limit. sep must not be empty (checked by the caller).
std::vector<std::string> str_split(std::string_view text, const std::optional<std::string>& sep,
                                   long long maxsplit);
std::vector<std::string> str_rsplit(std::string_view text, const std::optional<std::string>& sep,
                                    long long maxsplit);

// Python str.splitlines() without keepends.
std::vector<std::string> str_splitlines(std::string_view text);

// Python str.replace(old, new, count); count < 0 replaces all. `max_bytes` bounds the result.
std::string str_replace(std::string_view text, std::string_view old_text, std::string_view new_text,
                        long long count, size_t max_bytes);

size_t str_count(std::string_view text, std::string_view needle);

// markupsafe.escape: & < > ' " as HTML entities.
std::string html_escape(std::string_view text);

}  // namespace marlin::tmpl
