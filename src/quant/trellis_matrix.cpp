#include "quant/trellis_matrix.h"

#include <bit>
#include <cmath>
#include <cstring>
#include <span>
#include <vector>

#include "core/error.h"
#include "core/half.h"
#include "quant/hadamard.h"
#include "quant/parallel.h"
#include "quant/trellis.h"

namespace marlin {
namespace {

static_assert(std::endian::native == std::endian::little, "trellis words are stored little-endian");

void check_trellis(const QuantTensor& t) {
  MARLIN_CHECK(t.format.kind == FormatKind::kTrellis, "format {} is not a trellis format", t.format.name());
  t.validate();
}

// The last block of Ŵ rows this thread dequantized, with the bytes it came from.
struct BlockCache {
  int64_t rows = 0, cols = 0, first_row = -1;
  int bits = 0;
  uint64_t seed = 0, code_row_bytes = 0;
  std::vector<uint8_t> codes, scales;  // copies of the block's stored bytes
  std::vector<float> values;           // block rows × cols of Ŵ

  bool holds(const QuantTensor& t, int64_t first, std::span<const uint8_t> c, std::span<const uint8_t> s) const {
    return first == first_row && t.rows == rows && t.cols == cols && t.format.bits == bits &&
           t.rotation_seed == seed && t.code_row_bytes == code_row_bytes && c.size() == codes.size() &&
           s.size() == scales.size() && std::memcmp(c.data(), codes.data(), c.size()) == 0 &&
           std::memcmp(s.data(), scales.data(), s.size()) == 0;
  }
};

// Ŵ rows [first, first + b) for the Hadamard block b of R_out: decode the b rows of Ŵ', then
// R_outᵀ (= S·H_b, only rows of this block mix) on each column and R_in on the right of each row
// (row·R_in = (R_inᵀ·rowᵀ)ᵀ), both in double, rounded to fp32 once.
void dequantize_block(const QuantTensor& t, int64_t first, int64_t b, std::vector<float>& out) {
  const int64_t cols = t.cols;
  std::vector<double> block(size_t(b * cols));
  std::vector<float> strip(size_t(16 * cols));
  for (int64_t s = 0; s < b / 16; ++s) {
    trellis_decode_strip(t, first / 16 + s, strip.data());
    for (size_t i = 0; i < strip.size(); ++i) block[size_t(s * 16 * cols) + i] = strip[i];
  }
  const Rotation r_out(t.rows, t.rotation_seed + 1), r_in(cols, t.rotation_seed);
  std::vector<double> column(static_cast<size_t>(b));
  for (int64_t c = 0; c < cols; ++c) {
    for (int64_t i = 0; i < b; ++i) column[size_t(i)] = block[size_t(i * cols + c)];
    block_hadamard(column.data(), b, b);
    for (int64_t i = 0; i < b; ++i) block[size_t(i * cols + c)] = r_out.sign(first + i) * column[size_t(i)];
  }
  r_in.apply_transpose(block.data(), b);
  out.resize(block.size());
  for (size_t i = 0; i < block.size(); ++i) out[i] = float(block[i]);
}

}  // namespace

void trellis_load_tile(const QuantTensor& t, int64_t strip, int64_t tile_col, uint16_t* words) {
  std::memcpy(words, t.codes + trellis_tile_offset(t, strip, tile_col), size_t(trellis_tile_words(t.format.bits)) * 2);
}

float trellis_row_scale(const QuantTensor& t, int64_t r) {
  return fp16_to_fp32(uint16_t(t.scales[2 * r] | t.scales[2 * r + 1] << 8));
}

void trellis_decode_strip(const QuantTensor& t, int64_t strip, float* out) {
  uint16_t words[kTrellisMaxTileWords];
  float tile[kTrellisTileValues];
  for (int64_t j = 0; j < t.cols / 16; ++j) {
    trellis_load_tile(t, strip, j, words);
    trellis_decode_tile(words, t.format.bits, tile);
    for (int rr = 0; rr < 16; ++rr) {
      const float s = trellis_row_scale(t, 16 * strip + rr);
      for (int cc = 0; cc < 16; ++cc) out[rr * t.cols + 16 * j + cc] = s * tile[rr * 16 + cc];
    }
  }
}

void dequantize_trellis_row(const QuantTensor& t, int64_t row, float* out) {
  check_trellis(t);
  MARLIN_CHECK(row >= 0 && row < t.rows, "row {} out of range for a {}-row tensor", row, t.rows);
  const int64_t b = hadamard_block(t.rows), first = row / b * b;
  const std::span<const uint8_t> codes(t.codes + uint64_t(first) * t.code_row_bytes, size_t(b * t.code_row_bytes));
  const std::span<const uint8_t> scales(t.scales + 2 * first, size_t(2 * b));
  thread_local BlockCache cache;
  if (!cache.holds(t, first, codes, scales)) {
    cache.first_row = -1;  // invalid until refilled (dequantize_block may throw on allocation)
    dequantize_block(t, first, b, cache.values);
    cache.rows = t.rows;
    cache.cols = t.cols;
    cache.bits = t.format.bits;
    cache.seed = t.rotation_seed;
    cache.code_row_bytes = t.code_row_bytes;
    cache.codes.assign(codes.begin(), codes.end());
    cache.scales.assign(scales.begin(), scales.end());
    cache.first_row = first;
  }
  std::memcpy(out, cache.values.data() + (row - first) * t.cols, size_t(t.cols) * sizeof(float));
}

QuantBuffers quantize_trellis_rtn(const float* w, int64_t rows, int64_t cols, int k, uint64_t seed,
                                  ThreadPool* pool) {
  TensorFormat format;
  format.kind = FormatKind::kTrellis;
  format.bits = k;
  format.check_shape(rows, cols);
  MARLIN_CHECK(w != nullptr, "quantize_trellis_rtn: no weights");
  for (int64_t i = 0; i < rows * cols; ++i)
    MARLIN_CHECK(std::isfinite(w[i]), "quantize_trellis_rtn: weight {} (row {}, column {}) is not finite", w[i],
                 i / cols, i % cols);

  QuantBuffers out = QuantBuffers::allocate(format, rows, cols);
  out.rotation_seed = seed;
  std::vector<float> rotated(w, w + rows * cols);
  const Rotation r_out(rows, seed + 1), r_in(cols, seed);
  rotate_weight(rotated.data(), rows, cols, &r_out, &r_in, pool);

  // Row scales, then the targets tile by tile in storage order (tile (i, j) is tile i·cols/16 + j).
  std::vector<float> scale(static_cast<size_t>(rows));
  for (int64_t r = 0; r < rows; ++r) {
    double sum = 0;
    for (int64_t c = 0; c < cols; ++c) sum += double(rotated[size_t(r * cols + c)]) * rotated[size_t(r * cols + c)];
    const double rms = std::sqrt(sum / double(cols));
    MARLIN_CHECK(rms <= 65504.0, "quantize_trellis_rtn: row {} has RMS {} after rotation, beyond fp16's range", r, rms);
    const uint16_t h = fp32_to_fp16(float(rms));
    out.scales[size_t(2 * r)] = uint8_t(h & 0xff);
    out.scales[size_t(2 * r + 1)] = uint8_t(h >> 8);
    scale[size_t(r)] = fp16_to_fp32(h);
  }
  const int64_t tile_cols = cols / 16, tiles = rows / 16 * tile_cols;
  std::vector<float> targets(size_t(rows * cols));
  for (int64_t tile = 0; tile < tiles; ++tile) {
    const int64_t i = tile / tile_cols, j = tile % tile_cols;
    for (int t = 0; t < kTrellisTileValues; ++t) {
      const int64_t r = 16 * i + t / 16, c = 16 * j + t % 16;
      const float s = scale[size_t(r)];  // 0 when the RMS rounds to 0 in fp16: the row stores 0
      targets[size_t(tile * kTrellisTileValues + t)] = s > 0 ? rotated[size_t(r * cols + c)] / s : 0.0f;
    }
  }
  std::vector<uint16_t> words(size_t(tiles * trellis_tile_words(k)));
  std::vector<double> errors(static_cast<size_t>(tiles));
  trellis_encode_tiles(targets.data(), tiles, k, words.data(), errors.data(), pool);
  // Tiles are consecutive in storage order at the minimal stride, so the words are the codes.
  std::memcpy(out.codes.data(), words.data(), out.codes.size());
  return out;
}

}  // namespace marlin
