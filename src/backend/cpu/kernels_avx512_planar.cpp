// AVX-512 kernels for planar integer and fp4-family weights (planar.h) in the int8 form.
//
// A 128-value group's codes are 16·bits consecutive bytes. 4-bit codes (EvenOdd order) unpack by
// a nibble split. For 2 and 3 bits (Nibble32 order) every qword of a step holds 8 consecutive
// elements, i.e. `bits` consecutive code bytes: one vpermb moves those bytes into the qword and one
// vpmultishiftqb pulls each element's bits to its own byte; int8 codes are bytes already (one
// vpermt2b per step). fp4 codes then map to u = 2·e2m1 + 12 by one vpshufb. Scales (fp16, E8M0 or E4M3, 1-8 per group) are converted in a
// register and spread over the lanes by vpermps.
// 2:4 sparse int4 expands each group's 64 kept codes to the dense 128 positions: per position, a
// vpermb/vpmultishiftqb pair fetches its quad's 4-bit pattern, a 64-entry vpermb table keyed by
// (pattern, column in quad) says whether the column is kept and which of the quad's two codes it
// takes, a vpermb picks that code, and dropped columns get the u of a zero weight.
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

enum class Codes { Int, Fp4 };

// The vpermb table of 2:4 expansion: entry (pattern | column << 4) is 0x80 | (0 or 1) when the
// pattern keeps the column (as the quad's first or second code), 0 when it drops it.
constexpr Idx64 sparse_table() {
  Idx64 t{};
  for (int i = 0; i < 64; ++i) {
    const int pattern = i & 15, column = i >> 4;
    if (sparse_keep_mask(unsigned(pattern)) >> column & 1) t.v[i] = uint8_t(0x80 | (column == pattern >> 2 ? 1 : 0));
  }
  return t;
}
constexpr Idx64 kSparseTable = sparse_table();

// How a group's codes become its u: kBits: 2 or 3 bits (chosen at run time by the tables), kBytes:
// 8 bits, kNibbles: 4 bits, kSparse: 2:4 int4.
enum class Unpack { kBits, kBytes, kNibbles, kSparse };

template <Unpack kUnpack, Codes kCodes, ScaleType kScale, bool kZeroPoints>
struct PlanarPolicy {
  static constexpr bool kShared = true, kAsym = kZeroPoints;
  static constexpr bool kWide = kUnpack == Unpack::kBytes, kSparse = kUnpack == Unpack::kSparse;

  struct Row {
    const PlanarPolicy* p;
    const uint8_t* codes;
    const uint8_t* scales;
    const uint8_t* zeros;
    const uint8_t* meta;

    template <bool kTail>
    W512 group(int64_t g) const {
      W512 w;
      if constexpr (kSparse) unpack_sparse<kTail>(g, w);
      else unpack_codes<kTail>(codes + g * p->group_bytes, w);
      const __m512 s = load_scales(scales + g * p->entry_step * p->scale_bytes, kTail ? p->tail_entries : p->entries);
      w.scale0 = _mm512_permutexvar_ps(p->lane0, s);
      w.scale1 = w.scale0;
      if constexpr (kAsym) {
        // min = −s·z: s has 11 significant bits and z 8, so the product is exact in fp32.
        const __m128i zb = _mm_maskz_loadu_epi8(kTail ? p->tail_entries : p->entries, zeros + g * p->entry_step);
        const __m512 neg_z = _mm512_sub_ps(_mm512_setzero_ps(), _mm512_cvtepi32_ps(_mm512_cvtepu8_epi32(zb)));
        const __m512 m = _mm512_mul_ps(s, neg_z);
        w.min0 = _mm512_permutexvar_ps(p->lane0, m);
        w.min1 = w.min0;
      } else {
        w.min0 = w.scale0;
        w.min1 = w.scale1;
      }
      return w;
    }

