#include "formats/hf_quant_linear.h"

#include <algorithm>
#include <cstring>
#include <numeric>

#include "core/error.h"
#include "formats/gguf_text.h"
#include "quant/pack.h"

namespace marlin {
namespace {

FormatKind kind_for_bits(int bits, const std::string& name) {
  switch (bits) {
    case 2:
      return FormatKind::kInt2;
    case 3:
      return FormatKind::kInt3;
    case 4:
      return FormatKind::kInt4;
    case 8:
      return FormatKind::kInt8;
    default:
      fail("{}: {}-bit codes have no marlin format (2, 3, 4 or 8)", name, bits);
  }
}

// The order that makes groups contiguous (inputs sorted by group, stable), or empty when the
// inputs already are in that order. Each group must then be a run of group_size inputs.
std::vector<int32_t> act_order_perm(const ImportedLinear& l, const std::string& name) {
  if (l.g_idx.empty()) return {};
  const int64_t groups = l.groups();
  bool trivial = true;
  for (int64_t k = 0; k < l.k; ++k) {
    const int32_t g = l.g_idx[size_t(k)];
    MARLIN_CHECK(g >= 0 && g < groups, "{}: g_idx[{}] = {} is outside 0..{}", name, k, g, groups - 1);
    trivial = trivial && g == k / l.group_size;
  }
  if (trivial) return {};
  std::vector<int32_t> perm(size_t(l.k));
  std::iota(perm.begin(), perm.end(), 0);
  std::stable_sort(perm.begin(), perm.end(),
                   [&](int32_t a, int32_t b) { return l.g_idx[size_t(a)] < l.g_idx[size_t(b)]; });
  for (int64_t j = 0; j < l.k; ++j) {
    MARLIN_CHECK(l.g_idx[size_t(perm[size_t(j)])] == j / l.group_size,
                 "{}: g_idx does not give every group {} inputs (group {} is short or long)", name, l.group_size,
                 l.g_idx[size_t(perm[size_t(j)])]);
  }
  return perm;
}

}  // namespace

QuantBuffers planar_from_imported(const ImportedLinear& l, const std::string& name) {
  const int64_t groups = l.groups();
  MARLIN_CHECK(l.codes.size() == l.row_bytes() * uint64_t(l.n) && l.scales.size() == size_t(groups * l.n) &&
                   l.zeros.size() == l.scales.size() && (l.g_idx.empty() || l.g_idx.size() == size_t(l.k)),
               "{}: imported sizes disagree", name);
  TensorFormat format;
  format.kind = kind_for_bits(l.bits, name);
  if (l.group_size == 32 || l.group_size == 64 || l.group_size == 128) {
    format.group_size = int(l.group_size);
  } else {
    MARLIN_CHECK(groups == 1, "{}: group size {} has no marlin format (32, 64, 128 or one group per output)", name,
                 l.group_size);
    format.group_size = 0;
  }
  const uint16_t mid = uint16_t(1u << (l.bits - 1));
  format.asymmetric = std::any_of(l.zeros.begin(), l.zeros.end(), [&](uint16_t z) { return z != mid; });
  std::vector<int32_t> perm = groups == 1 ? std::vector<int32_t>() : act_order_perm(l, name);
  format.act_order = !perm.empty();

  QuantBuffers out = QuantBuffers::allocate(format, l.n, l.k);
  if (format.act_order) out.perm = perm;
  const uint64_t row_bytes = l.row_bytes();  // == out.code_row_bytes
  std::vector<uint8_t> row(perm.empty() || l.bits == 4 || l.bits == 8 ? 0 : size_t(l.k));
  for (int64_t n = 0; n < l.n; ++n) {
    const uint8_t* src = l.codes.data() + size_t(n) * row_bytes;
    uint8_t* dst = out.codes.data() + size_t(n) * out.code_row_bytes;
    if (perm.empty()) {
      std::memcpy(dst, src, row_bytes);
    } else if (l.bits == 4) {
      auto nibble = [src](int32_t k) { return (src[k >> 1] >> ((k & 1) * 4)) & 15; };
      for (int64_t j = 0; j < l.k; j += 2) {
        const int high = j + 1 < l.k ? nibble(perm[size_t(j + 1)]) : 0;
        dst[j / 2] = uint8_t(nibble(perm[size_t(j)]) | high << 4);
      }
    } else if (l.bits == 8) {
      for (int64_t j = 0; j < l.k; ++j) dst[j] = src[perm[size_t(j)]];
    } else {
      for (int64_t j = 0; j < l.k; ++j) row[size_t(j)] = packed_code(src, perm[size_t(j)], l.bits);
      pack_codes(row.data(), l.k, l.bits, dst);
    }
    for (int64_t g = 0; g < groups; ++g) {
      const uint16_t s = l.scales[size_t(g * l.n + n)];
      out.scales[size_t(n * groups + g) * 2] = uint8_t(s);
      out.scales[size_t(n * groups + g) * 2 + 1] = uint8_t(s >> 8);
      if (format.asymmetric) {
        const uint16_t z = l.zeros[size_t(g * l.n + n)];
        MARLIN_CHECK(z <= 255, "{}: zero point {} (row {}, group {}) does not fit a byte", name, z, n, g);
        out.zeros[size_t(n * groups + g)] = uint8_t(z);
      }
    }
  }
  return out;
}

const SafetensorsShards::Entry& require_tensor(const SafetensorsShards& shards, const std::string& prefix,
                                               std::string_view part, std::string_view source) {
  const std::string name = prefix + "." + std::string(part);
  const auto* entry = shards.find(name);
  MARLIN_CHECK(entry != nullptr, "{}: tensor {} is missing", source, gguf_quote(name));
  return *entry;
}

void expect_tensor(const SafetensorsTensor& t, SafetensorsDtype dtype, int64_t rows, int64_t cols,
                   std::string_view source) {
  const bool shape_ok =
      t.shape.size() == 2 && (rows < 0 || t.shape[0] == uint64_t(rows)) && (cols < 0 || t.shape[1] == uint64_t(cols));
  if (t.dtype == dtype && shape_ok) return;
  auto dim = [](int64_t d) { return d < 0 ? std::string("*") : std::to_string(d); };
  fail("{}: tensor {} is {} {}, expected {} [{}, {}]", source, gguf_quote(t.name), safetensors_dtype_name(t.dtype),
       safetensors_shape_text(t.shape), safetensors_dtype_name(dtype), dim(rows), dim(cols));
}

std::vector<uint16_t> read_f16(std::span<const uint8_t> bytes) {
  std::vector<uint16_t> out(bytes.size() / 2);
  for (size_t i = 0; i < out.size(); ++i) out[i] = uint16_t(bytes[2 * i] | bytes[2 * i + 1] << 8);
  return out;
}

}  // namespace marlin
