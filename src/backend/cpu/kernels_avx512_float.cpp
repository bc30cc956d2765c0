// AVX-512 kernels for weights multiplied in fp32: f32, f16 (vcvtph2ps), bf16 (a shift), and fp8
// E4M3 with fp16 group scales. An E4M3 code becomes an fp16 by moving its bits (exact), then fp32;
// each group's dot product is multiplied by its scale once, so the rounding is that of an fp32 dot
// product plus one step per group. E4M3 is not an int8 form: its values span 2^-9..448, and as
// 8-bit integers times a per-group power of two they would need up to 15 + 4 bits.
#include <immintrin.h>

#include <cstdint>
#include <cstring>

#include "backend/cpu/kernels.h"
#include "backend/cpu/planar.h"

#pragma GCC push_options
#pragma GCC target("avx512f,avx512bw,avx512vl,avx512vnni,avx512vbmi,avx2,fma,f16c,bmi2")
// See kernels_avx512.cpp.
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#pragma GCC diagnostic ignored "-Wuninitialized"

#include "backend/cpu/kernels_avx512_int8.h"

namespace marlin::cpu::detail {
namespace {

constexpr int element_bytes(FormatKind e) { return e == FormatKind::kF32 ? 4 : e == FormatKind::kFp8E4M3 ? 1 : 2; }

inline __mmask16 mask16(int64_t valid) {
  return valid >= 16 ? __mmask16(0xffff) : valid <= 0 ? __mmask16(0) : __mmask16((1u << valid) - 1);
}
inline __mmask32 mask32(int64_t valid) { return valid >= 32 ? ~__mmask32(0) : (__mmask32(1) << valid) - 1; }

// 32 weights from column k of a row (fp8: value / 256; its scale carries the 256), all loaded
// (kTail false) or the first `valid`, the rest zero.
template <FormatKind E, bool kTail>
inline void load32(const uint8_t* row, int64_t k, int64_t valid, __m512& w0, __m512& w1) {
  const __mmask32 m = kTail ? mask32(valid) : ~__mmask32(0);
  if constexpr (E == FormatKind::kF32) {
    w0 = kTail ? _mm512_maskz_loadu_ps(__mmask16(m), row + 4 * k) : _mm512_loadu_ps(row + 4 * k);
    w1 = kTail ? _mm512_maskz_loadu_ps(__mmask16(m >> 16), row + 4 * k + 64) : _mm512_loadu_ps(row + 4 * k + 64);
  } else if constexpr (E == FormatKind::kFp8E4M3) {
    // The code's bits moved into an fp16 (exact: fp16 has the wider exponent and mantissa), NaN
    // codes (0x7f, 0xff: the ones with b + b = 0xfe) set to an fp16 NaN.
    const __m256i b = kTail ? _mm256_maskz_loadu_epi8(m, row + k) : _mm256_loadu_si256(reinterpret_cast<const __m256i*>(row + k));
    const __mmask32 nan = _mm256_cmpeq_epi8_mask(_mm256_add_epi8(b, b), _mm256_set1_epi8(int8_t(0xfe)));
    __m512i h = _mm512_and_si512(_mm512_slli_epi16(_mm512_cvtepi8_epi16(b), 7), _mm512_set1_epi16(short(0xbf80)));
    h = _mm512_mask_mov_epi16(h, nan, _mm512_set1_epi16(0x7e00));
    w0 = _mm512_cvtph_ps(_mm512_castsi512_si256(h));
    w1 = _mm512_cvtph_ps(_mm512_extracti64x4_epi64(h, 1));
  } else {
    const __m512i h = kTail ? _mm512_maskz_loadu_epi16(m, row + 2 * k) : _mm512_loadu_si512(row + 2 * k);
    if constexpr (E == FormatKind::kF16) {
      w0 = _mm512_cvtph_ps(_mm512_castsi512_si256(h));
      w1 = _mm512_cvtph_ps(_mm512_extracti64x4_epi64(h, 1));
    } else {
      w0 = _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(_mm512_castsi512_si256(h)), 16));
      w1 = _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(_mm512_extracti64x4_epi64(h, 1)), 16));
    }
  }
}

template <bool kTail>
inline __m512 load_x(const float* x, __mmask16 m) {
  return kTail ? _mm512_maskz_loadu_ps(m, x) : _mm512_loadu_ps(x);
}

// A weight matrix of element type E: rows of codes and, for fp8, fp16 scales per group of
// `group` columns (group = cols for one scale per row, and for the unscaled types).
template <FormatKind E>
struct FloatView {
  static constexpr bool kScaled = E == FormatKind::kFp8E4M3;
  explicit FloatView(const QuantTensor& w) : codes(w.codes), row_bytes(w.code_row_bytes), cols(w.cols) {
    group = cols;
    if constexpr (kScaled) {
      const PlanarGeometry geo = planar_geometry(w);
      scales = w.scales;
      group = geo.group;
      groups = geo.groups;
    }
  }
  const uint8_t* row(int64_t r) const { return codes + r * row_bytes; }
  // Scale of group gi of row r, times 256 (load32 gives fp8 values / 256).
  __m512 scale(int64_t r, int64_t gi) const {
    const uint8_t* s = scales + 2 * (r * groups + gi);
    return _mm512_set1_ps(_cvtsh_ss(uint16_t(s[0] | s[1] << 8)) * 256.0f);
  }

