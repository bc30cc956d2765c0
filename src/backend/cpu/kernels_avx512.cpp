// AVX-512 kernels (F/BW/VL/VNNI/VBMI): weight groups are unpacked in registers straight from the
// GGML bytes (vpermt2b gathers a group's nibbles/scales from two 64-byte loads), multiplied with
// int8 activations by vpdpbusd, and scaled per 4-value lane in fp32.
//
// Every header is included before the target pragma so that no inline library code is compiled
// for AVX-512 (it could be picked by the linker for other translation units).
#include <immintrin.h>

#include <cstdint>
#include <cstring>

#include "backend/cpu/kernels.h"
#include "quant/ggml_dequant.h"

#pragma GCC push_options
#pragma GCC target("avx512f,avx512bw,avx512vl,avx512vnni,avx512vbmi,avx2,fma,f16c,bmi2")
// GCC 12's AVX-512 intrinsic headers build "undefined" vectors from themselves, which -Wall
// reports as (maybe-)uninitialized in every caller; the warning says nothing about this code.
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#pragma GCC diagnostic ignored "-Wuninitialized"

namespace marlin::cpu::detail {
namespace {

// ---- permutation tables (built at compile time) ----

struct Idx64 {
  alignas(64) uint8_t v[64];
};

// vpermt2b index selecting byte `src` of a group whose bytes [0, 64) are in the first register and
// [second, second + 64) in the second.
constexpr uint8_t pick(int src, int second) { return uint8_t(src < 64 ? src : 64 + (src - second)); }

// Nibble32 types: the 16 quant bytes of each of 4 blocks (stride `block`, quants at `qs`).
constexpr Idx64 nibble_bytes(int block, int qs, int second) {
  Idx64 t{};
  for (int i = 0; i < 64; ++i) t.v[i] = pick(block * (i / 16) + qs + i % 16, second);
  return t;
}

// fp16 scales as 32 words (byte pairs; vpermt2b is one uop where vpermt2w is several):
// words 0..15 = the scale of block lane/4, 16..31 = its min.
constexpr Idx64 nibble_scale_bytes(int block, int min_at, int second) {
  Idx64 t{};
  for (int i = 0; i < 64; ++i) {
    const int word = i / 2;
    t.v[i] = pick(block * ((word % 16) / 4) + (word < 16 ? 0 : min_at) + i % 2, second);
  }
  return t;
}

// Q8_0 (34-byte blocks, 136-byte group): step t holds blocks 2t and 2t + 1.
constexpr Idx64 q8_0_bytes(int step) {
  Idx64 t{};
  for (int i = 0; i < 64; ++i) {
    const int src = 34 * (2 * step + i / 32) + 2 + i % 32;
    t.v[i] = uint8_t(step == 0 ? pick(src, 64) : (src < 128 ? src - 64 : 64 + (src - 72)));
  }
  return t;
}
// Words 8b..8b+7 = the scale of block b.
constexpr Idx64 q8_0_scale_bytes() {
  Idx64 t{};
  for (int i = 0; i < 64; ++i) t.v[i] = pick(34 * (i / 16) + i % 2, 64);
  return t;
}

constexpr Idx64 kQ4_0Bytes = nibble_bytes(18, 2, 8);
constexpr Idx64 kQ4_1Bytes = nibble_bytes(20, 4, 16);
constexpr Idx64 kQ5_0Bytes = nibble_bytes(22, 6, 24);
constexpr Idx64 kQ5_1Bytes = nibble_bytes(24, 8, 32);
constexpr Idx64 kQ4_0Scales = nibble_scale_bytes(18, 0, 8);
constexpr Idx64 kQ4_1Scales = nibble_scale_bytes(20, 2, 16);
constexpr Idx64 kQ5_0Scales = nibble_scale_bytes(22, 0, 24);
constexpr Idx64 kQ5_1Scales = nibble_scale_bytes(24, 2, 32);
constexpr Idx64 kQ8_0Step0 = q8_0_bytes(0);
constexpr Idx64 kQ8_0Step1 = q8_0_bytes(1);
constexpr Idx64 kQ8_0Scales = q8_0_scale_bytes();

inline __m512i load_idx(const Idx64& t) { return _mm512_load_si512(t.v); }

inline __mmask64 byte_mask(int64_t valid) {
  if (valid <= 0) return 0;
  return valid >= 64 ? ~__mmask64(0) : (__mmask64(1) << valid) - 1;
}

// ---- unpacked weight group in registers ----

struct W512 {
  __m512i q0, q1;
  __m512 scale0, scale1, min0, min1;
};

inline __m512 lo_half_ph(__m512i words) { return _mm512_cvtph_ps(_mm512_castsi512_si256(words)); }
inline __m512 hi_half_ph(__m512i words) { return _mm512_cvtph_ps(_mm512_extracti64x4_epi64(words, 1)); }

// Loads a group's bytes [0, 64) and [second, second + 64), masked to `bytes` for a partial group.
template <bool kTail>
inline void load_pair(const uint8_t* p, int second, int64_t bytes, __m512i& z0, __m512i& z1) {
  if constexpr (kTail) {
    z0 = _mm512_maskz_loadu_epi8(byte_mask(bytes), p);
    z1 = _mm512_maskz_loadu_epi8(byte_mask(bytes - second), p + second);
  } else {
    z0 = _mm512_loadu_si512(p);
    z1 = _mm512_loadu_si512(p + second);
  }
}

template <bool kAsym>
inline void nibble_scales(__m512i z0, __m512i z1, const Idx64& words, W512& w) {
  const __m512i v = _mm512_permutex2var_epi8(z0, load_idx(words), z1);
  w.scale0 = w.scale1 = lo_half_ph(v);
  w.min0 = w.min1 = kAsym ? hi_half_ph(v) : w.scale0;
}

inline void split_nibbles(__m512i packed, W512& w) {
  const __m512i low4 = _mm512_set1_epi8(0x0f);
  w.q0 = _mm512_and_si512(packed, low4);
  w.q1 = _mm512_and_si512(_mm512_srli_epi16(packed, 4), low4);
}

// Q4_0 / Q4_1: group = 4 blocks (72 / 80 bytes).
template <GgmlType T, bool kTail>
inline W512 unpack_q4(const uint8_t* p, int blocks) {
  constexpr bool kAsym = T == GgmlType::Q4_1;
  constexpr int kBlock = kAsym ? 20 : 18, kSecond = kAsym ? 16 : 8;
  __m512i z0, z1;
  load_pair<kTail>(p, kSecond, int64_t(kBlock) * blocks, z0, z1);
  W512 w;
  split_nibbles(_mm512_permutex2var_epi8(z0, load_idx(kAsym ? kQ4_1Bytes : kQ4_0Bytes), z1), w);
  nibble_scales<kAsym>(z0, z1, kAsym ? kQ4_1Scales : kQ4_0Scales, w);
  return w;
}

// Q5_0 / Q5_1: as Q4 plus a 32-bit word of fifth bits per block (bit j -> element j).
template <GgmlType T, bool kTail>
inline W512 unpack_q5(const uint8_t* p, int blocks) {
  constexpr bool kAsym = T == GgmlType::Q5_1;
  constexpr int kBlock = kAsym ? 24 : 22, kSecond = kAsym ? 32 : 24, kHigh = kAsym ? 4 : 2;
  __m512i z0, z1;
  load_pair<kTail>(p, kSecond, int64_t(kBlock) * blocks, z0, z1);
  W512 w;
  split_nibbles(_mm512_permutex2var_epi8(z0, load_idx(kAsym ? kQ5_1Bytes : kQ5_0Bytes), z1), w);
  nibble_scales<kAsym>(z0, z1, kAsym ? kQ5_1Scales : kQ5_0Scales, w);
  uint64_t low_bits = 0, high_bits = 0;
  for (int b = 0; b < (kTail ? blocks : 4); ++b) {
    uint32_t qh;
    std::memcpy(&qh, p + kBlock * b + kHigh, 4);
    low_bits |= uint64_t(qh & 0xffff) << (16 * b);
    high_bits |= uint64_t(qh >> 16) << (16 * b);
  }
  const __m512i bit4 = _mm512_set1_epi8(0x10);
  w.q0 = _mm512_or_si512(w.q0, _mm512_maskz_mov_epi8(low_bits, bit4));
  w.q1 = _mm512_or_si512(w.q1, _mm512_maskz_mov_epi8(high_bits, bit4));
  return w;
}

// Q8_0: group = 4 blocks (136 bytes); int8 quants become unsigned by flipping the sign bit.
template <bool kTail>
inline W512 unpack_q8_0(const uint8_t* p, int blocks) {
  const int64_t bytes = 34 * int64_t(blocks);
  __m512i z0, z1, z2;
  if constexpr (kTail) {
    z0 = _mm512_maskz_loadu_epi8(byte_mask(bytes), p);
    z1 = _mm512_maskz_loadu_epi8(byte_mask(bytes - 64), p + 64);
    z2 = _mm512_maskz_loadu_epi8(byte_mask(bytes - 72), p + 72);
  } else {
    z0 = _mm512_loadu_si512(p);
    z1 = _mm512_loadu_si512(p + 64);
    z2 = _mm512_loadu_si512(p + 72);
  }
  const __m512i sign = _mm512_set1_epi8(int8_t(0x80));
  W512 w;
  w.q0 = _mm512_xor_si512(_mm512_permutex2var_epi8(z0, load_idx(kQ8_0Step0), z1), sign);
  w.q1 = _mm512_xor_si512(_mm512_permutex2var_epi8(z1, load_idx(kQ8_0Step1), z2), sign);
  const __m512i v = _mm512_permutex2var_epi8(z0, load_idx(kQ8_0Scales), z1);
  w.scale0 = w.min0 = lo_half_ph(v);
  w.scale1 = w.min1 = hi_half_ph(v);
  return w;
}

inline float fp16_at(const uint8_t* p) { return _cvtsh_ss(uint16_t(p[0] | (p[1] << 8))); }

// Q4_K / Q5_K: the 4 sub-block scales/mins of a half super-block, spread over the lanes:
// step t has sub-block t in lanes 0..7 and t + 2 in lanes 8..15.
inline void k_nibble_scales(const uint8_t* sb, int half, W512& w) {
  const float d = fp16_at(sb), dmin = fp16_at(sb + 2);
  alignas(16) float sc[4], mn[4];
  for (int j = 0; j < 4; ++j) {
    uint8_t s, m;
    unpack_k_scale_min(sb + 4, 4 * half + j, s, m);
    sc[j] = d * float(s);
    mn[j] = -(dmin * float(m));
  }
  const __m512i step0 = _mm512_set_epi32(2, 2, 2, 2, 2, 2, 2, 2, 0, 0, 0, 0, 0, 0, 0, 0);
  const __m512i step1 = _mm512_set_epi32(3, 3, 3, 3, 3, 3, 3, 3, 1, 1, 1, 1, 1, 1, 1, 1);
  const __m512 s4 = _mm512_castps128_ps512(_mm_load_ps(sc)), m4 = _mm512_castps128_ps512(_mm_load_ps(mn));
  w.scale0 = _mm512_permutexvar_ps(step0, s4);
  w.scale1 = _mm512_permutexvar_ps(step1, s4);
  w.min0 = _mm512_permutexvar_ps(step0, m4);
  w.min1 = _mm512_permutexvar_ps(step1, m4);
}

template <GgmlType T>
inline W512 unpack_k_nibble(const uint8_t* sb, int half) {
  constexpr bool kFive = T == GgmlType::Q5_K;
  W512 w;
  split_nibbles(_mm512_loadu_si512(sb + (kFive ? 48 : 16) + 64 * half), w);
  if constexpr (kFive) {
    // Fifth bit of element l of sub-block s is bit s of high byte l; 16-bit shifts keep each
    // byte's own bit in bit 0 after masking.
    const __m512i qh = _mm512_broadcast_i64x4(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(sb + 16)));
    const __m512i one = _mm512_set1_epi8(1);
    const short s = short(4 * half);
    const __m512i shift0 = _mm512_inserti64x4(_mm512_set1_epi16(s), _mm256_set1_epi16(short(s + 2)), 1);
    const __m512i shift1 = _mm512_inserti64x4(_mm512_set1_epi16(short(s + 1)), _mm256_set1_epi16(short(s + 3)), 1);
    w.q0 = _mm512_or_si512(w.q0, _mm512_slli_epi16(_mm512_and_si512(_mm512_srlv_epi16(qh, shift0), one), 4));
    w.q1 = _mm512_or_si512(w.q1, _mm512_slli_epi16(_mm512_and_si512(_mm512_srlv_epi16(qh, shift1), one), 4));
  }
  k_nibble_scales(sb, half, w);
  return w;
}

// Q6_K half super-block: natural order; low nibbles + 2 high bits, one int8 scale per 16.
inline W512 unpack_q6_k(const uint8_t* sb, int half) {
  const __m512i ql = _mm512_loadu_si512(sb + 64 * half);
  const __m256i qh = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(sb + 128 + 32 * half));
  const __m512i qh2 = _mm512_inserti64x4(_mm512_castsi256_si512(qh), _mm256_srli_epi16(qh, 2), 1);
  const __m512i low4 = _mm512_set1_epi8(0x0f), two = _mm512_set1_epi8(3);
  W512 w;
  w.q0 = _mm512_or_si512(_mm512_and_si512(ql, low4), _mm512_slli_epi16(_mm512_and_si512(qh2, two), 4));
  w.q1 = _mm512_or_si512(_mm512_and_si512(_mm512_srli_epi16(ql, 4), low4),
                         _mm512_slli_epi16(_mm512_and_si512(_mm512_srli_epi16(qh2, 4), two), 4));
  const __m256i sc = _mm256_cvtepi8_epi32(_mm_loadl_epi64(reinterpret_cast<const __m128i*>(sb + 192 + 8 * half)));
  const __m256 scales = _mm256_mul_ps(_mm256_set1_ps(fp16_at(sb + 208)), _mm256_cvtepi32_ps(sc));
  const __m512i step0 = _mm512_set_epi32(3, 3, 3, 3, 2, 2, 2, 2, 1, 1, 1, 1, 0, 0, 0, 0);
  const __m512i step1 = _mm512_add_epi32(step0, _mm512_set1_epi32(4));
  const __m512 s8 = _mm512_castps256_ps512(scales);
  w.scale0 = w.min0 = _mm512_permutexvar_ps(step0, s8);
  w.scale1 = w.min1 = _mm512_permutexvar_ps(step1, s8);
  return w;
}

