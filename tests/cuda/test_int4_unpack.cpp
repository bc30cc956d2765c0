// int4 weight tiles unpacked to fp16 on the GPU (the many-row product path) against the CPU's
// dequantize_row: every value must be exactly fp16(dequantize_row's fp32 value).
#include <gtest/gtest.h>

#include <random>
#include <vector>

#include "backend/cuda/int4_unpack.h"
#include "backend/int4_tiles.h"
#include "core/half.h"
#include "device_buffer.h"
#include "quant/dequant.h"
#include "quant/quant_buffers.h"
#include "test_util.h"

namespace marlin {
namespace {

void check_unpack(const std::string& format, int64_t rows, int64_t cols) {
  QuantBuffers b = QuantBuffers::allocate(TensorFormat::parse(format), rows, cols);
  std::mt19937 rng(uint32_t(rows * 7 + cols));
  for (auto& c : b.codes) c = uint8_t(rng());
  auto* scales = reinterpret_cast<uint16_t*>(b.scales.data());
  std::uniform_real_distribution<float> scale(0.001f, 0.1f);
  for (size_t i = 0; i < b.scales.size() / 2; ++i) scales[i] = fp32_to_fp16(scale(rng));
  for (auto& z : b.zeros) z = uint8_t(rng() % 16);
  const QuantTensor w = b.view();
  const WeightTileShape shape = int4_tile_shape(w.format, rows, cols);

  test::DeviceBuffer<uint8_t> tiles(pack_int4_tiles(w));
  test::DeviceBuffer<__half> out(size_t(rows * cols));
  ASSERT_EQ(cuda::int4_tiles_to_half(tiles.get(), rows, cols, shape.groups_per_tile, shape.asymmetric, out.get(), nullptr),
            cudaSuccess);
  std::vector<uint16_t> got(size_t(rows * cols));
  test::cuda_ok(cudaMemcpy(got.data(), out.get(), got.size() * 2, cudaMemcpyDeviceToHost), "download");
  std::vector<float> row(static_cast<size_t>(cols));
  int misses = 0;
  for (int64_t r = 0; r < rows; ++r) {
    dequantize_row(w, r, row.data());
    for (int64_t k = 0; k < cols; ++k)
      if (got[size_t(r * cols + k)] != fp32_to_fp16(row[size_t(k)]) && ++misses <= 5)
        ADD_FAILURE() << format << " row " << r << " col " << k;
  }
  EXPECT_EQ(misses, 0) << format;
}

TEST(CudaInt4Unpack, EqualsDequantizeRow) {
  MARLIN_REQUIRE_GPU();
  check_unpack("int4-g128", 128, 256);
  check_unpack("int4-g32-asym", 64, 192);  // K padded to two tiles
  check_unpack("int4-g64", 192, 320);
  check_unpack("int4-pc", 64, 128);
}

}  // namespace
}  // namespace marlin
