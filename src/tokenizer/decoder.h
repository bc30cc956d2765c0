// The decoders of HF `tokenizers` used by BPE models (ByteLevel, Replace, ByteFallback, Fuse,
// Strip, Metaspace), applied as a chain over token strings exactly as HF's decode_chain does.
#pragma once

#include <string>
#include <string_view>
#include <vector>

namespace marlin::tok {

class Decoder {
 public:
  void add_byte_level();
  void add_replace(std::string from, std::string to);
  void add_byte_fallback();
  void add_fuse();
  void add_strip(std::string content, size_t start, size_t stop);
  void add_metaspace(std::string replacement, bool strip_first);

  // The text of a token sequence (tokens as the vocabulary spells them).
  std::string decode(std::vector<std::string> tokens) const;

  // One token's bytes as it contributes them to decoded text, before any joining, UTF-8
  // repair or stripping (byte tokens give their byte, byte-level spellings their bytes).
  std::string token_bytes(std::string_view token) const;

  // Spaces a streaming decoder drops at the very start (Strip after Fuse, or Metaspace that
  // removes the prefix space of the first token).
  size_t leading_spaces_to_strip() const;

 private:
  struct Step {
    enum class Kind { kByteLevel, kReplace, kByteFallback, kFuse, kStrip, kMetaspace } kind;
    std::string from, to;  // Replace / Metaspace (from = replacement); Strip (from = content)
    size_t start = 0, stop = 0;
    bool strip_first = false;
  };
  std::vector<Step> steps_;
};

}  // namespace marlin::tok
