// The .marlin checkpoint layout, shared by the writer and the reader (docs/formats.md describes
// the format).
//
// A .marlin checkpoint is a safetensors file, or shards NAME-00001-of-0000N.marlin, whose
// "__metadata__" key "marlin" (first shard) holds a JSON document:
//   {"format_version": 1, "id": "...", "architecture": "LlamaForCausalLM", "config": {config.json},
//    "chat_template": "...", "rope": {"pairing": "half_split" | "adjacent", "freq_factors": [...]},
//    "shards": ["NAME-00001-of-00002.marlin", ...],
//    "tensors": {"<HF name>": {"format": "int4-g128", "shape": [rows, cols],
//                              "parts": {"codes": "<stored name>", "scales": ..., ...},
//                              "tensor_scale": 1.0, "rotation_seed": "0x0123456789abcdef"}}}
// "rotation_seed" is present exactly for trellis formats: 16 hex digits, a string because JSON
// numbers above 2^53 do not round-trip through every reader.
// Later shards carry "marlin_shard" = {"id": same id, "index": k (0-based), "count": N}.
// tokenizer.json and tokenizer_config.json are U8 tensors "__tokenizer_json__" and
// "__tokenizer_config_json__" of the first shard; "__padding_N__" U8 tensors keep parts 8-byte
// aligned. Every part has exactly the dtype and shape marlin_parts() gives for its format.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "formats/safetensors.h"
#include "quant/format.h"

namespace marlin {

inline constexpr int kMarlinFormatVersion = 1;
inline constexpr std::string_view kMarlinMetadataKey = "marlin";
inline constexpr std::string_view kMarlinShardKey = "marlin_shard";
inline constexpr std::string_view kMarlinTokenizerTensor = "__tokenizer_json__";
inline constexpr std::string_view kMarlinTokenizerConfigTensor = "__tokenizer_config_json__";

// One stored tensor of a weight: its role ("codes", "scales", "zeros", "perm", "sparse_meta"),
// dtype, shape, and suffix of its stored name (empty: the weight's own name).
struct MarlinPart {
  std::string_view role;
  SafetensorsDtype dtype;
  std::vector<uint64_t> shape;
  std::string_view suffix;

  uint64_t bytes() const;
};

// The parts a rows × cols tensor of `format` is stored as, in storage order. Unquantized tensors
// are one part with their own dtype and `logical_shape`; everything else is U8 codes
// [rows, min_code_row_bytes], then scales [rows, groups] (F16, F8_E8M0 or F8_E4M3), zeros
// U8 [rows, groups], perm I32 [cols], sparse_meta U8 [rows, sparse_meta_row_bytes] as the format
// has them.
std::vector<MarlinPart> marlin_parts(const TensorFormat& format, int64_t rows, int64_t cols,
                                     const std::vector<uint64_t>& logical_shape);

// A rotation seed as stored ("0x" and 16 lowercase hex digits), and back: nullopt for anything but
// "0x" followed by exactly 16 hex digits (either case).
std::string marlin_seed_text(uint64_t seed);
std::optional<uint64_t> parse_marlin_seed(std::string_view text);

// "out.marlin", shard 0 of 3 -> "out-00001-of-00003.marlin".
std::string marlin_shard_name(const std::string& path, int index, int count);
// The first shard's path when PATH names shard k > 0 of a set ("...-00002-of-00003.marlin").
std::optional<std::string> marlin_first_shard(const std::string& path);

}  // namespace marlin
