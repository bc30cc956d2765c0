// Where the trellis encoder's Viterbi search may run on a GPU (backend/cuda/trellis_encode.h).
// Opt-in for now: MARLIN_TRELLIS_GPU_SEARCH=1 asks for it, and it runs where the build has the
// CUDA backend, a GPU is present and it takes the bit width (2 to 8, where its shared memory holds
// the cost rows); otherwise, or when it fails (say, out of device memory: one warning), the CPU
// searches. (It is meant to find the CPU's paths bit for bit; it becomes the default once that has
// been checked on a GPU: tests/cuda/test_trellis_encode.cpp.)
#pragma once

#include <cstdint>
#include <vector>

namespace marlin {

// The circular paths of `tiles` tiles (256 states each, as quant/trellis.cpp's search writes
// them) into `states` when the GPU search is asked for and available; false (states untouched)
// otherwise.
bool trellis_search_on_gpu(const float* targets, int64_t tiles, int k, std::vector<uint32_t>& states);

}  // namespace marlin
