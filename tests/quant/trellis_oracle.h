// An independent double-precision model of a trellis tensor (quant/trellis_matrix.h) for tests:
// the rotations as explicit dense matrices built from their definition (Sylvester Hadamard
// blocks, SplitMix64 signs), the tiles addressed from the layout text, words assembled from bytes.
// Only the tile codec itself (trellis_tile_state + trellis_value, tested in test_trellis.cpp) is
// shared with the code under test.
#pragma once

#include <bit>
#include <cmath>
#include <cstdint>
#include <random>
#include <vector>

#include "core/half.h"
#include "quant/quant_buffers.h"
#include "quant/trellis.h"
#include "quant/trellis_code.h"

namespace marlin::test {

inline uint64_t oracle_splitmix(uint64_t seed, uint64_t k) {
  uint64_t z = seed + (k + 1) * 0x9E3779B97F4A7C15ull;
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
  return z ^ (z >> 31);
}

// R = H_b·S for dimension d (row-major d × d).
inline std::vector<double> oracle_rotation(int64_t d, uint64_t seed) {
  int64_t b = 16;
  for (int64_t c : {128, 64, 32})
    if (d % c == 0) {
      b = c;
      break;
    }
  std::vector<double> r(size_t(d * d), 0.0);
  for (int64_t i = 0; i < d; ++i)
    for (int64_t j = i / b * b; j < i / b * b + b; ++j) {
      const double h = (std::popcount(uint64_t((i % b) & (j % b))) % 2 ? -1.0 : 1.0) / std::sqrt(double(b));
      const double s = (oracle_splitmix(seed, uint64_t(j / 64)) >> (j % 64) & 1) ? -1.0 : 1.0;
      r[size_t(i * d + j)] = h * s;
    }
  return r;
}

// Ŵ' (rows × cols) as the layout describes it: s_r · value, the product in fp32.
inline std::vector<double> oracle_rotated(const QuantTensor& t) {
  const int k = t.format.bits;
  std::vector<double> w(size_t(t.rows * t.cols));
  std::vector<uint16_t> words(size_t(trellis_tile_words(k)));
  for (int64_t i = 0; i < t.rows / 16; ++i)
    for (int64_t j = 0; j < t.cols / 16; ++j) {
      const uint8_t* tile = t.codes + 16 * i * t.code_row_bytes + j * 32 * k;
      for (size_t n = 0; n < words.size(); ++n) words[n] = uint16_t(tile[2 * n] | tile[2 * n + 1] << 8);
      for (int v = 0; v < 256; ++v) {
        const int64_t r = 16 * i + v / 16, c = 16 * j + v % 16;
        const float s = fp16_to_fp32(uint16_t(t.scales[2 * r] | t.scales[2 * r + 1] << 8));
        w[size_t(r * t.cols + c)] = double(s * trellis_value(trellis_tile_state(words.data(), k, v)));
      }
    }
  return w;
}

// Ŵ = R_outᵀ·Ŵ'·R_in in double.
inline std::vector<double> oracle_dequantized(const QuantTensor& t) {
  const std::vector<double> w = oracle_rotated(t);
  const auto r_out = oracle_rotation(t.rows, t.rotation_seed + 1), r_in = oracle_rotation(t.cols, t.rotation_seed);
  const int64_t rows = t.rows, cols = t.cols;
  std::vector<double> left(size_t(rows * cols), 0.0), out(size_t(rows * cols), 0.0);
  for (int64_t i = 0; i < rows; ++i)  // left = R_outᵀ·Ŵ'
    for (int64_t p = 0; p < rows; ++p) {
      const double a = r_out[size_t(p * rows + i)];
      if (a == 0) continue;
      for (int64_t c = 0; c < cols; ++c) left[size_t(i * cols + c)] += a * w[size_t(p * cols + c)];
    }
  for (int64_t i = 0; i < rows; ++i)  // out = left·R_in
    for (int64_t p = 0; p < cols; ++p) {
      const double a = left[size_t(i * cols + p)];
      for (int64_t c = 0; c < cols; ++c) out[size_t(i * cols + c)] += a * r_in[size_t(p * cols + c)];
    }
  return out;
}

// A trellisK tensor with random (always valid) bitstreams, scales uniform in ±[0.5, 2) as fp16,
// and a random seed.
inline QuantBuffers random_trellis(int64_t rows, int64_t cols, int k, uint64_t seed) {
  TensorFormat f;
  f.kind = FormatKind::kTrellis;
  f.bits = k;
  QuantBuffers b = QuantBuffers::allocate(f, rows, cols);
  std::mt19937_64 rng(seed);
  for (auto& x : b.codes) x = uint8_t(rng());
  std::uniform_real_distribution<float> mag(0.5f, 2.0f);
  for (int64_t r = 0; r < rows; ++r) {
    const uint16_t h = fp32_to_fp16((rng() & 1 ? -1.0f : 1.0f) * mag(rng));
    b.scales[size_t(2 * r)] = uint8_t(h & 0xff);
    b.scales[size_t(2 * r + 1)] = uint8_t(h >> 8);
  }
  b.rotation_seed = rng();
  return b;
}

}  // namespace marlin::test
