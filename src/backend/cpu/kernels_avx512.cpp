// AVX-512 kernels (F/BW/VL/VNNI/VBMI) for GGML block types, the activation quantizer, and the
// AVX-512 dispatch: weight groups are unpacked in registers straight from the GGML bytes (vpermt2b
// gathers a group's nibbles/scales from two 64-byte loads), multiplied with int8 activations by
// vpdpbusd, and scaled per 4-value lane in fp32 (kernels_avx512_int8.h).
//
// Every header is included before the target pragma so that no inline library code is compiled
// for AVX-512 (it could be picked by the linker for other translation units).
#include <immintrin.h>

#include <cstdint>
#include <cstring>

#include "backend/cpu/kernels.h"
#include "backend/cpu/planar.h"
#include "quant/ggml_dequant.h"

#pragma GCC push_options
#pragma GCC target("avx512f,avx512bw,avx512vl,avx512vnni,avx512vbmi,avx2,fma,f16c,bmi2")
// GCC 12's AVX-512 intrinsic headers build "undefined" vectors from themselves, which -Wall
// reports as (maybe-)uninitialized in every caller; the warning says nothing about this code.
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#pragma GCC diagnostic ignored "-Wuninitialized"

#include "backend/cpu/kernels_avx512_int8.h"

namespace marlin::cpu::detail {
namespace {

// ---- permutation tables (built at compile time) ----

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

// ---- GGML blocks unpacked into registers ----

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

constexpr bool asymmetric(GgmlType t) {
  return t == GgmlType::Q4_1 || t == GgmlType::Q5_1 || t == GgmlType::Q4_K || t == GgmlType::Q5_K;
}

constexpr bool blocks32(GgmlType t) {
  return t == GgmlType::Q4_0 || t == GgmlType::Q4_1 || t == GgmlType::Q5_0 || t == GgmlType::Q5_1 ||
         t == GgmlType::Q8_0;
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

// The int8 loops' policy for a GGML type (kernels_avx512_int8.h).
template <GgmlType T>
struct GgmlPolicy {
  static constexpr bool kShared = shared_lanes(T), kAsym = asymmetric(T);

  struct Row {
    const uint8_t* p;
    int tail_blocks;
    template <bool kTail>
    W512 group(int64_t g) const {
      return unpack<T, kTail>(p, g, kTail ? tail_blocks : 4);
    }
    void prefetch(int64_t g) const {
      constexpr int64_t kGroupBytes = group_bytes(T);
      const uint8_t* pf = p + g * kGroupBytes + kPrefetchBytes;
      prefetch_t0(pf);
      if constexpr (kGroupBytes > 64) prefetch_t0(pf + 64);
      if constexpr (kGroupBytes > 128) prefetch_t0(pf + 128);
    }
  };

  explicit GgmlPolicy(const QuantTensor& w)
      : codes(w.codes),
        row_bytes(w.code_row_bytes),
        tail_blocks(blocks32(T) ? int((w.cols / 32) % 4) : 0),
        full_groups(groups_for(w.cols) - (tail_blocks ? 1 : 0)),
        tail(tail_blocks != 0) {}
  Row row(int64_t r) const { return {codes + r * row_bytes, tail_blocks}; }

  const uint8_t* codes;
  uint64_t row_bytes;
  int tail_blocks;
  int64_t full_groups;
  bool tail;
};

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
constexpr LayoutTables kEvenOddTables = layout_tables(LaneLayout::EvenOdd);

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

}  // namespace

void quantize_activations_avx512(const Int8Format& fmt, const float* x, int64_t rows, int64_t cols, ActGroup* out) {
  const LayoutTables& tables = fmt.layout == LaneLayout::Nibble32  ? kNibble32Tables
                               : fmt.layout == LaneLayout::Natural ? kNaturalTables
                               : fmt.layout == LaneLayout::EvenOdd ? kEvenOddTables
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

template <GgmlType T>
KernelSet ggml_set() {
  KernelSet set;
  set.int8 = int8_rows<GgmlPolicy<T>>;
  set.quantize = quantize_activations_avx512;
  set.form = int8_format(T);
  return set;
}

KernelSet kernels_avx512_ggml(GgmlType type) {
  switch (type) {
    case GgmlType::Q4_0: return ggml_set<GgmlType::Q4_0>();
    case GgmlType::Q4_1: return ggml_set<GgmlType::Q4_1>();
    case GgmlType::Q5_0: return ggml_set<GgmlType::Q5_0>();
    case GgmlType::Q5_1: return ggml_set<GgmlType::Q5_1>();
    case GgmlType::Q8_0: return ggml_set<GgmlType::Q8_0>();
    case GgmlType::Q4_K: return ggml_set<GgmlType::Q4_K>();
    case GgmlType::Q5_K: return ggml_set<GgmlType::Q5_K>();
    case GgmlType::Q6_K: return ggml_set<GgmlType::Q6_K>();
    default: return {};  // the caller reports unsupported types
  }
}

KernelSet kernels_avx512(const TensorFormat& f) {
  if (float_element(f)) return kernels_avx512_float(f);
  if (f.kind == FormatKind::kGgml) return kernels_avx512_ggml(f.ggml);
  return kernels_avx512_planar(f);
}

}  // namespace marlin::cpu::detail

#pragma GCC pop_options
