#include "quant/ggml_dequant.h"

#include <cstring>

#include "core/error.h"
#include "core/half.h"

// Bit-exactness note: products and sums below are separate fp32 operations, as in numpy. The
// library is built for baseline x86-64 (no FMA), so the compiler cannot contract them.

namespace marlin {
namespace {

inline float load_fp16(const uint8_t* p) {
  uint16_t h;
  std::memcpy(&h, p, 2);
  return fp16_to_fp32(h);
}

// Q4_0: f16 d, 16 bytes; byte j holds element j (low nibble) and j + 16 (high). w = d·(q − 8).
void dequant_q4_0(const uint8_t* b, float* y) {
  const float d = load_fp16(b);
  for (int j = 0; j < 16; ++j) {
    y[j] = d * float(int(b[2 + j] & 0x0f) - 8);
    y[j + 16] = d * float(int(b[2 + j] >> 4) - 8);
  }
}

// Q4_1: f16 d, f16 m, 16 bytes. w = d·q + m.
void dequant_q4_1(const uint8_t* b, float* y) {
  const float d = load_fp16(b), m = load_fp16(b + 2);
  for (int j = 0; j < 16; ++j) {
    y[j] = d * float(b[4 + j] & 0x0f) + m;
    y[j + 16] = d * float(b[4 + j] >> 4) + m;
  }
}

inline uint32_t load_u32(const uint8_t* p) {
  uint32_t v;
  std::memcpy(&v, p, 4);
  return v;
}

// Q5_0: f16 d, u32 high bits (bit j -> element j), 16 bytes of low nibbles. w = d·(q − 16).
void dequant_q5_0(const uint8_t* b, float* y) {
  const float d = load_fp16(b);
  const uint32_t qh = load_u32(b + 2);
  for (int j = 0; j < 16; ++j) {
    const int lo = (b[6 + j] & 0x0f) | int(((qh >> j) & 1) << 4);
    const int hi = (b[6 + j] >> 4) | int(((qh >> (j + 16)) & 1) << 4);
    y[j] = d * float(lo - 16);
    y[j + 16] = d * float(hi - 16);
  }
}

// Q5_1: f16 d, f16 m, u32 high bits, 16 bytes. w = d·q + m.
void dequant_q5_1(const uint8_t* b, float* y) {
  const float d = load_fp16(b), m = load_fp16(b + 2);
  const uint32_t qh = load_u32(b + 4);
  for (int j = 0; j < 16; ++j) {
    const int lo = (b[8 + j] & 0x0f) | int(((qh >> j) & 1) << 4);
    const int hi = (b[8 + j] >> 4) | int(((qh >> (j + 16)) & 1) << 4);
    y[j] = d * float(lo) + m;
    y[j + 16] = d * float(hi) + m;
  }
}

// Q8_0: f16 d, 32 int8. w = d·q.
void dequant_q8_0(const uint8_t* b, float* y) {
  const float d = load_fp16(b);
  for (int j = 0; j < 32; ++j) y[j] = d * float(int8_t(b[2 + j]));
}

// Q4_K super-block (256): f16 d, f16 dmin, 12 bytes of 6-bit scales/mins, 128 bytes of nibbles.
// 32-byte chunk c holds sub-block 2c in its low nibbles and 2c + 1 in its high nibbles.
// w = (d·scale)·q − dmin·min.
void dequant_q4_k(const uint8_t* b, float* y) {
  const float d = load_fp16(b), dmin = load_fp16(b + 2);
  const uint8_t* scales = b + 4;
  const uint8_t* qs = b + 16;
  for (int sub = 0; sub < 8; ++sub) {
    uint8_t sc, mn;
    unpack_k_scale_min(scales, sub, sc, mn);
    const float scale = d * float(sc), offset = dmin * float(mn);
    const uint8_t* chunk = qs + 32 * (sub / 2);
    const int shift = 4 * (sub % 2);
    for (int l = 0; l < 32; ++l) y[32 * sub + l] = scale * float((chunk[l] >> shift) & 0x0f) - offset;
  }
}

// Q5_K super-block: as Q4_K plus 32 bytes of high bits after the scales (bit s of byte l is the
// fifth bit of element l of sub-block s).
void dequant_q5_k(const uint8_t* b, float* y) {
  const float d = load_fp16(b), dmin = load_fp16(b + 2);
  const uint8_t* scales = b + 4;
  const uint8_t* qh = b + 16;
  const uint8_t* qs = b + 48;
  for (int sub = 0; sub < 8; ++sub) {
    uint8_t sc, mn;
    unpack_k_scale_min(scales, sub, sc, mn);
    const float scale = d * float(sc), offset = dmin * float(mn);
    const uint8_t* chunk = qs + 32 * (sub / 2);
    const int shift = 4 * (sub % 2);
    for (int l = 0; l < 32; ++l) {
      const int q = ((chunk[l] >> shift) & 0x0f) | (((qh[l] >> sub) & 1) << 4);
      y[32 * sub + l] = scale * float(q) - offset;
    }
  }
}

// Q6_K super-block: 128 bytes low nibbles, 64 bytes of 2-bit highs, 16 int8 scales (one per 16
// weights), f16 d. Each 128-weight half uses 64 low bytes and 32 high bytes:
// element l (+32, +64, +96) takes low[l] lo (low[l+32] lo, low[l] hi, low[l+32] hi) and
// bits 0-1 (2-3, 4-5, 6-7) of high[l]. w = (d·scale)·(q − 32).
void dequant_q6_k(const uint8_t* b, float* y) {
  const float d = load_fp16(b + 208);
  for (int half = 0; half < 2; ++half) {
    const uint8_t* ql = b + 64 * half;
    const uint8_t* qh = b + 128 + 32 * half;
    const int8_t* sc = reinterpret_cast<const int8_t*>(b + 192 + 8 * half);
    float* out = y + 128 * half;
    for (int quarter = 0; quarter < 4; ++quarter) {
      const uint8_t* low = ql + 32 * (quarter % 2);
      const int low_shift = 4 * (quarter / 2);
      for (int l = 0; l < 32; ++l) {
        const int e = 32 * quarter + l;
        const int q = ((low[l] >> low_shift) & 0x0f) | (((qh[l] >> (2 * quarter)) & 3) << 4);
        out[e] = (d * float(sc[e / 16])) * float(q - 32);
      }
    }
  }
}

}  // namespace

void dequantize_row(GgmlType type, const uint8_t* src, float* dst, int64_t n) {
  const GgmlTypeInfo& info = ggml_type_info(type);
  MARLIN_CHECK(info.supported, "dequantize_row: type {} is not supported", info.name);
  MARLIN_CHECK(n >= 0 && n % info.block_elements == 0,
               "dequantize_row: {} values is not a whole number of {} blocks of {}", n, info.name,
               info.block_elements);
  const int64_t blocks = n / info.block_elements;
  void (*block_fn)(const uint8_t*, float*) = nullptr;
  switch (type) {
    case GgmlType::F32:
      std::memcpy(dst, src, size_t(n) * 4);
      return;
    case GgmlType::F16:
      for (int64_t i = 0; i < n; ++i) dst[i] = load_fp16(src + 2 * i);
      return;
    case GgmlType::BF16:
      for (int64_t i = 0; i < n; ++i) {
        uint16_t h;
        std::memcpy(&h, src + 2 * i, 2);
        dst[i] = bf16_to_fp32(h);
      }
      return;
    case GgmlType::Q4_0: block_fn = dequant_q4_0; break;
    case GgmlType::Q4_1: block_fn = dequant_q4_1; break;
    case GgmlType::Q5_0: block_fn = dequant_q5_0; break;
    case GgmlType::Q5_1: block_fn = dequant_q5_1; break;
    case GgmlType::Q8_0: block_fn = dequant_q8_0; break;
    case GgmlType::Q4_K: block_fn = dequant_q4_k; break;
    case GgmlType::Q5_K: block_fn = dequant_q5_k; break;
    case GgmlType::Q6_K: block_fn = dequant_q6_k; break;
    default: fail("dequantize_row: type {} is not supported", info.name);
  }
  for (int64_t i = 0; i < blocks; ++i)
    block_fn(src + i * info.block_bytes, dst + i * info.block_elements);
}

}  // namespace marlin
