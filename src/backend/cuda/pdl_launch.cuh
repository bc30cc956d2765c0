// Programmatic dependent launch for the small transformer ops (ops.h). A decode step is a chain of
// short kernels; launched this way, each kernel is started while its predecessor still runs, waits
// (griddepcontrol.wait) until the predecessor's results are visible, and at once lets its own
// successor start — so a weight GEMV that follows streams its first weights during the small op,
// and no kernel's launch latency sits between two others.
#pragma once

#include <cuda_runtime.h>

#include <utility>

#include "backend/cuda/ptx.cuh"

namespace marlin::cuda {

// The first statement of a kernel launched by launch_pdl: nothing above it may read what earlier
// kernels wrote.
__device__ __forceinline__ void pdl_prologue() {
  grid_dependency_wait();
  allow_dependent_launch();
}

// Whether the current device takes programmatic dependent launches (sm_90 on); asked once.
inline bool pdl_supported() {
  static const bool supported = [] {
    int device = 0, major = 0;
    return cudaGetDevice(&device) == cudaSuccess &&
           cudaDeviceGetAttribute(&major, cudaDevAttrComputeCapabilityMajor, device) == cudaSuccess && major >= 9;
  }();
  return supported;
}

// A launch that may overlap the previous kernel on the stream (`pdl`, for kernels that call
// grid_dependency_wait before reading what it wrote).
template <typename... Params, typename... Args>
cudaError_t launch_overlapping(bool pdl, void (*kernel)(Params...), dim3 grid, dim3 block, size_t shared_bytes,
                               cudaStream_t stream, Args&&... args) {
  cudaLaunchConfig_t config = {};
  config.gridDim = grid;
  config.blockDim = block;
  config.dynamicSmemBytes = shared_bytes;
  config.stream = stream;
  cudaLaunchAttribute attribute = {};
  attribute.id = cudaLaunchAttributeProgrammaticStreamSerialization;
  attribute.val.programmaticStreamSerializationAllowed = 1;
  config.attrs = &attribute;
  config.numAttrs = pdl ? 1 : 0;
  return cudaLaunchKernelEx(&config, kernel, std::forward<Args>(args)...);
}

template <typename... Params, typename... Args>
cudaError_t launch_pdl(void (*kernel)(Params...), dim3 grid, dim3 block, size_t shared_bytes, cudaStream_t stream,
                       Args&&... args) {
  return launch_overlapping(pdl_supported(), kernel, grid, block, shared_bytes, stream, std::forward<Args>(args)...);
}

}  // namespace marlin::cuda