    template <bool kTail>
    void unpack_codes(const uint8_t* c, W512& w) const {
      if constexpr (kWide) {
        const __m512i z0 = kTail ? _mm512_maskz_loadu_epi8(p->tail_mask0, c) : _mm512_loadu_si512(c);
        const __m512i z1 = kTail ? _mm512_maskz_loadu_epi8(p->tail_mask1, c + 64) : _mm512_loadu_si512(c + 64);
        w.q0 = _mm512_permutex2var_epi8(z0, p->perm0, z1);
        w.q1 = _mm512_permutex2var_epi8(z0, p->perm1, z1);
      } else if constexpr (kUnpack == Unpack::kNibbles) {
        const __m512i z = kTail ? _mm512_maskz_loadu_epi8(p->tail_mask0, c) : _mm512_loadu_si512(c);
        const __m512i low4 = _mm512_set1_epi8(0x0f);
        w.q0 = _mm512_and_si512(z, low4);
        w.q1 = _mm512_and_si512(_mm512_srli_epi16(z, 4), low4);
      } else {
        const __m512i z = _mm512_maskz_loadu_epi8(kTail ? p->tail_mask0 : p->code_mask, c);
        w.q0 = _mm512_and_si512(_mm512_multishift_epi64_epi8(p->shift, _mm512_permutexvar_epi8(p->perm0, z)), p->low);
        w.q1 = _mm512_and_si512(_mm512_multishift_epi64_epi8(p->shift, _mm512_permutexvar_epi8(p->perm1, z)), p->low);
      }
      if constexpr (kCodes == Codes::Fp4) {
        w.q0 = _mm512_shuffle_epi8(p->fp4_u, w.q0);
        w.q1 = _mm512_shuffle_epi8(p->fp4_u, w.q1);
      }
    }

    template <bool kTail>
    void unpack_sparse(int64_t g, W512& w) const {
      const __m512i low4 = _mm512_set1_epi8(0x0f);
      const __m512i packed = _mm512_maskz_loadu_epi8(kTail ? p->tail_mask0 : p->code_mask, codes + g * p->group_bytes);
      const __m512i kept = _mm512_and_si512(_mm512_multishift_epi64_epi8(p->shift, _mm512_permutexvar_epi8(p->perm0, packed)), low4);
      const __m128i patterns = _mm_maskz_loadu_epi8(kTail ? p->tail_meta_mask : 0xffff, meta + 16 * g);
      __m512i fill = _mm512_set1_epi8(8);  // u of a zero weight: 2^(bits−1), or the zero point
      if constexpr (kAsym) fill = _mm512_permutexvar_epi8(p->zero_of_position0, _mm512_castsi128_si512(
                                  _mm_maskz_loadu_epi8(kTail ? p->tail_entries : p->entries, zeros + g * p->entry_step)));
      w.q0 = expand_step(kept, patterns, 0, fill);
      if constexpr (kAsym) fill = _mm512_permutexvar_epi8(p->zero_of_position1, _mm512_castsi128_si512(
                                  _mm_maskz_loadu_epi8(kTail ? p->tail_entries : p->entries, zeros + g * p->entry_step)));
      w.q1 = expand_step(kept, patterns, 1, fill);
    }

    // Dense u of step t from the 64 kept codes (in order) and the group's 32 patterns.
    __m512i expand_step(__m512i kept, __m128i patterns, int t, __m512i fill) const {
      const __m512i meta_rep = _mm512_permutexvar_epi8(t ? p->meta_byte1 : p->meta_byte0, _mm512_castsi128_si512(patterns));
      // (nibble & 15) | column << 4: ternary-logic (a & b) | c.
      const __m512i key = _mm512_ternarylogic_epi32(_mm512_multishift_epi64_epi8(p->nibble_shift, meta_rep),
                                                    _mm512_set1_epi8(0x0f), p->column_key, 0xea);
      const __m512i sel = _mm512_permutexvar_epi8(key, load_idx(kSparseTable));
      // Code index = 2·quad + (0 or 1): (sel & 1) | base.
      const __m512i index = _mm512_ternarylogic_epi32(sel, _mm512_set1_epi8(1), t ? p->quad_base1 : p->quad_base0, 0xea);
      return _mm512_mask_mov_epi8(fill, _mm512_movepi8_mask(sel), _mm512_permutexvar_epi8(index, kept));
    }

