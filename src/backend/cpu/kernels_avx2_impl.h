// AVX2 (+FMA, F16C, optionally AVX-VNNI) kernel bodies, compiled twice: by kernels_avx2.cpp
// (plain AVX2) and kernels_avx2_vnni.cpp (with AVX-VNNI), each under its own target pragma, so
// the plain build can never contain a VNNI instruction. The includer defines MARLIN_AVX2_VNNI
// (true/false) and MARLIN_AVX2_ENTRY (the exported function name) and includes this after every other
// header.
//
// A weight group is unpacked into a WeightGroup in L1 (SIMD for Q4_0, Q4_1, Q8_0 and dense planar
// codes, the scalar reference for the other types) and then multiplied with up to 4
// activation rows; each 64-byte step is handled as two 256-bit halves.
namespace marlin::cpu::detail {
namespace {

inline float fp16_at(const uint8_t* p) { return _cvtsh_ss(uint16_t(p[0] | (p[1] << 8))); }

inline __m256i load_2x128(const uint8_t* lo, const uint8_t* hi) {
  return _mm256_inserti128_si256(_mm256_castsi128_si256(_mm_loadu_si128(reinterpret_cast<const __m128i*>(lo))),
                                 _mm_loadu_si128(reinterpret_cast<const __m128i*>(hi)), 1);
}

// Lanes of two blocks: four lanes each.
inline __m256 two_block_lanes(float a, float b) {
  return _mm256_insertf128_ps(_mm256_castps128_ps256(_mm_set1_ps(a)), _mm_set1_ps(b), 1);
}

// Q4_0 / Q4_1 (Nibble32 order): step 0 = low nibbles of the 4 blocks, step 1 = high nibbles.
template <GgmlType T>
inline void unpack_q4(const uint8_t* p, int blocks, WeightGroup& out) {
  constexpr bool kAsym = T == GgmlType::Q4_1;
  constexpr int kBlock = kAsym ? 20 : 18, kQs = kAsym ? 4 : 2;
  const __m256i low4 = _mm256_set1_epi8(0x0f);
  for (int pair = 0; pair < 2; ++pair) {
    const int b0 = 2 * pair;
    if (b0 >= blocks) {
      std::memset(out.u + 32 * pair, 0, 32);
      std::memset(out.u + 64 + 32 * pair, 0, 32);
      _mm256_store_ps(out.scale + 8 * pair, _mm256_setzero_ps());
      _mm256_store_ps(out.min + 8 * pair, _mm256_setzero_ps());
      continue;
    }
    const uint8_t* a = p + kBlock * b0;
    const bool second = b0 + 1 < blocks;
    const uint8_t* b = second ? a + kBlock : a;  // a missing block gets zero scales below
    const __m256i packed = load_2x128(a + kQs, b + kQs);
    _mm256_store_si256(reinterpret_cast<__m256i*>(out.u + 32 * pair), _mm256_and_si256(packed, low4));
    _mm256_store_si256(reinterpret_cast<__m256i*>(out.u + 64 + 32 * pair),
                       _mm256_and_si256(_mm256_srli_epi16(packed, 4), low4));
    const float da = fp16_at(a), db = second ? fp16_at(b) : 0.0f;
    _mm256_store_ps(out.scale + 8 * pair, two_block_lanes(da, db));
    if constexpr (kAsym) _mm256_store_ps(out.min + 8 * pair, two_block_lanes(fp16_at(a + 2), second ? fp16_at(b + 2) : 0.0f));
    else _mm256_store_ps(out.min + 8 * pair, two_block_lanes(da, db));
  }
  // Both steps share the lane -> block map.
  std::memcpy(out.scale + 16, out.scale, 64);
  std::memcpy(out.min + 16, out.min, 64);
}

// Q8_0 (Natural order): step t = blocks 2t, 2t + 1; the sign bit flip makes quants unsigned.
inline void unpack_q8_0(const uint8_t* p, int blocks, WeightGroup& out) {
  const __m256i sign = _mm256_set1_epi8(int8_t(0x80));
  for (int b = 0; b < 4; ++b) {
    float* scale = out.scale + 8 * b;
    float* min = out.min + 8 * b;
    if (b >= blocks) {
      std::memset(out.u + 32 * b, 0, 32);
      _mm256_store_ps(scale, _mm256_setzero_ps());
      _mm256_store_ps(min, _mm256_setzero_ps());
      continue;
    }
    const uint8_t* blk = p + 34 * b;
    const __m256i q = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(blk + 2));
    _mm256_store_si256(reinterpret_cast<__m256i*>(out.u + 32 * b), _mm256_xor_si256(q, sign));
    const __m256 d = _mm256_set1_ps(fp16_at(blk));
    _mm256_store_ps(scale, d);
    _mm256_store_ps(min, d);
  }
}

// The int8 loops' unpacker for a GGML type.
template <GgmlType T>
struct GgmlUnpacker {
  static constexpr bool kWideU = T == GgmlType::Q8_0;  // quants up to 255
  explicit GgmlUnpacker(const QuantTensor& w) : w(w) {}
  void operator()(int64_t r, int64_t g, WeightGroup& out) const {
    const uint8_t* row = w.codes + r * w.code_row_bytes;
    if constexpr (T == GgmlType::Q4_0 || T == GgmlType::Q4_1 || T == GgmlType::Q8_0) {
      constexpr int kGroupBytes = T == GgmlType::Q4_0 ? 72 : T == GgmlType::Q4_1 ? 80 : 136;
      const int64_t left = w.cols / 32 - 4 * g;
      const int blocks = left >= 4 ? 4 : int(left);
      if constexpr (T == GgmlType::Q8_0) unpack_q8_0(row + g * kGroupBytes, blocks, out);
      else unpack_q4<T>(row + g * kGroupBytes, blocks, out);
    } else {
      unpack_group_scalar(T, row, w.cols, g, out);
    }
  }
  const QuantTensor& w;
};

// Codes of one Nibble32 group of b-bit codes (b = 2, 3) into u: each qword of positions is 8
// consecutive elements, i.e. b consecutive bytes, spread to 8 bytes by one pdep. `c` must be
// readable 4 bytes past each qword's b bytes (the caller pads 3-bit groups).
template <int kBits>
inline void unpack_bits_nibble32(const uint8_t* c, uint8_t* u) {
  constexpr uint64_t kFields = kBits == 2 ? 0x0303030303030303ull : 0x0707070707070707ull;
  for (int q = 0; q < 16; ++q) {
    const int first = element_at(LaneLayout::Nibble32, 8 * q);
    uint32_t bytes;
    if constexpr (kBits == 2) {
      uint16_t two;
      std::memcpy(&two, c + first / 4, 2);
      bytes = two;
    } else {
      std::memcpy(&bytes, c + first * 3 / 8, 4);
    }
    const uint64_t spread = _pdep_u64(bytes, kFields);
    std::memcpy(u + 8 * q, &spread, 8);
  }
}

// The int8 loops' unpacker for planar formats (planar.h): SIMD (pdep for 2/3 bits), a last partial
// group through a zero-padded copy; the scalar reference for 2:4 sparsity.
template <bool kWide>
struct PlanarUnpacker {
  static constexpr bool kWideU = kWide;
  explicit PlanarUnpacker(const QuantTensor& w) : w(w), geo(planar_geometry(w)) {
    const FormatKind kind = w.format.kind;
    fp4 = kind == FormatKind::kFp4 || kind == FormatKind::kMxFp4 || kind == FormatKind::kNvFp4;
    layout = planar_int8_format(w.format).layout;
    per_row = geo.group >= w.cols;
    per_group = per_row ? 1 : kGroup / geo.group;
    for (int lane = 0; lane < 32; ++lane) {
      lane_first[lane] = element_at(layout, 4 * lane);
      lane_entry[lane] = per_row ? 0 : lane_first[lane] / int(geo.group);
    }
  }
  void operator()(int64_t r, int64_t g, WeightGroup& out) const {
    if (w.format.sparse_24) {
      unpack_planar_group_scalar(w, geo, r, g, out);
      return;
    }
    const int64_t group_bytes = 16 * geo.bits, valid = std::min<int64_t>(kGroup, w.cols - g * kGroup);
    const uint8_t* c = w.codes + r * w.code_row_bytes + g * group_bytes;
    alignas(32) uint8_t padded[kGroup];
    if (valid < kGroup || geo.bits == 3) {  // never read past the row (3 bits: 4-byte loads)
      const int64_t bytes = valid < kGroup ? (valid * geo.bits + 7) / 8 : group_bytes;
      std::memset(padded, 0, sizeof padded);
      std::memcpy(padded, c, size_t(bytes));
      c = padded;
    }
    switch (geo.bits) {
      case 8:
        for (int b = 0; b < 4; ++b) {  // Nibble32: step t of block b = its bytes 16t..16t+15
          std::memcpy(out.u + 16 * b, c + 32 * b, 16);
          std::memcpy(out.u + 64 + 16 * b, c + 32 * b + 16, 16);
        }
        break;
      case 4: unpack_nibbles(c, out.u); break;
      case 3: unpack_bits_nibble32<3>(c, out.u); break;
      default: unpack_bits_nibble32<2>(c, out.u); break;
    }
    // The group's (up to 8) scales and mins, spread over the lanes by vpermps; lanes past cols get 0.
    const int64_t first_entry = per_row ? 0 : g * per_group;
    // Built in registers: a vector load of just-stored floats would stall on store forwarding.
    __m256 s8 = _mm256_setzero_ps(), m8 = _mm256_setzero_ps();
    const __m256i lane_index = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
    for (int64_t i = 0; i < per_group && first_entry + i < geo.groups; ++i) {
      const int64_t entry = r * geo.groups + first_entry + i;
      // fp16 scales by F16C (planar_scale converts in software); E8M0 / E4M3 by planar_scale.
      const float scale = geo.scale_bytes == 2 ? fp16_at(w.scales + 2 * entry) * (fp4 ? 0.5f : 1.0f)
                                               : planar_scale(w, geo, r, first_entry + i);
      const float min = w.format.asymmetric ? -scale * float(w.zeros[entry]) : scale;
      if (per_group == 1) {
        s8 = _mm256_set1_ps(scale);
        m8 = _mm256_set1_ps(min);
        break;
      }
      const __m256 at_i = _mm256_castsi256_ps(_mm256_cmpeq_epi32(lane_index, _mm256_set1_epi32(int(i))));
      s8 = _mm256_blendv_ps(s8, _mm256_set1_ps(scale), at_i);
      m8 = _mm256_blendv_ps(m8, _mm256_set1_ps(min), at_i);
    }
    if (per_group == 1 && valid == kGroup) {  // one scale for the whole group
      for (int j = 0; j < 4; ++j) {
        _mm256_store_ps(out.scale + 8 * j, s8);
        _mm256_store_ps(out.min + 8 * j, m8);
      }
      return;
    }
    const __m256i valid8 = _mm256_set1_epi32(int(valid));
    for (int j = 0; j < 4; ++j) {
      const __m256i entry = _mm256_load_si256(reinterpret_cast<const __m256i*>(lane_entry + 8 * j));
      const __m256 inside = _mm256_castsi256_ps(
          _mm256_cmpgt_epi32(valid8, _mm256_load_si256(reinterpret_cast<const __m256i*>(lane_first + 8 * j))));
      _mm256_store_ps(out.scale + 8 * j, _mm256_and_ps(inside, _mm256_permutevar8x32_ps(s8, entry)));
      _mm256_store_ps(out.min + 8 * j, _mm256_and_ps(inside, _mm256_permutevar8x32_ps(m8, entry)));
    }
  }
  // EvenOdd: step 0 = the low nibbles of the 64 code bytes, step 1 = the high nibbles.
  void unpack_nibbles(const uint8_t* c, uint8_t* u) const {
    const __m256i low4 = _mm256_set1_epi8(0x0f);
    const __m256i lut = _mm256_broadcastsi128_si256(_mm_loadu_si128(reinterpret_cast<const __m128i*>(kFp4U)));
    for (int half = 0; half < 2; ++half) {
      const __m256i bytes = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(c + 32 * half));
      __m256i lo = _mm256_and_si256(bytes, low4), hi = _mm256_and_si256(_mm256_srli_epi16(bytes, 4), low4);
      if (fp4) {
        lo = _mm256_shuffle_epi8(lut, lo);
        hi = _mm256_shuffle_epi8(lut, hi);
      }
      _mm256_storeu_si256(reinterpret_cast<__m256i*>(u + 32 * half), lo);
      _mm256_storeu_si256(reinterpret_cast<__m256i*>(u + 64 + 32 * half), hi);
    }
  }
  const QuantTensor& w;
  PlanarGeometry geo;
  LaneLayout layout;
  bool fp4 = false, per_row = false;
  int64_t per_group = 1;
  alignas(32) int32_t lane_first[32];  // first element of each lane
  alignas(32) int32_t lane_entry[32];  // its scale entry within the group
};