// Unpacks group g of a row; kTail marks a last group of fewer than 4 blocks (32-block types).
template <GgmlType T, bool kTail>
inline W512 unpack(const uint8_t* row, int64_t g, int blocks) {
  if constexpr (T == GgmlType::Q4_0) return unpack_q4<T, kTail>(row + g * 72, blocks);
  if constexpr (T == GgmlType::Q4_1) return unpack_q4<T, kTail>(row + g * 80, blocks);
  if constexpr (T == GgmlType::Q5_0) return unpack_q5<T, kTail>(row + g * 88, blocks);
  if constexpr (T == GgmlType::Q5_1) return unpack_q5<T, kTail>(row + g * 96, blocks);
  if constexpr (T == GgmlType::Q8_0) return unpack_q8_0<kTail>(row + g * 136, blocks);
  if constexpr (T == GgmlType::Q4_K) return unpack_k_nibble<T>(row + (g / 2) * 144, int(g % 2));
  if constexpr (T == GgmlType::Q5_K) return unpack_k_nibble<T>(row + (g / 2) * 176, int(g % 2));
  if constexpr (T == GgmlType::Q6_K) return unpack_q6_k(row + (g / 2) * 210, int(g % 2));
}

constexpr bool shared_lanes(GgmlType t) {
  return t == GgmlType::Q4_0 || t == GgmlType::Q4_1 || t == GgmlType::Q5_0 || t == GgmlType::Q5_1;
}

