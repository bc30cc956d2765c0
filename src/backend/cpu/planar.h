// The CPU kernels' view of marlin's planar weight formats (quant/format.h).
//
// Integer formats (int2/3/4/8, symmetric or with zero points) and the fp4 family (fp4, mxfp4,
// nvfp4) run in the int8 form (int8_layout.h), in EvenOdd order for 4-bit codes (a nibble split)
// and Nibble32 for the others and for 2:4 sparse int4:
//   int, symmetric     u = q,                 scale = s,    w = scale·(u − 2^(bits−1))
//   int, asymmetric    u = q,                 scale = s,    min = −s·z   (exact in fp32: 11 × 8 bits)
//   fp4 family         u = 2·e2m1(q) + 12,    scale = s/2,  w = scale·(u − 12)
// 2·e2m1 takes the values 0, ±1, ±2, ±3, ±4, ±6, ±8, ±12, so u is a small unsigned integer and the
// form is exact; s is the group's fp16 scale (fp4), 2^(e−127) (mxfp4) or t·e4m3(s) (nvfp4).
// 2:4 sparse int4 is expanded to the dense group: a dropped column gets the u of a zero weight
// (2^(bits−1), or the group's zero point). A malformed 2:4 pattern (first kept index ≥ second;
// the reference dequantizer rejects it, the kernels do not check data per call) drops all 4.
// fp8 (E4M3) is not an int8 form (its values span 2^-9..448): it runs through the float kernels.
#pragma once

#include <cstdint>

#include "backend/cpu/int8_layout.h"
#include "core/half.h"
#include "quant/format.h"
#include "quant/fp_codes.h"

namespace marlin::cpu {

// Sizes of a planar tensor as the kernels use them.
struct PlanarGeometry {
  int bits = 0;            // bits per code
  int64_t group = 0;       // values per scale entry (cols when one scale covers the row)
  int64_t groups = 0;      // scale entries per row
  int scale_bytes = 0;     // bytes per scale entry: 2 (fp16) or 1 (E8M0, E4M3)
  uint64_t meta_row_bytes = 0;  // 2:4 metadata bytes per row (0 when dense)
};

// Whether the format is planar: one of int8/4/3/2, fp8, fp4, mxfp4, nvfp4.
bool is_planar(FormatKind kind);
// Whether it runs in the int8 form (every planar format but fp8).
bool is_planar_int8(FormatKind kind);

PlanarGeometry planar_geometry(const QuantTensor& w);

// The int8 form (position order, offset, zero points, shared lanes) of an int8-form planar format.
Int8Format planar_int8_format(const TensorFormat& f);

// Code value → u for the fp4 family (u = 2·e2m1(code) + 12).
inline constexpr uint8_t kFp4U[16] = {12, 13, 14, 15, 16, 18, 20, 24, 12, 11, 10, 9, 8, 6, 4, 0};

// The 2:4 pattern of 4 columns as a mask of kept columns (bit i: column i kept); 0 for a
// malformed pattern.
inline constexpr uint8_t sparse_keep_mask(unsigned pattern) {
  const unsigned first = pattern & 3, second = (pattern >> 2) & 3;
  return first < second ? uint8_t((1u << first) | (1u << second)) : 0;
}

// Scale entry `gi` of row r in the int8 form (fp4 family: half the format's scale).
inline float planar_scale(const QuantTensor& w, const PlanarGeometry& geo, int64_t r, int64_t gi) {
  const uint8_t* entry = w.scales + (r * geo.groups + gi) * geo.scale_bytes;
  switch (w.format.kind) {
    case FormatKind::kMxFp4: return e8m0_to_float(entry[0]) * 0.5f;
    case FormatKind::kNvFp4: return w.tensor_scale * e4m3_to_float(entry[0]) * 0.5f;
    case FormatKind::kFp4: return fp16_to_fp32(uint16_t(entry[0] | entry[1] << 8)) * 0.5f;
    default: return fp16_to_fp32(uint16_t(entry[0] | entry[1] << 8));
  }
}

// Scalar unpacking of the 128-value group g of row r (values past cols unpack with zero scale).
// The reference for every SIMD unpacker of planar formats.
void unpack_planar_group_scalar(const QuantTensor& w, const PlanarGeometry& geo, int64_t r, int64_t g,
                                WeightGroup& out);

}  // namespace marlin::cpu
