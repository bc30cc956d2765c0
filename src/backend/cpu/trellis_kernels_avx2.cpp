// AVX2 + FMA + F16C trellis kernels (trellis_matmul.h). The codebook of quant/trellis_code.h, 8
// states at a time: a 32-bit multiply-add, the piece mask, the two fp16 pieces widened to fp32 by
// integer ops (they are always normal), an exact fp32 add, and one F16C round trip for the fp16
// rounding of the sum (vcvtps2ph rounds to nearest even, as the codebook says). Widening the
// pieces with F16C and a horizontal add instead measured slower: it piles shuffles on one port.
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

// State extraction without gathers. With the tile's stream as bytes P (MSB-first bits), preceded
// by its last 2 bytes (the circular wrap), the state of value t is the 16 bits starting at bit
// (t + 1)·K of P. Values 8g..8g+7 start within P[g·K .. g·K + 10] (bit (i + 1)·K ≤ 64 past g·K·8,
// plus 3 bytes), so one 16-byte load per group, broadcast to both lanes, and one byte shuffle put
// each value's 3 bytes in its 32-bit lane (big-endian: v = P[b]<<16 | P[b+1]<<8 | P[b+2]); then
// state = (v >> (8 − bit mod 8)) & 0xffff. The masks are the same for every group since 8·K bits
// is K whole bytes.
struct GroupShuffle {
  alignas(32) int8_t bytes[32];
  alignas(32) int32_t shift[8];
};

const GroupShuffle& group_shuffle(int k) {
  static const std::array<GroupShuffle, 8> tables = [] {
    std::array<GroupShuffle, 8> out{};
    for (int kk = 1; kk <= 8; ++kk) {
      GroupShuffle& g = out[size_t(kk - 1)];
      for (int lane = 0; lane < 8; ++lane) {
        const int bit = (lane + 1) * kk, byte = bit >> 3;
        int8_t* b = g.bytes + 4 * lane;  // lanes 4..7 read the same 16 bytes from the high half
        b[0] = int8_t(byte + 2);
        b[1] = int8_t(byte + 1);
        b[2] = int8_t(byte);
        b[3] = int8_t(0x80);  // zero
        g.shift[lane] = 8 - (bit & 7);
      }
    }
    return out;
  }();
  return tables[size_t(k - 1)];
}

// The padded stream bytes of one tile: P[0..1] = the stream's last 2 bytes, P[2..] = the stream
// (each little-endian stored word's bytes swapped), then zeros up to the last group's 16-byte load.
constexpr int kPaddedBytes = 2 + 32 * 8 + 16;

void load_stream(const uint8_t* tile, int k, uint8_t* padded) {
  const __m256i swap = _mm256_setr_epi8(1, 0, 3, 2, 5, 4, 7, 6, 9, 8, 11, 10, 13, 12, 15, 14, 1, 0, 3, 2, 5, 4, 7, 6, 9,
                                        8, 11, 10, 13, 12, 15, 14);
  for (int c = 0; c < k; ++c) {
    const __m256i raw = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(tile + 32 * c));
    _mm256_storeu_si256(reinterpret_cast<__m256i*>(padded + 2 + 32 * c), _mm256_shuffle_epi8(raw, swap));
  }
  padded[0] = padded[2 + 32 * k - 2];
  padded[1] = padded[2 + 32 * k - 1];
  _mm_storeu_si128(reinterpret_cast<__m128i*>(padded + 2 + 32 * k), _mm_setzero_si128());
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

// Decodes the tile whose stored bytes (little-endian words) start at `tile`.
void decode_tile(const uint8_t* tile, int k, float* out) {
  alignas(32) uint8_t padded[kPaddedBytes];
  load_stream(tile, k, padded);
  const GroupShuffle& g = group_shuffle(k);
  const __m256i bytes = _mm256_load_si256(reinterpret_cast<const __m256i*>(g.bytes));
  const __m256i shift = _mm256_load_si256(reinterpret_cast<const __m256i*>(g.shift));
  const __m256i low16 = _mm256_set1_epi32(0xffff);
  for (int group = 0; group < kTrellisTileValues / 8; ++group) {
    const __m256i src =
        _mm256_broadcastsi128_si256(_mm_loadu_si128(reinterpret_cast<const __m128i*>(padded + group * k)));
    const __m256i state = _mm256_and_si256(_mm256_srlv_epi32(_mm256_shuffle_epi8(src, bytes), shift), low16);
    _mm256_store_ps(out + 8 * group, trellis_values8(state));
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
  decode_tile(reinterpret_cast<const uint8_t*>(words), k, tile);  // little-endian host
  std::copy(tile, tile + kTrellisTileValues, out);
}

void trellis_strips_avx2(const QuantTensor& w, const float* x, int64_t m, int64_t s0, int64_t s1, float* y) {
  alignas(32) float tile[kTrellisTileValues];
  // acc[c·16 + rr]: 8 partial sums of row rr for activation row c (summed across lanes at the end).
  __m256 acc[kTrellisActRows * 16];
  const int k = w.format.bits;
  for (int64_t s = s0; s < s1; ++s) {
    for (int64_t c0 = 0; c0 < m; c0 += kTrellisActRows) {
      const int64_t rows_here = std::min(kTrellisActRows, m - c0);
      std::fill(acc, acc + rows_here * 16, _mm256_setzero_ps());
      for (int64_t j = 0; j < w.cols / 16; ++j) {
        decode_tile(w.codes + trellis_tile_offset(w, s, j), k, tile);
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
