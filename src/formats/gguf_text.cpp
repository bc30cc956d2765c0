#include "formats/gguf_text.h"

#include <fmt/format.h>
#include <fmt/ranges.h>

#include <algorithm>
#include <type_traits>

namespace marlin {

namespace {

// Length of the valid UTF-8 character starting at text[i], or 0 when the bytes there are not one.
size_t utf8_char_length(std::string_view text, size_t i) {
  const auto lead = static_cast<unsigned char>(text[i]);
  const size_t len = lead >= 0xc2 && lead <= 0xdf ? 2 : lead >= 0xe0 && lead <= 0xef ? 3
                     : lead >= 0xf0 && lead <= 0xf4 ? 4 : 0;
  if (len == 0 || i + len > text.size()) return 0;
  for (size_t j = 1; j < len; ++j)
    if ((static_cast<unsigned char>(text[i + j]) & 0xc0) != 0x80) return 0;
  return len;
}

}  // namespace

std::string gguf_escape(std::string_view text) {
  std::string out;
  out.reserve(text.size());
  for (size_t i = 0; i < text.size(); ++i) {
    const char c = text[i];
    const auto byte = static_cast<unsigned char>(c);
    if (c == '\n') out += "\\n";
    else if (c == '\t') out += "\\t";
    else if (c == '\\') out += "\\\\";
    else if (byte < 0x20 || byte == 0x7f) out += fmt::format("\\x{:02x}", byte);
    else if (byte < 0x80) out += c;
    else if (const size_t len = utf8_char_length(text, i)) out.append(text.substr(i, len)), i += len - 1;
    else out += fmt::format("\\x{:02x}", byte);  // not UTF-8: keep messages valid text
  }
  return out;
}

namespace {

std::string array_summary(const GgufArray& array, size_t max_items, size_t max_string_bytes) {
  std::string out = fmt::format("[{} x {}", gguf_type_name(array.element_type), array.items.size());
  const size_t shown = std::min(array.items.size(), max_items);
  for (size_t i = 0; i < shown; ++i) {
    out += i == 0 ? ": " : ", ";
    out += gguf_value_summary(array.items[i], max_items, max_string_bytes);
  }
  if (shown < array.items.size()) out += ", ...";
  return out + "]";
}

}  // namespace

std::string gguf_quote(std::string_view text, size_t max_bytes) {
  size_t cut = text.size();
  if (cut > max_bytes) {
    cut = max_bytes;
    while (cut > 0 && (static_cast<unsigned char>(text[cut]) & 0xc0) == 0x80) --cut;  // UTF-8 continuation
  }
  std::string out(1, '\'');
  out += gguf_escape(text.substr(0, cut));
  out += '\'';
  if (cut < text.size()) out += "...";
  return out;
}

std::string gguf_shape_text(std::span<const uint64_t> shape) {
  return fmt::format("[{}]", fmt::join(shape, ", "));
}

std::string gguf_value_summary(const GgufValue& value, size_t max_items, size_t max_string_bytes) {
  return std::visit(
      [&](const auto& v) -> std::string {
        using T = std::decay_t<decltype(v)>;
        if constexpr (std::is_same_v<T, std::string>) {
          std::string out = gguf_quote(v, max_string_bytes);
          if (v.size() > max_string_bytes) out += fmt::format(" ({} bytes)", v.size());
          return out;
        } else if constexpr (std::is_same_v<T, GgufArray>) {
          return array_summary(v, max_items, max_string_bytes);
        } else if constexpr (std::is_same_v<T, bool>) {
          return v ? "true" : "false";
        } else if constexpr (std::is_same_v<T, double>) {
          // FLOAT32 values print with float precision (1e-05, not 9.999999747378752e-06).
          return value.type == GgufType::FLOAT32 ? fmt::format("{}", float(v)) : fmt::format("{}", v);
        } else {
          return fmt::format("{}", v);
        }
      },
      value.value);
}

}  // namespace marlin
