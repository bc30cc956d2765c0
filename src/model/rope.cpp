#include "model/rope.h"

#include <algorithm>
#include <cmath>
#include <numbers>

#include "core/error.h"

namespace marlin {
namespace {

// YaRN (arXiv 2309.00071), in the form Hugging Face computes it: frequencies that rotate fewer
// than beta_slow times over the original context are interpolated (divided by the factor), those
// rotating more than beta_fast times are kept, and a linear ramp blends the ones between.
void apply_yarn(const RopeConfig& c, std::vector<float>& inv_freq, float& mscale) {
  const int dim = c.dim;
  auto correction_dim = [&](double rotations) {
    return dim * std::log(c.original_context / (rotations * 2 * std::numbers::pi)) / (2 * std::log(c.theta));
  };
  double low = std::max(std::floor(correction_dim(c.yarn_beta_fast)), 0.0);
  double high = std::min(std::ceil(correction_dim(c.yarn_beta_slow)), double(dim - 1));
  if (low == high) high += 0.001;
  for (size_t i = 0; i < inv_freq.size(); ++i) {
    const float ramp = std::clamp(float((double(i) - low) / (high - low)), 0.0f, 1.0f);
    const float extrapolation = 1.0f - ramp;
    const float kept = inv_freq[i];
    const float interpolated = kept / c.factor;
    inv_freq[i] = interpolated * (1.0f - extrapolation) + kept * extrapolation;
  }
  mscale = c.yarn_attn_factor > 0 ? c.yarn_attn_factor
                                  : (c.factor <= 1.0f ? 1.0f : float(0.1 * std::log(c.factor) + 1.0));
}

}  // namespace

Rope::Rope(const RopeConfig& config, int head_dim) : head_dim_(head_dim), pairing_(config.pairing) {
  MARLIN_CHECK(config.dim > 0 && config.dim <= head_dim && config.dim % 2 == 0,
               "rope: rotary dimension {} does not fit head dimension {}", config.dim, head_dim);
  const int pairs = config.dim / 2;
  inv_freq_.resize(size_t(pairs));
  for (int i = 0; i < pairs; ++i)
    inv_freq_[size_t(i)] = float(1.0 / std::pow(double(config.theta), 2.0 * i / config.dim));

  if (!config.freq_factors.empty()) {
    MARLIN_CHECK(int(config.freq_factors.size()) == pairs, "rope: {} frequency factors for {} frequencies",
                 config.freq_factors.size(), pairs);
    for (int i = 0; i < pairs; ++i) {
      const float f = config.freq_factors[size_t(i)];
      MARLIN_CHECK(f > 0 && std::isfinite(f), "rope: frequency factor {} is not positive", f);
      inv_freq_[size_t(i)] /= f;
    }
  }
  switch (config.scaling) {
    case RopeScaling::kNone:
      break;
    case RopeScaling::kLinear:
      for (auto& f : inv_freq_) f /= config.factor;
      break;
    case RopeScaling::kYarn:
      apply_yarn(config, inv_freq_, mscale_);
      break;
  }
}

void Rope::angles(int64_t pos, float* cos_sin) const {
  const size_t pairs = inv_freq_.size();
  for (size_t i = 0; i < pairs; ++i) {
    // The angle is rounded to fp32 before cos/sin, as the fp32 reference implementations do.
    const float angle = float(pos) * inv_freq_[i];
    cos_sin[i] = float(std::cos(double(angle))) * mscale_;
    cos_sin[pairs + i] = float(std::sin(double(angle))) * mscale_;
  }
}

void Rope::rotate(float* heads, int n_heads, const float* cos_sin) const {
  const int pairs = int(inv_freq_.size());
  const float* cos = cos_sin;
  const float* sin = cos_sin + pairs;
  for (int h = 0; h < n_heads; ++h) {
    float* x = heads + size_t(h) * size_t(head_dim_);
    if (pairing_ == RopePairing::kAdjacent) {
      for (int i = 0; i < pairs; ++i) {
        const float a = x[2 * i], b = x[2 * i + 1];
        x[2 * i] = a * cos[i] - b * sin[i];
        x[2 * i + 1] = a * sin[i] + b * cos[i];
      }
    } else {
      // Pair i with i + rotary_dim/2 (rotate_half).
      for (int i = 0; i < pairs; ++i) {
        const float a = x[i], b = x[i + pairs];
        x[i] = a * cos[i] - b * sin[i];
        x[i + pairs] = b * cos[i] + a * sin[i];
      }
    }
  }
}

}  // namespace marlin
