// Added (special and user-defined) tokens, matched whole in the text before pre-tokenization,
// leftmost-longest like HF's Aho-Corasick matcher.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace marlin::tok {

struct AddedToken {
  std::string content;
  int32_t id = 0;
  bool special = false;     // skipped by decode(skip_special) and not matched without parse_special
  bool normalized = false;  // matched in normalized rather than raw text
  bool lstrip = false;      // swallows whitespace on its left
  bool rstrip = false;      // swallows whitespace on its right
};

struct AddedMatch {
  size_t begin, end;  // byte range in the text, including stripped whitespace
  int32_t id;
};

// A byte trie over the contents of one set of added tokens.
class AddedTokenMatcher {
 public:
  void build(const std::vector<AddedToken>& tokens);
  bool empty() const { return nodes_.size() <= 1; }
  // Leftmost-longest, non-overlapping matches. Without parse_special a special token's match
  // is passed over (its bytes stay ordinary text), as HF's encode_special_tokens does.
  void find(std::string_view text, bool parse_special, std::vector<AddedMatch>& out) const;

 private:
  struct Node {
    int32_t token = -1;        // index into tokens_ when a token ends here
    uint32_t first_child = 0;  // children are edges_[first_child, first_child + child_count)
    uint32_t child_count = 0;
  };
  struct Edge {
    uint8_t byte;
    uint32_t node;
  };
  int32_t longest_at(std::string_view text, size_t pos, size_t& length) const;
  std::vector<Node> nodes_;
  std::vector<Edge> edges_;
  std::vector<AddedToken> tokens_;
};

}  // namespace marlin::tok
