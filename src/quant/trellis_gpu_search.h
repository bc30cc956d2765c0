// Where the trellis encoder's Viterbi search runs (backend/cuda/trellis_encode.h). On the GPU by
// default, where the build has the CUDA backend, a GPU is present and it takes the bit width (2 to
// 8, where its shared memory holds the cost rows); it finds the CPU's paths bit for bit
// (tests/cuda/test_trellis_encode.cpp, and scripts/test_gpu.sh on a real model's layer), so where
// the search runs changes the time only. MARLIN_TRELLIS_GPU_SEARCH=0 keeps it on the CPU; so does
// a failure on the GPU (say, out of device memory: one warning).
#pragma once

#include <cstdint>
#include <vector>

namespace marlin {

// The circular paths of `tiles` tiles (256 states each, as quant/trellis.cpp's search writes
// them) into `states` when the GPU search is allowed and available; false (states untouched)
// otherwise.
bool trellis_search_on_gpu(const float* targets, int64_t tiles, int k, std::vector<uint32_t>& states);

// Whether trellis_search_on_gpu may use a GPU from now on (initially: unless
// MARLIN_TRELLIS_GPU_SEARCH=0). Tests turn it off for the CPU reference.
void allow_trellis_gpu_search(bool allowed);

}  // namespace marlin
