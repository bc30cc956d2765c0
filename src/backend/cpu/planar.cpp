#include "backend/cpu/planar.h"

#include "core/error.h"
#include "quant/pack.h"

namespace marlin::cpu {

bool is_planar(FormatKind kind) {
  return kind != FormatKind::kGgml && kind != FormatKind::kTrellis && format_info(kind).scale != ScaleType::kNone;
}
bool is_planar_int8(FormatKind kind) { return is_planar(kind) && kind != FormatKind::kFp8E4M3; }

PlanarGeometry planar_geometry(const QuantTensor& w) {
  PlanarGeometry g;
  const FormatInfo& info = format_info(w.format.kind);
  g.bits = info.code_bits;
  g.group = w.format.group_size > 0 ? w.format.group_size : w.cols;
  g.groups = w.groups();
  g.scale_bytes = scale_bytes(info.scale);
  g.meta_row_bytes = w.format.sparse_24 ? sparse_meta_row_bytes(w.cols) : 0;
  return g;
}

Int8Format planar_int8_format(const TensorFormat& f) {
  MARLIN_CHECK(is_planar_int8(f.kind), "cpu matmul: format {} has no int8 form", f.name());
  const int bits = format_info(f.kind).code_bits;
  const LaneLayout layout = bits == 4 && !f.sparse_24 ? LaneLayout::EvenOdd : LaneLayout::Nibble32;
  if (f.kind == FormatKind::kFp4 || f.kind == FormatKind::kMxFp4 || f.kind == FormatKind::kNvFp4) return {layout, -12, false, true};
  if (f.asymmetric) return {layout, 0, true, true};
  return {layout, -(1 << (bits - 1)), false, true};
}

void unpack_planar_group_scalar(const QuantTensor& w, const PlanarGeometry& geo, int64_t r, int64_t g,
                                WeightGroup& out) {
  const FormatKind kind = w.format.kind;
  const bool fp4 = kind == FormatKind::kFp4 || kind == FormatKind::kMxFp4 || kind == FormatKind::kNvFp4;
  const uint8_t* row = w.codes + r * w.code_row_bytes;
  const uint8_t* meta = w.format.sparse_24 ? w.sparse_meta + r * geo.meta_row_bytes : nullptr;
  const uint8_t* zeros = w.format.asymmetric ? w.zeros + r * geo.groups : nullptr;
  const LaneLayout layout = planar_int8_format(w.format).layout;
  for (int p = 0; p < kGroup; ++p) {
    const int64_t k = g * kGroup + element_at(layout, p);
    if (k >= w.cols) {
      out.u[p] = 0;
      continue;
    }
    int64_t stored = k;  // index of k's code in the row
    if (meta) {
      const unsigned pattern = packed_code(meta, k / 4, 4), column = unsigned(k % 4);
      if (!(sparse_keep_mask(pattern) >> column & 1)) {  // dropped: the u of a zero weight
        out.u[p] = zeros ? zeros[k / geo.group] : uint8_t(1 << (geo.bits - 1));
        continue;
      }
      stored = 2 * (k / 4) + (column == ((pattern >> 2) & 3) ? 1 : 0);
    }
    const uint8_t code = packed_code(row, stored, geo.bits);
    out.u[p] = fp4 ? kFp4U[code] : code;
  }
  for (int lane = 0; lane < 32; ++lane) {
    const int64_t k = g * kGroup + element_at(layout, 4 * lane);
    if (k >= w.cols) {
      out.scale[lane] = out.min[lane] = 0.0f;
      continue;
    }
    const int64_t gi = k / geo.group;
    out.scale[lane] = planar_scale(w, geo, r, gi);
    out.min[lane] = zeros ? -out.scale[lane] * float(zeros[gi]) : out.scale[lane];
  }
}

}  // namespace marlin::cpu
