// Text renderings of GGUF names, shapes and values for error messages and `marlin inspect`.
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>
#include <string>
#include <string_view>

#include "formats/gguf.h"

namespace marlin {

// `text` with control bytes and bytes that are not UTF-8 escaped (\n, \t, \xNN; a backslash as
// \\) so that it stays one line of valid text.
std::string gguf_escape(std::string_view text);

// 'text' in single quotes, control bytes escaped (\n, \xNN) so a message stays on one line;
// cut after `max_bytes` bytes (at a UTF-8 boundary) with "..." appended.
std::string gguf_quote(std::string_view text, size_t max_bytes = 80);

// "[576, 49152]"
std::string gguf_shape_text(std::span<const uint64_t> shape);

// One-line rendering of a value: numbers as numbers, strings quoted and cut, arrays as
// "[STRING x 49152: 'a', 'b', 'c', ...]" showing at most `max_items` items at every level.
std::string gguf_value_summary(const GgufValue& value, size_t max_items = 4, size_t max_string_bytes = 60);

}  // namespace marlin