// Σ over each 4-byte lane of u·a (u unsigned, a signed), exact.
template <bool kVnni, bool kWideU>
inline __m256i lane_dot(__m256i u, __m256i a) {
  if constexpr (kVnni) {
    return _mm256_dpbusd_avx_epi32(_mm256_setzero_si256(), u, a);
  } else {
    const __m256i ones16 = _mm256_set1_epi16(1);
    if constexpr (kWideU) {
      // u up to 255 would saturate maddubs' int16 pair sums: split off the top bit.
      const __m256i low7 = _mm256_and_si256(u, _mm256_set1_epi8(0x7f));
      const __m256i top = _mm256_and_si256(_mm256_srli_epi16(u, 7), _mm256_set1_epi8(1));
      const __m256i lo = _mm256_madd_epi16(_mm256_maddubs_epi16(low7, a), ones16);
      const __m256i hi = _mm256_madd_epi16(_mm256_maddubs_epi16(top, a), ones16);
      return _mm256_add_epi32(lo, _mm256_slli_epi32(hi, 7));
    } else {
      return _mm256_madd_epi16(_mm256_maddubs_epi16(u, a), ones16);
    }
  }
}

template <bool kWideU, bool kVnni, int C>
inline void dot_group(const WeightGroup& w, const ActGroup* act, int64_t stride, __m256* acc) {
  for (int half = 0; half < 4; ++half) {  // 32 positions = 8 lanes each
    const __m256i u = _mm256_load_si256(reinterpret_cast<const __m256i*>(w.u + 32 * half));
    const __m256 scale = _mm256_load_ps(w.scale + 8 * half), min = _mm256_load_ps(w.min + 8 * half);
    for (int c = 0; c < C; ++c) {
      const ActGroup& a = act[c * stride];
      const __m256i q = _mm256_load_si256(reinterpret_cast<const __m256i*>(a.q + 32 * half));
      const __m256 t = _mm256_mul_ps(_mm256_cvtepi32_ps(lane_dot<kVnni, kWideU>(u, q)), _mm256_load_ps(a.d + 8 * half));
      acc[2 * c] = _mm256_fmadd_ps(scale, t, acc[2 * c]);
      acc[2 * c + 1] = _mm256_fmadd_ps(min, _mm256_load_ps(a.s + 8 * half), acc[2 * c + 1]);
    }
  }
}

