// AVX-512 FP16 trellis kernels (trellis_matmul.h): two tile rows (32 values) per step, the
// codebook of quant/trellis_code.h computed in 16-bit lanes. The tile stays in registers; two
// byte permutations (vpermt2b) and one double-width word shift (vpshldvw) give the 32 states;
// the 32-bit multiply-add runs on 16-bit halves with an explicit carry; one vaddph adds the two
// fp16 pieces with the codebook's rounding (to nearest even). The values are then widened to
// fp32, scaled by kTrellisScale and multiplied in fp32, as in the other kernels.
// Lane order: float lane 2i + h of the first (second) half of a step is row 2p + h, column i
// (8 + i), so one accumulator serves two rows against activations with each lane duplicated.
#include <immintrin.h>

#include <algorithm>
#include <array>
#include <cstdint>
#include <type_traits>
#include <utility>

#include "backend/cpu/trellis_matmul.h"
#include "core/error.h"
#include "quant/trellis.h"
#include "quant/trellis_code.h"
#include "quant/trellis_matrix.h"

#pragma GCC push_options
#pragma GCC target("avx512f,avx512bw,avx512vl,avx512vbmi,avx512vbmi2,avx512fp16,avx2,fma,f16c")
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#pragma GCC diagnostic ignored "-Wuninitialized"

