// How one group of weights maps to codes in a quantized format: the scale (and zero point) fitted
// to the group, and rounding of single values to the nearest point of that grid. RTN fits every
// group to its own values; GPTQ fits a group when it reaches it and then rounds its
// error-corrected columns one by one. Scale choices (docs/quantization.md has the reasoning):
//
//   int, symmetric   two candidates, the one with the smaller squared error wins (ties: the first):
//                    s = max(−min/2^(b−1), max/(2^(b−1)−1)), the smallest step whose grid holds both
//                    ends exactly (values already on a grid come back unchanged), and
//                    s = max(−min/(2^(b−1)+½), max/(2^(b−1)−½)), the smallest step whose grid is
//                    within half a step of both ends (GPTQ's 2·amax/(2^b−1), tightened per sign).
//   int, asymmetric  s = (max − min)/(2^b − 1) over the group's range widened to hold 0,
//                    z = round(−min/s) (GPTQ / AWQ min-max).
//   fp8, fp4         s = amax / 448, amax / 6.
//   mxfp4            the OCP MX shared exponent floor(log2 amax) − 2 (may clip values in (6, 8)·2^e
//                    to 6·2^e) or one above it (no clipping), whichever errs less.
//   nvfp4            t = tensor amax / (6·448) (nvfp4_tensor_scale); per 16 values the E4M3 code
//                    just below or just above amax / (6·t), whichever errs less.
// fp16 scales are rounded up to the next fp16 value so the group's extremes stay on the grid;
// every value then lies within half a step of the grid of its group.
#pragma once

#include <cstdint>

#include "quant/format.h"
#include "quant/quant_buffers.h"

namespace marlin {

struct GroupGrid {
  float scale = 0.0f;         // fp32 multiplier, as dequantize_row computes it (nvfp4: t·e4m3(s))
  int zero = 0;               // integer formats: the code of 0
  uint16_t stored_scale = 0;  // the scale as stored: fp16 bits, or one E8M0 / E4M3 byte
};

class GroupQuantizer {
 public:
  // `format`: quantized and not a ggml kind; `tensor_scale`: nvfp4's t (ignored otherwise).
  explicit GroupQuantizer(const TensorFormat& format, float tensor_scale = 1.0f);

  // The grid for the n (> 0, finite) values of one group. Throws marlin::Error when an fp16 scale
  // would overflow.
  GroupGrid fit(const float* values, int64_t n) const;
  // The code nearest to w (ties to even), clamped to the format's range.
  uint8_t encode(float w, const GroupGrid& grid) const;
  // The weight a code stands for, exactly as dequantize_row evaluates it.
  float decode(uint8_t code, const GroupGrid& grid) const;
  float round(float w, const GroupGrid& grid) const { return decode(encode(w, grid), grid); }

  // Writes the grid's scale (and zero point) as entry `group` of `row`.
  void store(const GroupGrid& grid, QuantBuffers& out, int64_t row, int64_t group) const;

 private:
  double squared_error(const float* values, int64_t n, const GroupGrid& grid) const;
  GroupGrid int_grid(float scale, int zero) const;

  FormatKind kind_;
  bool asymmetric_;
  int max_code_;
  float tensor_scale_;
};

// nvfp4's per-tensor scale t = amax / (6·448) for n values (1 when they are all 0).
float nvfp4_tensor_scale(const float* w, int64_t n);

}  // namespace marlin
