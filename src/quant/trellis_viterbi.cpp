#include "quant/trellis_viterbi.h"

#include <cmath>

#include "core/error.h"
#include "quant/trellis_code.h"

namespace marlin {
namespace {

// One step: next[p] = min over h of previous[s >> K] + (x − v[s])² with s = (h << (L−K)) | p, and
// backpointer[p] = the least h that attains it. Scalar form, used where 2^(L−K) < 8.
template <int K>
void viterbi_step_scalar(const float* v, int L, float x, const float* previous, float* next, uint8_t* backpointer) {
  const int64_t prefixes = int64_t(1) << (L - K), quarter = prefixes >> K;
  for (int64_t p = 0; p < prefixes; ++p) {
    float best = INFINITY;
    int arg = 0;
    for (int h = 0; h < (1 << K); ++h) {
      const float d = x - v[h * prefixes + p];
      const float cost = previous[h * quarter + (p >> K)] + d * d;
      if (cost < best || h == 0) best = cost, arg = h;
    }
    next[p] = best;
    backpointer[p] = uint8_t(arg);
  }
}

typedef float Floats8 __attribute__((vector_size(32)));
typedef int32_t Ints8 __attribute__((vector_size(32)));
typedef uint8_t Bytes8 __attribute__((vector_size(8)));
typedef float Floats4 __attribute__((vector_size(16)));

// previous[(p0 + i) >> K] for i = 0..7 (p0 a multiple of 8): 4 entries each twice (K = 1),
// 2 entries four times (K = 2), or one entry broadcast (K ≥ 3).
template <int K>
[[gnu::always_inline]] inline Floats8 spread(const float* previous, int64_t p0) {
  const float* src = previous + (p0 >> K);
  if constexpr (K == 1) {
    Floats4 four;
    __builtin_memcpy(&four, src, sizeof four);
    return __builtin_shufflevector(four, four, 0, 0, 1, 1, 2, 2, 3, 3);
  } else if constexpr (K == 2) {
    Floats4 four;
    __builtin_memcpy(&four, src, sizeof four);
    return __builtin_shufflevector(four, four, 0, 0, 0, 0, 1, 1, 1, 1);
  } else {
    return Floats8{} + *src;
  }
}

// The same step, eight prefixes at a time in GCC/Clang vector types (SSE pairs by default, AVX2
// in the clone below); identical results to the scalar form (same operations, no contraction).
template <int K>
[[gnu::always_inline]] inline void viterbi_step_vector(const float* v, int L, float x, const float* previous,
                                                      float* next, uint8_t* backpointer) {
  const int64_t prefixes = int64_t(1) << (L - K), quarter = prefixes >> K;
  const Floats8 target = Floats8{} + x;
  for (int64_t p0 = 0; p0 < prefixes; p0 += 8) {
    Floats8 values, best;
    Ints8 arg = Ints8{};
    __builtin_memcpy(&values, v + p0, sizeof values);
    Floats8 d = target - values;
    best = spread<K>(previous, p0) + d * d;
    for (int h = 1; h < (1 << K); ++h) {
      __builtin_memcpy(&values, v + h * prefixes + p0, sizeof values);
      d = target - values;
      const Floats8 cost = spread<K>(previous + h * quarter, p0) + d * d;
      const Ints8 better = cost < best;
      best = better ? cost : best;
      arg = better ? Ints8{} + h : arg;
    }
    const Bytes8 args = __builtin_convertvector(arg, Bytes8);
    __builtin_memcpy(next + p0, &best, sizeof best);
    __builtin_memcpy(backpointer + p0, &args, sizeof args);
  }
}

#define MARLIN_TRELLIS_STEP(K)                                                                           \
  __attribute__((target_clones("avx2", "default"))) void viterbi_step_##K(                               \
      const float* v, int L, float x, const float* previous, float* next, uint8_t* backpointer) {        \
    if (L - K < 3) return viterbi_step_scalar<K>(v, L, x, previous, next, backpointer);                 \
    viterbi_step_vector<K>(v, L, x, previous, next, backpointer);                                        \
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

constexpr size_t kCostPadding = 4;

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
  const float* v = trellis_value_table();

  // spread() reads up to 4 floats from an entry on, so both cost arrays carry a few unused ones.
  previous_.assign(size_t(prefixes) + kCostPadding, start_prefix < 0 ? 0.0f : INFINITY);
  if (start_prefix >= 0) previous_[size_t(start_prefix)] = 0.0f;
  next_.assign(size_t(prefixes) + kCostPadding, 0.0f);
  backpointers_.resize(size_t(T) * size_t(prefixes));
  for (int t = 0; t < T; ++t) {
    step(v, L, x[t], previous_.data(), next_.data(), &backpointers_[size_t(t) * size_t(prefixes)]);
    previous_.swap(next_);
  }

  int64_t prefix = end_prefix;
  if (prefix < 0) {
    prefix = 0;
    for (int64_t p = 1; p < prefixes; ++p)
      if (previous_[size_t(p)] < previous_[size_t(prefix)]) prefix = p;
  }
  for (int t = T - 1; t >= 0; --t) {
    const uint32_t h = backpointers_[size_t(t) * size_t(prefixes) + size_t(prefix)];
    states[t] = uint32_t((int64_t(h) << (L - K)) | prefix);
    prefix = states[t] >> K;
  }
}

}  // namespace marlin
