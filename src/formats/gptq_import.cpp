#include "formats/gptq_import.h"

#include <algorithm>
#include <cstring>

#include "core/error.h"
#include "formats/gguf_text.h"
#include "formats/hf_json.h"
#include "formats/hf_quant_linear.h"
#include "quant/pack.h"

namespace marlin {
namespace {

// Column c of a [rows, cols] int32 tensor is the little-endian bit stream of output c's codes,
// which is marlin's codes row: copy the words of each column into row c of `out`. A tile of
// columns at a time keeps both the reads (256 contiguous bytes per row) and the writes in cache.
void columns_to_rows(std::span<const uint8_t> words, int64_t rows, int64_t cols, uint8_t* out) {
  constexpr int64_t kTile = 64;
  for (int64_t c0 = 0; c0 < cols; c0 += kTile) {
    const int64_t tile = std::min(kTile, cols - c0);
    for (int64_t r = 0; r < rows; ++r) {
      const uint8_t* src = words.data() + size_t((r * cols + c0) * 4);
      for (int64_t c = 0; c < tile; ++c) std::memcpy(out + size_t(((c0 + c) * rows + r) * 4), src + c * 4, 4);
    }
  }
}

}  // namespace

GptqConfig gptq_config_from_json(const nlohmann::json& j, std::string_view source) {
  MARLIN_CHECK(j.is_object(), "{}: the GPTQ configuration is {}, not an object", source, j.type_name());
  if (auto method = json_string(j, "quant_method", source)) {
    MARLIN_CHECK(*method == "gptq", "{}: quant_method {} is not gptq", source, gguf_quote(*method));
  }
  GptqConfig c;
  const auto bits = json_int(j, "bits", source);
  MARLIN_CHECK(bits.has_value(), "{}: 'bits' is missing", source);
  MARLIN_CHECK(*bits == 2 || *bits == 3 || *bits == 4 || *bits == 8,
               "{}: GPTQ with {} bits is not supported (2, 3, 4 or 8)", source, *bits);
  c.bits = int(*bits);
  const int64_t group = json_int(j, "group_size", source).value_or(128);
  MARLIN_CHECK(group == -1 || (group >= 1 && group <= (1 << 20)), "{}: group_size {} is not -1 or positive", source,
               group);
  c.group_size = int(group);
  c.desc_act = json_bool(j, "desc_act", source).value_or(false);
  c.sym = json_bool(j, "sym", source).value_or(true);
  auto format = json_string(j, "checkpoint_format", source);
  if (!format) format = json_string(j, "format", source);
  const std::string f = format.value_or("gptq");
  MARLIN_CHECK(f == "gptq" || f == "gptq_v2", "{}: GPTQ checkpoint format {} is not supported (gptq or gptq_v2)",
               source, gguf_quote(f));
  c.zeros_minus_one = f == "gptq";
  if (auto pack = json_string(j, "pack_dtype", source)) {
    MARLIN_CHECK(pack->find("int32") != std::string::npos, "{}: pack_dtype {} is not supported (int32)", source,
                 gguf_quote(*pack));
  }
  return c;
}

QuantBuffers import_gptq_linear(const SafetensorsShards& shards, const std::string& prefix, const GptqConfig& c,
                                std::string_view source) {
  const auto& qweight = require_tensor(shards, prefix, "qweight", source);
  expect_tensor(*qweight.tensor, SafetensorsDtype::kI32, -1, -1, source);
  const int64_t packed_rows = int64_t(qweight.tensor->shape[0]);
  const int64_t n = int64_t(qweight.tensor->shape[1]);
  MARLIN_CHECK(packed_rows > 0 && n > 0 && (packed_rows * 32) % c.bits == 0,
               "{}: tensor '{}.qweight' has shape {}, which holds no whole number of {}-bit inputs", source, prefix,
               safetensors_shape_text(qweight.tensor->shape), c.bits);
  MARLIN_CHECK((n * c.bits) % 32 == 0, "{}: {} outputs of '{}' do not pack into whole {}-bit qzeros words", source, n,
               prefix, c.bits);

  ImportedLinear l;
  l.bits = c.bits;
  l.k = packed_rows * 32 / c.bits;
  l.n = n;
  l.group_size = c.group_size == -1 ? 0 : c.group_size;
  const int64_t groups = l.groups();
  const int64_t zero_words = n * c.bits / 32;

  const auto& scales = require_tensor(shards, prefix, "scales", source);
  expect_tensor(*scales.tensor, SafetensorsDtype::kF16, groups, n, source);
  const auto& qzeros = require_tensor(shards, prefix, "qzeros", source);
  expect_tensor(*qzeros.tensor, SafetensorsDtype::kI32, groups, zero_words, source);

  l.codes.resize(size_t(l.row_bytes() * uint64_t(n)));
  columns_to_rows(shards.data(qweight), packed_rows, n, l.codes.data());
  // qzeros: row g is the stream of the N zero points of group g.
  const auto zbytes = shards.data(qzeros);
  std::vector<uint8_t> zero_codes(static_cast<size_t>(n));
  l.zeros.resize(size_t(groups * n));
  for (int64_t g = 0; g < groups; ++g) {
    unpack_codes(zbytes.data() + size_t(g * zero_words * 4), n, c.bits, zero_codes.data());
    for (int64_t col = 0; col < n; ++col) {
      l.zeros[size_t(g * n + col)] = uint16_t(zero_codes[size_t(col)] + (c.zeros_minus_one ? 1 : 0));
    }
  }
  l.scales = read_f16(shards.data(scales));

  if (const auto* g_idx = shards.find(prefix + ".g_idx")) {
    const auto& t = *g_idx->tensor;
    MARLIN_CHECK(t.dtype == SafetensorsDtype::kI32 && t.shape.size() == 1 && t.shape[0] == uint64_t(l.k),
                 "{}: tensor {} is {} {}, expected I32 [{}]", source, gguf_quote(t.name),
                 safetensors_dtype_name(t.dtype), safetensors_shape_text(t.shape), l.k);
    const auto bytes = shards.data(*g_idx);
    l.g_idx.resize(size_t(l.k));
    for (int64_t k = 0; k < l.k; ++k) l.g_idx[size_t(k)] = int32_t(word_at(bytes, size_t(k)));
  }
  return planar_from_imported(l, fmt::format("{}: '{}'", source, prefix));
}

}  // namespace marlin