namespace marlin::cpu::detail {
namespace {

// Where the states of rows 2p, 2p + 1 come from. Stream byte q (MSB-first bits) is raw tile byte
// q ^ 1 (little-endian words). The state of value t is the 16 stream bits from bit
// b = ((t + 1)·K − 16) mod 256·K (circular), inside stream bytes q = b / 8 .. q + 2: word lane
// `high` gets S[q]·256 + S[q + 1], `low` gets S[q + 2]·256, and vpshldvw by b mod 8 keeps the upper
// 16 bits of high:low shifted left. A pair's bytes span at most 4·K + 4 bytes (plus the wrap for
// pair 0), so they lie in two 64-byte tile registers.
struct PairTable {
  int reg_a = 0, reg_b = 0;       // vpermt2b's sources: index bit 6 picks reg_b
  alignas(64) uint8_t high[64] = {};
  alignas(64) uint8_t low[64] = {};
  alignas(64) uint16_t shift[32] = {};
};

// Word lane w of a step: row 2p + (w & 1), column (w & 15) / 2 + 8·(w / 16).
constexpr int lane_value(int pair, int w) { return (2 * pair + (w & 1)) * 16 + (w & 15) / 2 + 8 * (w / 16); }

constexpr PairTable make_pair_table(int k, int pair) {
  PairTable t;
  const int stream_bytes = 32 * k, stream_bits = 256 * k;
  const auto raw = [&](int q) { return (q % stream_bytes) ^ 1; };
  int regs[2] = {-1, -1};
  for (int w = 0; w < 32; ++w)
    for (int d = 0; d < 3; ++d) {
      const int b = ((lane_value(pair, w) + 1) * k - 16 + stream_bits) % stream_bits;
      const int reg = raw(b / 8 + d) / 64;
      if (regs[0] < 0 || regs[0] == reg) regs[0] = reg;
      else if (regs[1] < 0 || regs[1] == reg) regs[1] = reg;
      else throw "a pair's bytes span more than two registers";
    }
  t.reg_a = regs[0];
  t.reg_b = regs[1] < 0 ? regs[0] : regs[1];
  const auto index = [&](int q) { return uint8_t((raw(q) / 64 == t.reg_a ? 0 : 64) | (raw(q) % 64)); };
  for (int w = 0; w < 32; ++w) {
    const int b = ((lane_value(pair, w) + 1) * k - 16 + stream_bits) % stream_bits, q = b / 8;
    t.high[2 * w] = index(q + 1);
    t.high[2 * w + 1] = index(q);
    t.low[2 * w] = t.low[2 * w + 1] = index(q + 2);
    t.shift[w] = uint16_t(b % 8);
  }
  return t;
}

template <int K>
constexpr std::array<PairTable, 8> kPairTables = [] {
  std::array<PairTable, 8> out{};
  for (int p = 0; p < 8; ++p) out[size_t(p)] = make_pair_table(K, p);
  return out;
}();

// The 32·K tile bytes in ⌈K/2⌉ registers (an odd K's last one half full; nothing past the tile
// is read).
template <int K>
struct TileRegs {
  __m512i r[(K + 1) / 2];
  explicit TileRegs(const uint8_t* tile) {
    for (int i = 0; i < K / 2; ++i) r[i] = _mm512_loadu_si512(tile + 64 * i);
    if constexpr (K % 2 == 1)
      r[K / 2] = _mm512_zextsi256_si512(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(tile + 64 * (K / 2))));
  }
};

inline __m512i set1_u16(uint32_t v) { return _mm512_set1_epi16(int16_t(uint16_t(v))); }

// The fp16 codes of 32 states (16-bit lanes), bit for bit trellis_code_fp16.
inline __m512i codes32(__m512i state) {
  const __m512i mul_lo = set1_u16(kTrellisMul), add_lo = set1_u16(kTrellisAdd);
  const __m512i p_lo = _mm512_mullo_epi16(state, mul_lo);
  const __m512i x_lo = _mm512_add_epi16(p_lo, add_lo);
  const __mmask32 carry = _mm512_cmplt_epu16_mask(x_lo, add_lo);
  const __m512i t = _mm512_add_epi16(_mm512_mulhi_epu16(state, mul_lo),
                                     _mm512_mullo_epi16(state, set1_u16(kTrellisMul >> 16)));
  const __m512i x_hi = _mm512_mask_add_epi16(_mm512_add_epi16(t, set1_u16(kTrellisAdd >> 16)), carry, t,
                                             set1_u16((kTrellisAdd >> 16) + 1));
  // (x & mask) | bits: truth table 0xF8 for A | (B & C), A = bits, B = x, C = mask.
  const __m512i bits = set1_u16(kTrellisPieceBits), mask = set1_u16(kTrellisPieceMask);
  const __m512h lo = _mm512_castsi512_ph(_mm512_ternarylogic_epi32(bits, x_lo, mask, 0xF8));
  const __m512h hi = _mm512_castsi512_ph(_mm512_ternarylogic_epi32(bits, x_hi, mask, 0xF8));
  return _mm512_castph_si512(_mm512_add_round_ph(lo, hi, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC));
}

struct PairValues {
  __m512 first, second;  // columns 0..7 and 8..15 of rows 2p, 2p + 1 (see the lane order above)
};

template <int K, int P>
inline PairValues decode_pair(const TileRegs<K>& tile) {
  constexpr const PairTable& t = kPairTables<K>[P];
  const __m512i a = tile.r[t.reg_a], b = tile.r[t.reg_b];
  const __m512i high = _mm512_permutex2var_epi8(a, _mm512_load_si512(t.high), b);
  const __m512i low = _mm512_permutex2var_epi8(a, _mm512_load_si512(t.low), b);
  const __m512i code = codes32(_mm512_shldv_epi16(high, low, _mm512_load_si512(t.shift)));
  const __m512 scale = _mm512_set1_ps(kTrellisScale);
  return {_mm512_mul_ps(_mm512_cvtph_ps(_mm512_castsi512_si256(code)), scale),
          _mm512_mul_ps(_mm512_cvtph_ps(_mm512_extracti64x4_epi64(code, 1)), scale)};
}

// f.template operator()<P>() for P = 0..7, each with P a constant.
template <typename F>
inline void for_each_pair(F&& f) {
  [&]<int... P>(std::integer_sequence<int, P...>) { (f.template operator()<P>(), ...); }(
      std::make_integer_sequence<int, 8>{});
}

// Activations x[0..15] as (x0, x0, x1, x1, …, x7, x7) and (x8, x8, …, x15, x15).
struct DupActs {
  __m512 first, second;
};

inline DupActs dup_acts(const float* x) {
  const __m512 v = _mm512_loadu_ps(x);
  return {_mm512_permutexvar_ps(_mm512_setr_epi32(0, 0, 1, 1, 2, 2, 3, 3, 4, 4, 5, 5, 6, 6, 7, 7), v),
          _mm512_permutexvar_ps(_mm512_setr_epi32(8, 8, 9, 9, 10, 10, 11, 11, 12, 12, 13, 13, 14, 14, 15, 15), v)};
}

inline __m512 fma_pair(const PairValues& v, const DupActs& x, __m512 acc) {
  return _mm512_fmadd_ps(v.second, x.second, _mm512_fmadd_ps(v.first, x.first, acc));
}

// y[16s + 2p + h] = s_r · (sum of the lanes of acc[p] with parity h).
inline void store_strip(const QuantTensor& w, int64_t s, const __m512* acc, float* y) {
  for (int p = 0; p < 8; ++p)
    for (int h = 0; h < 2; ++h) {
      const int64_t r = 16 * s + 2 * p + h;
      y[r] = trellis_row_scale(w, r) * _mm512_reduce_add_ps(_mm512_maskz_mov_ps(h ? 0xaaaa : 0x5555, acc[p]));
    }
}

template <int K>
void strip_gemv(const QuantTensor& w, const float* x, int64_t s, float* y) {
  __m512 acc[8];
  for (auto& a : acc) a = _mm512_setzero_ps();
  for (int64_t j = 0; j < w.cols / 16; ++j) {
    const TileRegs<K> tile(w.codes + trellis_tile_offset(w, s, j));
    const DupActs xj = dup_acts(x + 16 * j);
    for_each_pair([&]<int P>() { acc[P] = fma_pair(decode_pair<K, P>(tile), xj, acc[P]); });
  }
  store_strip(w, s, acc, y);
}

// GEMM: the values of kPassTiles tiles are decoded once into an L1 buffer, then multiplied with
// every activation row of the chunk, two rows at a time with their 16 accumulators in registers
// (kept in acc between passes).
constexpr int64_t kPassTiles = 8;
constexpr int64_t kChunkRows = 64;

template <int R>
inline void multiply_rows(const PairValues (*values)[8], int64_t tiles, const float* x, int64_t cols, __m512* acc) {
  __m512 a[R][8];
  for (int r = 0; r < R; ++r)
    for (int p = 0; p < 8; ++p) a[r][p] = acc[8 * r + p];
  for (int64_t jj = 0; jj < tiles; ++jj) {
    DupActs xd[R];
    for (int r = 0; r < R; ++r) xd[r] = dup_acts(x + r * cols + 16 * jj);
    for (int p = 0; p < 8; ++p)
      for (int r = 0; r < R; ++r) a[r][p] = fma_pair(values[jj][p], xd[r], a[r][p]);
  }
  for (int r = 0; r < R; ++r)
    for (int p = 0; p < 8; ++p) acc[8 * r + p] = a[r][p];
}

template <int K>
void strip_gemm(const QuantTensor& w, const float* x, int64_t m, int64_t s, float* y) {
  PairValues values[kPassTiles][8];
  __m512 acc[kChunkRows * 8];  // acc[c·8 + p]: rows 2p, 2p + 1 for activation row c
  const int64_t tiles = w.cols / 16;
  for (int64_t c0 = 0; c0 < m; c0 += kChunkRows) {
    const int64_t rows_here = std::min(kChunkRows, m - c0);
    std::fill(acc, acc + rows_here * 8, _mm512_setzero_ps());
    for (int64_t j0 = 0; j0 < tiles; j0 += kPassTiles) {
      const int64_t n = std::min(kPassTiles, tiles - j0);
      for (int64_t jj = 0; jj < n; ++jj) {
        const TileRegs<K> tile(w.codes + trellis_tile_offset(w, s, j0 + jj));
        for_each_pair([&]<int P>() { values[jj][P] = decode_pair<K, P>(tile); });
      }
      const float* xc = x + c0 * w.cols + 16 * j0;
      int64_t c = 0;
      for (; c + 2 <= rows_here; c += 2) multiply_rows<2>(values, n, xc + c * w.cols, w.cols, acc + c * 8);
      if (c < rows_here) multiply_rows<1>(values, n, xc + c * w.cols, w.cols, acc + c * 8);
    }
    for (int64_t c = 0; c < rows_here; ++c) store_strip(w, s, acc + c * 8, y + (c0 + c) * w.rows);
  }
}

// f(std::integral_constant<int, K>{}) for k = K in 1..8.
template <typename F>
void with_bits(int k, F&& f) {
  switch (k) {
    case 1: return f(std::integral_constant<int, 1>{});
    case 2: return f(std::integral_constant<int, 2>{});
    case 3: return f(std::integral_constant<int, 3>{});
    case 4: return f(std::integral_constant<int, 4>{});
    case 5: return f(std::integral_constant<int, 5>{});
    case 6: return f(std::integral_constant<int, 6>{});
    case 7: return f(std::integral_constant<int, 7>{});
    case 8: return f(std::integral_constant<int, 8>{});
  }
  fail("trellis: {} bits per weight is outside 1..8", k);
}

}  // namespace