inline float reduce(__m256 v) {
  __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
  s = _mm_add_ps(s, _mm_movehl_ps(s, s));
  s = _mm_add_ss(s, _mm_movehdup_ps(s));
  return _mm_cvtss_f32(s);
}

template <class U, bool kVnni, int C>
void row_block(const QuantTensor& w, const U& unpack, const ActGroup* act, int64_t r0, int64_t r1, float* y) {
  const int64_t groups = groups_for(w.cols);
  alignas(64) WeightGroup wg;
  for (int64_t r = r0; r < r1; ++r) {
    __m256 acc[2 * C];
    for (auto& a : acc) a = _mm256_setzero_ps();
    for (int64_t g = 0; g < groups; ++g) {
      unpack(r, g, wg);
      dot_group<U::kWideU, kVnni, C>(wg, act + g, groups, acc);
    }
    for (int c = 0; c < C; ++c) y[c * w.rows + r] = reduce(_mm256_add_ps(acc[2 * c], acc[2 * c + 1]));
  }
}

constexpr int64_t kRowBlockBytes = 256 * 1024;

template <class U, bool kVnni>
void int8_rows(const QuantTensor& w, const ActGroup* act, int64_t m, int64_t r0, int64_t r1, float* y) {
  const U unpack(w);
  const int64_t groups = groups_for(w.cols);
  int64_t block_rows = kRowBlockBytes / int64_t(w.code_row_bytes);
  if (block_rows < 1) block_rows = 1;
  for (int64_t rb = r0; rb < r1; rb += block_rows) {
    const int64_t re = rb + block_rows < r1 ? rb + block_rows : r1;
    for (int64_t c = 0; c < m;) {
      const ActGroup* a = act + c * groups;
      float* yc = y + c * w.rows;
      if (m - c >= 4) {
        row_block<U, kVnni, 4>(w, unpack, a, rb, re, yc);
        c += 4;
      } else {
        row_block<U, kVnni, 1>(w, unpack, a, rb, re, yc);
        c += 1;
      }
    }
  }
}

