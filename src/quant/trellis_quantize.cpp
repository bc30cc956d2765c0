#include "quant/trellis_quantize.h"

#include <algorithm>
#include <cmath>

#include "core/error.h"
#include "core/half.h"
#include "quant/hadamard.h"
#include "quant/ldl.h"
#include "quant/ldlq.h"
#include "quant/parallel.h"
#include "quant/trellis.h"
#include "quant/trellis_code.h"

namespace marlin {
namespace {

constexpr int64_t kTile = 16;
constexpr uint16_t kSmallestNormalFp16 = 0x0400;  // 2^-14

void check_layout(int64_t rows, int64_t cols, int k) {
  MARLIN_CHECK(rows > 0 && cols > 0 && rows % kTile == 0 && cols % kTile == 0,
               "trellis layer: a {} × {} weight is not whole {} × {} tiles", rows, cols, kTile, kTile);
  MARLIN_CHECK(k >= 1 && k <= 8, "trellis layer: {} bits per weight is outside 1..8", k);
}

// Word offset of tile (i, j) in `codes` (the fixed layout: strip by strip, 16·k words a tile).
int64_t tile_offset(int64_t i, int64_t j, int64_t cols, int k) { return i * cols * k + j * kTile * k; }

// fp16(factor · RMS of each row of W'). A row whose scale rounds to zero (or a subnormal) gets
// fp16's smallest normal value instead, so the division stays finite and the row's error tiny.
std::vector<uint16_t> row_scales_of(const float* w, int64_t rows, int64_t cols, double factor) {
  std::vector<uint16_t> scales(static_cast<size_t>(rows));
  for (int64_t r = 0; r < rows; ++r) {
    double sum = 0.0;
    for (int64_t c = 0; c < cols; ++c) sum += double(w[r * cols + c]) * w[r * cols + c];
    const float s = float(factor * std::sqrt(sum / double(cols)));
    uint16_t h = fp32_to_fp16(s);
    MARLIN_CHECK((h & 0x7c00) != 0x7c00, "trellis layer: row {} has scale {}, beyond fp16's range", r, s);
    if (h < kSmallestNormalFp16) h = kSmallestNormalFp16;
    scales[size_t(r)] = h;
  }
  return scales;
}

// Encodes 16-column strips: each row divided by its scale, all the strips' tiles (rows/16 each)
// searched in one call (in parallel), their words written to their slots of `codes`, and s_r ×
// decoded returned (Ŵ'). The buffers are reused from call to call.
struct StripEncoder {
  const std::vector<float>& scale;  // s_r as stored, in fp32
  int k;
  ThreadPool* pool;
  std::vector<float> normalized, decoded;
  std::vector<uint16_t> packed;
  std::vector<double> errors;

