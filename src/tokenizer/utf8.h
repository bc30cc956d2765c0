// UTF-8 helpers for the tokenizers: validation that finds where valid text stops, code point
// iteration, and the lossy conversion that turns invalid bytes into U+FFFD the way Rust's
// String::from_utf8_lossy (and so HF `tokenizers`) does: one U+FFFD per maximal ill-formed
// subsequence.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

namespace marlin::tok {

inline constexpr std::string_view kReplacementChar = "\xEF\xBF\xBD";  // U+FFFD

// Length of the well-formed UTF-8 sequence that starts at text[pos], or 0 when the bytes there
// are not one (a stray continuation byte, an overlong form, a surrogate, a truncated sequence).
size_t utf8_sequence_length(std::string_view text, size_t pos);

// Length of the maximal prefix of text[pos..] that could still become a well-formed sequence
// (used to tell an incomplete character from an invalid one); at least 1 when pos < size.
size_t utf8_maximal_subpart(std::string_view text, size_t pos);

// Offset of the first byte that does not start a well-formed sequence, or text.size().
size_t utf8_valid_prefix(std::string_view text);

inline bool utf8_is_valid(std::string_view text) { return utf8_valid_prefix(text) == text.size(); }

// Decodes the well-formed sequence of `length` bytes at text[pos].
uint32_t utf8_decode(std::string_view text, size_t pos, size_t length);

void utf8_append(std::string& out, uint32_t code_point);

// Appends `bytes` to `out`, replacing each maximal ill-formed subsequence with U+FFFD.
void utf8_append_lossy(std::string& out, std::string_view bytes);

// Number of code points in well-formed UTF-8 text.
size_t utf8_count_chars(std::string_view text);

}  // namespace marlin::tok
