#include "backend/cuda/ops_check.h"

#include <mutex>
#include <map>
#include <utility>

#include "core/error.h"

namespace marlin::cuda::ops_detail {

void fail_argument(const char* op, const char* what, long long value) {
  fail("{}: {} (got {})", op, what, value);
}

void check_launch(const char* op) {
  const cudaError_t err = cudaGetLastError();
  MARLIN_CHECK(err == cudaSuccess, "{}: kernel launch failed: {}", op, cudaGetErrorString(err));
}

int check_geometry(const char* op, const AttentionGeometry& g) {
  require(g.n_heads > 0, op, "n_heads must be positive", g.n_heads);
  require(g.n_kv_heads > 0 && g.n_heads % g.n_kv_heads == 0, op, "n_kv_heads must divide n_heads",
          g.n_kv_heads);
  require(g.head_dim == 64 || g.head_dim == 128 || g.head_dim == 256, op, "head_dim must be 64, 128 or 256",
          g.head_dim);
  require(g.rotary_dim >= 0 && g.rotary_dim <= g.head_dim && g.rotary_dim % 2 == 0, op,
          "rotary_dim must be even and at most head_dim", g.rotary_dim);
  require(g.page_size > 0 && (g.page_size & (g.page_size - 1)) == 0, op, "page_size must be a power of two",
          g.page_size);
  require(g.window >= 0, op, "window must not be negative", g.window);
  int shift = 0;
  while ((1 << shift) < g.page_size) ++shift;
  return shift;
}

void allow_shared_memory(const void* kernel, int bytes, const char* op) {
  if (bytes <= 48 * 1024) return;
  // Once per (kernel, device) and larger size: the attribute call costs microseconds of host time
  // per launch.
  int device = 0;
  const cudaError_t device_err = cudaGetDevice(&device);
  MARLIN_CHECK(device_err == cudaSuccess, "{}: cudaGetDevice: {}", op, cudaGetErrorString(device_err));
  static std::mutex mutex;
  static std::map<std::pair<const void*, int>, int> reserved;
  std::lock_guard<std::mutex> lock(mutex);
  const auto it = reserved.find({kernel, device});
  if (it != reserved.end() && it->second >= bytes) return;
  const cudaError_t err = cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, bytes);
  MARLIN_CHECK(err == cudaSuccess, "{}: cannot reserve {} bytes of shared memory: {}", op, bytes,
               cudaGetErrorString(err));
  reserved[{kernel, device}] = bytes;
}

}  // namespace marlin::cuda::ops_detail