  // target: strips.size() strips of rows × 16 (each row-major) → quantized (same layout); the
  // codes of tile i of target strip s are those of tile (i, strips[s]).
  void encode_strips(const float* target, int64_t rows, int64_t cols, std::span<const int64_t> strips,
                     float* quantized, uint16_t* codes) {
    const int64_t count = int64_t(strips.size()), tiles = rows / kTile * count, words = trellis_tile_words(k);
    normalized.resize(size_t(count * rows * kTile));
    decoded.resize(normalized.size());
    packed.resize(size_t(tiles * words));
    errors.resize(size_t(tiles));
    // Row r of a strip is values (r mod 16)·16 .. +15 of its tile r / 16: the strips already are
    // their tiles one after another, in value order.
    for (int64_t s = 0; s < count; ++s)
      for (int64_t r = 0; r < rows; ++r)
        for (int64_t c = 0; c < kTile; ++c) {
          const int64_t i = (s * rows + r) * kTile + c;
          normalized[size_t(i)] = target[i] / scale[size_t(r)];
        }
    trellis_encode_tiles(normalized.data(), tiles, k, packed.data(), errors.data(), pool, decoded.data());
    for (int64_t s = 0; s < count; ++s)
      for (int64_t i = 0; i < rows / kTile; ++i)
        std::copy_n(packed.data() + (s * rows / kTile + i) * words, words,
                    codes + tile_offset(i, strips[size_t(s)], cols, k));
    for (int64_t s = 0; s < count; ++s)
      for (int64_t r = 0; r < rows; ++r)
        for (int64_t c = 0; c < kTile; ++c) {
          const int64_t i = (s * rows + r) * kTile + c;
          quantized[i] = scale[size_t(r)] * decoded[size_t(i)];
        }
  }
};

std::vector<int64_t> identity_order(int64_t n) {
  std::vector<int64_t> order(static_cast<size_t>(n));
  for (int64_t i = 0; i < n; ++i) order[size_t(i)] = i;
  return order;
}

// The order LDLQ visits the strips in, as LDL block positions: position p holds strip order[p];
// LDLQ quantizes the last position first, and that one's error is compensated by all the others,
// while position 0, quantized last, is compensated by none (its error weight is its whole
// diagonal block of H'). So the strips go by increasing energy tr(H'_jj) (ties by index), which is
// GPTQ's act-order one level up: the costliest inputs are quantized while the most strips remain
// to absorb their error. The layout is unchanged; only the visiting order is.
std::vector<int64_t> strips_by_energy(const std::vector<double>& h, int64_t cols) {
  const int64_t strips = cols / kTile;
  std::vector<double> energy(static_cast<size_t>(strips), 0.0);
  for (int64_t i = 0; i < cols; ++i) energy[size_t(i / kTile)] += h[size_t(i * cols + i)];
  std::vector<int64_t> order = identity_order(strips);
  std::stable_sort(order.begin(), order.end(), [&](int64_t a, int64_t b) { return energy[size_t(a)] < energy[size_t(b)]; });
  return order;
}

// Column strip order[p] of w moved to position p (and back).
std::vector<float> permute_strips(const std::vector<float>& w, int64_t rows, int64_t cols, const std::vector<int64_t>& order) {
  std::vector<float> out(w.size());
  for (int64_t r = 0; r < rows; ++r)
    for (size_t p = 0; p < order.size(); ++p)
      std::copy_n(w.data() + r * cols + order[p] * kTile, kTile, out.data() + r * cols + int64_t(p) * kTile);
  return out;
}
std::vector<float> unpermute_strips(const std::vector<float>& w, int64_t rows, int64_t cols, const std::vector<int64_t>& order) {
  std::vector<float> out(w.size());
  for (int64_t r = 0; r < rows; ++r)
    for (size_t p = 0; p < order.size(); ++p)
      std::copy_n(w.data() + r * cols + int64_t(p) * kTile, kTile, out.data() + r * cols + order[p] * kTile);
  return out;
}
// H with its rows and columns in the strip order: block (p, q) = block (order[p], order[q]).
std::vector<double> permute_strip_blocks(const std::vector<double>& h, int64_t cols, const std::vector<int64_t>& order) {
  std::vector<double> out(h.size());
  for (int64_t i = 0; i < cols; ++i) {
    const int64_t from_i = order[size_t(i / kTile)] * kTile + i % kTile;
    for (size_t q = 0; q < order.size(); ++q)
      std::copy_n(h.data() + from_i * cols + order[q] * kTile, kTile, out.data() + i * cols + int64_t(q) * kTile);
  }
  return out;
}

double squared_distance(const float* a, const float* b, int64_t n) {
  double sum = 0.0;
  for (int64_t i = 0; i < n; ++i) {
    const double d = double(a[i]) - double(b[i]);
    sum += d * d;
  }
  return sum;
}

}  // namespace

std::vector<TrellisLayer> quantize_trellis_stack(std::span<const TrellisMatrix> matrices, int64_t cols,
                                                 std::span<const double> hessian, int k, uint64_t seed,
                                                 const TrellisQuantOptions& options) {
  MARLIN_CHECK(!matrices.empty(), "trellis layer: no weights");
  int64_t rows = 0;  // of the stack
  for (const auto& m : matrices) {
    check_layout(m.rows, cols, k);
    MARLIN_CHECK(m.w != nullptr, "trellis layer: no weights");
    for (int64_t i = 0; i < m.rows * cols; ++i)
      MARLIN_CHECK(std::isfinite(m.w[i]), "trellis layer: weight ({}, {}) is {}", i / cols, i % cols, m.w[i]);
    rows += m.rows;
  }
  MARLIN_CHECK(hessian.empty() || int64_t(hessian.size()) == cols * cols,
               "trellis layer: Hessian has {} entries, {} columns need {}", hessian.size(), cols, cols * cols);
  MARLIN_CHECK(std::isfinite(options.scale_factor) && options.scale_factor >= 0.0,
               "trellis layer: scale factor {} is negative", options.scale_factor);
  const double scale_factor = options.scale_factor > 0.0 ? options.scale_factor : trellis_row_scale(k);
  for (size_t i = 0; i < hessian.size(); ++i)
    MARLIN_CHECK(std::isfinite(hessian[i]), "trellis layer: Hessian entry ({}, {}) is {}", int64_t(i) / cols,
                 int64_t(i) % cols, hessian[i]);

  // W' of every matrix (its own output rotation, the shared input rotation), stacked; the stack's
  // codes are the matrices' codes one after another (the layout stores tiles 16 rows at a time, so
  // a matrix's codes are a contiguous run of the stack's).
  ThreadPool* pool = options.pool;
  const int64_t n = rows * cols;
  const Rotation r_in(cols, seed);
  std::vector<Rotation> r_out;
  r_out.reserve(matrices.size());
  std::vector<float> rotated(static_cast<size_t>(n));
  std::vector<TrellisLayer> layers(matrices.size());
  std::vector<float> scale;
  for (size_t i = 0, row0 = 0; i < matrices.size(); row0 += size_t(matrices[i].rows), ++i) {
    const TrellisMatrix& m = matrices[i];
    float* mine = rotated.data() + row0 * size_t(cols);
    std::copy_n(m.w, m.rows * cols, mine);
    r_out.emplace_back(m.rows, seed + 1);
    rotate_weight(mine, m.rows, cols, &r_out.back(), &r_in, pool);
    TrellisLayer& layer = layers[i];
    layer.rows = m.rows;
    layer.cols = cols;
    layer.k = k;
    layer.seed = seed;
    layer.row_scales = row_scales_of(mine, m.rows, cols, scale_factor);
    for (const uint16_t h : layer.row_scales) scale.push_back(fp16_to_fp32(h));
  }
  std::vector<uint16_t> codes(size_t(n * k / 16), 0);
  StripEncoder encoder{scale, k, pool, {}, {}, {}, {}};

  std::vector<float> quantized;  // Ŵ' of the stack, then Ŵ
  std::vector<double> rotated_loss(matrices.size());
  if (hessian.empty()) {
    // No feedback: the strips are independent, so all of them are encoded from W' in one call.
    quantized.resize(size_t(n));
    const int64_t strips = cols / kTile;
    std::vector<float> by_strip(static_cast<size_t>(n)), out(by_strip.size());  // strip after strip
    for (int64_t j = 0; j < strips; ++j)
      for (int64_t r = 0; r < rows; ++r)
        std::copy_n(rotated.data() + r * cols + j * kTile, kTile, by_strip.data() + (j * rows + r) * kTile);
    encoder.encode_strips(by_strip.data(), rows, cols, identity_order(strips), out.data(), codes.data());
    for (int64_t j = 0; j < strips; ++j)
      for (int64_t r = 0; r < rows; ++r)
        std::copy_n(out.data() + (j * rows + r) * kTile, kTile, quantized.data() + r * cols + j * kTile);
    for (size_t i = 0, row0 = 0; i < matrices.size(); row0 += size_t(matrices[i].rows), ++i)
      rotated_loss[i] = squared_distance(rotated.data() + row0 * size_t(cols), quantized.data() + row0 * size_t(cols),
                                         matrices[i].rows * cols);
  } else {
    std::vector<double> h_rot(hessian.begin(), hessian.end());
    rotate_hessian(h_rot.data(), cols, r_in, pool);
    const std::vector<int64_t> order = options.order_strips ? strips_by_energy(h_rot, cols) : identity_order(cols / kTile);
    const std::vector<float> w_ordered = permute_strips(rotated, rows, cols, order);
    std::vector<double> h_ordered = permute_strip_blocks(h_rot, cols, order);
    std::vector<double>().swap(h_rot);  // cols² doubles: one Hessian copy less beside the LDL's
    LdlOptions ldl_options;
    ldl_options.block = kTile;
    ldl_options.percdamp = options.percdamp;
    ldl_options.damping_retries = options.damping_retries;
    ldl_options.pool = pool;
    const BlockLdl factor = block_ldl(h_ordered, cols, ldl_options);
    auto strip_quantizer = [&](const float* target, int64_t strip_rows, int64_t width, int64_t position, float* out) {
      MARLIN_CHECK(strip_rows == rows && width == kTile, "trellis layer: LDLQ strip of {} × {}", strip_rows, width);
      encoder.encode_strips(target, rows, cols, {&order[size_t(position)], 1}, out, codes.data());
    };
    // LDLQ treats every row on its own, so the stack's rows come out as each matrix's would alone.
    const std::vector<float> q_ordered = ldlq(w_ordered.data(), rows, cols, factor, strip_quantizer, pool);
    // The loss is the same in any strip order (rows and columns of H' permuted alike).
    for (size_t i = 0, row0 = 0; i < matrices.size(); row0 += size_t(matrices[i].rows), ++i) {
      rotated_loss[i] = proxy_loss(w_ordered.data() + row0 * size_t(cols), q_ordered.data() + row0 * size_t(cols),
                                   matrices[i].rows, cols, h_ordered, pool);
      layers[i].damping = factor.damping;
    }
    quantized = unpermute_strips(q_ordered, rows, cols, order);
  }

  for (size_t i = 0, row0 = 0; i < matrices.size(); row0 += size_t(matrices[i].rows), ++i) {
    const TrellisMatrix& m = matrices[i];
    TrellisLayer& layer = layers[i];
    const int64_t words = m.rows * cols * k / 16;
    layer.codes.assign(codes.begin() + ptrdiff_t(row0 * size_t(cols) * size_t(k) / 16),
                       codes.begin() + ptrdiff_t(row0 * size_t(cols) * size_t(k) / 16 + size_t(words)));
    layer.rotated_proxy_loss = rotated_loss[i];
    float* mine = quantized.data() + row0 * size_t(cols);
    unrotate_weight(mine, m.rows, cols, &r_out[i], &r_in, pool);
    const std::vector<float> zero(size_t(m.rows * cols), 0.0f);
    double energy = 0.0;
    if (hessian.empty()) {
      layer.proxy_loss = squared_distance(m.w, mine, m.rows * cols);
      energy = squared_distance(m.w, zero.data(), m.rows * cols);
    } else {
      layer.proxy_loss = proxy_loss(m.w, mine, m.rows, cols, hessian, pool);
      energy = proxy_loss(m.w, zero.data(), m.rows, cols, hessian, pool);
    }
    layer.relative_loss = energy > 0.0 ? layer.proxy_loss / energy : 0.0;
  }
  return layers;
}

TrellisLayer quantize_trellis_layer(const float* w, int64_t rows, int64_t cols, std::span<const double> hessian, int k,
                                    uint64_t seed, const TrellisQuantOptions& options) {
  const TrellisMatrix m{w, rows};
  return std::move(quantize_trellis_stack({&m, 1}, cols, hessian, k, seed, options).front());
}

std::vector<float> decode_trellis_layer(std::span<const uint16_t> codes, std::span<const uint16_t> row_scales,
                                        int64_t rows, int64_t cols, int k, uint64_t seed, ThreadPool* pool) {
  check_layout(rows, cols, k);
  MARLIN_CHECK(int64_t(codes.size()) == rows * cols * k / 16, "trellis layer: {} code words, a {} × {} layer at {} bits has {}",
               codes.size(), rows, cols, k, rows * cols * k / 16);
  MARLIN_CHECK(int64_t(row_scales.size()) == rows, "trellis layer: {} row scales for {} rows", row_scales.size(), rows);
  std::vector<float> out(size_t(rows * cols));
  parallel_ranges(pool, rows / kTile, 1, [&](int64_t begin, int64_t end) {
    for (int64_t i = begin; i < end; ++i)
      for (int64_t j = 0; j < cols / kTile; ++j) {
        const uint16_t* tile = codes.data() + tile_offset(i, j, cols, k);
        for (int t = 0; t < kTrellisTileValues; ++t) {
          const int64_t r = i * kTile + t / kTile, c = j * kTile + t % kTile;
          out[size_t(r * cols + c)] = fp16_to_fp32(row_scales[size_t(r)]) * trellis_value(trellis_tile_state(tile, k, t));
        }
      }
  });
  const Rotation r_in(cols, seed), r_out(rows, seed + 1);
  unrotate_weight(out.data(), rows, cols, &r_out, &r_in, pool);
  return out;
}

}  // namespace marlin