// ---- dot products ----

// Accumulators of C activation rows; two chains per row hide the fma latency.
template <int C>
struct Acc {
  __m512 a[C], b[C];
};

constexpr bool asymmetric(GgmlType t) {
  return t == GgmlType::Q4_1 || t == GgmlType::Q5_1 || t == GgmlType::Q4_K || t == GgmlType::Q5_K;
}

// scale·(d·dot) + min·s per lane; for symmetric types min = scale, so scale·(d·dot + s).
template <GgmlType T>
inline __m512 lane_terms(__m512 acc_in, __m512i dot, const float* d, const float* s, __m512 scale, __m512 min,
                         __m512& acc_min) {
  if constexpr (asymmetric(T)) {
    acc_min = _mm512_fmadd_ps(min, _mm512_load_ps(s), acc_min);
    return _mm512_fmadd_ps(scale, _mm512_mul_ps(_mm512_cvtepi32_ps(dot), _mm512_load_ps(d)), acc_in);
  } else {
    return _mm512_fmadd_ps(scale, _mm512_fmadd_ps(_mm512_cvtepi32_ps(dot), _mm512_load_ps(d), _mm512_load_ps(s)), acc_in);
  }
}

template <GgmlType T, int C>
inline void dot_group(const W512& w, const ActGroup* act, int64_t stride, Acc<C>& acc) {
  for (int c = 0; c < C; ++c) {
    const ActGroup& a = act[c * stride];
    const __m512i a0 = _mm512_load_si512(a.q), a1 = _mm512_load_si512(a.q + 64);
    if constexpr (shared_lanes(T)) {
      const __m512i dot = _mm512_dpbusd_epi32(_mm512_dpbusd_epi32(_mm512_setzero_si512(), w.q0, a0), w.q1, a1);
      acc.a[c] = lane_terms<T>(acc.a[c], dot, a.d, a.s, w.scale0, w.min0, acc.b[c]);
    } else {
      const __m512i dot0 = _mm512_dpbusd_epi32(_mm512_setzero_si512(), w.q0, a0);
      const __m512i dot1 = _mm512_dpbusd_epi32(_mm512_setzero_si512(), w.q1, a1);
      acc.a[c] = lane_terms<T>(acc.a[c], dot0, a.d, a.s, w.scale0, w.min0, acc.b[c]);
      acc.b[c] = lane_terms<T>(acc.b[c], dot1, a.d + 16, a.s + 16, w.scale1, w.min1, acc.a[c]);
    }
  }
}