// ---- activation quantization (bit-identical to quantize_activations) ----

// 8 values -> 8 int8 in the low 64 bits, scaled by inv and rounded to nearest-even.
inline __m128i quantize8(__m256 v, __m256 inv) {
  const __m256i i32 = _mm256_cvtps_epi32(_mm256_mul_ps(v, inv));
  const __m128i i16 = _mm_packs_epi32(_mm256_castsi256_si128(i32), _mm256_extracti128_si256(i32, 1));
  return _mm_packs_epi16(i16, i16);
}

void quantize_activations_avx2(const Int8Format& fmt, const float* x, int64_t rows, int64_t cols, ActGroup* out) {
  const int64_t groups = groups_for(cols);
  const __m256 abs_mask = _mm256_castsi256_ps(_mm256_set1_epi32(0x7fffffff));
  alignas(32) float padded[kGroup];
  for (int64_t r = 0; r < rows; ++r) {
    for (int64_t g = 0; g < groups; ++g) {
      const float* src = x + r * cols + g * kGroup;
      const int64_t valid = cols - g * kGroup;
      if (valid < kGroup) {
        for (int i = 0; i < kGroup; ++i) padded[i] = i < valid ? src[i] : 0.0f;
        src = padded;
      }
      alignas(32) int8_t natural[kGroup];
      float d[4];
      for (int b = 0; b < 4; ++b) {
        __m256 v[4];
        __m256 amax = _mm256_setzero_ps();
        for (int j = 0; j < 4; ++j) {
          v[j] = _mm256_loadu_ps(src + 32 * b + 8 * j);
          amax = _mm256_max_ps(amax, _mm256_and_ps(v[j], abs_mask));
        }
        __m128 m4 = _mm_max_ps(_mm256_castps256_ps128(amax), _mm256_extractf128_ps(amax, 1));
        m4 = _mm_max_ps(m4, _mm_movehl_ps(m4, m4));
        m4 = _mm_max_ss(m4, _mm_movehdup_ps(m4));
        const float peak = _mm_cvtss_f32(m4);
        d[b] = peak / 127.0f;
        const __m256 inv = _mm256_set1_ps(peak > 0.0f ? 127.0f / peak : 0.0f);
        for (int j = 0; j < 4; ++j) _mm_storel_epi64(reinterpret_cast<__m128i*>(natural + 32 * b + 8 * j), quantize8(v[j], inv));
      }
      ActGroup& a = out[r * groups + g];
      int lane_sum[32];
      for (int p = 0; p < kGroup; ++p) a.q[p] = natural[element_at(fmt.layout, p)];
      for (int lane = 0; lane < 32; ++lane)
        lane_sum[lane] = a.q[4 * lane] + a.q[4 * lane + 1] + a.q[4 * lane + 2] + a.q[4 * lane + 3];
      if (fmt.shared_lanes)
        for (int lane = 0; lane < 16; ++lane) {
          lane_sum[lane] += lane_sum[lane + 16];
          lane_sum[lane + 16] = 0;
        }
      for (int lane = 0; lane < 32; ++lane) {
        a.d[lane] = d[element_at(fmt.layout, 4 * lane) / 32];
        a.s[lane] = a.d[lane] * float(fmt.asymmetric ? lane_sum[lane] : fmt.offset * lane_sum[lane]);
      }
    }
  }
}

