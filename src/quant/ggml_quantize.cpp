#include "quant/ggml_quantize.h"

#include <algorithm>
#include <cstring>

#include "core/error.h"
#include "core/half.h"

namespace marlin {
namespace {

inline void store_fp16(uint8_t* p, float v) {
  const uint16_t h = fp32_to_fp16(v);
  std::memcpy(p, &h, 2);
}

// The value of largest magnitude, sign kept (first one on ties), as ggml's reference picks it.
float signed_absmax(const float* x) {
  float amax = 0.0f, max = 0.0f;
  for (int j = 0; j < 32; ++j) {
    if (std::fabs(x[j]) > amax) {
      amax = std::fabs(x[j]);
      max = x[j];
    }
  }
  return max;
}

void min_max(const float* x, float& lo, float& hi) {
  lo = hi = x[0];
  for (int j = 1; j < 32; ++j) {
    lo = std::min(lo, x[j]);
    hi = std::max(hi, x[j]);
  }
}

// Packs 32 quants (< 16 after masking) as low nibble j / high nibble j + 16.
void pack_nibbles(const uint8_t* q, uint8_t* out) {
  for (int j = 0; j < 16; ++j) out[j] = uint8_t((q[j] & 0x0f) | ((q[j + 16] & 0x0f) << 4));
}

uint32_t pack_fifth_bits(const uint8_t* q) {
  uint32_t qh = 0;
  for (int j = 0; j < 32; ++j) qh |= uint32_t((q[j] >> 4) & 1) << j;
  return qh;
}

// Symmetric 4/5-bit: d = max / −levels_half, q = trunc(x/d + levels_half + 0.5) clamped.
void quantize_symmetric(const float* x, int half_levels, uint8_t* q, float& d) {
  d = signed_absmax(x) / float(-half_levels);
  const float inv = d != 0.0f ? 1.0f / d : 0.0f;
  const int top = 2 * half_levels - 1;
  for (int j = 0; j < 32; ++j)
    q[j] = uint8_t(std::min(top, int(std::trunc(x[j] * inv + (float(half_levels) + 0.5f)))));
}

// Asymmetric 4/5-bit: d = (max − min) / top, q = trunc((x − min)/d + 0.5) clamped.
void quantize_asymmetric(const float* x, int top, uint8_t* q, float& d, float& lo) {
  float hi;
  min_max(x, lo, hi);
  d = (hi - lo) / float(top);
  const float inv = d != 0.0f ? 1.0f / d : 0.0f;
  for (int j = 0; j < 32; ++j) q[j] = uint8_t(std::min(top, int(std::trunc((x[j] - lo) * inv + 0.5f))));
}

void quantize_block(GgmlType type, const float* x, uint8_t* b) {
  uint8_t q[32];
  float d = 0.0f, lo = 0.0f;
  switch (type) {
    case GgmlType::Q4_0:
      quantize_symmetric(x, 8, q, d);
      store_fp16(b, d);
      pack_nibbles(q, b + 2);
      return;
    case GgmlType::Q4_1:
      quantize_asymmetric(x, 15, q, d, lo);
      store_fp16(b, d);
      store_fp16(b + 2, lo);
      pack_nibbles(q, b + 4);
      return;
    case GgmlType::Q5_0: {
      quantize_symmetric(x, 16, q, d);
      store_fp16(b, d);
      const uint32_t qh = pack_fifth_bits(q);
      std::memcpy(b + 2, &qh, 4);
      pack_nibbles(q, b + 6);
      return;
    }
    case GgmlType::Q5_1: {
      quantize_asymmetric(x, 31, q, d, lo);
      store_fp16(b, d);
      store_fp16(b + 2, lo);
      const uint32_t qh = pack_fifth_bits(q);
      std::memcpy(b + 4, &qh, 4);
      pack_nibbles(q, b + 8);
      return;
    }
    case GgmlType::Q8_0: {
      float amax = 0.0f;
      for (int j = 0; j < 32; ++j) amax = std::max(amax, std::fabs(x[j]));
      d = amax / 127.0f;
      const float inv = d != 0.0f ? 1.0f / d : 0.0f;
      store_fp16(b, d);
      for (int j = 0; j < 32; ++j) b[2 + j] = uint8_t(int8_t(std::round(x[j] * inv)));
      return;
    }
    default:
      fail("quantize_row: no reference quantizer for {}", ggml_type_info(type).name);
  }
}

}  // namespace

void quantize_row(GgmlType type, const float* x, uint8_t* dst, int64_t n) {
  const GgmlTypeInfo& info = ggml_type_info(type);
  MARLIN_CHECK(n >= 0 && n % 32 == 0, "quantize_row: {} values is not a multiple of 32", n);
  MARLIN_CHECK(info.block_elements == 32, "quantize_row: no reference quantizer for {}", info.name);
  for (int64_t i = 0; i < n / 32; ++i) quantize_block(type, x + 32 * i, dst + i * info.block_bytes);
}

void quantize_row_q8_act(const float* x, BlockQ8Act* dst, int64_t n) {
  MARLIN_CHECK(n >= 0 && n % 32 == 0, "quantize_row_q8_act: {} values is not a multiple of 32", n);
  for (int64_t i = 0; i < n / 32; ++i) quantize_block_q8_act(x + 32 * i, dst[i].d, dst[i].q);
}

void quantize_row_q8_k(const float* x, BlockQ8K* dst, int64_t n) {
  MARLIN_CHECK(n >= 0 && n % 256 == 0, "quantize_row_q8_k: {} values is not a multiple of 256", n);
  for (int64_t i = 0; i < n / 256; ++i, x += 256) {
    BlockQ8K& b = dst[i];
    float amax = 0.0f, max = 0.0f;
    for (int j = 0; j < 256; ++j) {
      if (std::fabs(x[j]) > amax) {
        amax = std::fabs(x[j]);
        max = x[j];
      }
    }
    if (amax == 0.0f) {
      std::memset(&b, 0, sizeof b);
      continue;
    }
    // Scale by the signed extreme so it maps to −127 exactly (ggml's convention).
    const float inv = -127.0f / max;
    for (int j = 0; j < 256; ++j) b.q[j] = int8_t(std::min(127, int(std::nearbyint(inv * x[j]))));
    for (int g = 0; g < 16; ++g) {
      int sum = 0;
      for (int j = 0; j < 16; ++j) sum += b.q[16 * g + j];
      b.bsums[g] = int16_t(sum);
    }
    b.d = 1.0f / inv;
  }
}

}  // namespace marlin
