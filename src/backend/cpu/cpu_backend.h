// The CPU backend: weights stay in their stored format and are read in place (cpu::matmul),
// activations are fp32 host memory, work is spread over a thread pool.
#pragma once

#include <memory>

#include "backend/backend.h"

namespace marlin {

std::unique_ptr<Backend> make_cpu_backend(ThreadPool& pool);

}  // namespace marlin
