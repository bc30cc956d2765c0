// CUDA device discovery. The CUDA backend compiles wherever nvcc exists; it runs only on a GPU.
#include "backend/cuda/device_info.h"

#include <cuda_runtime.h>

namespace marlin::cuda {

int device_count() {
  int count = 0;
  if (cudaGetDeviceCount(&count) != cudaSuccess) return 0;
  return count;
}

std::string device_name(int device) {
  cudaDeviceProp prop{};
  if (cudaGetDeviceProperties(&prop, device) != cudaSuccess) return "unknown";
  return prop.name;
}

}  // namespace marlin::cuda
