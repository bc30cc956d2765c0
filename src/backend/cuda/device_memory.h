// Device memory owned by RAII handles, and CUDA errors turned into marlin::Error.
#pragma once

#include <cuda_runtime.h>

#include <cstddef>
#include <utility>

#include "core/error.h"

namespace marlin::cuda {

inline void check_cuda(cudaError_t err, const char* what) {
  MARLIN_CHECK(err == cudaSuccess, "cuda: {}: {}", what, cudaGetErrorString(err));
}

// `count` elements of T in device memory (uninitialized).
template <typename T>
class DeviceArray {
 public:
  DeviceArray() = default;
  explicit DeviceArray(size_t count) : count_(count) {
    if (count > 0) check_cuda(cudaMalloc(reinterpret_cast<void**>(&data_), count * sizeof(T)), "cudaMalloc");
  }
  ~DeviceArray() { cudaFree(data_); }
  DeviceArray(DeviceArray&& o) noexcept : data_(std::exchange(o.data_, nullptr)), count_(std::exchange(o.count_, 0)) {}
  DeviceArray& operator=(DeviceArray&& o) noexcept {
    std::swap(data_, o.data_);
    std::swap(count_, o.count_);
    return *this;
  }

  T* get() const { return data_; }
  size_t size() const { return count_; }
  // Synchronous copy of `count` host elements to the start.
  void upload(const T* host, size_t count) {
    MARLIN_CHECK(count <= count_, "cuda: upload of {} elements into {}", count, count_);
    check_cuda(cudaMemcpy(data_, host, count * sizeof(T), cudaMemcpyHostToDevice), "cudaMemcpy");
  }

 private:
  T* data_ = nullptr;
  size_t count_ = 0;
};

}  // namespace marlin::cuda
