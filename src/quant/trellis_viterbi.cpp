#include "quant/trellis_viterbi.h"

#include <algorithm>
#include <cmath>
#include <cstring>

#include "core/error.h"
#include "quant/trellis_code.h"

// 32-byte vectors are only ever passed inside always_inline helpers, so GCC's note that their
// calling convention differs between ISA levels does not concern this file.
#pragma GCC diagnostic ignored "-Wpsabi"
// The AVX-512 clone's ISA includes FMA; contracting cost + d·d into one would round differently
// from the other clones, and the encoded streams would then depend on the machine.
#pragma GCC optimize("fp-contract=off")

namespace marlin {
namespace {

// Prefixes per block of the vector step; below this many prefixes the scalar step runs.
constexpr int64_t kBlock = 32;

// The backpointer (dropped bits h) of prefix p in one step's row of bytes. Scalar rows hold it at
// byte p; vector rows interleave each block of 32 as eight 32-bit words, word i of a block holding
// prefixes i, i + 8, i + 16, i + 24 in its bits 0–7, 8–15, 16–23, 24–31.
uint32_t read_backpointer(const uint8_t* row, int64_t prefixes, int64_t p) {
  if (prefixes < kBlock) return row[p];
  uint32_t word;
  std::memcpy(&word, row + (p & ~(kBlock - 1)) + 4 * (p & 7), sizeof word);
  return (word >> (8 * ((p >> 3) & 3))) & 0xffu;
}

// One step: next[p] = min over h of previous[s >> K] + (x − v[s])² with s = (h << (L−K)) | p, and
// back[p] = the least h attaining it. Scalar form, for fewer than 32 prefixes (v in state order).
template <int K>
void viterbi_step_scalar(const float* v, int L, float x, const float* previous, float* next, uint8_t* back) {
  const int64_t prefixes = int64_t(1) << (L - K), quarter = prefixes >> K;
  for (int64_t p = 0; p < prefixes; ++p) {
    float best = INFINITY;
    int arg = 0;
    for (int h = 0; h < (1 << K); ++h) {
      const float d = x - v[h * prefixes + p];
      const float cost = previous[h * quarter + (p >> K)] + d * d;
      if (cost < best) best = cost, arg = h;
    }
    next[p] = best;
    back[p] = uint8_t(arg);
  }
}

typedef float Floats8 __attribute__((vector_size(32)));
typedef float Floats4 __attribute__((vector_size(16)));
typedef int32_t Ints8 __attribute__((vector_size(32)));
// Unaligned views for loads and stores (memcpy into a local array would keep the accumulators in
// memory rather than registers).
typedef float Floats8Unaligned __attribute__((vector_size(32), aligned(4)));
typedef int32_t Ints8Unaligned __attribute__((vector_size(32), aligned(1)));

// previous[(p0 + i) >> K] for i = 0..7 (p0 a multiple of 8): 4 entries each twice (K = 1),
// 2 entries four times (K = 2), or one entry broadcast (K ≥ 3). Reads 4 floats for K ≤ 2.
template <int K>
[[gnu::always_inline]] inline Floats8 spread(const float* previous, int64_t p0) {
  const float* src = previous + (p0 >> K);
  if constexpr (K <= 2) {
    Floats4 four;
    std::memcpy(&four, src, sizeof four);
    if constexpr (K == 1) return __builtin_shufflevector(four, four, 0, 0, 1, 1, 2, 2, 3, 3);
    else return __builtin_shufflevector(four, four, 0, 0, 0, 0, 1, 1, 1, 1);
  } else {
    return Floats8{} + *src;
  }
}

// The same step, 32 prefixes (four vectors of 8) at a time in GCC/Clang vector types (SSE pairs
// by default; AVX2, or AVX-512VL with mask registers, in the clones below), the four vectors' backpointers merged bytewise into one.
// `blocked` holds the codebook block-major (see block_major_values), so it streams sequentially.
template <int K>
[[gnu::always_inline]] inline void viterbi_step_vector(const float* blocked, int L, float x, const float* previous,
                                                      float* next, uint8_t* back) {
  const int64_t prefixes = int64_t(1) << (L - K), quarter = prefixes >> K;
  const Floats8 target = Floats8{} + x;
  for (int64_t p0 = 0; p0 < prefixes; p0 += kBlock, blocked += kBlock << K) {
    Floats8 best[4];
    Ints8 arg[4] = {};
    for (int i = 0; i < 4; ++i) {
      const Floats8 d = target - *reinterpret_cast<const Floats8Unaligned*>(blocked + 8 * i);
      best[i] = spread<K>(previous, p0 + 8 * i) + d * d;
    }
    for (int h = 1; h < (1 << K); ++h) {
      for (int i = 0; i < 4; ++i) {
        const Floats8 d = target - *reinterpret_cast<const Floats8Unaligned*>(blocked + h * kBlock + 8 * i);
        const Floats8 cost = spread<K>(previous + h * quarter, p0 + 8 * i) + d * d;
        // h only grows, so the last h that improved is the largest of (better ? h : 0): a max
        // and a min instead of two blends.
        const Ints8 improved = (cost < best[i]) & h;
        best[i] = cost < best[i] ? cost : best[i];
        arg[i] = improved > arg[i] ? improved : arg[i];
      }
    }
    const Ints8 merged = arg[0] | (arg[1] << 8) | (arg[2] << 16) | (arg[3] << 24);
    for (int i = 0; i < 4; ++i) *reinterpret_cast<Floats8Unaligned*>(next + p0 + 8 * i) = best[i];
    *reinterpret_cast<Ints8Unaligned*>(back + p0) = merged;
  }
}

#define MARLIN_TRELLIS_STEP(K)                                                                             \
  __attribute__((target_clones("arch=x86-64-v4", "avx2", "default"))) void viterbi_step_##K(                                 \
      const float* v, int L, float x, const float* previous, float* next, uint8_t* back) {                 \
    if ((int64_t(1) << (L - K)) < kBlock) return viterbi_step_scalar<K>(v, L, x, previous, next, back);    \
    viterbi_step_vector<K>(v, L, x, previous, next, back);                                                 \
  }
MARLIN_TRELLIS_STEP(1)
MARLIN_TRELLIS_STEP(2)
MARLIN_TRELLIS_STEP(3)
MARLIN_TRELLIS_STEP(4)
MARLIN_TRELLIS_STEP(5)
MARLIN_TRELLIS_STEP(6)
MARLIN_TRELLIS_STEP(7)
MARLIN_TRELLIS_STEP(8)
#undef MARLIN_TRELLIS_STEP

// The codebook of L-bit states in the vector step's order: for each block of 32 prefixes, for each
// h, the 32 values of states (h << (L−K)) | p (the scalar step uses plain state order).
void block_major_values(int K, int L, std::vector<float>& out) {
  const float* v = trellis_value_table();
  const int64_t prefixes = int64_t(1) << (L - K);
  out.resize(size_t(1) << L);
  if (prefixes < kBlock) {
    std::copy(v, v + out.size(), out.begin());
    return;
  }
  float* dst = out.data();
  for (int64_t p0 = 0; p0 < prefixes; p0 += kBlock)
    for (int64_t h = 0; h < (int64_t(1) << K); ++h, dst += kBlock) std::copy_n(v + h * prefixes + p0, kBlock, dst);
}

// spread() reads up to 4 floats from an entry on, so both cost rows carry a few unused ones.
constexpr int64_t kCostPadding = 4;

using StepFn = void (*)(const float*, int, float, const float*, float*, uint8_t*);

StepFn step_for(int K) {
  switch (K) {
    case 1: return viterbi_step_1;
    case 2: return viterbi_step_2;
    case 3: return viterbi_step_3;
    case 4: return viterbi_step_4;
    case 5: return viterbi_step_5;
    case 6: return viterbi_step_6;
    case 7: return viterbi_step_7;
    case 8: return viterbi_step_8;
    default: fail("trellis: {} bits per value is outside 1..8", K);
  }
}

}  // namespace