constexpr bool blocks32(GgmlType t) {
  return t == GgmlType::Q4_0 || t == GgmlType::Q4_1 || t == GgmlType::Q5_0 || t == GgmlType::Q5_1 ||
         t == GgmlType::Q8_0;
}

// One weight row against C activation rows starting at `act` (row stride `groups`).
template <GgmlType T, int C>
inline void row_dot(const uint8_t* row, int64_t cols, const ActGroup* act, int64_t groups, float* y,
                    int64_t y_stride) {
  Acc<C> acc;
  for (int c = 0; c < C; ++c) acc.a[c] = acc.b[c] = _mm512_setzero_ps();
  const int tail_blocks = blocks32(T) ? int((cols / 32) % 4) : 0;
  const int64_t full = tail_blocks ? groups - 1 : groups;
  for (int64_t g = 0; g < full; ++g) dot_group<T, C>(unpack<T, false>(row, g, 4), act + g, groups, acc);
  if (tail_blocks) dot_group<T, C>(unpack<T, true>(row, full, tail_blocks), act + full, groups, acc);
  for (int c = 0; c < C; ++c) y[c * y_stride] = _mm512_reduce_add_ps(_mm512_add_ps(acc.a[c], acc.b[c]));
}

// Bytes of one group (4 blocks, or half a k-quant super-block).
constexpr int64_t group_bytes(GgmlType t) {
  switch (t) {
    case GgmlType::Q4_0: return 72;
    case GgmlType::Q4_1: return 80;
    case GgmlType::Q5_0: return 88;
    case GgmlType::Q5_1: return 96;
    case GgmlType::Q8_0: return 136;
    case GgmlType::Q4_K: return 72;
    case GgmlType::Q5_K: return 88;
    case GgmlType::Q6_K: return 105;
    default: return 64;
  }
}

