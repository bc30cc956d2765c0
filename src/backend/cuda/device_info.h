#pragma once

#include <string>

namespace marlin::cuda {

// Number of usable CUDA devices; 0 when there is no driver or no GPU.
int device_count();
std::string device_name(int device);

}  // namespace marlin::cuda