void TrellisViterbi::solve(const float* x, int T, int K, int L, int64_t start_prefix, int64_t end_prefix,
                           uint32_t* states) {
  MARLIN_CHECK(K >= 1 && K <= 8, "trellis: {} bits per value is outside 1..8", K);
  MARLIN_CHECK(L >= 2 * K && L <= 16, "trellis: state width {} is outside {}..16 for {} bits per value", L, 2 * K, K);
  MARLIN_CHECK(T >= 1, "trellis: {} values", T);
  const int64_t prefixes = int64_t(1) << (L - K);
  MARLIN_CHECK(start_prefix < prefixes && end_prefix < prefixes, "trellis: a prefix constraint exceeds {} bits", L - K);
  const StepFn step = step_for(K);
  if (values_k_ != K || values_l_ != L) {
    block_major_values(K, L, values_);
    values_k_ = K, values_l_ = L;
  }

  // Before the first value: cost 0 for the allowed prefixes of s_0 >> K.
  previous_.assign(size_t(prefixes + kCostPadding), start_prefix < 0 ? 0.0f : INFINITY);
  if (start_prefix >= 0) previous_[size_t(start_prefix)] = 0.0f;
  next_.assign(size_t(prefixes + kCostPadding), 0.0f);
  backpointers_.resize(size_t(T * prefixes));
  for (int t = 0; t < T; ++t) {
    step(values_.data(), L, x[t], previous_.data(), next_.data(), &backpointers_[size_t(t * prefixes)]);
    previous_.swap(next_);
  }

  int64_t prefix = end_prefix;
  if (prefix < 0) prefix = std::min_element(previous_.begin(), previous_.begin() + prefixes) - previous_.begin();
  for (int t = T - 1; t >= 0; --t) {
    const uint32_t h = read_backpointer(&backpointers_[size_t(t * prefixes)], prefixes, prefix);
    states[t] = uint32_t((int64_t(h) << (L - K)) | prefix);
    prefix = states[t] >> K;
  }
}

}  // namespace marlin
