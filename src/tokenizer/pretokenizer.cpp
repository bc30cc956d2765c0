#include "tokenizer/pretokenizer.h"

#include <algorithm>

#include "core/error.h"

namespace marlin::tok {
namespace {

struct Part {
  size_t begin, end;
  bool is_match;
};

// Turns a piece's match list into pieces following HF's SplitDelimiterBehavior.
void emit_parts(std::vector<Part>& parts, SplitBehavior behavior, bool invert, const Piece& piece,
                std::vector<Piece>& out) {
  if (invert) {
    for (auto& p : parts) p.is_match = !p.is_match;
  }
  std::vector<Part> merged;
  merged.reserve(parts.size());
  bool previous_match = false;
  switch (behavior) {
    case SplitBehavior::kRemoved:
      for (const auto& p : parts) {
        if (!p.is_match) merged.push_back(p);
      }
      break;
    case SplitBehavior::kIsolated:
      merged = parts;
      break;
    case SplitBehavior::kMergedWithPrevious:
      for (const auto& p : parts) {
        if (p.is_match && !previous_match && !merged.empty()) {
          merged.back().end = p.end;
        } else {
          merged.push_back(p);
        }
        previous_match = p.is_match;
      }
      break;
    case SplitBehavior::kMergedWithNext:
      for (size_t i = parts.size(); i-- > 0;) {
        const auto& p = parts[i];
        if (p.is_match && !previous_match && !merged.empty()) {
          merged.back().begin = p.begin;
        } else {
          merged.push_back(p);
        }
        previous_match = p.is_match;
      }
      std::reverse(merged.begin(), merged.end());
      break;
    case SplitBehavior::kContiguous:
      for (size_t i = 0; i < parts.size(); ++i) {
        const auto& p = parts[i];
        if (i > 0 && p.is_match == previous_match) {
          merged.back().end = p.end;
        } else {
          merged.push_back(p);
        }
        previous_match = p.is_match;
      }
      break;
  }
  for (const auto& p : merged) {
    if (p.end == p.begin) continue;  // HF drops empty splits
    out.push_back(Piece{piece.begin + static_cast<uint32_t>(p.begin), piece.begin + static_cast<uint32_t>(p.end),
                        piece.at_text_start && p.begin == 0});
  }
}

// Matches -> parts covering the whole piece (gaps are non-matches), as HF's Pattern does.
void matches_to_parts(const std::vector<std::pair<size_t, size_t>>& matches, size_t length,
                      std::vector<Part>& parts) {
  parts.clear();
  size_t prev = 0;
  for (const auto& [b, e] : matches) {
    if (prev != b) parts.push_back({prev, b, false});
    parts.push_back({b, e, true});
    prev = e;
  }
  if (prev != length) parts.push_back({prev, length, false});
}

class RegexSplit : public PreTokenizerStep {
 public:
  RegexSplit(std::string_view pattern, SplitBehavior behavior, bool invert)
      : regex_(translate_onig_pattern(pattern)), behavior_(behavior), invert_(invert) {}
  void apply(PieceBuffer& buffer) const override {
    std::vector<Piece> out;
    out.reserve(buffer.pieces.size() * 2);
    std::vector<std::pair<size_t, size_t>> matches;
    std::vector<Part> parts;
    for (const auto& piece : buffer.pieces) {
      matches.clear();
      std::string_view text = buffer.view(piece);
      regex_.find_all(text, matches);
      matches_to_parts(matches, text.size(), parts);
      emit_parts(parts, behavior_, invert_, piece, out);
    }
    buffer.pieces.swap(out);
  }

 private:
  Regex regex_;
  SplitBehavior behavior_;
  bool invert_;
};

class LiteralSplit : public PreTokenizerStep {
 public:
  LiteralSplit(std::string literal, SplitBehavior behavior, bool invert)
      : literal_(std::move(literal)), behavior_(behavior), invert_(invert) {}
  void apply(PieceBuffer& buffer) const override {
    std::vector<Piece> out;
    std::vector<std::pair<size_t, size_t>> matches;
    std::vector<Part> parts;
    for (const auto& piece : buffer.pieces) {
      matches.clear();
      std::string_view text = buffer.view(piece);
      if (!literal_.empty()) {
        for (size_t at = text.find(literal_); at != std::string_view::npos; at = text.find(literal_, at + literal_.size())) {
          matches.emplace_back(at, at + literal_.size());
        }
      }
      matches_to_parts(matches, text.size(), parts);
      emit_parts(parts, behavior_, invert_, piece, out);
    }
    buffer.pieces.swap(out);
  }