// ---- weights multiplied in fp32 ----

// 8 e4m3 codes → their values / 256 (the code's bits moved into an fp16; 0x7f / 0xff → NaN).
inline __m256 e4m3_over_256(const uint8_t* p) {
  __m128i h = _mm_and_si128(_mm_slli_epi16(_mm_cvtepi8_epi16(_mm_loadl_epi64(reinterpret_cast<const __m128i*>(p))), 7),
                            _mm_set1_epi16(short(0xbf80)));
  const __m128i nan = _mm_cmpeq_epi16(_mm_and_si128(h, _mm_set1_epi16(0x3f80)), _mm_set1_epi16(0x3f80));
  h = _mm_blendv_epi8(h, _mm_set1_epi16(0x7e00), nan);
  return _mm256_cvtph_ps(h);
}

template <FormatKind E>
inline __m256 load_weights8(const uint8_t* row, int64_t k) {
  if constexpr (E == FormatKind::kF32) return _mm256_loadu_ps(reinterpret_cast<const float*>(row) + k);
  if constexpr (E == FormatKind::kF16) return _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(row + 2 * k)));
  if constexpr (E == FormatKind::kBF16)
    return _mm256_castsi256_ps(
        _mm256_slli_epi32(_mm256_cvtepu16_epi32(_mm_loadu_si128(reinterpret_cast<const __m128i*>(row + 2 * k))), 16));
  if constexpr (E == FormatKind::kFp8E4M3) return e4m3_over_256(row + k);
}

