#include "server/logprobs.h"

#include <algorithm>
#include <cmath>
#include <numeric>

namespace marlin::server {

TokenLogprob token_logprob(std::span<const float> logits, int32_t token, int top_n) {
  const float max_logit = *std::max_element(logits.begin(), logits.end());
  double sum = 0;
  for (float l : logits) sum += std::exp(double(l - max_logit));
  const double log_total = double(max_logit) + std::log(sum);

  TokenLogprob out;
  out.token = token;
  out.logprob = float(double(logits[size_t(token)]) - log_total);
  const size_t n = std::min(size_t(std::max(top_n, 0)), logits.size());
  if (n == 0) return out;
  std::vector<int32_t> ids(logits.size());
  std::iota(ids.begin(), ids.end(), 0);
  std::partial_sort(ids.begin(), ids.begin() + ptrdiff_t(n), ids.end(), [&](int32_t a, int32_t b) {
    return logits[size_t(a)] > logits[size_t(b)] || (logits[size_t(a)] == logits[size_t(b)] && a < b);
  });
  for (size_t i = 0; i < n; ++i) out.top.emplace_back(ids[i], float(double(logits[size_t(ids[i])]) - log_total));
  return out;
}

}  // namespace marlin::server