    // Entries [0, n) of the scales at `s` in the int8 form (the rest of the vector is unused).
    __m512 load_scales(const uint8_t* s, __mmask16 n) const {
      if constexpr (kScale == ScaleType::kF16) {
        const __m512 v = _mm512_cvtph_ps(_mm256_maskz_loadu_epi16(n, s));
        return kCodes == Codes::Fp4 ? _mm512_mul_ps(v, _mm512_set1_ps(0.5f)) : v;
      } else if constexpr (kScale == ScaleType::kE8M0) {
        // Half the scale, 2^(e−128), as fp32 bits: (e − 1) << 23, except the subnormals (e = 1, 0)
        // and NaN (0xff). Built as integers: a float multiply by 0.5 would meet the zero-filled
        // unused entries as subnormals, and subnormal operands cost a microcode assist each.
        const __m512i e = _mm512_cvtepu8_epi32(_mm_maskz_loadu_epi8(n, s));
        __m512i bits = _mm512_slli_epi32(_mm512_sub_epi32(e, _mm512_set1_epi32(1)), 23);
        bits = _mm512_mask_mov_epi32(bits, _mm512_cmpeq_epi32_mask(e, _mm512_set1_epi32(1)), _mm512_set1_epi32(0x00400000));
        bits = _mm512_mask_mov_epi32(bits, _mm512_cmpeq_epi32_mask(e, _mm512_setzero_si512()), _mm512_set1_epi32(0x00200000));
        bits = _mm512_mask_mov_epi32(bits, _mm512_cmpeq_epi32_mask(e, _mm512_set1_epi32(255)), _mm512_set1_epi32(0x7fc00000));
        return _mm512_castsi512_ps(_mm512_maskz_mov_epi32(n, bits));
      } else {
        return _mm512_mul_ps(e4m3_over_256(_mm_maskz_loadu_epi8(n, s)), _mm512_set1_ps(p->scale_mul));
      }
    }

    void prefetch(int64_t g) const {
      const uint8_t* pf = codes + g * p->group_bytes + kPrefetchBytes;
      prefetch_t0(pf);
      if constexpr (kWide) prefetch_t0(pf + 64);
      if constexpr (kSparse) prefetch_t0(meta + 16 * g + kPrefetchBytes / 2);
    }
  };

  explicit PlanarPolicy(const QuantTensor& w) {
    const PlanarGeometry geo = planar_geometry(w);
    codes = w.codes;
    scales = w.scales;
    zeros = w.zeros;
    row_bytes = w.code_row_bytes;
    scale_bytes = geo.scale_bytes;
    groups = geo.groups;
    group_bytes = kSparse ? 8 * geo.bits : 16 * geo.bits;  // 2:4: 64 kept codes per 128 columns
    meta_rows = w.sparse_meta;
    meta_row_bytes = geo.meta_row_bytes;
    const bool per_row = geo.group >= w.cols && geo.groups == 1;
    entry_step = per_row ? 0 : kGroup / geo.group;
    entries = __mmask16((1u << (per_row ? 1 : entry_step)) - 1);
    full_groups = w.cols / kGroup;
    const int64_t tail_values = w.cols % kGroup;
    tail = tail_values != 0;
    const int64_t tail_bytes = ((kSparse ? tail_values / 2 : tail_values) * geo.bits + 7) / 8;
    tail_meta_mask = __mmask16((1u << ((tail_values / 4 + 1) / 2)) - 1);
    tail_mask0 = byte_mask(tail_bytes);
    tail_mask1 = byte_mask(tail_bytes - 64);
    code_mask = byte_mask(group_bytes);
    tail_entries = per_row ? entries : __mmask16((1u << ((tail_values + geo.group - 1) / geo.group)) - 1);
    scale_mul = kScale == ScaleType::kE4M3 ? w.tensor_scale * 128.0f : 1.0f;  // t·e4m3/2, e4m3 read as /256

    const LaneLayout layout = planar_int8_format(w.format).layout;
    Idx64 perm[2], ctrl, meta_byte[2], nibble, column, quad_base[2], zero_of_position[2];
    alignas(64) int32_t lane[16];  // scale entry of each lane (both steps' lane l cover the same elements)
    for (int t = 0; t < 2; ++t) {
      for (int j = 0; j < 8; ++j) {
        // kBits, kBytes (Nibble32): qword j of step t holds 8 consecutive elements; kSparse: the
        // kept codes 8j..8j+7 in order.
        const int first = kSparse ? 8 * j : element_at(layout, 64 * t + 8 * j);
        for (int i = 0; i < 8; ++i) {
          const int pos = 8 * j + i, e = first + i;
          if (kWide) perm[t].v[pos] = uint8_t(e);
          else perm[t].v[pos] = uint8_t(first * geo.bits / 8 + (i < geo.bits ? i : 0));
          ctrl.v[pos] = uint8_t(geo.bits * i);
          const int dense = element_at(layout, 64 * t + pos);
          meta_byte[t].v[pos] = uint8_t(dense / 8);  // the byte holding the pattern of quad dense/4
          nibble.v[pos] = uint8_t(8 * i + 4 * (dense / 4 % 2));
          column.v[pos] = uint8_t((dense % 4) << 4);
          quad_base[t].v[pos] = uint8_t(2 * (dense / 4));
          zero_of_position[t].v[pos] = uint8_t(per_row ? 0 : dense / int(geo.group));
        }
      }
    }
    for (int l = 0; l < 16; ++l) lane[l] = per_row ? 0 : element_at(layout, 4 * l) / int(geo.group);
    meta_byte0 = load_idx(meta_byte[0]);
    meta_byte1 = load_idx(meta_byte[1]);
    nibble_shift = load_idx(nibble);
    column_key = load_idx(column);
    quad_base0 = load_idx(quad_base[0]);
    quad_base1 = load_idx(quad_base[1]);
    zero_of_position0 = load_idx(zero_of_position[0]);
    zero_of_position1 = load_idx(zero_of_position[1]);
    perm0 = load_idx(perm[0]);
    perm1 = load_idx(perm[1]);
    shift = load_idx(ctrl);
    lane0 = _mm512_load_si512(lane);
    low = _mm512_set1_epi8(int8_t((1 << geo.bits) - 1));
    alignas(16) uint8_t u[16];
    std::memcpy(u, kFp4U, 16);
    fp4_u = _mm512_broadcast_i32x4(_mm_load_si128(reinterpret_cast<const __m128i*>(u)));
  }

