#include "quant/group_grid.h"

#include <algorithm>
#include <cmath>
#include <cstring>

#include "core/error.h"
#include "core/half.h"
#include "quant/fp_codes.h"

namespace marlin {
namespace {

// The least fp16 value >= s (s >= 0), as bits.
uint16_t fp16_at_least(float s) {
  MARLIN_CHECK(s <= 65504.0f, "group scale {} does not fit in fp16 (weights too large for this format)", s);
  uint16_t h = fp32_to_fp16(s);
  if (fp16_to_fp32(h) < s) ++h;
  return h;
}

float absmax(const float* v, int64_t n) {
  float a = 0.0f;
  for (int64_t i = 0; i < n; ++i) a = std::max(a, std::fabs(v[i]));
  return a;
}

}  // namespace

GroupQuantizer::GroupQuantizer(const TensorFormat& format, float tensor_scale)
    : kind_(format.kind),
      asymmetric_(format.asymmetric),
      max_code_((1 << format_info(format.kind).code_bits) - 1),
      tensor_scale_(tensor_scale) {
  MARLIN_CHECK(format.quantized() && format.kind != FormatKind::kGgml, "no group quantizer for format {}",
               format.name());
  MARLIN_CHECK(format.kind != FormatKind::kTrellis,
               "format {} is not quantized group by group: use quantize_trellis_rtn (quant/trellis_matrix.h)",
               format.name());
}

GroupGrid GroupQuantizer::int_grid(float scale, int zero) const {
  GroupGrid g;
  g.stored_scale = fp16_at_least(scale);
  g.scale = fp16_to_fp32(g.stored_scale);
  g.zero = zero;
  return g;
}

double GroupQuantizer::squared_error(const float* values, int64_t n, const GroupGrid& grid) const {
  double sum = 0.0;
  for (int64_t i = 0; i < n; ++i) {
    const double e = double(values[i]) - double(round(values[i], grid));
    sum += e * e;
  }
  return sum;
}

GroupGrid GroupQuantizer::fit(const float* values, int64_t n) const {
  float lo = 0.0f, hi = 0.0f;  // the range, widened to hold 0
  for (int64_t i = 0; i < n; ++i) {
    lo = std::min(lo, values[i]);
    hi = std::max(hi, values[i]);
  }
  const float amax = std::max(-lo, hi);
  // The better of two candidate grids; the first wins ties.
  auto better = [&](const GroupGrid& a, const GroupGrid& b) {
    return squared_error(values, n, b) < squared_error(values, n, a) ? b : a;
  };

  switch (kind_) {
    case FormatKind::kInt8:
    case FormatKind::kInt4:
    case FormatKind::kInt3:
    case FormatKind::kInt2: {
      if (asymmetric_) {
        GroupGrid g = int_grid((hi - lo) / float(max_code_), 0);
        if (g.scale > 0.0f) g.zero = int(std::clamp(std::nearbyint(-lo / g.scale), 0.0f, float(max_code_)));
        return g;
      }
      const float mid = float((max_code_ + 1) / 2);
      const GroupGrid exact_ends = int_grid(std::max(-lo / mid, hi / (mid - 1.0f)), int(mid));
      const GroupGrid half_step_ends = int_grid(std::max(-lo / (mid + 0.5f), hi / (mid - 0.5f)), int(mid));
      return exact_ends.stored_scale == half_step_ends.stored_scale ? exact_ends : better(exact_ends, half_step_ends);
    }
    case FormatKind::kFp8E4M3: return int_grid(amax / kE4M3Max, 0);
    case FormatKind::kFp4: return int_grid(amax / kE2M1Max, 0);
    case FormatKind::kMxFp4: {
      auto grid = [](int code) {
        GroupGrid g;
        g.stored_scale = uint16_t(code);
        g.scale = e8m0_to_float(uint8_t(code));
        return g;
      };
      if (amax == 0.0f) return grid(0);
      int exponent;
      std::frexp(amax, &exponent);  // amax = m·2^exponent, m in [0.5, 1): floor(log2 amax) = exponent − 1
      const int spec = std::clamp(exponent - 1 - 2 + 127, 0, 254);  // 2 = E2M1's largest exponent
      return spec == 254 ? grid(spec) : better(grid(spec), grid(spec + 1));
    }
    case FormatKind::kNvFp4: {
      auto grid = [&](int code) {
        GroupGrid g;
        g.stored_scale = uint16_t(code);
        g.scale = tensor_scale_ * e4m3_to_float(uint8_t(code));
        return g;
      };
      const float target = amax / (kE2M1Max * tensor_scale_);
      const int nearest = float_to_e4m3(target);
      const float at = e4m3_to_float(uint8_t(nearest));
      if (at < target && nearest < 0x7e) return better(grid(nearest), grid(nearest + 1));
      if (at > target && nearest > 0) return better(grid(nearest), grid(nearest - 1));
      return grid(nearest);
    }
    default: break;
  }
  fail("no group quantizer for this format");
}

uint8_t GroupQuantizer::encode(float w, const GroupGrid& grid) const {
  switch (kind_) {
    case FormatKind::kFp8E4M3: return grid.scale > 0.0f ? float_to_e4m3(w / grid.scale) : 0;
    case FormatKind::kFp4:
    case FormatKind::kMxFp4:
    case FormatKind::kNvFp4: return grid.scale > 0.0f ? float_to_e2m1(w / grid.scale) : 0;
    default: {
      if (!(grid.scale > 0.0f)) return uint8_t(grid.zero);
      const float q = std::nearbyint(w / grid.scale) + float(grid.zero);
      return uint8_t(std::clamp(q, 0.0f, float(max_code_)));
    }
  }
}

float GroupQuantizer::decode(uint8_t code, const GroupGrid& grid) const {
  switch (kind_) {
    case FormatKind::kFp8E4M3: return grid.scale * e4m3_to_float(code);
    case FormatKind::kFp4:
    case FormatKind::kMxFp4:
    case FormatKind::kNvFp4: return grid.scale * e2m1_to_float(code);
    default: return grid.scale * float(int(code) - grid.zero);
  }
}

void GroupQuantizer::store(const GroupGrid& grid, QuantBuffers& out, int64_t row, int64_t group) const {
  const size_t entry = size_t(row * out.format.groups(out.cols) + group);
  if (format_info(kind_).scale == ScaleType::kF16) std::memcpy(&out.scales[2 * entry], &grid.stored_scale, 2);
  else out.scales[entry] = uint8_t(grid.stored_scale);
  if (asymmetric_) out.zeros[entry] = uint8_t(grid.zero);
}

float nvfp4_tensor_scale(const float* w, int64_t n) {
  const float amax = absmax(w, n);
  return amax > 0.0f ? amax / (kE2M1Max * kE4M3Max) : 1.0f;
}

}  // namespace marlin