// How far ahead of the group being computed the decode loop prefetches. Measured on the 2-core
// Sapphire Rapids VM: DRAM-streamed Q4_1 rows go from ~6 to ~10-12 GB/s per core (the raw read
// bandwidth of one core there is ~12 GB/s); 2-8 KB all do about equally well.
constexpr int64_t kPrefetchBytes = 4096;

// Decode (one activation row): R consecutive weight rows per pass share the activation loads and
// the loop and tail overhead, and their R sums are reduced together.
template <GgmlType T, int R>
inline void rows_dot_m1(const uint8_t* row, uint64_t row_bytes, int64_t cols, const ActGroup* act,
                        int64_t groups, float* y) {
  Acc<R> acc;  // acc.*[i] belongs to weight row i
  for (int i = 0; i < R; ++i) acc.a[i] = acc.b[i] = _mm512_setzero_ps();
  const int tail_blocks = blocks32(T) ? int((cols / 32) % 4) : 0;
  const int64_t full = tail_blocks ? groups - 1 : groups;
  constexpr int64_t kGroupBytes = group_bytes(T);
  for (int64_t g = 0; g < full; ++g)
    for (int i = 0; i < R; ++i) {
      // Software prefetch a few KB ahead keeps DRAM busy while this group computes (rows are
      // streamed in order; prefetches past the matrix are harmless hints).
      const uint8_t* pf = row + i * row_bytes + g * kGroupBytes + kPrefetchBytes;
      _mm_prefetch(reinterpret_cast<const char*>(pf), _MM_HINT_T0);
      if constexpr (kGroupBytes > 64) _mm_prefetch(reinterpret_cast<const char*>(pf + 64), _MM_HINT_T0);
      if constexpr (kGroupBytes > 128) _mm_prefetch(reinterpret_cast<const char*>(pf + 128), _MM_HINT_T0);
      Acc<1> one{{acc.a[i]}, {acc.b[i]}};
      dot_group<T, 1>(unpack<T, false>(row + i * row_bytes, g, 4), act + g, groups, one);
      acc.a[i] = one.a[0];
      acc.b[i] = one.b[0];
    }
  if (tail_blocks)
    for (int i = 0; i < R; ++i) {
      Acc<1> one{{acc.a[i]}, {acc.b[i]}};
      dot_group<T, 1>(unpack<T, true>(row + i * row_bytes, full, tail_blocks), act + full, groups, one);
      acc.a[i] = one.a[0];
      acc.b[i] = one.b[0];
    }
  if constexpr (R == 4) {
    // Transposing reduction: 4 vectors -> 4 sums with 3 levels of adds.
    __m512 v[4];
    for (int i = 0; i < 4; ++i) v[i] = _mm512_add_ps(acc.a[i], acc.b[i]);
    const __m512 v01 = _mm512_add_ps(_mm512_shuffle_f32x4(v[0], v[1], 0x44), _mm512_shuffle_f32x4(v[0], v[1], 0xee));
    const __m512 v23 = _mm512_add_ps(_mm512_shuffle_f32x4(v[2], v[3], 0x44), _mm512_shuffle_f32x4(v[2], v[3], 0xee));
    // v01 = [r0 (2 chunks), r1 (2 chunks)], v23 likewise; fold chunk pairs.
    const __m512 w = _mm512_add_ps(_mm512_shuffle_f32x4(v01, v23, 0x88), _mm512_shuffle_f32x4(v01, v23, 0xdd));
    // w = 4 chunks of 4 floats: r0, r1, r2, r3. Sum each chunk.
    const __m512 h1 = _mm512_add_ps(w, _mm512_permute_ps(w, 0x4e));
    const __m512 h2 = _mm512_add_ps(h1, _mm512_permute_ps(h1, 0xb1));
    const __m128 sums = _mm512_castps512_ps128(_mm512_permutexvar_ps(_mm512_setr_epi32(0, 4, 8, 12, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0), h2));
    _mm_storeu_ps(y, sums);
  } else {
    for (int i = 0; i < R; ++i) y[i] = _mm512_reduce_add_ps(_mm512_add_ps(acc.a[i], acc.b[i]));
  }
}