 private:
  std::string literal_;
  SplitBehavior behavior_;
  bool invert_;
};

// Prepends `prefix` to a piece by writing the rewritten piece at the end of the buffer.
Piece rewrite(PieceBuffer& buffer, const Piece& piece, std::string_view prefix, std::string_view from,
              std::string_view to) {
  std::string rewritten(prefix);
  std::string_view text = buffer.view(piece);
  if (from.empty()) {
    rewritten += text;
  } else {
    size_t pos = 0;
    for (size_t at = text.find(from); at != std::string_view::npos; at = text.find(from, pos)) {
      rewritten.append(text.substr(pos, at - pos));
      rewritten += to;
      pos = at + from.size();
    }
    rewritten.append(text.substr(pos));
  }
  MARLIN_CHECK(buffer.text.size() + rewritten.size() < UINT32_MAX, "tokenizer: input text is too long");
  Piece out{static_cast<uint32_t>(buffer.text.size()), 0, piece.at_text_start};
  buffer.text += rewritten;
  out.end = static_cast<uint32_t>(buffer.text.size());
  return out;
}

class ByteLevel : public PreTokenizerStep {
 public:
  ByteLevel(bool add_prefix_space, bool use_regex) : add_prefix_space_(add_prefix_space) {
    if (use_regex) split_ = std::make_unique<RegexSplit>(kGpt2Pattern, SplitBehavior::kIsolated, false);
  }
  void apply(PieceBuffer& buffer) const override {
    if (add_prefix_space_) {
      for (auto& piece : buffer.pieces) {
        if (buffer.view(piece).substr(0, 1) != " ") piece = rewrite(buffer, piece, " ", {}, {});
      }
    }
    if (split_) split_->apply(buffer);
  }

 private:
  bool add_prefix_space_;
  std::unique_ptr<RegexSplit> split_;
};

class Metaspace : public PreTokenizerStep {
 public:
  Metaspace(std::string replacement, PrependScheme scheme, bool split)
      : replacement_(std::move(replacement)), scheme_(scheme),
        split_(split ? std::make_unique<LiteralSplit>(replacement_, SplitBehavior::kMergedWithNext, false) : nullptr) {}
  void apply(PieceBuffer& buffer) const override {
    for (auto& piece : buffer.pieces) {
      std::string_view text = buffer.view(piece);
      bool prepend = scheme_ == PrependScheme::kAlways || (scheme_ == PrependScheme::kFirst && piece.at_text_start);
      // The check runs after spaces were replaced, so a leading space counts as the prefix.
      bool starts_with_space = !text.empty() && text[0] == ' ';
      prepend = prepend && !starts_with_space && text.substr(0, replacement_.size()) != replacement_;
      piece = rewrite(buffer, piece, prepend ? std::string_view(replacement_) : std::string_view(), " ", replacement_);
    }
    if (split_) split_->apply(buffer);
  }

 private:
  std::string replacement_;
  PrependScheme scheme_;
  std::unique_ptr<LiteralSplit> split_;
};

}  // namespace

std::unique_ptr<PreTokenizerStep> make_regex_split(std::string_view onig_pattern, SplitBehavior behavior,
                                                   bool invert) {
  return std::make_unique<RegexSplit>(onig_pattern, behavior, invert);
}

std::unique_ptr<PreTokenizerStep> make_literal_split(std::string literal, SplitBehavior behavior, bool invert) {
  return std::make_unique<LiteralSplit>(std::move(literal), behavior, invert);
}

std::unique_ptr<PreTokenizerStep> make_digits(bool individual) {
  // HF's Digits uses Rust's char::is_numeric, whose Unicode tables may be newer than both
  // PCRE2's and Oniguruma's.
  std::string numeric = "[\\p{N}" + onig_class_supplement("Numeric") + "]";
  return std::make_unique<RegexSplit>(individual ? numeric : numeric + "+", SplitBehavior::kIsolated, false);
}

std::unique_ptr<PreTokenizerStep> make_byte_level(bool add_prefix_space, bool use_regex) {
  return std::make_unique<ByteLevel>(add_prefix_space, use_regex);
}

std::unique_ptr<PreTokenizerStep> make_metaspace(std::string replacement, PrependScheme scheme, bool split) {
  return std::make_unique<Metaspace>(std::move(replacement), scheme, split);
}

}  // namespace marlin::tok
