#include "tokenizer/decoder.h"

#include <optional>

#include "tokenizer/byte_level.h"
#include "tokenizer/utf8.h"

namespace marlin::tok {
namespace {

std::string replace_all(std::string_view text, std::string_view from, std::string_view to) {
  std::string out;
  if (from.empty()) return std::string(text);
  size_t pos = 0;
  for (size_t at = text.find(from); at != std::string_view::npos; at = text.find(from, pos)) {
    out.append(text.substr(pos, at - pos));
    out += to;
    pos = at + from.size();
  }
  out.append(text.substr(pos));
  return out;
}

// "<0xNN>" -> the byte.
std::optional<uint8_t> byte_token_value(std::string_view token) {
  if (token.size() != 6 || token.substr(0, 3) != "<0x" || token[5] != '>') return std::nullopt;
  auto hex = [](char c) -> int {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    return -1;
  };
  int hi = hex(token[3]), lo = hex(token[4]);
  if (hi < 0 || lo < 0) return std::nullopt;
  return static_cast<uint8_t>(hi * 16 + lo);
}

std::string byte_level_bytes(std::string_view token) {
  auto bytes = byte_level_unspell(token);
  return bytes ? *bytes : std::string(token);
}

// Strips up to `start` leading and `stop` trailing copies of the character `content`.
std::string strip(std::string_view token, std::string_view content, size_t start, size_t stop) {
  if (content.empty()) return std::string(token);
  size_t b = 0, e = token.size();
  for (size_t i = 0; i < start && token.substr(b, content.size()) == content; ++i) b += content.size();
  for (size_t i = 0; i < stop && e >= b + content.size() && token.substr(e - content.size(), content.size()) == content; ++i) {
    e -= content.size();
  }
  return std::string(token.substr(b, e - b));
}

}  // namespace

void Decoder::add_byte_level() { steps_.push_back({Step::Kind::kByteLevel, {}, {}}); }
void Decoder::add_replace(std::string from, std::string to) {
  steps_.push_back({Step::Kind::kReplace, std::move(from), std::move(to)});
}
void Decoder::add_byte_fallback() { steps_.push_back({Step::Kind::kByteFallback, {}, {}}); }
void Decoder::add_fuse() { steps_.push_back({Step::Kind::kFuse, {}, {}}); }
void Decoder::add_strip(std::string content, size_t start, size_t stop) {
  steps_.push_back({Step::Kind::kStrip, std::move(content), {}, start, stop});
}
void Decoder::add_metaspace(std::string replacement, bool strip_first) {
  steps_.push_back({Step::Kind::kMetaspace, std::move(replacement), " ", 0, 0, strip_first});
}

std::string Decoder::decode(std::vector<std::string> tokens) const {
  for (const auto& step : steps_) {
    switch (step.kind) {
      case Step::Kind::kByteLevel: {
        std::string bytes;
        for (const auto& t : tokens) bytes += byte_level_bytes(t);
        std::string text;
        utf8_append_lossy(text, bytes);
        tokens.assign(1, std::move(text));
        break;
      }
      case Step::Kind::kReplace:
        for (auto& t : tokens) t = replace_all(t, step.from, step.to);
        break;
      case Step::Kind::kByteFallback: {
        // A run of byte tokens becomes its text when the run is valid UTF-8, else one U+FFFD
        // per byte.
        std::vector<std::string> out;
        std::string run;
        size_t run_tokens = 0;
        auto flush = [&] {
          if (run_tokens == 0) return;
          if (utf8_is_valid(run)) {
            out.push_back(run);
          } else {
            for (size_t i = 0; i < run_tokens; ++i) out.emplace_back(kReplacementChar);
          }
          run.clear();
          run_tokens = 0;
        };
        for (auto& t : tokens) {
          if (auto byte = byte_token_value(t)) {
            run += static_cast<char>(*byte);
            ++run_tokens;
          } else {
            flush();
            out.push_back(std::move(t));
          }
        }
        flush();
        tokens.swap(out);
        break;
      }
      case Step::Kind::kFuse: {
        std::string joined;
        for (const auto& t : tokens) joined += t;
        tokens.assign(1, std::move(joined));
        break;
      }
      case Step::Kind::kStrip:
        for (auto& t : tokens) t = strip(t, step.from, step.start, step.stop);
        break;
      case Step::Kind::kMetaspace:
        for (size_t i = 0; i < tokens.size(); ++i) {
          tokens[i] = replace_all(tokens[i], step.from, i == 0 && step.strip_first ? "" : " ");
        }
        break;
    }
  }
  std::string text;
  for (const auto& t : tokens) text += t;
  return text;
}

std::string Decoder::token_bytes(std::string_view token) const {
  std::string t(token);
  for (const auto& step : steps_) {
    switch (step.kind) {
      case Step::Kind::kByteLevel: t = byte_level_bytes(t); break;
      case Step::Kind::kReplace: t = replace_all(t, step.from, step.to); break;
      case Step::Kind::kByteFallback:
        if (auto byte = byte_token_value(t)) t.assign(1, static_cast<char>(*byte));
        break;
      case Step::Kind::kMetaspace: t = replace_all(t, step.from, " "); break;
      case Step::Kind::kFuse:
      case Step::Kind::kStrip: break;
    }
  }
  return t;
}

size_t Decoder::leading_spaces_to_strip() const {
  bool fused = false;
  for (const auto& step : steps_) {
    if (step.kind == Step::Kind::kFuse || step.kind == Step::Kind::kByteLevel) fused = true;
    if (step.kind == Step::Kind::kStrip && fused && step.from == " ") return step.start;
    if (step.kind == Step::Kind::kMetaspace && step.strip_first) return 1;
  }
  return 0;
}

}  // namespace marlin::tok
