#include "formats/awq_import.h"

#include <algorithm>
#include <cctype>

#include "core/error.h"
#include "formats/gguf_text.h"
#include "formats/hf_json.h"
#include "formats/hf_quant_linear.h"

namespace marlin {
namespace {

// The nibble holding output 8w + j: the inverse of AutoAWQ's order [0, 2, 4, 6, 1, 3, 5, 7].
constexpr int kNibbleOfOutput[8] = {0, 4, 1, 5, 2, 6, 3, 7};

uint16_t awq_code(std::span<const uint8_t> words, int64_t row, int64_t words_per_row, int64_t col) {
  const uint32_t word = word_at(words, size_t(row * words_per_row + col / 8));
  return uint16_t((word >> (4 * kNibbleOfOutput[col % 8])) & 15);
}

std::string lowercase(std::string text) {
  std::transform(text.begin(), text.end(), text.begin(), [](unsigned char ch) { return char(std::tolower(ch)); });
  return text;
}

}  // namespace

AwqConfig awq_config_from_json(const nlohmann::json& j, std::string_view source) {
  MARLIN_CHECK(j.is_object(), "{}: the AWQ configuration is {}, not an object", source, j.type_name());
  if (auto method = json_string(j, "quant_method", source)) {
    MARLIN_CHECK(*method == "awq", "{}: quant_method {} is not awq", source, gguf_quote(*method));
  }
  AwqConfig c;
  auto bits = json_int(j, "bits", source);
  if (!bits) bits = json_int(j, "w_bit", source);
  MARLIN_CHECK(bits.value_or(4) == 4, "{}: AWQ with {} bits is not supported (4)", source, *bits);
  auto group = json_int(j, "group_size", source);
  if (!group) group = json_int(j, "q_group_size", source);
  c.group_size = int(group.value_or(128));
  MARLIN_CHECK(c.group_size >= 1 && c.group_size <= (1 << 20), "{}: group_size {} is not positive", source,
               c.group_size);
  MARLIN_CHECK(json_bool(j, "zero_point", source).value_or(true), "{}: AWQ without zero points is not supported",
               source);
  const std::string version = lowercase(json_string(j, "version", source).value_or("gemm"));
  MARLIN_CHECK(version == "gemm", "{}: AWQ version {} is not supported (gemm)", source, gguf_quote(version));
  return c;
}

QuantBuffers import_awq_linear(const SafetensorsShards& shards, const std::string& prefix, const AwqConfig& c,
                               std::string_view source) {
  const auto& qweight = require_tensor(shards, prefix, "qweight", source);
  expect_tensor(*qweight.tensor, SafetensorsDtype::kI32, -1, -1, source);
  ImportedLinear l;
  l.bits = 4;
  l.k = int64_t(qweight.tensor->shape[0]);
  const int64_t words_per_row = int64_t(qweight.tensor->shape[1]);
  l.n = words_per_row * 8;
  MARLIN_CHECK(l.k > 0 && l.n > 0, "{}: tensor '{}.qweight' is empty", source, prefix);
  l.group_size = c.group_size;
  const int64_t groups = l.groups();

  const auto& scales = require_tensor(shards, prefix, "scales", source);
  expect_tensor(*scales.tensor, SafetensorsDtype::kF16, groups, l.n, source);
  const auto& qzeros = require_tensor(shards, prefix, "qzeros", source);
  expect_tensor(*qzeros.tensor, SafetensorsDtype::kI32, groups, words_per_row, source);

  // Output-major packed codes; a tile of outputs at a time keeps the strided writes in cache.
  const auto wbytes = shards.data(qweight);
  l.codes.assign(size_t(l.row_bytes() * uint64_t(l.n)), 0);
  const uint64_t row_bytes = l.row_bytes();
  constexpr int64_t kTile = 64;
  for (int64_t c0 = 0; c0 < l.n; c0 += kTile) {
    const int64_t c1 = std::min(l.n, c0 + kTile);
    for (int64_t k = 0; k < l.k; ++k) {
      for (int64_t col = c0; col < c1; ++col) {
        l.codes[size_t(uint64_t(col) * row_bytes + uint64_t(k / 2))] |=
            uint8_t(awq_code(wbytes, k, words_per_row, col) << (4 * (k % 2)));
      }
    }
  }
  const auto zbytes = shards.data(qzeros);
  l.zeros.resize(size_t(groups * l.n));
  for (int64_t g = 0; g < groups; ++g)
    for (int64_t col = 0; col < l.n; ++col) l.zeros[size_t(g * l.n + col)] = awq_code(zbytes, g, words_per_row, col);
  l.scales = read_f16(shards.data(scales));
  return planar_from_imported(l, fmt::format("{}: '{}'", source, prefix));
}

}  // namespace marlin
