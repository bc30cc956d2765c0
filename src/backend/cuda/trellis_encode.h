// The trellis encoder's search on the GPU (quant/trellis.h): the two Viterbi passes of the
// tail-biting encoder for many 256-value tiles at once, one block per tile, bit for bit the path
// the CPU finds (quant/trellis_viterbi.h: the same IEEE operations per state, none contracted, and
// the same tie rules). The host packs the paths (pack_tile_states). Plain C++17: no device code.
#pragma once

#include <cstdint>

namespace marlin::cuda {

// Whether the GPU search takes k bits per value: 2..8 (at k = 1 the two cost rows of 2^15 floats
// do not fit in one block's shared memory).
bool trellis_search_supported(int k);

// states[256·i + t] = the state of value t of tile i's circular path, for `tiles` tiles of 256
// finite targets each (host memory in and out; synchronous on the default stream). Throws
// marlin::Error for k outside trellis_search_supported, null pointers or a CUDA error.
void trellis_tile_states(const float* targets, int64_t tiles, int k, uint32_t* states);

}  // namespace marlin::cuda
