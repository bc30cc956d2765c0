// Rotary position embeddings: standard, linear, YaRN, and Llama-3 per-frequency factors.
#pragma once

#include <cstdint>
#include <vector>

#include "model/config.h"

namespace marlin {

class Rope {
 public:
  Rope(const RopeConfig& config, int head_dim);

  // Rotates `n_heads` consecutive heads of `head_dim` floats in place for position `pos`.
  // `cos_sin` is scratch of at least rotary_dim() floats (filled by angles()).
  void angles(int64_t pos, float* cos_sin) const;
  void rotate(float* heads, int n_heads, const float* cos_sin) const;

  int rotary_dim() const { return int(inv_freq_.size()) * 2; }
  const std::vector<float>& inv_freq() const { return inv_freq_; }
  float attention_scale() const { return mscale_; }

 private:
  std::vector<float> inv_freq_;  // one per rotated pair
  float mscale_ = 1.0f;          // YaRN scales cos and sin by this
  int head_dim_;
  RopePairing pairing_;
};

}  // namespace marlin