void trellis_decode_tile_avx512fp16(const uint16_t* words, int k, float* out) {
  with_bits(k, [&](auto bits) {
    constexpr int K = decltype(bits)::value;
    const TileRegs<K> tile(reinterpret_cast<const uint8_t*>(words));  // little-endian host
    const __m512i even = _mm512_setr_epi32(0, 2, 4, 6, 8, 10, 12, 14, 16, 18, 20, 22, 24, 26, 28, 30);
    const __m512i odd = _mm512_add_epi32(even, _mm512_set1_epi32(1));
    for_each_pair([&]<int P>() {
      const PairValues v = decode_pair<K, P>(tile);
      _mm512_storeu_ps(out + 32 * P, _mm512_permutex2var_ps(v.first, even, v.second));
      _mm512_storeu_ps(out + 32 * P + 16, _mm512_permutex2var_ps(v.first, odd, v.second));
    });
  });
}

void trellis_strips_avx512fp16(const QuantTensor& w, const float* x, int64_t m, int64_t s0, int64_t s1, float* y) {
  with_bits(w.format.bits, [&](auto bits) {
    constexpr int K = decltype(bits)::value;
    for (int64_t s = s0; s < s1; ++s) {
      if (m == 1) strip_gemv<K>(w, x, s, y);
      else strip_gemm<K>(w, x, m, s, y);
    }
  });
}

}  // namespace marlin::cpu::detail

#pragma GCC pop_options
