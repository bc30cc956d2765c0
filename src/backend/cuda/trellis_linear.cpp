// Trellis layers on the GPU (cuda_linear.h upload_trellis): y = R_outᵀ·(Ŵ'·(R_in·x)) with
//   - R_in·x by hadamard_rotate into ctx.rotated (fp16; for few rows each value twice, as
//     trellis_gemv reads it);
//   - few rows (≤ kTrellisGemvRows): the fused decode + product (trellis_gemv) into ctx.products
//     in fp32, then R_outᵀ part by part straight into the output (one rounding);
//   - more rows: Ŵ' decoded to fp16 into ctx.unpacked, cuBLAS, then R_outᵀ in place.
// Stacked parts (q|k|v, gate|up) share R_in, so they must share the rotation seed (marlin quantize
// gives tensors that read the same input one seed); each keeps its own R_out.
#include <algorithm>
#include <cstring>
#include <vector>

#include "backend/cuda/cuda_linear.h"
#include "backend/cuda/trellis_kernels.h"
#include "core/half.h"
#include "quant/hadamard.h"
#include "quant/trellis_code.h"

namespace marlin::cuda {

std::vector<uint32_t> trellis_device_words(const uint8_t* codes, int64_t rows, int64_t cols, int bits,
                                           int64_t code_row_bytes) {
  const int64_t strip_bytes = cols * bits * 2;  // 16 rows of cols·K/8 bytes
  std::vector<uint32_t> words(size_t(rows / 16 * strip_bytes / 4));
  for (int64_t s = 0; s < rows / 16; ++s) {
    const uint8_t* from = codes + s * 16 * code_row_bytes;
    uint32_t* to = words.data() + s * strip_bytes / 4;
    for (int64_t i = 0; i < strip_bytes / 4; ++i) {
      const uint8_t* b = from + 4 * i;  // little-endian words w0 = b0 | b1 << 8, w1 = b2 | b3 << 8
      to[i] = uint32_t(b[0] | b[1] << 8) << 16 | uint32_t(b[2] | b[3] << 8);
    }
  }
  return words;
}

namespace {

std::vector<uint32_t> sign_words(const Rotation& r) {
  std::vector<uint32_t> out;
  for (const uint64_t w : r.sign_bits()) {
    out.push_back(uint32_t(w));
    out.push_back(uint32_t(w >> 32));
  }
  return out;
}

class TrellisLinear final : public CudaLinear {
 public:
  TrellisLinear(std::span<const QuantTensor> parts, LinearContext& ctx) {
    cols = parts[0].cols;
    const int bits = parts[0].format.bits;
    const uint64_t seed = parts[0].rotation_seed;
    std::vector<uint32_t> words, signs = sign_words(Rotation(cols, seed));
    std::vector<float> row_scales;
    std::vector<uint16_t> half_scales;
    std::vector<size_t> sign_offsets;
    for (const QuantTensor& p : parts) {
      const auto w = trellis_device_words(p.codes, p.rows, p.cols, bits, int64_t(p.code_row_bytes));
      words.insert(words.end(), w.begin(), w.end());
      for (int64_t r = 0; r < p.rows; ++r) {
        uint16_t h;
        std::memcpy(&h, p.scales + 2 * r, 2);
        half_scales.push_back(h);
        row_scales.push_back(fp16_to_fp32(h) * kTrellisScale);
      }
      sign_offsets.push_back(signs.size());
      const auto out = sign_words(Rotation(p.rows, seed + 1));
      signs.insert(signs.end(), out.begin(), out.end());
      rows += p.rows;
    }
    words_ = DeviceArray<uint32_t>(words.size());
    words_.upload(words.data(), words.size());
    row_scales_ = DeviceArray<float>(row_scales.size());
    row_scales_.upload(row_scales.data(), row_scales.size());
    half_scales_ = DeviceArray<uint16_t>(half_scales.size());
    half_scales_.upload(half_scales.data(), half_scales.size());
    signs_ = DeviceArray<uint32_t>(signs.size());
    signs_.upload(signs.data(), signs.size());
    weights_ = {words_.get(), row_scales_.get(), half_scales_.get(), int(rows), int(cols), bits};

    in_.segments[0] = {0, int(cols), int(hadamard_block(cols)), signs_.get()};
    in_.count = 1;
    in_.row_len = int(cols);
    in_pairs_ = in_;
    in_pairs_.pairs = true;
    int begin = 0;
    for (size_t i = 0; i < parts.size(); ++i) {
      const int dim = int(parts[i].rows);
      out_.segments[i] = {begin, dim, int(hadamard_block(dim)), signs_.get() + sign_offsets[i]};
      begin += dim;
    }
    out_.count = int(parts.size());
    out_.row_len = int(rows);
    out_.transpose = true;

    // Sized now for every row count a step may have: recorded graphs keep these pointers.
    const size_t rotated = size_t(std::max<int64_t>(ctx.max_rows, 2 * kTrellisGemvRows) * cols);
    if (ctx.rotated.size() < rotated) ctx.rotated = DeviceArray<__half>(rotated);
    if (ctx.products.size() < size_t(kTrellisGemvRows * rows))
      ctx.products = DeviceArray<float>(size_t(kTrellisGemvRows * rows));
    if (ctx.max_rows > kTrellisGemvRows && ctx.unpacked.size() < size_t(rows * cols))
      ctx.unpacked = DeviceArray<__half>(size_t(rows * cols));
  }