template <FormatKind E>
inline float weight_at(const uint8_t* row, int64_t k) {
  if constexpr (E == FormatKind::kF32) {
    float v;
    std::memcpy(&v, row + 4 * k, 4);
    return v;
  } else if constexpr (E == FormatKind::kFp8E4M3) {
    return e4m3_to_float(row[k]) * (1.0f / 256.0f);
  } else {
    const uint16_t h = uint16_t(row[2 * k] | (row[2 * k + 1] << 8));
    if constexpr (E == FormatKind::kF16) return _cvtsh_ss(h);
    uint32_t bits = uint32_t(h) << 16;
    float v;
    std::memcpy(&v, &bits, 4);
    return v;
  }
}

// fp8 weights carry fp16 scales per group of columns; the other types are one unscaled group.
template <FormatKind E>
void float_rows(const QuantTensor& w, const float* x, int64_t m, int64_t r0, int64_t r1, float* y) {
  constexpr bool kScaled = E == FormatKind::kFp8E4M3;
  const PlanarGeometry geo = kScaled ? planar_geometry(w) : PlanarGeometry{};
  const int64_t group = kScaled ? geo.group : w.cols;
  for (int64_t r = r0; r < r1; ++r) {
    const uint8_t* row = w.codes + r * w.code_row_bytes;
    for (int64_t c = 0; c < m; ++c) {
      const float* xc = x + c * w.cols;
      float sum = 0.0f;
      for (int64_t g0 = 0; g0 < w.cols; g0 += group) {
        const int64_t g1 = g0 + group < w.cols ? g0 + group : w.cols, body = g0 + (g1 - g0) / 8 * 8;
        // fp8: the weight times its scale (· 256) is the exact dequantized weight.
        const float scale = kScaled ? fp16_at(w.scales + 2 * (r * geo.groups + g0 / group)) * 256.0f : 1.0f;
        const __m256 s = _mm256_set1_ps(scale);
        __m256 acc = _mm256_setzero_ps();
        for (int64_t k = g0; k < body; k += 8) {
          __m256 wv = load_weights8<E>(row, k);
          if constexpr (kScaled) wv = _mm256_mul_ps(wv, s);
          acc = _mm256_fmadd_ps(wv, _mm256_loadu_ps(xc + k), acc);
        }
        sum += reduce(acc);
        for (int64_t k = body; k < g1; ++k) sum += (kScaled ? weight_at<E>(row, k) * scale : weight_at<E>(row, k)) * xc[k];
      }
      y[c * w.rows + r] = sum;
    }
  }
}

