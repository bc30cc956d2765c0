#include "backend/cpu/planar.h"

#include <cmath>
#include <cstring>
#include <limits>

#include "core/error.h"
#include "core/half.h"

namespace marlin::cpu {
namespace {

int code_bits(FormatKind kind) {
  switch (kind) {
    case FormatKind::kInt8:
    case FormatKind::kFp8E4M3: return 8;
    case FormatKind::kInt4:
    case FormatKind::kFp4:
    case FormatKind::kMxFp4:
    case FormatKind::kNvFp4: return 4;
    case FormatKind::kInt3: return 3;
    case FormatKind::kInt2: return 2;
    default: return 0;
  }
}

// The group size a kind prescribes (0: chosen per tensor).
int fixed_group(FormatKind kind) {
  return kind == FormatKind::kMxFp4 ? 32 : kind == FormatKind::kNvFp4 ? 16 : 0;
}

bool is_integer(FormatKind kind) {
  return kind == FormatKind::kInt8 || kind == FormatKind::kInt4 || kind == FormatKind::kInt3 ||
         kind == FormatKind::kInt2;
}

const char* kind_name(FormatKind kind) {
  switch (kind) {
    case FormatKind::kInt8: return "int8";
    case FormatKind::kInt4: return "int4";
    case FormatKind::kInt3: return "int3";
    case FormatKind::kInt2: return "int2";
    case FormatKind::kFp8E4M3: return "fp8";
    case FormatKind::kFp4: return "fp4";
    case FormatKind::kMxFp4: return "mxfp4";
    case FormatKind::kNvFp4: return "nvfp4";
    default: return "non-planar";
  }
}

// Bits [k·bits, (k+1)·bits) of a little-endian bit stream.
inline unsigned code_at(const uint8_t* row, int64_t k, int bits) {
  const int64_t bit = k * bits;
  unsigned word = row[bit / 8];
  if (bit % 8 + bits > 8) word |= unsigned(row[bit / 8 + 1]) << 8;
  return (word >> (bit % 8)) & ((1u << bits) - 1);
}

}  // namespace

bool is_planar(FormatKind kind) { return code_bits(kind) != 0; }
bool is_planar_int8(FormatKind kind) { return is_planar(kind) && kind != FormatKind::kFp8E4M3; }

PlanarGeometry planar_geometry(const QuantTensor& w) {
  PlanarGeometry g;
  g.bits = code_bits(w.format.kind);
  const int fixed = fixed_group(w.format.kind);
  g.group = fixed ? fixed : w.format.group_size > 0 ? w.format.group_size : w.cols;
  g.groups = g.group > 0 ? (w.cols + g.group - 1) / g.group : 0;
  g.scale_bytes = w.format.kind == FormatKind::kMxFp4 || w.format.kind == FormatKind::kNvFp4 ? 1 : 2;
  g.row_bytes = (uint64_t(w.cols) * uint64_t(g.bits) + 7) / 8;
  return g;
}

void check_planar(const QuantTensor& w) {
  const TensorFormat& f = w.format;
  const char* name = kind_name(f.kind);
  MARLIN_CHECK(is_planar(f.kind), "cpu matmul: format kind {} is not planar", int(f.kind));
  const int fixed = fixed_group(f.kind);
  if (fixed) {
    MARLIN_CHECK(f.group_size == 0 || f.group_size == fixed, "cpu matmul: {} takes groups of {}, not {}", name,
                 fixed, f.group_size);
  } else {
    MARLIN_CHECK(f.group_size == 0 || f.group_size == 32 || f.group_size == 64 || f.group_size == 128,
                 "cpu matmul: {} group size {} is not 32, 64, 128 or 0 (per channel)", name, f.group_size);
  }
  MARLIN_CHECK(!f.asymmetric || is_integer(f.kind), "cpu matmul: {} has no zero points", name);
  MARLIN_CHECK(!f.sparse_24, "cpu matmul: 2:4 sparse {} is not supported", name);
  const PlanarGeometry geo = planar_geometry(w);
  MARLIN_CHECK(w.code_row_bytes >= geo.row_bytes, "cpu matmul: code row stride {} is less than the {} bytes of a {} row",
               w.code_row_bytes, geo.row_bytes, name);
  if (w.rows == 0) return;
  MARLIN_CHECK(w.codes, "cpu matmul: null codes");
  MARLIN_CHECK(w.scales, "cpu matmul: null scales");
  MARLIN_CHECK(!f.asymmetric || w.zeros, "cpu matmul: asymmetric {} without zero points", name);
  MARLIN_CHECK(!f.act_order || w.perm, "cpu matmul: act-order {} without a permutation", name);
  MARLIN_CHECK(f.kind != FormatKind::kNvFp4 || std::isfinite(w.tensor_scale), "cpu matmul: nvfp4 tensor scale {} is not finite",
               w.tensor_scale);
}

Int8Format planar_int8_format(const TensorFormat& f) {
  switch (f.kind) {
    case FormatKind::kInt8:
    case FormatKind::kInt4:
    case FormatKind::kInt3:
    case FormatKind::kInt2:
      if (f.asymmetric) return {LaneLayout::Nibble32, 0, true, true};
      return {LaneLayout::Nibble32, -(1 << (code_bits(f.kind) - 1)), false, true};
    case FormatKind::kFp4:
    case FormatKind::kMxFp4: return {LaneLayout::Nibble32, -12, false, true};
    case FormatKind::kNvFp4: return {LaneLayout::Nibble32, -12, false, false};  // a scale per 16 values
    default: fail("cpu matmul: {} has no int8 form", kind_name(f.kind));
  }
}

float e4m3_to_float(uint8_t code) {
  const int exponent = (code >> 3) & 15, mantissa = code & 7;
  if ((code & 0x7f) == 0x7f) return std::numeric_limits<float>::quiet_NaN();
  const float magnitude = exponent == 0 ? std::ldexp(float(mantissa), -9) : std::ldexp(float(8 + mantissa), exponent - 10);
  return code & 0x80 ? -magnitude : magnitude;
}

float e8m0_to_float(uint8_t code) {
  return code == 0xff ? std::numeric_limits<float>::quiet_NaN() : std::ldexp(1.0f, int(code) - 127);
}

float planar_scale(const QuantTensor& w, const PlanarGeometry& geo, int64_t r, int64_t gi) {
  const uint8_t* entry = w.scales + (r * geo.groups + gi) * geo.scale_bytes;
  switch (w.format.kind) {
    case FormatKind::kMxFp4: return e8m0_to_float(entry[0]) * 0.5f;
    case FormatKind::kNvFp4: return w.tensor_scale * e4m3_to_float(entry[0]) * 0.5f;
    case FormatKind::kFp4: return fp16_to_fp32(uint16_t(entry[0] | entry[1] << 8)) * 0.5f;
    default: return fp16_to_fp32(uint16_t(entry[0] | entry[1] << 8));
  }
}

void unpack_planar_group_scalar(const QuantTensor& w, const PlanarGeometry& geo, int64_t r, int64_t g,
                                WeightGroup& out) {
  const bool fp4 = !is_integer(w.format.kind);
  const uint8_t* row = w.codes + r * w.code_row_bytes;
  for (int p = 0; p < kGroup; ++p) {
    const int64_t k = g * kGroup + element_at(LaneLayout::Nibble32, p);
    if (k >= w.cols) {
      out.u[p] = 0;
      continue;
    }
    const unsigned code = code_at(row, k, geo.bits);
    out.u[p] = fp4 ? kFp4U[code] : uint8_t(code);
  }
  for (int lane = 0; lane < 32; ++lane) {
    const int64_t k = g * kGroup + element_at(LaneLayout::Nibble32, 4 * lane);
    if (k >= w.cols) {
      out.scale[lane] = out.min[lane] = 0.0f;
      continue;
    }
    const int64_t gi = k / geo.group;
    out.scale[lane] = planar_scale(w, geo, r, gi);
    out.min[lane] = w.format.asymmetric ? -out.scale[lane] * float(w.zeros[r * geo.groups + gi]) : out.scale[lane];
  }
}

void dequantize_planar_row(const QuantTensor& w, int64_t r, float* out) {
  const uint8_t* row = w.codes + r * w.code_row_bytes;
  switch (w.format.kind) {
    case FormatKind::kF32: std::memcpy(out, row, size_t(w.cols) * 4); return;
    case FormatKind::kF16:
      for (int64_t k = 0; k < w.cols; ++k) out[k] = fp16_to_fp32(uint16_t(row[2 * k] | row[2 * k + 1] << 8));
      return;
    case FormatKind::kBF16:
      for (int64_t k = 0; k < w.cols; ++k) out[k] = bf16_to_fp32(uint16_t(row[2 * k] | row[2 * k + 1] << 8));
      return;
    default: break;
  }
  const PlanarGeometry geo = planar_geometry(w);
  if (w.format.kind == FormatKind::kFp8E4M3) {
    for (int64_t k = 0; k < w.cols; ++k) out[k] = planar_scale(w, geo, r, k / geo.group) * e4m3_to_float(row[k]);
    return;
  }
  const Int8Format form = planar_int8_format(w.format);
  WeightGroup wg;
  for (int64_t g = 0; g < groups_for(w.cols); ++g) {
    unpack_planar_group_scalar(w, geo, r, g, wg);
    for (int p = 0; p < kGroup; ++p) {
      const int64_t k = g * kGroup + element_at(LaneLayout::Nibble32, p);
      if (k >= w.cols) continue;
      const float u = float(wg.u[p]), scale = wg.scale[p / 4], min = wg.min[p / 4];
      out[k] = form.asymmetric ? scale * u + min : scale * (u + float(form.offset));
    }
  }
}

}  // namespace marlin::cpu
