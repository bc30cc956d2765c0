// The Viterbi search behind quant/trellis.h, for any sequence length T, K bits per value and
// state width L (K ≥ 1, 2K ≤ L ≤ 16).
//
// The trellis: s_t = ((s_{t−1} << K) | new_t) mod 2^L, the value of step t is trellis_value(s_t),
// and a path costs Σ_t (x_t − trellis_value(s_t))². State s' has the 2^K predecessors
// (h << (L−K)) | (s' >> K), h = 0..2^K−1, which differ only in the K bits that are dropped, so the
// search keeps, per step, only the best cost B_t[p] over the states whose low L−K bits are p (the
// "prefix" that the next state keeps):
//   B_t[p] = min_h ( B_{t−1}[((h << (L−K)) | p) >> K] + (x_t − v((h << (L−K)) | p))² ),
// O(2^L) work per step whatever K is; two rows of 2^(L−K) floats and one backpointer byte (the h
// that won) per prefix and step: 4 MiB for 256 steps at L = 16, K = 2 (8 MiB at K = 1). The step
// runs 16 lanes wide with AVX-512, 8 with AVX2, else in portable code (backend/cpu/cpu_isa.h picks;
// MARLIN_CPU_ISA overrides), with identical results on every path.
#pragma once

#include <cstdint>
#include <vector>

namespace marlin {

// Reusable work space (one per thread); solve() is exact: it returns a path of least cost among
// those that satisfy the constraints.
class TrellisViterbi {
 public:
  // Fills states[0..T) with a least-cost path. start_prefix ≥ 0 requires s_0 >> K == start_prefix;
  // end_prefix ≥ 0 requires s_{T−1} mod 2^(L−K) == end_prefix (−1: free). With both set, T·K ≥ L
  // is needed for a path to exist (callers check). Ties go to the smaller dropped bits h at every
  // step and the smaller prefix at the free end, so results are deterministic.
  void solve(const float* x, int T, int K, int L, int64_t start_prefix, int64_t end_prefix, uint32_t* states);

 private:
  std::vector<float> values_;  // the codebook in the step's order for (values_k_, values_l_)
  int values_k_ = 0, values_l_ = 0;
  std::vector<float> previous_, next_;
  std::vector<uint8_t> backpointers_;
};

}  // namespace marlin