  Row row(int64_t r) const {
    // The scale and zero rows are short side streams; fetch a few rows ahead of the codes.
    prefetch_t0(scales + (r + 16) * groups * scale_bytes);
    return {this, codes + r * row_bytes, scales + r * groups * scale_bytes, zeros ? zeros + r * groups : nullptr,
            meta_rows ? meta_rows + r * meta_row_bytes : nullptr};
  }

  const uint8_t* codes;
  const uint8_t* scales;
  const uint8_t* zeros;
  const uint8_t* meta_rows;
  uint64_t row_bytes, meta_row_bytes;
  int64_t scale_bytes, groups, group_bytes, entry_step;
  __mmask16 entries, tail_entries, tail_meta_mask;
  __mmask64 code_mask, tail_mask0, tail_mask1;
  float scale_mul;
  int64_t full_groups;
  bool tail;
  __m512i perm0, perm1, shift, low, fp4_u;
  __m512i lane0;
  // 2:4 expansion (see expand_step).
  __m512i meta_byte0, meta_byte1, nibble_shift, column_key, quad_base0, quad_base1, zero_of_position0, zero_of_position1;
};

template <class P>
KernelSet planar_set(const TensorFormat& f) {
  KernelSet set;
  set.int8 = int8_rows<P>;
  set.quantize = quantize_activations_avx512;
  set.form = planar_int8_format(f);
  return set;
}

}  // namespace

KernelSet kernels_avx512_planar(const TensorFormat& f) {
  using enum Unpack;
  constexpr ScaleType kF16 = ScaleType::kF16;
  if (f.sparse_24) {
    if (f.kind != FormatKind::kInt4) return {};
    return f.asymmetric ? planar_set<PlanarPolicy<kSparse, Codes::Int, kF16, true>>(f)
                        : planar_set<PlanarPolicy<kSparse, Codes::Int, kF16, false>>(f);
  }
  switch (f.kind) {
    case FormatKind::kInt8:
      return f.asymmetric ? planar_set<PlanarPolicy<kBytes, Codes::Int, kF16, true>>(f)
                          : planar_set<PlanarPolicy<kBytes, Codes::Int, kF16, false>>(f);
    case FormatKind::kInt4:
      return f.asymmetric ? planar_set<PlanarPolicy<kNibbles, Codes::Int, kF16, true>>(f)
                          : planar_set<PlanarPolicy<kNibbles, Codes::Int, kF16, false>>(f);
    case FormatKind::kInt3:
    case FormatKind::kInt2:
      return f.asymmetric ? planar_set<PlanarPolicy<kBits, Codes::Int, kF16, true>>(f)
                          : planar_set<PlanarPolicy<kBits, Codes::Int, kF16, false>>(f);
    case FormatKind::kFp4: return planar_set<PlanarPolicy<kNibbles, Codes::Fp4, kF16, false>>(f);
    case FormatKind::kMxFp4: return planar_set<PlanarPolicy<kNibbles, Codes::Fp4, ScaleType::kE8M0, false>>(f);
    case FormatKind::kNvFp4: return planar_set<PlanarPolicy<kNibbles, Codes::Fp4, ScaleType::kE4M3, false>>(f);
    default: return {};
  }
}

}  // namespace marlin::cpu::detail

#pragma GCC pop_options
