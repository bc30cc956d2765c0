#include "quant/dequant.h"

#include <algorithm>
#include <cstring>
#include <vector>

#include "core/error.h"
#include "core/half.h"
#include "quant/fp_codes.h"
#include "quant/ggml_dequant.h"
#include "quant/pack.h"
#include "quant/trellis_matrix.h"

namespace marlin {
namespace {

void dequantize_plain(const QuantTensor& t, const uint8_t* src, float* out) {
  const int64_t n = t.cols;
  switch (t.format.kind) {
    case FormatKind::kF32: std::memcpy(out, src, size_t(n) * 4); return;
    case FormatKind::kF16:
      for (int64_t k = 0; k < n; ++k) {
        uint16_t h;
        std::memcpy(&h, src + 2 * k, 2);
        out[k] = fp16_to_fp32(h);
      }
      return;
    case FormatKind::kBF16:
      for (int64_t k = 0; k < n; ++k) {
        uint16_t h;
        std::memcpy(&h, src + 2 * k, 2);
        out[k] = bf16_to_fp32(h);
      }
      return;
    default: fail("format {} is not a plain float format", t.format.name());
  }
}

// The multiplier of group g of `row`: the stored scale (nvfp4: times the tensor scale).
float group_scale(const QuantTensor& t, int64_t row, int64_t g) {
  const size_t entry = size_t(row * t.groups() + g);
  switch (format_info(t.format.kind).scale) {
    case ScaleType::kF16: {
      uint16_t h;
      std::memcpy(&h, t.scales + 2 * entry, 2);
      return fp16_to_fp32(h);
    }
    case ScaleType::kE8M0: return e8m0_to_float(t.scales[entry]);
    case ScaleType::kE4M3: return t.tensor_scale * e4m3_to_float(t.scales[entry]);
    case ScaleType::kNone: break;
  }
  fail("format {} has no scales", t.format.name());
}

// The unscaled value of code q in group g (s·value is the weight).
struct CodeDecoder {
  FormatKind kind;
  int symmetric_zero;  // 2^(bits−1)
  const uint8_t* zeros;  // this row's zero points, or null

  float operator()(uint8_t q, int64_t g) const {
    switch (kind) {
      case FormatKind::kFp8E4M3: return e4m3_to_float(q);
      case FormatKind::kFp4:
      case FormatKind::kMxFp4:
      case FormatKind::kNvFp4: return e2m1_to_float(q);
      default: return float(int(q) - (zeros ? int(zeros[g]) : symmetric_zero));
    }
  }
};

}  // namespace

void dequantize_row(const QuantTensor& t, int64_t row, float* out) {
  t.validate();
  MARLIN_CHECK(row >= 0 && row < t.rows, "row {} out of range for a {}-row tensor", row, t.rows);
  const uint8_t* src = t.codes + uint64_t(row) * t.code_row_bytes;
  const TensorFormat& f = t.format;
  if (!f.quantized()) return dequantize_plain(t, src, out);
  if (f.kind == FormatKind::kGgml) return dequantize_row(f.ggml, src, out, t.cols);
  if (f.kind == FormatKind::kTrellis) return dequantize_trellis_row(t, row, out);

  const int bits = format_info(f.kind).code_bits;
  const int64_t groups = t.groups();
  const CodeDecoder decode{f.kind, 1 << (bits - 1), f.asymmetric ? t.zeros + row * groups : nullptr};
  const int64_t group = f.group_size == 0 ? t.cols : f.group_size;
  const int64_t stored = f.sparse_24 ? t.cols / 2 : t.cols;
  std::vector<uint8_t> codes(static_cast<size_t>(stored));
  unpack_codes(src, stored, bits, codes.data());

  if (!f.sparse_24) {
    for (int64_t g = 0; g < groups; ++g) {
      const float s = group_scale(t, row, g);
      const int64_t end = std::min(t.cols, (g + 1) * group);
      for (int64_t k = g * group; k < end; ++k) out[k] = s * decode(codes[size_t(k)], g);
    }
    return;
  }
  const uint8_t* meta = t.sparse_meta + uint64_t(row) * sparse_meta_row_bytes(t.cols);
  for (int64_t j = 0; j < t.cols / 4; ++j) {
    int first, second;
    MARLIN_CHECK(sparse_positions(packed_code(meta, j, 4), first, second),
                 "row {}: malformed 2:4 pattern {:#x} at columns {}..{}", row, packed_code(meta, j, 4), 4 * j,
                 4 * j + 3);
    const int64_t g = 4 * j / group;
    const float s = group_scale(t, row, g);
    float* o = out + 4 * j;
    o[0] = o[1] = o[2] = o[3] = 0.0f;
    o[first] = s * decode(codes[size_t(2 * j)], g);
    o[second] = s * decode(codes[size_t(2 * j + 1)], g);
  }
}

void check_permutation(const int32_t* perm, int64_t cols) {
  MARLIN_CHECK(perm != nullptr, "missing column permutation");
  std::vector<bool> seen(size_t(cols), false);
  for (int64_t k = 0; k < cols; ++k) {
    const int32_t p = perm[k];
    MARLIN_CHECK(p >= 0 && p < cols, "column permutation entry {} is {}, outside 0..{}", k, p, cols - 1);
    MARLIN_CHECK(!seen[size_t(p)], "column permutation repeats column {}", p);
    seen[size_t(p)] = true;
  }
}

}  // namespace marlin