// Rows are visited in blocks that fit in L2 so that every chunk of activation rows reuses them.
constexpr int64_t kRowBlockBytes = 256 * 1024;

template <GgmlType T>
void int8_rows(const QuantMatrix& w, const ActGroup* act, int64_t m, int64_t r0, int64_t r1, float* y) {
  const int64_t groups = groups_for(w.cols);
  if (m == 1) {
    int64_t r = r0;
    for (; r + 4 <= r1; r += 4) rows_dot_m1<T, 4>(w.data + r * w.row_bytes, w.row_bytes, w.cols, act, groups, y + r);
    for (; r < r1; ++r) rows_dot_m1<T, 1>(w.data + r * w.row_bytes, w.row_bytes, w.cols, act, groups, y + r);
    return;
  }
  int64_t block_rows = kRowBlockBytes / int64_t(w.row_bytes);
  if (block_rows < 1) block_rows = 1;
  for (int64_t rb = r0; rb < r1; rb += block_rows) {
    const int64_t re = rb + block_rows < r1 ? rb + block_rows : r1;
    for (int64_t c = 0; c < m;) {
      const ActGroup* a = act + c * groups;
      float* yc = y + c * w.rows;
      const int64_t left = m - c;
      if (left >= 8) {
        for (int64_t r = rb; r < re; ++r) row_dot<T, 8>(w.data + r * w.row_bytes, w.cols, a, groups, yc + r, w.rows);
        c += 8;
      } else if (left >= 4) {
        for (int64_t r = rb; r < re; ++r) row_dot<T, 4>(w.data + r * w.row_bytes, w.cols, a, groups, yc + r, w.rows);
        c += 4;
      } else if (left >= 2) {
        for (int64_t r = rb; r < re; ++r) row_dot<T, 2>(w.data + r * w.row_bytes, w.cols, a, groups, yc + r, w.rows);
        c += 2;
      } else {
        for (int64_t r = rb; r < re; ++r) row_dot<T, 1>(w.data + r * w.row_bytes, w.cols, a, groups, yc + r, w.rows);
        c += 1;
      }
    }
  }
}

