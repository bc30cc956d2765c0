// AVX-512 (F/BW/VBMI) + F16C trellis kernels (trellis_matmul.h): one tile row of 16 values per
// step. Same arithmetic as trellis_kernels_avx2.cpp; the 16 states of a row come from one 64-byte
// load and one cross-lane byte permutation (vpermb), since their bits span up to 18 bytes.
#include <immintrin.h>

#include <algorithm>
#include <array>
#include <cstdint>

#include "backend/cpu/trellis_matmul.h"
#include "quant/trellis.h"
#include "quant/trellis_code.h"
#include "quant/trellis_matrix.h"

#pragma GCC push_options
#pragma GCC target("avx512f,avx512bw,avx512vl,avx512vbmi,avx2,fma,f16c")
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#pragma GCC diagnostic ignored "-Wuninitialized"

namespace marlin::cpu::detail {
namespace {

// With the tile's stream as MSB-first bytes P preceded by its last 2 bytes (the circular wrap),
// the state of value t is the 16 bits starting at bit (t + 1)·K of P (see the AVX2 file). Row r's
// values start within P[2·r·K ..]: value i at bit (i + 1)·K past byte 2·r·K, so a 64-byte load
// there covers all 16; lane i takes bytes b + 2, b + 1, b (b = its byte) and a zero.
struct RowPermutation {
  alignas(64) uint8_t bytes[64];
  alignas(64) int32_t shift[16];
};

const RowPermutation& row_permutation(int k) {
  static const std::array<RowPermutation, 8> tables = [] {
    std::array<RowPermutation, 8> out{};
    for (int kk = 1; kk <= 8; ++kk) {
      RowPermutation& p = out[size_t(kk - 1)];
      for (int lane = 0; lane < 16; ++lane) {
        const int bit = (lane + 1) * kk, byte = bit >> 3;
        p.bytes[4 * lane] = uint8_t(byte + 2);
        p.bytes[4 * lane + 1] = uint8_t(byte + 1);
        p.bytes[4 * lane + 2] = uint8_t(byte);
        p.bytes[4 * lane + 3] = 63;  // a byte that is always zero: masked off below
        p.shift[lane] = 8 - (bit & 7);
      }
    }
    return out;
  }();
  return tables[size_t(k - 1)];
}

// P: 2 wrap bytes, the 32·K stream bytes, then zeros past the last row's 64-byte load.
constexpr int kPaddedBytes = 2 + 32 * 8 + 64;

void load_stream(const uint8_t* tile, int k, uint8_t* padded) {
  const __m256i swap = _mm256_setr_epi8(1, 0, 3, 2, 5, 4, 7, 6, 9, 8, 11, 10, 13, 12, 15, 14, 1, 0, 3, 2, 5, 4, 7, 6, 9,
                                        8, 11, 10, 13, 12, 15, 14);
  for (int c = 0; c < k; ++c) {
    const __m256i raw = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(tile + 32 * c));
    _mm256_storeu_si256(reinterpret_cast<__m256i*>(padded + 2 + 32 * c), _mm256_shuffle_epi8(raw, swap));
  }
  padded[0] = padded[2 + 32 * k - 2];
  padded[1] = padded[2 + 32 * k - 1];
  _mm512_storeu_si512(padded + 2 + 32 * k, _mm512_setzero_si512());
}

inline __m512 normal_half_to_float(__m512i h) {
  const __m512i sign = _mm512_slli_epi32(_mm512_and_si512(h, _mm512_set1_epi32(0x8000)), 16);
  const __m512i rest = _mm512_add_epi32(_mm512_and_si512(h, _mm512_set1_epi32(0x7fff)), _mm512_set1_epi32(112 << 10));
  return _mm512_castsi512_ps(_mm512_or_si512(sign, _mm512_slli_epi32(rest, 13)));
}

// The codebook values of 16 states (quant/trellis_code.h, bit for bit).
inline __m512 trellis_values16(__m512i state) {
  const __m512i x = _mm512_add_epi32(_mm512_mullo_epi32(state, _mm512_set1_epi32(int32_t(kTrellisMul))),
                                     _mm512_set1_epi32(int32_t(kTrellisAdd)));
  // (x & mask) | bits in one ternary-logic op: A | (B & C) has truth table 0xF8 (A = bits, B = x).
  const __m512i pieces = _mm512_ternarylogic_epi32(_mm512_set1_epi32(int32_t(kTrellisPieceBits)), x,
                                                   _mm512_set1_epi32(int32_t(kTrellisPieceMask)), 0xF8);
  const __m512 lo = normal_half_to_float(pieces);
  const __m512 hi = normal_half_to_float(_mm512_srli_epi32(pieces, 16));
  const __m256i code = _mm512_cvtps_ph(_mm512_add_ps(lo, hi), _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
  return _mm512_mul_ps(_mm512_cvtph_ps(code), _mm512_set1_ps(kTrellisScale));
}

// The 16 values of row `row` of a tile whose padded stream is `padded`.
inline __m512 decode_row(const uint8_t* padded, int k, int row, __m512i permutation, __m512i shift) {
  const __m512i src = _mm512_loadu_si512(padded + 2 * row * k);
  const __m512i three = _mm512_maskz_permutexvar_epi8(0x7777777777777777ull, permutation, src);
  const __m512i state = _mm512_and_si512(_mm512_srlv_epi32(three, shift), _mm512_set1_epi32(0xffff));
  return trellis_values16(state);
}

// m = 1: the 16 row sums of one strip stay in registers (the unrolled row loop names each one).
void strip_gemv(const QuantTensor& w, const float* x, int64_t s, const __m512i permutation, const __m512i shift,
                uint8_t* padded, float* y) {
  const int k = w.format.bits;
  __m512 acc[16];
  for (auto& a : acc) a = _mm512_setzero_ps();
  for (int64_t j = 0; j < w.cols / 16; ++j) {
    load_stream(w.codes + trellis_tile_offset(w, s, j), k, padded);
    const __m512 xj = _mm512_loadu_ps(x + 16 * j);
#pragma GCC unroll 16
    for (int rr = 0; rr < 16; ++rr) acc[rr] = _mm512_fmadd_ps(decode_row(padded, k, rr, permutation, shift), xj, acc[rr]);
  }
  for (int rr = 0; rr < 16; ++rr) y[16 * s + rr] = trellis_row_scale(w, 16 * s + rr) * _mm512_reduce_add_ps(acc[rr]);
}

}  // namespace

void trellis_decode_tile_avx512(const uint16_t* words, int k, float* out) {
  alignas(64) uint8_t padded[kPaddedBytes];
  load_stream(reinterpret_cast<const uint8_t*>(words), k, padded);  // little-endian host
  const RowPermutation& p = row_permutation(k);
  const __m512i permutation = _mm512_load_si512(p.bytes), shift = _mm512_load_si512(p.shift);
  for (int row = 0; row < 16; ++row) _mm512_storeu_ps(out + 16 * row, decode_row(padded, k, row, permutation, shift));
}

// Each tile row is decoded into a register and multiplied with every activation row of the chunk
// before the next one: no tile buffer.
void trellis_strips_avx512(const QuantTensor& w, const float* x, int64_t m, int64_t s0, int64_t s1, float* y) {
  alignas(64) uint8_t padded[kPaddedBytes];
  __m512 acc[kTrellisActRows * 16];  // acc[c·16 + rr]: 16 partial sums of row rr for activation row c
  const int k = w.format.bits;
  const RowPermutation& p = row_permutation(k);
  const __m512i permutation = _mm512_load_si512(p.bytes), shift = _mm512_load_si512(p.shift);
  for (int64_t s = s0; s < s1; ++s) {
    if (m == 1) {
      strip_gemv(w, x, s, permutation, shift, padded, y);
      continue;
    }
    for (int64_t c0 = 0; c0 < m; c0 += kTrellisActRows) {
      const int64_t rows_here = std::min(kTrellisActRows, m - c0);
      std::fill(acc, acc + rows_here * 16, _mm512_setzero_ps());
      for (int64_t j = 0; j < w.cols / 16; ++j) {
        load_stream(w.codes + trellis_tile_offset(w, s, j), k, padded);
        for (int rr = 0; rr < 16; ++rr) {
          const __m512 v = decode_row(padded, k, rr, permutation, shift);
          for (int64_t c = 0; c < rows_here; ++c)
            acc[c * 16 + rr] = _mm512_fmadd_ps(v, _mm512_loadu_ps(x + (c0 + c) * w.cols + 16 * j), acc[c * 16 + rr]);
        }
      }
      for (int64_t c = 0; c < rows_here; ++c)
        for (int rr = 0; rr < 16; ++rr)
          y[(c0 + c) * w.rows + 16 * s + rr] =
              trellis_row_scale(w, 16 * s + rr) * _mm512_reduce_add_ps(acc[c * 16 + rr]);
    }
  }
}

}  // namespace marlin::cpu::detail

#pragma GCC pop_options
