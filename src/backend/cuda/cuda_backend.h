// The CUDA backend (backend/backend.h): weights uploaded in the layout of the kernel that runs
// them (int4 tiles for int4 formats, fp16 for every other format), fp16 activations with an fp32
// residual stream, a paged fp16 KV cache, and single-token steps replayed as CUDA graphs.
// Plain C++: no CUDA header is visible to the code that creates it.
#pragma once

#include <memory>

#include "backend/backend.h"

namespace marlin {

// Runs on the current CUDA device (device 0 unless the caller chose). Throws marlin::Error when
// there is no usable GPU.
std::unique_ptr<Backend> make_cuda_backend();

}  // namespace marlin
