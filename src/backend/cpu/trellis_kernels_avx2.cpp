// AVX2 + FMA + F16C trellis kernels (trellis_matmul.h). The codebook of quant/trellis_code.h, 8
// states at a time: a 32-bit multiply-add, the piece mask, the two fp16 pieces widened to fp32 by
// integer ops (they are always normal), an exact fp32 add, and one F16C round trip for the
// fp16 rounding of the sum (vcvtps2ph rounds to nearest even, as the codebook says).
#include <immintrin.h>

#include <algorithm>
#include <array>
#include <cstdint>

#include "backend/cpu/trellis_matmul.h"
#include "quant/trellis.h"
#include "quant/trellis_code.h"
#include "quant/trellis_matrix.h"

#pragma GCC push_options
#pragma GCC target("avx2,fma,f16c")
// GCC 12's intrinsic headers build "undefined" vectors from themselves, which -Wall reports as
// (maybe-)uninitialized in every caller; the warning says nothing about this code.
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#pragma GCC diagnostic ignored "-Wuninitialized"

namespace marlin::cpu::detail {
namespace {

// Where the state of value t sits, for one K: the state is (window[word[t]] >> shift[t]) & 0xffff
// with window[w] = words[w] << 16 | words[w + 1] (circularly), as trellis_tile_state reads it.
struct StateIndex {
  alignas(32) int32_t word[kTrellisTileValues];
  alignas(32) int32_t shift[kTrellisTileValues];
};

const StateIndex& state_index(int k) {
  static const std::array<StateIndex, 8> tables = [] {
    std::array<StateIndex, 8> out{};
    for (int kk = 1; kk <= 8; ++kk) {
      const int stream_bits = kTrellisTileValues * kk;
      for (int t = 0; t < kTrellisTileValues; ++t) {
        const int start = (t * kk + kk - kTrellisStateBits + stream_bits) % stream_bits;
        out[size_t(kk - 1)].word[t] = start >> 4;
        out[size_t(kk - 1)].shift[t] = 16 - (start & 15);
      }
    }
    return out;
  }();
  return tables[size_t(k - 1)];
}

// fp16 bits (normal numbers only) in the low 16 bits of each lane -> fp32.
inline __m256 normal_half_to_float(__m256i h) {
  const __m256i sign = _mm256_slli_epi32(_mm256_and_si256(h, _mm256_set1_epi32(0x8000)), 16);
  const __m256i rest = _mm256_add_epi32(_mm256_and_si256(h, _mm256_set1_epi32(0x7fff)), _mm256_set1_epi32(112 << 10));
  return _mm256_castsi256_ps(_mm256_or_si256(sign, _mm256_slli_epi32(rest, 13)));
}

// The codebook values of 8 states.
inline __m256 trellis_values8(__m256i state) {
  const __m256i x = _mm256_add_epi32(_mm256_mullo_epi32(state, _mm256_set1_epi32(int32_t(kTrellisMul))),
                                     _mm256_set1_epi32(int32_t(kTrellisAdd)));
  const __m256i pieces = _mm256_or_si256(_mm256_and_si256(x, _mm256_set1_epi32(int32_t(kTrellisPieceMask))),
                                         _mm256_set1_epi32(int32_t(kTrellisPieceBits)));
  const __m256 lo = normal_half_to_float(pieces);
  const __m256 hi = normal_half_to_float(_mm256_srli_epi32(pieces, 16));
  const __m128i code = _mm256_cvtps_ph(_mm256_add_ps(lo, hi), _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
  return _mm256_mul_ps(_mm256_cvtph_ps(code), _mm256_set1_ps(kTrellisScale));
}

void decode_tile(const uint16_t* words, int k, float* out) {
  const int n = trellis_tile_words(k);
  alignas(32) uint32_t window[kTrellisMaxTileWords];
  for (int w = 0; w < n; ++w) window[w] = uint32_t(words[w]) << 16 | words[w + 1 == n ? 0 : w + 1];
  const StateIndex& index = state_index(k);
  const __m256i low16 = _mm256_set1_epi32(0xffff);
  for (int t = 0; t < kTrellisTileValues; t += 8) {
    const __m256i at = _mm256_load_si256(reinterpret_cast<const __m256i*>(index.word + t));
    const __m256i shift = _mm256_load_si256(reinterpret_cast<const __m256i*>(index.shift + t));
    const __m256i win = _mm256_i32gather_epi32(reinterpret_cast<const int*>(window), at, 4);
    const __m256i state = _mm256_and_si256(_mm256_srlv_epi32(win, shift), low16);
    _mm256_store_ps(out + t, trellis_values8(state));
  }
}

inline float horizontal_sum(__m256 v) {
  const __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
  const __m128 t = _mm_add_ps(s, _mm_movehl_ps(s, s));
  return _mm_cvtss_f32(_mm_add_ss(t, _mm_movehdup_ps(t)));
}

}  // namespace

void trellis_decode_tile_avx2(const uint16_t* words, int k, float* out) {
  alignas(32) float tile[kTrellisTileValues];
  decode_tile(words, k, tile);
  std::copy(tile, tile + kTrellisTileValues, out);
}

void trellis_strips_avx2(const QuantTensor& w, const float* x, int64_t m, int64_t s0, int64_t s1, float* y) {
  uint16_t words[kTrellisMaxTileWords];
  alignas(32) float tile[kTrellisTileValues];
  // acc[c·16 + rr]: 8 partial sums of row rr for activation row c (summed across lanes at the end).
  __m256 acc[kTrellisActRows * 16];
  const int k = w.format.bits;
  for (int64_t s = s0; s < s1; ++s) {
    for (int64_t c0 = 0; c0 < m; c0 += kTrellisActRows) {
      const int64_t rows_here = std::min(kTrellisActRows, m - c0);
      std::fill(acc, acc + rows_here * 16, _mm256_setzero_ps());
      for (int64_t j = 0; j < w.cols / 16; ++j) {
        trellis_load_tile(w, s, j, words);
        decode_tile(words, k, tile);
        for (int64_t c = 0; c < rows_here; ++c) {
          const float* xc = x + (c0 + c) * w.cols + 16 * j;
          const __m256 x0 = _mm256_loadu_ps(xc), x1 = _mm256_loadu_ps(xc + 8);
          __m256* a = acc + c * 16;
          for (int rr = 0; rr < 16; ++rr) {
            const __m256 part = _mm256_fmadd_ps(_mm256_load_ps(tile + 16 * rr), x0, a[rr]);
            a[rr] = _mm256_fmadd_ps(_mm256_load_ps(tile + 16 * rr + 8), x1, part);
          }
        }
      }
      for (int64_t c = 0; c < rows_here; ++c)
        for (int rr = 0; rr < 16; ++rr)
          y[(c0 + c) * w.rows + 16 * s + rr] = trellis_row_scale(w, 16 * s + rr) * horizontal_sum(acc[c * 16 + rr]);
    }
  }
}

}  // namespace marlin::cpu::detail

#pragma GCC pop_options
