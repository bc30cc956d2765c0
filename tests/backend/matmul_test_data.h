// Random weights in every GGML block format, activations, and the fp64 oracle for cpu::matmul tests.
#pragma once

#include <cmath>
#include <cstring>
#include <random>
#include <vector>

#include "core/half.h"
#include "quant/ggml_dequant.h"
#include "quant/ggml_quantize.h"
#include "quant/ggml_types.h"

namespace marlin::test {

// Byte offsets of the fp16 scale/min fields of one block; all other bytes may take any value.
inline std::vector<int> fp16_fields(GgmlType type) {
  switch (type) {
    case GgmlType::Q4_0: case GgmlType::Q5_0: case GgmlType::Q8_0: return {0};
    case GgmlType::Q4_1: case GgmlType::Q5_1: case GgmlType::Q4_K: case GgmlType::Q5_K: return {0, 2};
    case GgmlType::Q6_K: return {208};
    default: return {};
  }
}

// `rows` rows of `cols` weights: random bytes with finite fp16 scales of either sign
// (mins of both signs too), so every quant bit pattern occurs.
inline std::vector<uint8_t> random_weights(GgmlType type, int64_t rows, int64_t cols, std::mt19937& rng) {
  const GgmlTypeInfo& info = ggml_type_info(type);
  const uint64_t row_bytes = *ggml_row_bytes(type, uint64_t(cols));
  std::vector<uint8_t> bytes(row_bytes * uint64_t(rows));
  std::uniform_real_distribution<float> value(-1.0f, 1.0f);
  if (info.block_elements == 1) {
    for (int64_t i = 0; i < rows * cols; ++i) {
      const float v = value(rng);
      const uint16_t h = type == GgmlType::BF16 ? fp32_to_bf16(v) : fp32_to_fp16(v);
      if (type == GgmlType::F32) std::memcpy(&bytes[size_t(4 * i)], &v, 4);
      else std::memcpy(&bytes[size_t(2 * i)], &h, 2);
    }
    return bytes;
  }
  std::uniform_int_distribution<int> byte(0, 255);
  for (auto& b : bytes) b = uint8_t(byte(rng));
  const float scale = info.block_elements == 256 ? 0.004f : 0.06f;
  for (size_t off = 0; off < bytes.size(); off += info.block_bytes)
    for (int field : fp16_fields(type)) {
      const uint16_t h = fp32_to_fp16(scale * value(rng));
      std::memcpy(&bytes[off + size_t(field)], &h, 2);
    }
  return bytes;
}

// Activations like a transformer's: mostly O(1) with occasional larger outliers.
inline std::vector<float> random_activations(int64_t count, std::mt19937& rng) {
  std::normal_distribution<float> normal(0.0f, 1.0f);
  std::uniform_int_distribution<int> outlier(0, 63);
  std::vector<float> x(static_cast<size_t>(count));
  for (auto& v : x) v = normal(rng) * (outlier(rng) == 0 ? 8.0f : 1.0f);
  return x;
}

// The dequantized weight matrix (rows × cols).
inline std::vector<float> dequantized(GgmlType type, const std::vector<uint8_t>& bytes, int64_t rows, int64_t cols) {
  const uint64_t row_bytes = *ggml_row_bytes(type, uint64_t(cols));
  std::vector<float> w(static_cast<size_t>(rows * cols));
  for (int64_t r = 0; r < rows; ++r) dequantize_row(type, bytes.data() + r * row_bytes, &w[size_t(r * cols)], cols);
  return w;
}

// x passed through the kernels' activation quantizer and back (rows of cols, cols % 32 == 0);
// step[i] is the quantization step d of the block holding x[i].
inline std::vector<float> q8_roundtrip(const std::vector<float>& x, int64_t cols, std::vector<float>& step) {
  std::vector<float> out(x.size());
  step.assign(x.size(), 0.0f);
  std::vector<BlockQ8Act> blocks(static_cast<size_t>(cols / 32));
  for (size_t r = 0; r < x.size() / size_t(cols); ++r) {
    quantize_row_q8_act(&x[r * size_t(cols)], blocks.data(), cols);
    for (int64_t k = 0; k < cols; ++k) {
      const BlockQ8Act& b = blocks[size_t(k / 32)];
      out[r * size_t(cols) + size_t(k)] = b.d * float(b.q[k % 32]);
      step[r * size_t(cols) + size_t(k)] = b.d;
    }
  }
  return out;
}

}  // namespace marlin::test
