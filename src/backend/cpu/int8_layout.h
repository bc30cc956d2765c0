// The common int8 form every quantized CPU kernel computes in.
//
// Weights and activations are cut into groups of 128 values along K. A weight group unpacks to
// 128 unsigned quants u in "position" order (two 64-byte steps, each 16 lanes of 4 bytes) plus,
// per lane, a scale and a "min" factor. Activations are quantized to int8 per 32 values
// (quantize_block_q8_act) and stored in the same position order, with per-lane scale d and sum s:
//   Σ w·x' = Σ_lanes scale·(d·Σ_4 u·a) + min·s
// Asymmetric types (w = scale·u + m): min = m and s = d·Σ_4 a.
// Symmetric types (w = scale·(u + offset)): min = scale and s = offset·d·Σ_4 a.
// Each lane's 4 positions lie in one 32-value activation block and share one weight scale.
// The position order is chosen per type so that SIMD code unpacks the GGML bytes cheaply:
//   Nibble32  (Q4_0, Q4_1, Q5_0, Q5_1; group = 4 blocks): step t holds elements 16t..16t+15 of
//             each block b at positions 64t + 16b + j — the low / high nibbles of each block.
//   Natural   (Q8_0, Q6_K): position p holds element p.
//   KNibble   (Q4_K, Q5_K; group = half a super-block): step t holds sub-block t in positions
//             64t..64t+31 and sub-block t + 2 in 64t+32..64t+63 — the nibbles of two 32-byte chunks.
//   EvenOdd   (planar 4-bit codes): step t holds element 2i + t at position 64t + i — the low and
//             high nibbles of the group's 64 code bytes.
// Other planar formats (planar.h) use Nibble32: every run of 8 positions is 8 consecutive
// elements, which AVX-512 gathers from any bit width with one vpermb and one vpmultishiftqb.
// In Nibble32 and EvenOdd both steps map lane l to the same 16 (EvenOdd: 8) elements, which share
// one block and one weight scale (weight groups are ≥ 16 values), so kernels may add the two
// steps' integer sums; the activation stores the combined sum in lanes 0..15 and zero in 16..31.
#pragma once

#include <cstdint>

#include "quant/ggml_types.h"

namespace marlin::cpu {

constexpr int kGroup = 128;

enum class LaneLayout { Nibble32, Natural, KNibble, EvenOdd };

struct Int8Format {
  LaneLayout layout;
  int offset;         // symmetric types: w = scale·(u + offset); 0 for asymmetric
  bool asymmetric;    // has its own min per block
  bool shared_lanes;  // both steps map each lane to the same block
};

// The int8 form of a quantized GGML type (Q4_0, Q4_1, Q5_0, Q5_1, Q8_0, Q4_K, Q5_K, Q6_K).
Int8Format int8_format(GgmlType type);

// Which of the group's 128 elements sits at position p.
constexpr int element_at(LaneLayout layout, int p) {
  const int step = p / 64, i = p % 64;
  switch (layout) {
    case LaneLayout::Nibble32: return 32 * (i / 16) + 16 * step + i % 16;
    case LaneLayout::Natural: return p;
    case LaneLayout::KNibble: return 32 * (2 * (i / 32) + step) + i % 32;
    case LaneLayout::EvenOdd: return 2 * i + step;
  }
  return p;
}

// One group of quantized activations (see above); 64-byte aligned for SIMD loads.
struct alignas(64) ActGroup {
  int8_t q[kGroup];
  float d[32];
  float s[32];
};

// One unpacked weight group in the same form.
struct alignas(64) WeightGroup {
  uint8_t u[kGroup];
  float scale[32];
  float min[32];
};

// Number of groups covering `cols` values.
inline int64_t groups_for(int64_t cols) { return (cols + kGroup - 1) / kGroup; }

// Quantizes `rows` rows of `cols` fp32 activations (row stride `cols`) into rows · groups_for(cols)
// groups for weights of int8 form `fmt`; values past `cols` are zero.
void quantize_activations(const Int8Format& fmt, const float* x, int64_t rows, int64_t cols, ActGroup* out);

// Scalar unpacking of group g of a weight row of `cols` values (missing blocks of a last partial
// group unpack as zeros). The reference for every SIMD unpacker.
void unpack_group_scalar(GgmlType type, const uint8_t* row, int64_t cols, int64_t g, WeightGroup& out);

}  // namespace marlin::cpu
