// The trellis kernels (backend/cuda/trellis_kernels.h) against the format's reference decoder
// (quant/trellis_matrix.h) and rotations (quant/hadamard.h); whole trellis models against the CPU;
// and, printed for the record, the fused product's speed at Llama-3.1-8B's layer shapes next to
// the int4-g128 kernel and cuBLAS fp16 on the same shapes.
//
// Any bitstream is a valid trellis tensor, so the tensors here are random bytes with fp16 row
// scales: every state, window position and tail-biting wrap gets exercised at every K.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <random>
#include <memory>
#include <span>
#include <stdexcept>
#include <string>
#include <vector>

#include "backend/cuda/cuda_linear.h"
#include "backend/cuda/trellis_kernels.h"
#include "core/half.h"
#include "device_buffer.h"
#include "graph_timer.h"
#include "quant/hadamard.h"
#include "quant/quant_buffers.h"
#include "quant/trellis_code.h"
#include "quant/trellis_matrix.h"
#include "test_util.h"

namespace marlin::test {
namespace {

constexpr double kFloatUlp = 1.0 / (1 << 24);  // fp32 unit roundoff

QuantBuffers random_trellis(int64_t rows, int64_t cols, int bits, uint64_t seed, std::mt19937& rng) {
  QuantBuffers b = QuantBuffers::allocate(TensorFormat::parse("trellis" + std::to_string(bits)), rows, cols);
  for (auto& c : b.codes) c = uint8_t(rng());
  std::uniform_real_distribution<float> scale(0.5f, 2.0f);
  for (int64_t r = 0; r < rows; ++r) {
    const uint16_t h = fp32_to_fp16(scale(rng) / std::sqrt(float(cols)));
    std::memcpy(&b.scales[size_t(2 * r)], &h, 2);
  }
  b.rotation_seed = seed;
  return b;
}

// Ŵ' (the rotated basis) by the reference decoder, rows × cols.
std::vector<float> reference_rotated(const QuantTensor& t) {
  std::vector<float> w(size_t(t.rows * t.cols));
  for (int64_t s = 0; s < t.rows / 16; ++s) trellis_decode_strip(t, s, w.data() + s * 16 * t.cols);
  return w;
}

// x as trellis_gemv reads it: each value twice.
std::vector<uint16_t> twice(const std::vector<uint16_t>& x) {
  std::vector<uint16_t> out(2 * x.size());
  for (size_t i = 0; i < x.size(); ++i) out[2 * i] = out[2 * i + 1] = x[i];
  return out;
}

// One tensor in the kernels' device layout.
struct DeviceTrellis {
  explicit DeviceTrellis(const QuantTensor& t)
      : words(cuda::trellis_device_words(t.codes, t.rows, t.cols, t.format.bits, int64_t(t.code_row_bytes))),
        row_scales(size_t(t.rows)),
        half_scales(size_t(t.rows)) {
    std::vector<float> rs(size_t(t.rows));
    std::vector<uint16_t> hs(size_t(t.rows));
    for (int64_t r = 0; r < t.rows; ++r) {
      std::memcpy(&hs[size_t(r)], t.scales + 2 * r, 2);
      rs[size_t(r)] = fp16_to_fp32(hs[size_t(r)]) * kTrellisScale;
    }
    row_scales.upload(rs);
    half_scales.upload(hs);
    host_half_scales = hs;
    view = {words.get(), row_scales.get(), half_scales.get(), int(t.rows), int(t.cols), t.format.bits};
  }
  DeviceBuffer<uint32_t> words;
  DeviceBuffer<float> row_scales;
  DeviceBuffer<uint16_t> half_scales;
  std::vector<uint16_t> host_half_scales;
  cuda::TrellisWeights view;
  uint16_t half(int64_t row) const { return host_half_scales[size_t(row)]; }
};

TEST(CudaTrellis, DecodeToHalfIsBitExact) {
  MARLIN_REQUIRE_GPU();
  std::mt19937 rng(7);
  for (int bits = 1; bits <= 8; ++bits) {
    SCOPED_TRACE("K = " + std::to_string(bits));
    const QuantBuffers t = random_trellis(48, 80, bits, 3, rng);
    const auto ref = reference_rotated(t.view());
    DeviceTrellis d(t.view());
    DeviceBuffer<uint16_t> out(ref.size());
    cuda_ok(cuda::trellis_decode_half(d.view, as_half(out), nullptr), "decode");
    const auto got = out.download();
    size_t misses = 0;
    for (size_t i = 0; i < ref.size(); ++i)
      if (got[i] != fp32_to_fp16(ref[i]) && ++misses <= 5)
        ADD_FAILURE() << "value " << i << ": got " << fp16_to_fp32(got[i]) << ", expected " << ref[i];
    EXPECT_EQ(misses, 0u);
  }
}

// y' = Ŵ'·x' for few rows, every K, tile counts that leave warps without tiles (1 tile), split
// unevenly (9) and need several ring stages (65), rows 1..32.
TEST(CudaTrellis, GemvMatchesReference) {
  MARLIN_REQUIRE_GPU();
  std::mt19937 rng(11);
  for (int bits = 1; bits <= 8; ++bits) {
    for (int tiles : {1, 9, 65}) {
      const int64_t rows = 48, cols = 16 * tiles;
      const QuantBuffers t = random_trellis(rows, cols, bits, 5, rng);
      const auto w = reference_rotated(t.view());
      DeviceTrellis d(t.view());
      for (int m : {1, 3, 8, 13, 32}) {
        SCOPED_TRACE("K = " + std::to_string(bits) + ", cols " + std::to_string(cols) + ", m " + std::to_string(m));
        const auto x = random_halves(size_t(m * cols), -1.0f, 1.0f, rng);
        DeviceBuffer<uint16_t> dx(twice(x));
        DeviceBuffer<float> out(size_t(m * rows));
        cuda_ok(cuda::trellis_gemv(d.view, as_half(dx), m, out.get(), nullptr), "gemv");
        const auto got = out.download();
        std::vector<double> ref(got.size()), bound(got.size());
        for (int i = 0; i < m; ++i)
          for (int64_t r = 0; r < rows; ++r) {
            double sum = 0, mag = 0, x_mag = 0;
            for (int64_t c = 0; c < cols; ++c) {
              const double xc = fp16_to_fp32(x[size_t(i * cols + c)]);
              const double p = double(w[size_t(r * cols + c)]) * xc;
              sum += p;
              mag += std::abs(p);
              x_mag += std::abs(xc);
            }
            ref[size_t(i * rows + r)] = sum;
            // The kernel multiplies each code's two fp16 pieces (|piece| < 2) by x exactly, sums
            // the products in fp32 (tensor cores, then eight partial sums) and scales once; the
            // pieces' exact sum is within half an fp16 ulp of the code the format rounds it to.
            const double scale = fp16_to_fp32(d.half(r)) * kTrellisScale;
            bound[size_t(i * rows + r)] =
                kHalfUlp * mag + (2.0 * double(cols) + 8) * kFloatUlp * 4 * scale * x_mag;
          }
        expect_within(got, ref, [&](size_t i) { return bound[i]; }, "y'");
      }
    }
  }
}

// R·v and Rᵀ·v for one dimension of each Hadamard block, and several segments in one row.
TEST(CudaTrellis, RotationsMatchReference) {
  MARLIN_REQUIRE_GPU();
  std::mt19937 rng(3);
  const std::vector<std::vector<int>> layouts = {{48}, {96}, {576}, {4096}, {64, 16, 48, 128}};
  for (const auto& dims : layouts) {
    for (bool transpose : {false, true}) {
      SCOPED_TRACE("first dim " + std::to_string(dims[0]) + (transpose ? ", transposed" : ""));
      cuda::RotationParams p;
      std::vector<Rotation> rotations;
      std::vector<std::vector<uint32_t>> sign_words;
      for (size_t i = 0; i < dims.size(); ++i) {
        rotations.emplace_back(dims[i], 100 + i);
        auto& words = sign_words.emplace_back();
        for (const uint64_t w : rotations.back().sign_bits()) {
          words.push_back(uint32_t(w));
          words.push_back(uint32_t(w >> 32));
        }
      }
      std::vector<std::unique_ptr<DeviceBuffer<uint32_t>>> signs;
      int begin = 0;
      for (size_t i = 0; i < dims.size(); ++i) {
        signs.push_back(std::make_unique<DeviceBuffer<uint32_t>>(sign_words[i]));
        p.segments[i] = {begin, dims[i], int(rotations[i].block()), signs.back()->get()};
        begin += dims[i];
      }
      p.count = int(dims.size());
      p.row_len = begin;
      p.transpose = transpose;
      const int m = 3;
      const auto x = random_halves(size_t(m * begin), -1.0f, 1.0f, rng);
      DeviceBuffer<uint16_t> dx(x);
      DeviceBuffer<float> out(x.size());
      cuda_ok(cuda::hadamard_rotate(p, dx.get(), false, out.get(), true, m, nullptr), "rotate");
      const auto got = out.download();
      std::vector<double> ref(x.size()), bound(x.size());
      for (int i = 0; i < m; ++i) {
        int at = 0;
        for (size_t s = 0; s < dims.size(); ++s) {
          std::vector<double> v(size_t(dims[s]));
          for (int j = 0; j < dims[s]; ++j) v[size_t(j)] = fp16_to_fp32(x[size_t(i * begin + at + j)]);
          const int64_t b = rotations[s].block();
          if (transpose) rotations[s].apply_transpose(v.data(), 1); else rotations[s].apply(v.data(), 1);
          for (int j = 0; j < dims[s]; ++j) {
            const int block0 = j / int(b) * int(b);
            double mag = 0;  // log2(b) fp32 butterfly stages and a scaling over the block's values
            for (int k = block0; k < block0 + b; ++k) mag += std::abs(fp16_to_fp32(x[size_t(i * begin + at + k)]));
            ref[size_t(i * begin + at + j)] = v[size_t(j)];
            bound[size_t(i * begin + at + j)] = (std::log2(double(b)) + 2) * kFloatUlp * mag / std::sqrt(double(b));
          }
          at += dims[s];
        }
      }
      expect_within(got, ref, [&](size_t i) { return bound[i]; }, "rotated");
      // As trellis_gemv reads it: each fp16 value twice.
      p.pairs = true;
      DeviceBuffer<uint16_t> pairs(2 * x.size());
      cuda_ok(cuda::hadamard_rotate(p, dx.get(), false, pairs.get(), false, m, nullptr), "rotate to pairs");
      const auto halves = pairs.download();
      std::vector<float> values(x.size());
      for (size_t i = 0; i < x.size(); ++i) {
        values[i] = fp16_to_fp32(halves[2 * i]);
        EXPECT_EQ(halves[2 * i + 1], halves[2 * i]) << "pair " << i;
      }
      expect_within(values, ref, [&](size_t i) { return bound[i] + kHalfUlp * std::abs(ref[i]); }, "rotated pairs");
    }
  }
}

// A layer's linear in several copies (more bytes than the L2 holds), on one context.
struct TimedLinears {
  TimedLinears(const QuantBuffers& w, int copies, cuda::LinearContext& ctx) {
    const QuantTensor view = w.view();
    for (int i = 0; i < copies; ++i) linears.push_back(cuda::CudaLinear::upload(std::span(&view, 1), ctx));
  }
  std::vector<std::unique_ptr<cuda::CudaLinear>> linears;
};

QuantBuffers random_int4(int64_t rows, int64_t cols, std::mt19937& rng) {
  QuantBuffers b = QuantBuffers::allocate(TensorFormat::parse("int4-g128"), rows, cols);
  for (auto& c : b.codes) c = uint8_t(rng());
  auto* scales = reinterpret_cast<uint16_t*>(b.scales.data());
  for (size_t i = 0; i < b.scales.size() / 2; ++i) scales[i] = fp32_to_fp16(0.01f);
  return b;
}

int copies_for(double bytes) { return std::max(2, int(std::ceil(200e6 / bytes))); }

// A linear context with a cuBLAS handle of its own, for `max_rows` rows a call.
struct PerfContext {
  explicit PerfContext(int64_t max_rows) {
    if (cublasCreate(&ctx.cublas) != CUBLAS_STATUS_SUCCESS) throw std::runtime_error("cublasCreate failed");
    ctx.max_rows = max_rows;
  }
  ~PerfContext() { cublasDestroy(ctx.cublas); }
  cuda::LinearContext ctx;
};

// Llama-3.1-8B's layer, rows × cols: q|k|v, o, gate|up, down.
const std::vector<std::pair<int, int>> kLlama8bLayer = {{6144, 4096}, {4096, 4096}, {28672, 4096}, {4096, 14336}};

// Llama-3.1-8B's layer (q|k|v, o, gate|up, down) at 1..16 rows: microseconds and GB/s of each
// weight stream — the trellis product alone (K = 2, 3, 4), the whole trellis linear (rotations
// included, K = 4), the int4-g128 kernel and cuBLAS fp16 — and the layer's totals.
TEST(CudaTrellisPerf, Llama8bLayerShapes) {
  MARLIN_REQUIRE_GPU();
  std::mt19937 rng(1);
  PerfContext perf(16);
  cuda::LinearContext& ctx = perf.ctx;
  const auto& shapes = kLlama8bLayer;
  const int iterations = 20;
  for (int m : {1, 4, 8, 16}) {
    double total[7] = {}, bytes_total[7] = {};
    for (const auto& [rows, cols] : shapes) {
      const auto x = random_halves(size_t(m) * size_t(std::max(rows, cols)), -1.0f, 1.0f, rng);
      DeviceBuffer<uint16_t> dx(x), dx_pairs(twice(x));
      DeviceBuffer<float> y32(size_t(m) * size_t(rows));
      DeviceBuffer<uint16_t> y16(size_t(m) * size_t(rows));
      double us[7], bytes[7];
      // 0..2: trellis2..4 product alone
      for (int bits = 2; bits <= 4; ++bits) {
        const QuantBuffers t = random_trellis(rows, cols, bits, 9, rng);
        bytes[bits - 2] = double(rows) * cols * bits / 8 + 4.0 * rows;
        std::vector<std::unique_ptr<DeviceTrellis>> copies;
        for (int i = 0; i < copies_for(bytes[bits - 2]); ++i) copies.push_back(std::make_unique<DeviceTrellis>(t.view()));
        size_t next = 0;
        us[bits - 2] = 1e3 * graph_ms(
                                 [&](cudaStream_t stream) {
                                   cuda_ok(cuda::trellis_gemv(copies[next++ % copies.size()]->view, as_half(dx_pairs), m,
                                                              y32.get(), stream),
                                           "trellis gemv");
                                 },
                                 iterations);
      }
      // 3: trellis4 linear (rotations + product); 4: int4-g128; 5: cuBLAS fp16
      const QuantBuffers t4 = random_trellis(rows, cols, 4, 9, rng);
      const QuantBuffers i4 = random_int4(rows, cols, rng);
      bytes[3] = bytes[2];
      bytes[4] = double(rows) * cols / 2 + double(rows) * cols / 128 * 2;
      bytes[5] = double(rows) * cols * 2;
      TimedLinears trellis(t4, copies_for(bytes[3]), ctx), int4(i4, copies_for(bytes[4]), ctx);
      std::vector<std::unique_ptr<DeviceBuffer<uint16_t>>> f16;
      for (int i = 0; i < copies_for(bytes[5]); ++i) f16.push_back(std::make_unique<DeviceBuffer<uint16_t>>(size_t(rows) * cols));
      const std::vector<std::unique_ptr<cuda::CudaLinear>>* sets[2] = {&trellis.linears, &int4.linears};
      for (int k = 0; k < 2; ++k) {
        size_t next = 0;
        us[3 + k] = 1e3 * graph_ms(
                              [&](cudaStream_t stream) {
                                ctx.stream = stream;
                                const auto& set = *sets[k];
                                set[next++ % set.size()]->forward(as_half(dx), m, y16.get(), false, ctx);
                              },
                              iterations);
      }
      size_t next = 0;
      us[5] = 1e3 * graph_ms(
                        [&](cudaStream_t stream) {
                          ctx.stream = stream;
                          cublasSetStream(ctx.cublas, stream);
                          cuda::gemm_f16(ctx, as_half(*f16[next++ % f16.size()]), rows, cols, as_half(dx), m,
                                         y16.get(), false);
                        },
                        iterations);
      const char* names[6] = {"trellis2 gemv", "trellis3 gemv", "trellis4 gemv", "trellis4 linear", "int4-g128",
                              "cublas fp16"};
      for (int i = 0; i < 6; ++i) {
        std::printf("{\"m\": %d, \"rows\": %d, \"cols\": %d, \"kernel\": \"%s\", \"us\": %.2f, \"GBps\": %.0f}\n", m,
                    rows, cols, names[i], us[i], bytes[i] / (us[i] * 1e-6) / 1e9);
        total[i] += us[i];
        bytes_total[i] += bytes[i];
      }
    }
    std::printf("{\"m\": %d, \"layer\": true, \"trellis4_gemv_us\": %.1f, \"trellis4_linear_us\": %.1f, "
                "\"int4_us\": %.1f, \"cublas_us\": %.1f, \"trellis4_gemv_GBps\": %.0f, \"int4_GBps\": %.0f, "
                "\"trellis4_over_int4_bandwidth\": %.3f, \"trellis2_gemv_us\": %.1f, \"trellis3_gemv_us\": %.1f}\n",
                m, total[2], total[3], total[4], total[5], bytes_total[2] / (total[2] * 1e-6) / 1e9,
                bytes_total[4] / (total[4] * 1e-6) / 1e9,
                (bytes_total[2] / total[2]) / (bytes_total[4] / total[4]), total[0], total[1]);
  }
  SUCCEED();
}

// The same layer at prompt sizes (128, 512, 2048 rows): the trellis4 linear (rotations, the decode
// into fp16 rows and cuBLAS), the int4-g128 linear and cuBLAS fp16, microseconds and TFLOP/s.
TEST(CudaTrellisPerf, Llama8bLayerPrompt) {
  MARLIN_REQUIRE_GPU();
  std::mt19937 rng(2);
  PerfContext perf(2048);
  cuda::LinearContext& ctx = perf.ctx;
  DeviceBuffer<uint8_t> cublas_workspace(size_t(32) << 20);  // no allocation inside a graph capture
  ASSERT_EQ(cublasSetWorkspace(ctx.cublas, cublas_workspace.get(), cublas_workspace.size()), CUBLAS_STATUS_SUCCESS);
  const auto& shapes = kLlama8bLayer;
  struct Layer {
    std::unique_ptr<TimedLinears> trellis, int4;
    std::unique_ptr<DeviceBuffer<uint16_t>> f16;
  };
  std::vector<Layer> layers;
  for (const auto& [rows, cols] : shapes) {
    layers.push_back({std::make_unique<TimedLinears>(random_trellis(rows, cols, 4, 9, rng), 1, ctx),
                      std::make_unique<TimedLinears>(random_int4(rows, cols, rng), 1, ctx),
                      std::make_unique<DeviceBuffer<uint16_t>>(size_t(rows) * cols)});
  }
  for (int m : {128, 512, 2048}) {
    double total[3] = {}, flops = 0;
    for (size_t s = 0; s < shapes.size(); ++s) {
      const auto [rows, cols] = shapes[s];
      const auto x = random_halves(size_t(m) * size_t(cols), -1.0f, 1.0f, rng);
      DeviceBuffer<uint16_t> dx(x), y16(size_t(m) * size_t(rows));
      double us[3];
      const cuda::CudaLinear* linears[2] = {layers[s].trellis->linears[0].get(), layers[s].int4->linears[0].get()};
      for (int k = 0; k < 2; ++k)
        us[k] = 1e3 * graph_ms(
                          [&](cudaStream_t stream) {
                            ctx.stream = stream;
                            cublasSetStream(ctx.cublas, stream);
                            linears[k]->forward(as_half(dx), m, y16.get(), false, ctx);
                          },
                          5);
      us[2] = 1e3 * graph_ms(
                        [&](cudaStream_t stream) {
                          ctx.stream = stream;
                          cublasSetStream(ctx.cublas, stream);
                          cuda::gemm_f16(ctx, as_half(*layers[s].f16), rows, cols, as_half(dx), m, y16.get(), false);
                        },
                        5);
      const double f = 2.0 * m * rows * cols;
      const char* names[3] = {"trellis4 linear", "int4-g128", "cublas fp16"};
      for (int i = 0; i < 3; ++i) {
        std::printf("{\"m\": %d, \"rows\": %d, \"cols\": %d, \"kernel\": \"%s\", \"us\": %.1f, \"TFLOPs\": %.0f}\n", m,
                    rows, cols, names[i], us[i], f / (us[i] * 1e-6) / 1e12);
        total[i] += us[i];
      }
      flops += f;
    }
    std::printf("{\"m\": %d, \"layer\": true, \"trellis4_linear_us\": %.1f, \"int4_us\": %.1f, \"cublas_us\": %.1f, "
                "\"trellis4_TFLOPs\": %.0f, \"int4_TFLOPs\": %.0f, \"cublas_TFLOPs\": %.0f}\n",
                m, total[0], total[1], total[2], flops / (total[0] * 1e-6) / 1e12, flops / (total[1] * 1e-6) / 1e12,
                flops / (total[2] * 1e-6) / 1e12);
  }
  SUCCEED();
}

}  // namespace
}  // namespace marlin::test