// ---- activation quantization (bit-identical to quantize_activations) ----

struct LayoutTables {
  Idx64 lo, hi;  // vpermt2b over (q[0..63], q[64..127]) -> positions 0..63 / 64..127
  alignas(64) int32_t lane_block[32];
};

constexpr LayoutTables layout_tables(LaneLayout layout) {
  LayoutTables t{};
  for (int p = 0; p < 64; ++p) {
    t.lo.v[p] = uint8_t(element_at(layout, p));
    t.hi.v[p] = uint8_t(element_at(layout, p + 64));
  }
  for (int lane = 0; lane < 32; ++lane) t.lane_block[lane] = element_at(layout, 4 * lane) / 32;
  return t;
}

constexpr LayoutTables kNibble32Tables = layout_tables(LaneLayout::Nibble32);
constexpr LayoutTables kNaturalTables = layout_tables(LaneLayout::Natural);
constexpr LayoutTables kKNibbleTables = layout_tables(LaneLayout::KNibble);

// 32 values -> 32 int8 (in the low 256 bits' order) with d = max|x| / 127.
inline __m256i quantize32(const float* x, __mmask32 valid, float& d) {
  const __m512 v0 = _mm512_maskz_loadu_ps(__mmask16(valid), x);
  const __m512 v1 = _mm512_maskz_loadu_ps(__mmask16(valid >> 16), x + 16);
  const float amax = _mm512_reduce_max_ps(_mm512_max_ps(_mm512_abs_ps(v0), _mm512_abs_ps(v1)));
  d = amax / 127.0f;
  const __m512 inv = _mm512_set1_ps(amax > 0.0f ? 127.0f / amax : 0.0f);
  const __m128i q0 = _mm512_cvtepi32_epi8(_mm512_cvtps_epi32(_mm512_mul_ps(v0, inv)));
  const __m128i q1 = _mm512_cvtepi32_epi8(_mm512_cvtps_epi32(_mm512_mul_ps(v1, inv)));
  return _mm256_inserti128_si256(_mm256_castsi128_si256(q0), q1, 1);
}

void quantize_activations_avx512(GgmlType type, const float* x, int64_t rows, int64_t cols, ActGroup* out) {
  const Int8Format fmt = int8_format(type);
  const LayoutTables& tables = fmt.layout == LaneLayout::Nibble32 ? kNibble32Tables
                               : fmt.layout == LaneLayout::Natural ? kNaturalTables
                                                                   : kKNibbleTables;
  const __m512i perm_lo = load_idx(tables.lo), perm_hi = load_idx(tables.hi);
  const __m512i lane_block0 = _mm512_load_si512(tables.lane_block);
  const __m512i lane_block1 = _mm512_load_si512(tables.lane_block + 16);
  const __m512i ones = _mm512_set1_epi8(1);
  const __m512i factor = _mm512_set1_epi32(fmt.asymmetric ? 1 : fmt.offset);
  const int64_t groups = groups_for(cols);
  for (int64_t r = 0; r < rows; ++r) {
    for (int64_t g = 0; g < groups; ++g) {
      const float* src = x + r * cols + g * kGroup;
      const int64_t valid = cols - g * kGroup;
      alignas(16) float d[4];
      __m256i q[4];
      for (int b = 0; b < 4; ++b) {
        const int64_t n = valid - 32 * b;
        const __mmask32 mask = n >= 32 ? ~__mmask32(0) : n <= 0 ? 0 : (__mmask32(1) << n) - 1;
        q[b] = quantize32(src + 32 * b, mask, d[b]);
      }
      const __m512i nat0 = _mm512_inserti64x4(_mm512_castsi256_si512(q[0]), q[1], 1);
      const __m512i nat1 = _mm512_inserti64x4(_mm512_castsi256_si512(q[2]), q[3], 1);
      const __m512i p0 = _mm512_permutex2var_epi8(nat0, perm_lo, nat1);
      const __m512i p1 = _mm512_permutex2var_epi8(nat0, perm_hi, nat1);
      ActGroup& a = out[r * groups + g];
      _mm512_store_si512(a.q, p0);
      _mm512_store_si512(a.q + 64, p1);
      __m512i sum0 = _mm512_dpbusd_epi32(_mm512_setzero_si512(), ones, p0);
      __m512i sum1 = _mm512_dpbusd_epi32(_mm512_setzero_si512(), ones, p1);
      if (fmt.shared_lanes) {
        sum0 = _mm512_add_epi32(sum0, sum1);
        sum1 = _mm512_setzero_si512();
      }
      const __m512 d4 = _mm512_castps128_ps512(_mm_load_ps(d));
      const __m512 d0 = _mm512_permutexvar_ps(lane_block0, d4), d1 = _mm512_permutexvar_ps(lane_block1, d4);
      _mm512_store_ps(a.d, d0);
      _mm512_store_ps(a.d + 16, d1);
      _mm512_store_ps(a.s, _mm512_mul_ps(d0, _mm512_cvtepi32_ps(_mm512_mullo_epi32(sum0, factor))));
      _mm512_store_ps(a.s + 16, _mm512_mul_ps(d1, _mm512_cvtepi32_ps(_mm512_mullo_epi32(sum1, factor))));
    }
  }
}