constexpr bool kUseVnni = MARLIN_AVX2_VNNI;

template <class U>
KernelSet int8_set(const Int8Format& form) {
  KernelSet set;
  set.int8 = int8_rows<U, kUseVnni>;
  set.quantize = quantize_activations_avx2;
  set.form = form;
  return set;
}

KernelSet ggml_set(GgmlType type) {
  const Int8Format form = int8_format(type);
  switch (type) {
    case GgmlType::Q4_0: return int8_set<GgmlUnpacker<GgmlType::Q4_0>>(form);
    case GgmlType::Q4_1: return int8_set<GgmlUnpacker<GgmlType::Q4_1>>(form);
    case GgmlType::Q5_0: return int8_set<GgmlUnpacker<GgmlType::Q5_0>>(form);
    case GgmlType::Q5_1: return int8_set<GgmlUnpacker<GgmlType::Q5_1>>(form);
    case GgmlType::Q8_0: return int8_set<GgmlUnpacker<GgmlType::Q8_0>>(form);
    case GgmlType::Q4_K: return int8_set<GgmlUnpacker<GgmlType::Q4_K>>(form);
    case GgmlType::Q5_K: return int8_set<GgmlUnpacker<GgmlType::Q5_K>>(form);
    case GgmlType::Q6_K: return int8_set<GgmlUnpacker<GgmlType::Q6_K>>(form);
    default: return {};
  }
}

}  // namespace

KernelSet MARLIN_AVX2_ENTRY(const TensorFormat& f) {
  KernelSet set;
  if (const auto e = float_element(f)) {
    switch (*e) {
      case FormatKind::kF32: set.floating = float_rows<FormatKind::kF32>; break;
      case FormatKind::kF16: set.floating = float_rows<FormatKind::kF16>; break;
      case FormatKind::kBF16: set.floating = float_rows<FormatKind::kBF16>; break;
      case FormatKind::kFp8E4M3: set.floating = float_rows<FormatKind::kFp8E4M3>; break;
      default: break;
    }
    return set;
  }
  if (f.kind == FormatKind::kGgml) return ggml_set(f.ggml);
  const Int8Format form = planar_int8_format(f);
  return f.kind == FormatKind::kInt8 ? int8_set<PlanarUnpacker<true>>(form) : int8_set<PlanarUnpacker<false>>(form);
}

}  // namespace marlin::cpu::detail
