#include "quant/trellis_viterbi.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <utility>

#include "backend/cpu/cpu_isa.h"
#include "core/error.h"
#include "quant/trellis_code.h"

// Vectors are only ever passed inside always_inline helpers, so GCC's note that their calling
// convention differs between ISA levels does not concern this file.
#pragma GCC diagnostic ignored "-Wpsabi"
// The AVX-512 ISA includes FMA; contracting cost + d·d into one would round differently from the
// other paths, and the encoded streams would then depend on the machine.
#pragma GCC optimize("fp-contract=off")

namespace marlin {
namespace {

// Prefixes per block of the vector step; below this many prefixes the scalar step runs.
constexpr int64_t kBlock = 64;

// The backpointer (dropped bits h) of prefix p in one step's row of bytes. Scalar rows hold it at
// byte p; vector rows store each block of 64 as sixteen 32-bit words, word i holding prefixes i,
// i + 16, i + 32, i + 48 in its bits 0–7, 8–15, 16–23, 24–31 (the same for every vector width).
uint32_t read_backpointer(const uint8_t* row, int64_t prefixes, int64_t p) {
  if (prefixes < kBlock) return row[p];
  uint32_t word;
  std::memcpy(&word, row + (p & ~(kBlock - 1)) + 4 * (p & 15), sizeof word);
  return (word >> (8 * ((p >> 4) & 3))) & 0xffu;
}

// One step: next[p] = min over h of previous[s >> K] + (x − v[s])² with s = (h << (L−K)) | p, and
// back[p] = the least h attaining it. Scalar form, for fewer than 64 prefixes (v in state order).
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

// Vector types of W lanes (GCC/Clang extensions; the compiler maps them onto what the function's
// ISA has: SSE pairs, AVX2 registers, AVX-512 registers with mask-register compares).
template <int W>
struct Lanes {
  typedef float Floats __attribute__((vector_size(4 * W)));
  typedef int32_t Ints __attribute__((vector_size(4 * W)));
  // Unaligned views for loads and stores (memcpy into local arrays would keep the accumulators
  // in memory rather than registers).
  typedef float FloatsUnaligned __attribute__((vector_size(4 * W), aligned(4)));
  typedef int32_t IntsUnaligned __attribute__((vector_size(4 * W), aligned(1)));
};

// previous[(p0 + i) >> K] for i = 0..W−1 (p0 a multiple of W): each of W / 2^K entries repeated
// 2^K times, or one entry broadcast. Reads W floats (the cost rows are padded).
template <int K, int W, size_t... I>
[[gnu::always_inline]] inline typename Lanes<W>::Floats spread(const float* previous, int64_t p0,
                                                                std::index_sequence<I...>) {
  const float* src = previous + (p0 >> K);
  constexpr int kDistinct = W >> K;
  if constexpr (kDistinct <= 1) {
    return typename Lanes<W>::Floats{} + *src;
  } else {
    // A full-width load and a same-width permutation (GCC lowers narrower sources poorly).
    typename Lanes<W>::Floats source;
    std::memcpy(&source, src, sizeof source);
    return __builtin_shufflevector(source, source, int(I >> K)...);
  }
}

// The same step, one block of 64 prefixes (64 / W vectors) at a time; the vectors' backpointers
// are merged bytewise into sixteen words (see read_backpointer). `blocked` holds the codebook
// block-major (see block_major_values), so it streams sequentially.
template <int K, int W>
[[gnu::always_inline]] inline void viterbi_step_vector(const float* blocked, int L, float x, const float* previous,
                                                      float* next, uint8_t* back) {
  using Floats = typename Lanes<W>::Floats;
  using Ints = typename Lanes<W>::Ints;
  using FloatsUnaligned = typename Lanes<W>::FloatsUnaligned;
  using IntsUnaligned = typename Lanes<W>::IntsUnaligned;
  constexpr int kVectors = int(kBlock) / W, kGroups = 16 / W;
  constexpr auto lanes = std::make_index_sequence<W>{};
  const int64_t prefixes = int64_t(1) << (L - K), quarter = prefixes >> K;
  const Floats target = Floats{} + x;
  for (int64_t p0 = 0; p0 < prefixes; p0 += kBlock, blocked += kBlock << K) {
    Floats best[kVectors];
    Ints arg[kVectors] = {};
    for (int i = 0; i < kVectors; ++i) {
      const Floats d = target - *reinterpret_cast<const FloatsUnaligned*>(blocked + W * i);
      best[i] = spread<K, W>(previous, p0 + W * i, lanes) + d * d;
    }
    for (int h = 1; h < (1 << K); ++h) {
      for (int i = 0; i < kVectors; ++i) {
        const Floats d = target - *reinterpret_cast<const FloatsUnaligned*>(blocked + h * kBlock + W * i);
        const Floats cost = spread<K, W>(previous + h * quarter, p0 + W * i, lanes) + d * d;
        // h only grows, so the last h that improved is the largest of (better ? h : 0): a max
        // and a min instead of two blends.
        const Ints improved = (cost < best[i]) & h;
        best[i] = cost < best[i] ? cost : best[i];
        arg[i] = improved > arg[i] ? improved : arg[i];
      }
    }
    for (int i = 0; i < kVectors; ++i) *reinterpret_cast<FloatsUnaligned*>(next + p0 + W * i) = best[i];
    for (int g = 0; g < kGroups; ++g) {
      const Ints merged = arg[g] | (arg[g + kGroups] << 8) | (arg[g + 2 * kGroups] << 16) | (arg[g + 3 * kGroups] << 24);
      *reinterpret_cast<IntsUnaligned*>(back + p0 + 4 * W * g) = merged;
    }
  }
}

// One function per K and ISA: 16 lanes with AVX-512, 8 with AVX2, 8 in SSE pairs otherwise; all
// give identical results (the same IEEE operations per lane, no contraction).
#define MARLIN_TRELLIS_STEP(K)                                                                               \
  void viterbi_step_##K##_generic(const float* v, int L, float x, const float* previous, float* next,        \
                                  uint8_t* back) {                                                           \
    if ((int64_t(1) << (L - K)) < kBlock) return viterbi_step_scalar<K>(v, L, x, previous, next, back);      \
    viterbi_step_vector<K, 8>(v, L, x, previous, next, back);                                                \
  }                                                                                                          \
  __attribute__((target("avx2"))) void viterbi_step_##K##_avx2(const float* v, int L, float x,              \
                                                                const float* previous, float* next,          \
                                                                uint8_t* back) {                             \
    viterbi_step_vector<K, 8>(v, L, x, previous, next, back);                                                \
  }                                                                                                          \
  __attribute__((target("avx512f,avx512vl,avx512bw,avx512dq"))) void viterbi_step_##K##_avx512(              \
      const float* v, int L, float x, const float* previous, float* next, uint8_t* back) {                   \
    viterbi_step_vector<K, 16>(v, L, x, previous, next, back);                                               \
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

// The codebook of L-bit states in the vector step's order: for each block of 64 prefixes, for each
// h, the 64 values of states (h << (L−K)) | p (the scalar step uses plain state order).
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

// spread() reads up to 16 floats from an entry on, so both cost rows carry a few unused ones.
constexpr int64_t kCostPadding = 16;

using StepFn = void (*)(const float*, int, float, const float*, float*, uint8_t*);

// The step for K on this machine (or the level MARLIN_CPU_ISA / set_cpu_isa_override asks for);
// the generic one, which runs the scalar step, when there are fewer prefixes than one block.
StepFn step_for(int K, int64_t prefixes) {
  const cpu::CpuIsa isa = cpu::active_cpu_isa();
  const int level = prefixes < kBlock || isa == cpu::CpuIsa::Scalar ? 0 : cpu::has_avx512(isa) ? 2 : 1;
#define MARLIN_TRELLIS_CASE(K) \
  case K: return level == 2 ? viterbi_step_##K##_avx512 : level == 1 ? viterbi_step_##K##_avx2 : viterbi_step_##K##_generic;
  switch (K) {
    MARLIN_TRELLIS_CASE(1)
    MARLIN_TRELLIS_CASE(2)
    MARLIN_TRELLIS_CASE(3)
    MARLIN_TRELLIS_CASE(4)
    MARLIN_TRELLIS_CASE(5)
    MARLIN_TRELLIS_CASE(6)
    MARLIN_TRELLIS_CASE(7)
    MARLIN_TRELLIS_CASE(8)
    default: fail("trellis: {} bits per value is outside 1..8", K);
  }
#undef MARLIN_TRELLIS_CASE
}

}  // namespace

void TrellisViterbi::solve(const float* x, int T, int K, int L, int64_t start_prefix, int64_t end_prefix,
                           uint32_t* states) {
  MARLIN_CHECK(K >= 1 && K <= 8, "trellis: {} bits per value is outside 1..8", K);
  MARLIN_CHECK(L >= 2 * K && L <= 16, "trellis: state width {} is outside {}..16 for {} bits per value", L, 2 * K, K);
  MARLIN_CHECK(T >= 1, "trellis: {} values", T);
  const int64_t prefixes = int64_t(1) << (L - K);
  MARLIN_CHECK(start_prefix < prefixes && end_prefix < prefixes, "trellis: a prefix constraint exceeds {} bits", L - K);
  const StepFn step = step_for(K, prefixes);
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
