#include <gtest/gtest.h>

#include <cstring>
#include <random>

#include "backend/cpu/cpu_isa.h"
#include "backend/cpu/int8_layout.h"
#include "backend/cpu/kernels.h"
#include "matmul_test_data.h"

namespace marlin::cpu {
namespace {

const GgmlType kQuantTypes[] = {GgmlType::Q4_0, GgmlType::Q4_1, GgmlType::Q5_0, GgmlType::Q5_1,
                                GgmlType::Q8_0, GgmlType::Q4_K, GgmlType::Q5_K, GgmlType::Q6_K};

// The int8 form must describe the same weights as the reference dequantization:
// w = scale·u + min (asymmetric) or scale·(u + offset). The reference rounds d·q (and then + m)
// in fp32, so allow that rounding: ≤ 2 ulps of the larger of the two parts.
TEST(Int8Layout, UnpackReproducesDequantizedWeights) {
  std::mt19937 rng(3);
  for (GgmlType type : kQuantTypes) {
    SCOPED_TRACE(std::string(ggml_type_info(type).name));
    const Int8Format fmt = int8_format(type);
    const int64_t cols = ggml_type_info(type).block_elements == 256 ? 512 : 160;  // 160: partial group
    const auto bytes = test::random_weights(type, 1, cols, rng);
    const auto w = test::dequantized(type, bytes, 1, cols);
    WeightGroup wg;
    for (int64_t g = 0; g < groups_for(cols); ++g) {
      unpack_group_scalar(type, bytes.data(), cols, g, wg);
      for (int p = 0; p < kGroup; ++p) {
        const int64_t k = g * kGroup + element_at(fmt.layout, p);
        const double scale = wg.scale[p / 4], min = wg.min[p / 4];
        if (k >= cols) {
          EXPECT_EQ(scale, 0.0) << "padding must not contribute";
          continue;
        }
        const double a = scale * wg.u[p], b = fmt.asymmetric ? min : min * fmt.offset;
        const double tol = 2 * 0x1p-24 * std::max(std::fabs(a), std::fabs(b));
        EXPECT_NEAR(a + b, w[size_t(k)], tol) << "position " << p << " of group " << g;
      }
    }
  }
}

// Every SIMD activation quantizer must reproduce the scalar one bit for bit (the tests' oracle
// quantizes activations with the scalar reference).
TEST(Int8Layout, SimdActivationQuantizersMatchScalar) {
  std::mt19937 rng(5);
  for (CpuIsa isa : {CpuIsa::Avx2, CpuIsa::Avx2Vnni, CpuIsa::Avx512}) {
    if (!cpu_supports(isa)) continue;
    for (GgmlType type : kQuantTypes) {
      SCOPED_TRACE(std::string(cpu_isa_name(isa)) + " " + std::string(ggml_type_info(type).name));
      TensorFormat f;
      f.kind = FormatKind::kGgml;
      f.ggml = type;
      const detail::KernelSet set = isa == CpuIsa::Avx512 ? detail::kernels_avx512(f)
                                                          : detail::kernels_avx2(f, isa == CpuIsa::Avx2Vnni);
      if (!set.quantize) continue;
      for (int64_t cols : {32, 160, 576, 1536}) {
        const int64_t rows = 3;
        auto x = test::random_activations(rows * cols, rng);
        for (int j = 0; j < 32; ++j) x[size_t(j)] = 0.0f;  // an all-zero block
        const int64_t n = rows * groups_for(cols);
        std::vector<ActGroup> want(static_cast<size_t>(n)), got(static_cast<size_t>(n));
        quantize_activations(set.form, x.data(), rows, cols, want.data());
        set.quantize(set.form, x.data(), rows, cols, got.data());
        for (int64_t i = 0; i < n; ++i)
          ASSERT_EQ(std::memcmp(&want[size_t(i)], &got[size_t(i)], sizeof(ActGroup)), 0) << "cols " << cols << " group " << i;
      }
    }
  }
}

}  // namespace
}  // namespace marlin::cpu