  void forward(const __half* in, int64_t m, void* out, bool out_f32, LinearContext& ctx) const override {
    const int64_t rotated_rows = m <= kTrellisGemvRows ? 2 * m : m;  // few rows: (value, value) pairs
    MARLIN_CHECK(m >= 1 && m <= ctx.max_rows && ctx.rotated.size() >= size_t(rotated_rows * cols),
                 "cuda trellis: {} rows in one call (at most {})", m, ctx.max_rows);
    if (m <= kTrellisGemvRows) {
      check_cuda(hadamard_rotate(in_pairs_, in, false, ctx.rotated.get(), false, int(m), ctx.stream),
                 "trellis input rotation");
      check_cuda(trellis_gemv(weights_, ctx.rotated.get(), int(m), ctx.products.get(), ctx.stream), "trellis gemv");
      check_cuda(hadamard_rotate(out_, ctx.products.get(), true, out, out_f32, int(m), ctx.stream),
                 "trellis output rotation");
      return;
    }
    MARLIN_CHECK(ctx.unpacked.size() >= size_t(rows * cols), "cuda trellis: no scratch for {} x {} weights", rows, cols);
    check_cuda(hadamard_rotate(in_, in, false, ctx.rotated.get(), false, int(m), ctx.stream), "trellis input rotation");
    check_cuda(trellis_decode_half(weights_, ctx.unpacked.get(), ctx.stream), "trellis decode");
    gemm_f16(ctx, ctx.unpacked.get(), rows, cols, ctx.rotated.get(), m, out, out_f32);
    check_cuda(hadamard_rotate(out_, out, out_f32, out, out_f32, int(m), ctx.stream), "trellis output rotation");
  }
  const char* kernel_name() const override { return "trellis"; }

 private:
  DeviceArray<uint32_t> words_, signs_;
  DeviceArray<float> row_scales_;
  DeviceArray<uint16_t> half_scales_;
  TrellisWeights weights_;
  RotationParams in_, in_pairs_, out_;  // in_pairs_: in_ written as (value, value) pairs
};

}  // namespace

std::unique_ptr<CudaLinear> upload_trellis(std::span<const QuantTensor> parts, LinearContext& ctx) {
  if (parts.empty() || parts.size() > size_t(kMaxRotationSegments)) return nullptr;
  for (const QuantTensor& p : parts) {
    const bool same = p.format.kind == FormatKind::kTrellis && p.format.bits == parts[0].format.bits &&
                      p.cols == parts[0].cols && p.rotation_seed == parts[0].rotation_seed;
    if (!same || p.rows % 16 || p.cols % 16) return nullptr;
  }
  return std::make_unique<TrellisLinear>(parts, ctx);
}

}  // namespace marlin::cuda
