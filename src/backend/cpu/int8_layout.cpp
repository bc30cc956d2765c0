#include "backend/cpu/int8_layout.h"

#include <algorithm>
#include <cstring>

#include "core/error.h"
#include "core/half.h"
#include "quant/ggml_dequant.h"
#include "quant/ggml_quantize.h"

namespace marlin::cpu {
namespace {

inline float load_fp16(const uint8_t* p) {
  uint16_t h;
  std::memcpy(&h, p, 2);
  return fp16_to_fp32(h);
}

inline uint32_t load_u32(const uint8_t* p) {
  uint32_t v;
  std::memcpy(&v, p, 4);
  return v;
}

// A group decoded in element order: quant, scale and min factor of every element.
struct NaturalGroup {
  uint8_t u[kGroup] = {};
  float scale[kGroup] = {};
  float min[kGroup] = {};
};

void decode_block32(GgmlType type, const uint8_t* b, uint8_t* u, float& scale, float& min) {
  switch (type) {
    case GgmlType::Q4_0:
    case GgmlType::Q4_1: {
      const uint8_t* qs = b + (type == GgmlType::Q4_0 ? 2 : 4);
      for (int j = 0; j < 16; ++j) {
        u[j] = qs[j] & 0x0f;
        u[j + 16] = qs[j] >> 4;
      }
      scale = load_fp16(b);
      min = type == GgmlType::Q4_0 ? scale : load_fp16(b + 2);
      return;
    }
    case GgmlType::Q5_0:
    case GgmlType::Q5_1: {
      const bool asym = type == GgmlType::Q5_1;
      const uint32_t qh = load_u32(b + (asym ? 4 : 2));
      const uint8_t* qs = b + (asym ? 8 : 6);
      for (int j = 0; j < 16; ++j) {
        u[j] = uint8_t((qs[j] & 0x0f) | (((qh >> j) & 1) << 4));
        u[j + 16] = uint8_t((qs[j] >> 4) | (((qh >> (j + 16)) & 1) << 4));
      }
      scale = load_fp16(b);
      min = asym ? load_fp16(b + 2) : scale;
      return;
    }
    case GgmlType::Q8_0:
      for (int j = 0; j < 32; ++j) u[j] = uint8_t(b[2 + j] ^ 0x80);  // int8 q -> q + 128
      scale = min = load_fp16(b);
      return;
    default: fail("unpack_group_scalar: {} is not a 32-block type", ggml_type_info(type).name);
  }
}

// Elements 128·half .. 128·half + 127 of a k-quant super-block.
void decode_k_half(GgmlType type, const uint8_t* sb, int half, NaturalGroup& out) {
  if (type == GgmlType::Q6_K) {
    const float d = load_fp16(sb + 208);
    const uint8_t* ql = sb + 64 * half;
    const uint8_t* qh = sb + 128 + 32 * half;
    const int8_t* sc = reinterpret_cast<const int8_t*>(sb + 192 + 8 * half);
    for (int e = 0; e < kGroup; ++e) {
      const int quarter = e / 32, l = e % 32;
      const uint8_t low = ql[l + 32 * (quarter % 2)];
      out.u[e] = uint8_t(((low >> (4 * (quarter / 2))) & 0x0f) | (((qh[l] >> (2 * quarter)) & 3) << 4));
      out.scale[e] = out.min[e] = d * float(sc[e / 16]);
    }
    return;
  }
  const bool five = type == GgmlType::Q5_K;
  const float d = load_fp16(sb), dmin = load_fp16(sb + 2);
  const uint8_t* qh = sb + 16;
  const uint8_t* qs = sb + (five ? 48 : 16);
  for (int local = 0; local < 4; ++local) {
    const int sub = 4 * half + local;
    uint8_t sc, mn;
    unpack_k_scale_min(sb + 4, sub, sc, mn);
    const uint8_t* chunk = qs + 32 * (sub / 2);
    for (int l = 0; l < 32; ++l) {
      int q = (chunk[l] >> (4 * (sub % 2))) & 0x0f;
      if (five) q |= ((qh[l] >> sub) & 1) << 4;
      const int e = 32 * local + l;
      out.u[e] = uint8_t(q);
      out.scale[e] = d * float(sc);
      out.min[e] = -(dmin * float(mn));
    }
  }
}

}  // namespace

Int8Format int8_format(GgmlType type) {
  switch (type) {
    case GgmlType::Q4_0: return {LaneLayout::Nibble32, -8, false, true};
    case GgmlType::Q4_1: return {LaneLayout::Nibble32, 0, true, true};
    case GgmlType::Q5_0: return {LaneLayout::Nibble32, -16, false, true};
    case GgmlType::Q5_1: return {LaneLayout::Nibble32, 0, true, true};
    case GgmlType::Q8_0: return {LaneLayout::Natural, -128, false, false};
    case GgmlType::Q4_K: return {LaneLayout::KNibble, 0, true, false};
    case GgmlType::Q5_K: return {LaneLayout::KNibble, 0, true, false};
    case GgmlType::Q6_K: return {LaneLayout::Natural, -32, false, false};
    default: fail("no int8 kernel form for type {}", ggml_type_info(type).name);
  }
}

void unpack_group_scalar(GgmlType type, const uint8_t* row, int64_t cols, int64_t g, WeightGroup& out) {
  const GgmlTypeInfo& info = ggml_type_info(type);
  const Int8Format fmt = int8_format(type);
  NaturalGroup nat;
  if (info.block_elements == 256) {
    decode_k_half(type, row + (g / 2) * info.block_bytes, int(g % 2), nat);
  } else {
    const int64_t first = g * 4, blocks = std::min<int64_t>(4, cols / 32 - first);
    for (int b = 0; b < blocks; ++b) {
      float scale, min;
      decode_block32(type, row + (first + b) * info.block_bytes, nat.u + 32 * b, scale, min);
      std::fill_n(nat.scale + 32 * b, 32, scale);
      std::fill_n(nat.min + 32 * b, 32, min);
    }
  }
  for (int p = 0; p < kGroup; ++p) out.u[p] = nat.u[element_at(fmt.layout, p)];
  for (int lane = 0; lane < 32; ++lane) {
    const int e = element_at(fmt.layout, 4 * lane);
    out.scale[lane] = nat.scale[e];
    out.min[lane] = nat.min[e];
  }
}

void quantize_activations(const Int8Format& fmt, const float* x, int64_t rows, int64_t cols, ActGroup* out) {
  const int64_t groups = groups_for(cols);
  float padded[kGroup];
  for (int64_t r = 0; r < rows; ++r) {
    for (int64_t g = 0; g < groups; ++g) {
      const float* src = x + r * cols + g * kGroup;
      const int64_t valid = std::min<int64_t>(kGroup, cols - g * kGroup);
      if (valid < kGroup) {
        std::fill_n(padded, kGroup, 0.0f);
        std::copy_n(src, valid, padded);
        src = padded;
      }
      int8_t q[kGroup];
      float d[4];
      for (int b = 0; b < 4; ++b) quantize_block_q8_act(src + 32 * b, d[b], q + 32 * b);
      ActGroup& a = out[r * groups + g];
      for (int p = 0; p < kGroup; ++p) a.q[p] = q[element_at(fmt.layout, p)];
      int lane_sum[32];
      for (int lane = 0; lane < 32; ++lane)
        lane_sum[lane] = a.q[4 * lane] + a.q[4 * lane + 1] + a.q[4 * lane + 2] + a.q[4 * lane + 3];
      if (fmt.shared_lanes) {
        for (int lane = 0; lane < 16; ++lane) {
          lane_sum[lane] += lane_sum[lane + 16];
          lane_sum[lane + 16] = 0;
        }
      }
      for (int lane = 0; lane < 32; ++lane) {
        a.d[lane] = d[element_at(fmt.layout, 4 * lane) / 32];
        const int weight = fmt.asymmetric ? lane_sum[lane] : fmt.offset * lane_sum[lane];
        a.s[lane] = a.d[lane] * float(weight);
      }
    }
  }
}

}  // namespace marlin::cpu
