// Random weights in every format, activations, the fp64 oracle's inputs, and the ISA/thread
// helpers shared by the cpu::matmul tests.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstring>
#include <memory>
#include <numeric>
#include <optional>
#include <random>
#include <vector>

#include "backend/cpu/cpu_isa.h"
#include "core/half.h"
#include "core/thread_pool.h"
#include "quant/dequant.h"
#include "quant/fp_codes.h"
#include "quant/ggml_dequant.h"
#include "quant/ggml_quantize.h"
#include "quant/ggml_types.h"
#include "quant/pack.h"
#include "quant/quant_buffers.h"

namespace marlin::test {

constexpr double kUnit = 0x1p-24;  // fp32 unit roundoff

inline std::vector<cpu::CpuIsa> supported_isas() {
  std::vector<cpu::CpuIsa> out;
  for (cpu::CpuIsa isa : {cpu::CpuIsa::Scalar, cpu::CpuIsa::Avx2, cpu::CpuIsa::Avx2Vnni, cpu::CpuIsa::Avx512,
                          cpu::CpuIsa::Avx512Fp16})
    if (cpu::cpu_supports(isa)) out.push_back(isa);
  return out;
}

// Pools of 1..3 threads, made once per test binary.
inline ThreadPool& pool(int threads) {
  static std::unique_ptr<ThreadPool> pools[4];
  if (!pools[threads]) pools[threads] = std::make_unique<ThreadPool>(threads);
  return *pools[threads];
}

struct IsaGuard {
  explicit IsaGuard(cpu::CpuIsa isa) { cpu::set_cpu_isa_override(isa); }
  ~IsaGuard() { cpu::set_cpu_isa_override(std::nullopt); }
};

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

// x passed through the kernels' activation quantizer and back (rows of cols; a last partial block
// is quantized with zeros after it, as the kernels pad); step[i] is the quantization step d of the
// block holding x[i].
inline std::vector<float> q8_roundtrip(const std::vector<float>& x, int64_t cols, std::vector<float>& step) {
  std::vector<float> out(x.size());
  step.assign(x.size(), 0.0f);
  for (size_t r = 0; r < x.size() / size_t(cols); ++r)
    for (int64_t k0 = 0; k0 < cols; k0 += 32) {
      float block[32] = {};
      const int64_t n = std::min<int64_t>(32, cols - k0);
      std::copy_n(&x[r * size_t(cols) + size_t(k0)], n, block);
      float d;
      int8_t q[32];
      quantize_block_q8_act(block, d, q);
      for (int64_t j = 0; j < n; ++j) {
        out[r * size_t(cols) + size_t(k0 + j)] = d * float(q[j]);
        step[r * size_t(cols) + size_t(k0 + j)] = d;
      }
    }
  return out;
}

}  // namespace marlin::test

namespace marlin::test {

// A random tensor of a planar or plain format: every code bit pattern (fp8: all but the two NaN
// codes), fp16 scales of either sign, zero points anywhere in the code range, random valid 2:4
// patterns, a random permutation for act-order, E8M0 scales around 1 with the smallest exponents
// (subnormal 2^-127, 2^-126) mixed in, E4M3 scales of every finite code and a non-power-of-2
// tensor scale for nvfp4.
inline QuantBuffers random_tensor(const TensorFormat& f, int64_t rows, int64_t cols, std::mt19937& rng) {
  QuantBuffers b = QuantBuffers::allocate(f, rows, cols);
  std::uniform_int_distribution<int> byte(0, 255);
  std::uniform_real_distribution<float> unit(-1.0f, 1.0f);
  if (!f.quantized()) {
    for (int64_t i = 0; i < rows * cols; ++i) {
      const float v = unit(rng);
      const uint16_t h = f.kind == FormatKind::kBF16 ? fp32_to_bf16(v) : fp32_to_fp16(v);
      if (f.kind == FormatKind::kF32) std::memcpy(&b.codes[size_t(4 * i)], &v, 4);
      else std::memcpy(&b.codes[size_t(2 * i)], &h, 2);
    }
    return b;
  }
  const FormatInfo& info = format_info(f.kind);
  for (auto& c : b.codes) {
    c = uint8_t(byte(rng));
    if (f.kind == FormatKind::kFp8E4M3 && (c & 0x7f) == 0x7f) c ^= 1;
  }
  const float magnitude = f.kind == FormatKind::kFp8E4M3 ? 0.004f : f.kind == FormatKind::kFp4 ? 0.02f : 0.06f;
  for (size_t i = 0; i < b.scales.size() / size_t(scale_bytes(info.scale)); ++i) {
    switch (info.scale) {
      case ScaleType::kF16: {
        const uint16_t h = fp32_to_fp16(magnitude * unit(rng));
        std::memcpy(&b.scales[2 * i], &h, 2);
        break;
      }
      case ScaleType::kE8M0: b.scales[i] = uint8_t(byte(rng) < 16 ? byte(rng) % 2 : 118 + byte(rng) % 12); break;
      case ScaleType::kE4M3: {
        uint8_t s = uint8_t(byte(rng));
        if ((s & 0x7f) == 0x7f) s ^= 1;
        b.scales[i] = s;
        break;
      }
      case ScaleType::kNone: break;
    }
  }
  for (auto& z : b.zeros) z = uint8_t(byte(rng) % (1 << info.code_bits));
  if (f.sparse_24) {
    static constexpr int kPairs[6][2] = {{0, 1}, {0, 2}, {0, 3}, {1, 2}, {1, 3}, {2, 3}};
    const uint64_t meta_row = sparse_meta_row_bytes(cols);
    for (int64_t r = 0; r < rows; ++r)
      for (int64_t j = 0; j < cols / 4; ++j) {
        const int* pair = kPairs[byte(rng) % 6];
        uint8_t& m = b.sparse_meta[size_t(r * int64_t(meta_row) + j / 2)];
        m = uint8_t(m | sparse_pattern(pair[0], pair[1]) << (4 * (j % 2)));
      }
  }
  if (f.act_order) std::shuffle(b.perm.begin(), b.perm.end(), rng);
  b.tensor_scale = 0.37f;
  return b;
}

// The reference dequantization of every row (stored column order).
inline std::vector<float> dequantized(const QuantTensor& t) {
  std::vector<float> w(static_cast<size_t>(t.rows * t.cols));
  for (int64_t r = 0; r < t.rows; ++r) dequantize_row(t, r, &w[size_t(r * t.cols)]);
  return w;
}

}  // namespace marlin::test
