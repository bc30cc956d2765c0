#include "tokenizer/added_tokens.h"

#include <algorithm>
#include <map>

#include "tokenizer/utf8.h"

namespace marlin::tok {
namespace {

// Unicode White_Space, which is what \s means to HF's lstrip/rstrip regexes.
bool is_white_space(uint32_t cp) {
  return (cp >= 0x09 && cp <= 0x0D) || cp == 0x20 || cp == 0x85 || cp == 0xA0 || cp == 0x1680 ||
         (cp >= 0x2000 && cp <= 0x200A) || cp == 0x2028 || cp == 0x2029 || cp == 0x202F || cp == 0x205F ||
         cp == 0x3000;
}

// Start of the whitespace run that ends at text[end).
size_t whitespace_run_before(std::string_view text, size_t end) {
  size_t pos = end;
  while (pos > 0) {
    size_t start = pos - 1;
    while (start > 0 && (static_cast<uint8_t>(text[start]) & 0xC0) == 0x80 && pos - start < 4) --start;
    size_t n = utf8_sequence_length(text, start);
    if (n != pos - start || !is_white_space(utf8_decode(text, start, n))) break;
    pos = start;
  }
  return pos;
}

// End of the whitespace run that starts at text[begin].
size_t whitespace_run_after(std::string_view text, size_t begin) {
  size_t pos = begin;
  while (pos < text.size()) {
    size_t n = utf8_sequence_length(text, pos);
    if (n == 0 || !is_white_space(utf8_decode(text, pos, n))) break;
    pos += n;
  }
  return pos;
}

}  // namespace

void AddedTokenMatcher::build(const std::vector<AddedToken>& tokens) {
  tokens_ = tokens;
  // Build with ordered child maps, then flatten so children of a node are contiguous.
  std::vector<std::map<uint8_t, uint32_t>> children(1);
  std::vector<int32_t> terminal(1, -1);
  for (size_t t = 0; t < tokens_.size(); ++t) {
    const std::string& content = tokens_[t].content;
    if (content.empty()) continue;
    uint32_t node = 0;
    for (char c : content) {
      auto [it, inserted] = children[node].try_emplace(static_cast<uint8_t>(c), static_cast<uint32_t>(children.size()));
      if (inserted) {
        children.emplace_back();
        terminal.push_back(-1);
      }
      node = it->second;
    }
    if (terminal[node] < 0) terminal[node] = static_cast<int32_t>(t);  // the first of duplicates wins
  }
  nodes_.assign(children.size(), Node{});
  edges_.clear();
  for (size_t n = 0; n < children.size(); ++n) {
    nodes_[n].token = terminal[n];
    nodes_[n].first_child = static_cast<uint32_t>(edges_.size());
    nodes_[n].child_count = static_cast<uint32_t>(children[n].size());
    for (const auto& [byte, child] : children[n]) edges_.push_back({byte, child});
  }
}

int32_t AddedTokenMatcher::longest_at(std::string_view text, size_t pos, size_t& length) const {
  int32_t best = -1;
  uint32_t node = 0;
  for (size_t i = pos; i < text.size(); ++i) {
    const Node& n = nodes_[node];
    auto first = edges_.begin() + n.first_child;
    auto last = first + n.child_count;
    uint8_t byte = static_cast<uint8_t>(text[i]);
    auto it = std::lower_bound(first, last, byte, [](const Edge& e, uint8_t b) { return e.byte < b; });
    if (it == last || it->byte != byte) break;
    node = it->node;
    if (nodes_[node].token >= 0) {
      best = nodes_[node].token;
      length = i + 1 - pos;
    }
  }
  return best;
}

void AddedTokenMatcher::find(std::string_view text, bool parse_special, std::vector<AddedMatch>& out) const {
  out.clear();
  if (empty()) return;
  size_t previous_end = 0;
  size_t pos = 0;
  while (pos < text.size()) {
    size_t length = 0;
    int32_t t = longest_at(text, pos, length);
    if (t < 0) {
      ++pos;
      continue;
    }
    const AddedToken& token = tokens_[static_cast<size_t>(t)];
    size_t begin = pos, end = pos + length;
    pos = end;
    if (token.special && !parse_special) continue;
    if (token.lstrip) begin = std::max(whitespace_run_before(text, begin), previous_end);
    if (token.rstrip) end = whitespace_run_after(text, end);
    out.push_back({begin, end, token.id});
    previous_end = pos = end;
  }
}

}  // namespace marlin::tok
