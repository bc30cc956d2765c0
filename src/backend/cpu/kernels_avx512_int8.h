// AVX-512 machinery shared by the GGML, planar and float kernels, mostly for the int8 form: a weight group unpacked in
// registers (W512), dot products by vpdpbusd with the per-lane scale math in fp32, and the decode
// and prefill loops. The includer includes every library header first, then this file under the
// AVX-512 target pragma (see kernels_avx512.cpp).
//
// The loops are templates over a format policy P:
//   P::kShared, P::kAsym        the int8 form's shared lanes / zero points (int8_layout.h)
//   P::Row P::row(r)            a reader of weight row r, with
//     W512 group<kTail>(g)      group g unpacked (kTail: the last, partial group)
//     void prefetch(g)          software prefetch a few KB ahead of group g
//   P::full_groups, P::tail     groups before the tail, and whether a partial last group exists
//   P::row_bytes                bytes of one weight row (for the prefill row blocking)
namespace marlin::cpu::detail {
namespace {

struct Idx64 {
  alignas(64) uint8_t v[64];
};

inline __m512i load_idx(const Idx64& t) { return _mm512_load_si512(t.v); }

inline __mmask64 byte_mask(int64_t valid) {
  if (valid <= 0) return 0;
  return valid >= 64 ? ~__mmask64(0) : (__mmask64(1) << valid) - 1;
}

// e4m3 codes (16 bytes) → their value / 256: the code's bits shifted into an fp16 (exact: fp16
// has the wider exponent and mantissa), the codes 0x7f / 0xff mapped to NaN.
inline __m512 e4m3_over_256(__m128i codes) {
  __m256i h = _mm256_and_si256(_mm256_slli_epi16(_mm256_cvtepi8_epi16(codes), 7), _mm256_set1_epi16(short(0xbf80)));
  const __mmask16 nan = _mm256_cmpeq_epi16_mask(_mm256_and_si256(h, _mm256_set1_epi16(0x3f80)), _mm256_set1_epi16(0x3f80));
  h = _mm256_mask_mov_epi16(h, nan, _mm256_set1_epi16(0x7e00));
  return _mm512_cvtph_ps(h);
}

// One unpacked weight group: unsigned quants of the two 64-position steps, and per 4-value lane
// of each step a scale and a min factor (see int8_layout.h).
struct W512 {
  __m512i q0, q1;
  __m512 scale0, scale1, min0, min1;
};

// Accumulators of C activation (or weight) rows; two chains per row hide the fma latency.
template <int C>
struct Acc {
  __m512 a[C], b[C];
};

// scale·(d·dot) + min·s per lane; for symmetric forms min = scale, so scale·(d·dot + s).
template <bool kAsym>
inline __m512 lane_terms(__m512 acc_in, __m512i dot, const float* d, const float* s, __m512 scale, __m512 min,
                         __m512& acc_min) {
  if constexpr (kAsym) {
    acc_min = _mm512_fmadd_ps(min, _mm512_load_ps(s), acc_min);
    return _mm512_fmadd_ps(scale, _mm512_mul_ps(_mm512_cvtepi32_ps(dot), _mm512_load_ps(d)), acc_in);
  } else {
    return _mm512_fmadd_ps(scale, _mm512_fmadd_ps(_mm512_cvtepi32_ps(dot), _mm512_load_ps(d), _mm512_load_ps(s)), acc_in);
  }
}

template <bool kShared, bool kAsym, int C>
inline void dot_group(const W512& w, const ActGroup* act, int64_t stride, Acc<C>& acc) {
  for (int c = 0; c < C; ++c) {
    const ActGroup& a = act[c * stride];
    const __m512i a0 = _mm512_load_si512(a.q), a1 = _mm512_load_si512(a.q + 64);
    if constexpr (kShared) {
      const __m512i dot = _mm512_dpbusd_epi32(_mm512_dpbusd_epi32(_mm512_setzero_si512(), w.q0, a0), w.q1, a1);
      acc.a[c] = lane_terms<kAsym>(acc.a[c], dot, a.d, a.s, w.scale0, w.min0, acc.b[c]);
    } else {
      const __m512i dot0 = _mm512_dpbusd_epi32(_mm512_setzero_si512(), w.q0, a0);
      const __m512i dot1 = _mm512_dpbusd_epi32(_mm512_setzero_si512(), w.q1, a1);
      acc.a[c] = lane_terms<kAsym>(acc.a[c], dot0, a.d, a.s, w.scale0, w.min0, acc.b[c]);
      acc.b[c] = lane_terms<kAsym>(acc.b[c], dot1, a.d + 16, a.s + 16, w.scale1, w.min1, acc.a[c]);
    }
  }
}

// One weight row against C activation rows starting at `act` (row stride `groups`).
template <class P, int C>
inline void row_dot(const P& p, int64_t r, const ActGroup* act, int64_t groups, float* y, int64_t y_stride) {
  const auto row = p.row(r);
  Acc<C> acc;
  for (int c = 0; c < C; ++c) acc.a[c] = acc.b[c] = _mm512_setzero_ps();
  for (int64_t g = 0; g < p.full_groups; ++g)
    dot_group<P::kShared, P::kAsym, C>(row.template group<false>(g), act + g, groups, acc);
  if (p.tail)
    dot_group<P::kShared, P::kAsym, C>(row.template group<true>(p.full_groups), act + p.full_groups, groups, acc);
  for (int c = 0; c < C; ++c) y[c * y_stride] = _mm512_reduce_add_ps(_mm512_add_ps(acc.a[c], acc.b[c]));
}

// Sums of 4 vectors, stored to y[0..3]: a transposing reduction with 3 levels of adds.
inline void store_sums4(const __m512 v[4], float* y) {
  const __m512 v01 = _mm512_add_ps(_mm512_shuffle_f32x4(v[0], v[1], 0x44), _mm512_shuffle_f32x4(v[0], v[1], 0xee));
  const __m512 v23 = _mm512_add_ps(_mm512_shuffle_f32x4(v[2], v[3], 0x44), _mm512_shuffle_f32x4(v[2], v[3], 0xee));
  // v01 = [r0 (2 chunks), r1 (2 chunks)], v23 likewise; fold chunk pairs.
  const __m512 w = _mm512_add_ps(_mm512_shuffle_f32x4(v01, v23, 0x88), _mm512_shuffle_f32x4(v01, v23, 0xdd));
  // w = 4 chunks of 4 floats: r0, r1, r2, r3. Sum each chunk.
  const __m512 h1 = _mm512_add_ps(w, _mm512_permute_ps(w, 0x4e));
  const __m512 h2 = _mm512_add_ps(h1, _mm512_permute_ps(h1, 0xb1));
  const __m128 sums = _mm512_castps512_ps128(
      _mm512_permutexvar_ps(_mm512_setr_epi32(0, 4, 8, 12, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0), h2));
  _mm_storeu_ps(y, sums);
}

// How far ahead of the group being computed the decode loop prefetches. Measured on the 2-core
// Sapphire Rapids VM: DRAM-streamed Q4_1 rows go from ~6 to ~10-12 GB/s per core (the raw read
// bandwidth of one core there is ~12 GB/s); 2-8 KB all do about equally well.
constexpr int64_t kPrefetchBytes = 4096;

inline void prefetch_t0(const uint8_t* p) { _mm_prefetch(reinterpret_cast<const char*>(p), _MM_HINT_T0); }

// Decode (one activation row): R consecutive weight rows per pass share the activation loads and
// the loop and tail overhead, and their R sums are reduced together.
template <class P, int R>
inline void rows_dot_m1(const P& p, int64_t r, const ActGroup* act, int64_t groups, float* y) {
  using Row = decltype(p.row(0));
  Row rows[R];
  for (int i = 0; i < R; ++i) rows[i] = p.row(r + i);
  Acc<R> acc;  // acc.*[i] belongs to weight row i
  for (int i = 0; i < R; ++i) acc.a[i] = acc.b[i] = _mm512_setzero_ps();
  for (int64_t g = 0; g < p.full_groups; ++g)
    for (int i = 0; i < R; ++i) {
      // Prefetching a few KB ahead keeps DRAM busy while this group computes (rows are streamed
      // in order; prefetches past the matrix are harmless hints).
      rows[i].prefetch(g);
      Acc<1> one{{acc.a[i]}, {acc.b[i]}};
      dot_group<P::kShared, P::kAsym, 1>(rows[i].template group<false>(g), act + g, groups, one);
      acc.a[i] = one.a[0];
      acc.b[i] = one.b[0];
    }
  if (p.tail)
    for (int i = 0; i < R; ++i) {
      Acc<1> one{{acc.a[i]}, {acc.b[i]}};
      dot_group<P::kShared, P::kAsym, 1>(rows[i].template group<true>(p.full_groups), act + p.full_groups, groups, one);
      acc.a[i] = one.a[0];
      acc.b[i] = one.b[0];
    }
  if constexpr (R == 4) {
    __m512 v[4];
    for (int i = 0; i < 4; ++i) v[i] = _mm512_add_ps(acc.a[i], acc.b[i]);
    store_sums4(v, y);
  } else {
    for (int i = 0; i < R; ++i) y[i] = _mm512_reduce_add_ps(_mm512_add_ps(acc.a[i], acc.b[i]));
  }
}

// Rows are visited in blocks that fit in L2 so that every chunk of activation rows reuses them.
constexpr int64_t kRowBlockBytes = 256 * 1024;

template <class P>
void int8_rows(const QuantTensor& w, const ActGroup* act, int64_t m, int64_t r0, int64_t r1, float* y) {
  const P p(w);
  const int64_t groups = groups_for(w.cols);
  if (m == 1) {
    int64_t r = r0;
    for (; r + 4 <= r1; r += 4) rows_dot_m1<P, 4>(p, r, act, groups, y + r);
    for (; r < r1; ++r) rows_dot_m1<P, 1>(p, r, act, groups, y + r);
    return;
  }
  int64_t block_rows = kRowBlockBytes / int64_t(p.row_bytes);
  if (block_rows < 1) block_rows = 1;
  for (int64_t rb = r0; rb < r1; rb += block_rows) {
    const int64_t re = rb + block_rows < r1 ? rb + block_rows : r1;
    for (int64_t c = 0; c < m;) {
      const ActGroup* a = act + c * groups;
      float* yc = y + c * w.rows;
      const int64_t left = m - c;
      if (left >= 8) {
        for (int64_t r = rb; r < re; ++r) row_dot<P, 8>(p, r, a, groups, yc + r, w.rows);
        c += 8;
      } else if (left >= 4) {
        for (int64_t r = rb; r < re; ++r) row_dot<P, 4>(p, r, a, groups, yc + r, w.rows);
        c += 4;
      } else if (left >= 2) {
        for (int64_t r = rb; r < re; ++r) row_dot<P, 2>(p, r, a, groups, yc + r, w.rows);
        c += 2;
      } else {
        for (int64_t r = rb; r < re; ++r) row_dot<P, 1>(p, r, a, groups, yc + r, w.rows);
        c += 1;
      }
    }
  }
}

}  // namespace
}  // namespace marlin::cpu::detail
