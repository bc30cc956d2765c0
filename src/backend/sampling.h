// Next-token sampling as a backend op (Backend::sample): a batch of per-row requests, their checks,
// and the CPU implementation of the rule in backend/sampling_rule.h.
#pragma once

#include <cstdint>
#include <span>
#include <utility>
#include <vector>

#include "backend/sampling_rule.h"

namespace marlin {

struct SampleBatch {
  std::vector<SampleRow> rows;
  std::vector<TokenCount> penalties;
};

// Throws marlin::Error naming the first bad value (parameters out of range, penalty pairs outside
// the list or the vocabulary, a draw ≥ 2^53, a vocabulary above kMaxSampleVocab).
void check_sample_batch(std::span<const SampleRow> rows, std::span<const TokenCount> penalties, int64_t vocab);

// Reusable buffers of sample_row.
struct SampleScratch {
  std::vector<std::pair<float, int32_t>> candidates;  // (logit, id)
};

// Samples one row on the CPU by the rule of sampling_rule.h; `logits` (vocab values) is modified in
// place (penalties). `penalties` is the batch's whole list.
int32_t sample_row(float* logits, int64_t vocab, const SampleRow& row, std::span<const TokenCount> penalties,
                   SampleScratch& scratch);

}  // namespace marlin
