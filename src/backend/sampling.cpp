#include "backend/sampling.h"

#include <algorithm>

#include "core/error.h"

namespace marlin {

void check_sample_batch(std::span<const SampleRow> rows, std::span<const TokenCount> penalties, int64_t vocab) {
  MARLIN_CHECK(vocab > 0 && vocab <= kMaxSampleVocab, "sampling: vocabulary of {} tokens (at most {})", vocab,
               kMaxSampleVocab);
  std::vector<int32_t> seen;
  for (size_t r = 0; r < rows.size(); ++r) {
    const SampleRow& s = rows[r];
    MARLIN_CHECK(std::isfinite(s.temperature) && s.temperature >= 0, "sampling: row {}: temperature {}", r,
                 s.temperature);
    MARLIN_CHECK(s.top_k >= 0, "sampling: row {}: top-k {}", r, s.top_k);
    MARLIN_CHECK(s.top_p > 0 && s.top_p <= 1, "sampling: row {}: top-p {}", r, s.top_p);
    MARLIN_CHECK(s.log_min_p <= 0, "sampling: row {}: ln(min-p) {}", r, s.log_min_p);
    MARLIN_CHECK(std::isfinite(s.repetition_penalty) && s.repetition_penalty > 0 &&
                     std::isfinite(s.presence_penalty) && std::isfinite(s.frequency_penalty),
                 "sampling: row {}: penalties {}, {}, {}", r, s.repetition_penalty, s.presence_penalty,
                 s.frequency_penalty);
    MARLIN_CHECK(s.draw < (uint64_t(1) << 53), "sampling: row {}: draw {} is not below 2^53", r, s.draw);
    MARLIN_CHECK(s.penalty_begin >= 0 && s.penalty_count >= 0 &&
                     size_t(s.penalty_begin) + size_t(s.penalty_count) <= penalties.size(),
                 "sampling: row {}: penalty pairs {}..+{} outside the list of {}", r, s.penalty_begin,
                 s.penalty_count, penalties.size());
    seen.clear();
    for (const TokenCount& tc : penalties.subspan(size_t(s.penalty_begin), size_t(s.penalty_count))) {
      MARLIN_CHECK(tc.token >= 0 && tc.token < vocab && tc.count > 0, "sampling: row {}: penalty pair ({}, {})", r,
                   tc.token, tc.count);
      seen.push_back(tc.token);
    }
    std::sort(seen.begin(), seen.end());
    const auto twice = std::adjacent_find(seen.begin(), seen.end());
    MARLIN_CHECK(twice == seen.end(), "sampling: row {}: token {} has two penalty pairs", r,
                 twice == seen.end() ? 0 : *twice);
  }
}

int32_t sample_row(float* logits, int64_t vocab, const SampleRow& row, std::span<const TokenCount> penalties,
                   SampleScratch& scratch) {
  using namespace sampling;
  for (const TokenCount& tc : penalties.subspan(size_t(row.penalty_begin), size_t(row.penalty_count))) {
    float& l = logits[tc.token];
    l = penalize(l, tc.count, row.repetition_penalty, row.presence_penalty, row.frequency_penalty);
  }
  // Logits are cleaned where they are read (no write-back: greedy stays a read-only pass).
  const int64_t top_k = row.top_k > 0 && row.top_k < vocab ? row.top_k : vocab;
  const bool top_k_on = top_k < vocab && row.temperature > 0.0f;
  auto& cands = scratch.candidates;
  // σ: logit descending, then id ascending.
  auto by_order = [](const auto& a, const auto& b) { return a.first > b.first || (a.first == b.first && a.second < b.second); };
  float max = -INFINITY;
  if (top_k_on) {
    cands.resize(size_t(vocab));
    for (int64_t i = 0; i < vocab; ++i) cands[size_t(i)] = {clean(logits[i]), int32_t(i)};
    std::partial_sort(cands.begin(), cands.begin() + top_k, cands.end(), by_order);
    cands.resize(size_t(top_k));
    max = cands.front().first;
  } else {
    int64_t best = 0;
    for (int64_t i = 0; i < vocab; ++i) {
      const float l = clean(logits[i]);
      if (l > max) max = l, best = i;
    }
    if (row.temperature == 0.0f) return int32_t(best);
  }
  const float t = row.temperature;
  auto weight = [&](float l) { return fixed_weight(scaled_logit(l, max, t)); };

  // σ order is needed only where a top-p walk or the top-k cut reads it.
  const bool top_p_on = row.top_p < 1.0f;
  uint64_t top_k_mass = 0;
  if (top_k_on) {
    for (const auto& [l, id] : cands) top_k_mass += weight(l);
    // min-p cuts a prefix of σ.
    const auto min_p_end = std::find_if(cands.begin(), cands.end(), [&](const auto& c) {
      return !(scaled_logit(c.first, max, t) >= row.log_min_p);
    });
    cands.erase(min_p_end, cands.end());
  } else {
    cands.clear();
    for (int64_t i = 0; i < vocab; ++i) {
      const float l = clean(logits[i]), x = scaled_logit(l, max, t);
      top_k_mass += fixed_weight(x);
      if (x >= row.log_min_p) cands.emplace_back(l, int32_t(i));
    }
    if (top_p_on) std::sort(cands.begin(), cands.end(), by_order);
  }

  // The shortest prefix that reaches the count limit (top-k and min-p) or the top-p mass.
  const double threshold = top_p_threshold(row.top_p, top_k_mass);
  size_t kept = 0;
  uint64_t total = 0;
  while (kept < cands.size()) {
    total += weight(cands[kept++].first);
    if (reaches(total, threshold)) break;
  }

  // The draw walks the kept tokens by ascending id: few are sorted by id; many are found by a scan
  // of the row (token i is kept when it comes no later than the last kept token in σ).
  const uint64_t target = draw_target(total, row.draw);
  uint64_t running = 0;
  if (kept <= 4096) {
    cands.resize(kept);
    std::sort(cands.begin(), cands.end(), [](const auto& a, const auto& b) { return a.second < b.second; });
    for (const auto& [l, id] : cands) {
      running += weight(l);
      if (running > target) return id;
    }
  } else {
    const auto [last_logit, last_id] =
        top_k_on || top_p_on ? cands[kept - 1] : *std::max_element(cands.begin(), cands.end(), by_order);
    for (int64_t i = 0; i < vocab; ++i) {
      const float l = clean(logits[i]);
      if (l > last_logit || (l == last_logit && i <= last_id)) running += weight(l);
      if (running > target) return int32_t(i);
    }
  }
  fail("sampling: the draw found no token (internal error)");
}

}  // namespace marlin