  const uint8_t* codes;
  uint64_t row_bytes;
  int64_t cols, group;
  const uint8_t* scales = nullptr;
  int64_t groups = 1;
};

// R weight rows against C activation rows (R = 1 or C = 1), two accumulator chains each, 32
// columns per step; decode (C = 1) prefetches the weight rows a few KB ahead. fp8 sums each group
// of columns on its own and adds it times the group's scale.
template <FormatKind E, int R, int C>
inline void dot_tile(const FloatView<E>& v, int64_t r, const float* x, float* y, int64_t y_stride) {
  static_assert(R == 1 || C == 1);
  constexpr int kEb = element_bytes(E), kN = R * C;
  constexpr bool kScaled = FloatView<E>::kScaled;
  const uint8_t* rows[R];
  for (int i = 0; i < R; ++i) rows[i] = v.row(r + i);
  __m512 total[kN], acc0[kN], acc1[kN];
  for (int j = 0; j < kN; ++j) total[j] = acc0[j] = acc1[j] = _mm512_setzero_ps();
  auto step = [&]<bool kTail>(int64_t k, int64_t valid) {
    const __mmask16 m0 = mask16(valid), m1 = mask16(valid - 16);
    for (int i = 0; i < R; ++i) {
      if constexpr (C == 1) {
        const uint8_t* pf = rows[i] + k * kEb + kPrefetchBytes;
        prefetch_t0(pf);
        if constexpr (32 * kEb > 64) prefetch_t0(pf + 64);
      }
      __m512 w0, w1;
      load32<E, kTail>(rows[i], k, valid, w0, w1);
      for (int c = 0; c < C; ++c) {
        const float* xc = x + c * v.cols + k;
        acc0[i + c] = _mm512_fmadd_ps(w0, load_x<kTail>(xc, m0), acc0[i + c]);
        acc1[i + c] = _mm512_fmadd_ps(w1, load_x<kTail>(xc + 16, m1), acc1[i + c]);
      }
    }
  };
  for (int64_t g0 = 0, gi = 0; g0 < v.cols; g0 += v.group, ++gi) {
    const int64_t g1 = g0 + v.group < v.cols ? g0 + v.group : v.cols;
    int64_t k = g0;
    for (; k + 32 <= g1; k += 32) step.template operator()<false>(k, 32);
    if (k < g1) step.template operator()<true>(k, g1 - k);
    if constexpr (kScaled) {
      for (int i = 0; i < R; ++i) {
        const __m512 s = v.scale(r + i, gi);
        for (int c = 0; c < C; ++c) {
          total[i + c] = _mm512_fmadd_ps(_mm512_add_ps(acc0[i + c], acc1[i + c]), s, total[i + c]);
          acc0[i + c] = acc1[i + c] = _mm512_setzero_ps();
        }
      }
    }
  }
  if constexpr (!kScaled)
    for (int j = 0; j < kN; ++j) total[j] = _mm512_add_ps(acc0[j], acc1[j]);
  if constexpr (R == 4) store_sums4(total, y);
  else
    for (int j = 0; j < kN; ++j) y[j * (R > 1 ? 1 : y_stride)] = _mm512_reduce_add_ps(total[j]);
}

template <FormatKind E>
void float_rows(const QuantTensor& w, const float* x, int64_t m, int64_t r0, int64_t r1, float* y) {
  const FloatView<E> v(w);
  if (m == 1) {
    int64_t r = r0;
    for (; r + 4 <= r1; r += 4) dot_tile<E, 4, 1>(v, r, x, y + r, 1);
    for (; r < r1; ++r) dot_tile<E, 1, 1>(v, r, x, y + r, 1);
    return;
  }
  int64_t block_rows = kRowBlockBytes / int64_t(w.code_row_bytes);
  if (block_rows < 1) block_rows = 1;
  for (int64_t rb = r0; rb < r1; rb += block_rows) {
    const int64_t re = rb + block_rows < r1 ? rb + block_rows : r1;
    for (int64_t c = 0; c < m;) {
      const float* xc = x + c * w.cols;
      float* yc = y + c * w.rows;
      const int64_t left = m - c;
      if (left >= 8) {
        for (int64_t r = rb; r < re; ++r) dot_tile<E, 1, 8>(v, r, xc, yc + r, w.rows);
        c += 8;
      } else if (left >= 4) {
        for (int64_t r = rb; r < re; ++r) dot_tile<E, 1, 4>(v, r, xc, yc + r, w.rows);
        c += 4;
      } else {
        for (int64_t r = rb; r < re; ++r) dot_tile<E, 1, 1>(v, r, xc, yc + r, w.rows);
        c += 1;
      }
    }
  }
}

}  // namespace

KernelSet kernels_avx512_float(const TensorFormat& f) {
  KernelSet set;
  switch (float_element(f).value_or(FormatKind::kInt4)) {
    case FormatKind::kF32: set.floating = float_rows<FormatKind::kF32>; break;
    case FormatKind::kF16: set.floating = float_rows<FormatKind::kF16>; break;
    case FormatKind::kBF16: set.floating = float_rows<FormatKind::kBF16>; break;
    case FormatKind::kFp8E4M3: set.floating = float_rows<FormatKind::kFp8E4M3>; break;
    default: break;
  }
  return set;
}

}  // namespace marlin::cpu::detail

#pragma GCC pop_options