// ---- float weights ----

template <GgmlType T>
inline __m512 load_weights16(const uint8_t* row, int64_t k, __mmask16 mask) {
  if constexpr (T == GgmlType::F32) return _mm512_maskz_loadu_ps(mask, row + 4 * k);
  if constexpr (T == GgmlType::F16) return _mm512_cvtph_ps(_mm256_maskz_loadu_epi16(mask, row + 2 * k));
  if constexpr (T == GgmlType::BF16)
    return _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(_mm256_maskz_loadu_epi16(mask, row + 2 * k)), 16));
}

template <GgmlType T, int C>
inline void float_row(const uint8_t* row, int64_t cols, const float* x, float* y, int64_t y_stride) {
  __m512 acc[C];
  for (int c = 0; c < C; ++c) acc[c] = _mm512_setzero_ps();
  for (int64_t k = 0; k < cols; k += 16) {
    const __mmask16 mask = cols - k >= 16 ? __mmask16(0xffff) : __mmask16((1u << (cols - k)) - 1);
    const __m512 wv = load_weights16<T>(row, k, mask);
    for (int c = 0; c < C; ++c) acc[c] = _mm512_fmadd_ps(wv, _mm512_maskz_loadu_ps(mask, x + c * cols + k), acc[c]);
  }
  for (int c = 0; c < C; ++c) y[c * y_stride] = _mm512_reduce_add_ps(acc[c]);
}

template <GgmlType T>
void float_rows(const QuantMatrix& w, const float* x, int64_t m, int64_t r0, int64_t r1, float* y) {
  for (int64_t c = 0; c < m;) {
    const float* xc = x + c * w.cols;
    float* yc = y + c * w.rows;
    if (m - c >= 4) {
      for (int64_t r = r0; r < r1; ++r) float_row<T, 4>(w.data + r * w.row_bytes, w.cols, xc, yc + r, w.rows);
      c += 4;
    } else {
      for (int64_t r = r0; r < r1; ++r) float_row<T, 1>(w.data + r * w.row_bytes, w.cols, xc, yc + r, w.rows);
      c += 1;
    }
  }
}

}  // namespace

KernelSet kernels_avx512(GgmlType type) {
  switch (type) {
    case GgmlType::F32: return {nullptr, float_rows<GgmlType::F32>, nullptr};
    case GgmlType::F16: return {nullptr, float_rows<GgmlType::F16>, nullptr};
    case GgmlType::BF16: return {nullptr, float_rows<GgmlType::BF16>, nullptr};
    case GgmlType::Q4_0: return {int8_rows<GgmlType::Q4_0>, nullptr, quantize_activations_avx512};
    case GgmlType::Q4_1: return {int8_rows<GgmlType::Q4_1>, nullptr, quantize_activations_avx512};
    case GgmlType::Q5_0: return {int8_rows<GgmlType::Q5_0>, nullptr, quantize_activations_avx512};
    case GgmlType::Q5_1: return {int8_rows<GgmlType::Q5_1>, nullptr, quantize_activations_avx512};
    case GgmlType::Q8_0: return {int8_rows<GgmlType::Q8_0>, nullptr, quantize_activations_avx512};
    case GgmlType::Q4_K: return {int8_rows<GgmlType::Q4_K>, nullptr, quantize_activations_avx512};
    case GgmlType::Q5_K: return {int8_rows<GgmlType::Q5_K>, nullptr, quantize_activations_avx512};
    case GgmlType::Q6_K: return {int8_rows<GgmlType::Q6_K>, nullptr, quantize_activations_avx512};
    default: return {};  // the caller reports unsupported types
  }
}

}  // namespace marlin::cpu::detail

#pragma GCC pop_options
