// The tail-biting trellis search on the GPU (trellis_encode.h). One block of 1024 threads per
// tile; the two cost rows of 2^(16−K) floats live in shared memory, each step's backpointers (the
// dropped bits h that won, one byte per prefix) in global memory. Pass 1 searches the tile rotated
// by half (free ends) and takes the overlap bits of the state before the wrap point; pass 2
// searches the tile in order with both ends held to them (quant/trellis.h). Values come from the
// procedural codebook (trellis_value, exact on the device), so no table is read.
#include "backend/cuda/trellis_encode.h"

#include <algorithm>
#include <cmath>
#include <mutex>

#include "backend/cuda/device_memory.h"
#include "backend/cuda/ops_check.h"
#include "core/error.h"
#include "quant/trellis.h"
#include "quant/trellis_code.h"

namespace marlin::cuda {
namespace {

constexpr int kThreads = 1024;
constexpr int kSteps = kTrellisTileValues;  // both passes: 256 steps (pass 1: 2 · 128)
constexpr int kHalf = kTrellisTileValues / 2;

// One Viterbi search over kSteps values x (shared memory) with the L = 16 trellis of K bits per
// value: cost rows in `previous` / `next` (2^(16−K) floats each), backpointers in `back`
// (kSteps × 2^(16−K) bytes). start_prefix / end_prefix ≥ 0 hold s_0 >> K and s_255 mod 2^(16−K)
// (−1: free). Writes the path's states to `states` (shared memory); every thread calls it.
template <int K>
__device__ void search(const float* x, int start_prefix, int end_prefix, float* previous, float* next, uint8_t* back,
                       uint32_t* states) {
  constexpr int kPrefixes = 1 << (kTrellisStateBits - K), kQuarter = kPrefixes >> K;
  constexpr int kUnroll = K <= 3 ? 1 << K : 8;  // more spills registers (1024 threads: 64 each)
  for (int p = threadIdx.x; p < kPrefixes; p += kThreads)
    previous[p] = start_prefix < 0 || p == start_prefix ? 0.0f : INFINITY;
  __syncthreads();
  for (int t = 0; t < kSteps; ++t) {
    const float target = x[t];
    uint8_t* row = back + static_cast<long long>(t) * kPrefixes;
    for (int p = threadIdx.x; p < kPrefixes; p += kThreads) {
      float best = INFINITY;
      int arg = 0;
#pragma unroll kUnroll
      for (int h = 0; h < (1 << K); ++h) {
        const float d = __fsub_rn(target, trellis_value((uint32_t(h) << (kTrellisStateBits - K)) | uint32_t(p)));
        const float cost = __fadd_rn(previous[h * kQuarter + (p >> K)], __fmul_rn(d, d));
        if (cost < best) best = cost, arg = h;  // ties: the smaller h, as on the CPU
      }
      next[p] = best;
      row[p] = uint8_t(arg);
    }
    __syncthreads();
    float* swap = previous;
    previous = next;
    next = swap;
  }
  __shared__ int end;
  if (threadIdx.x < 32) {  // the free end: the least cost, the smaller prefix on ties
    int arg = end_prefix;
    if (end_prefix < 0) {  // (all infinite, as for targets near 1e19: prefix 0, as on the CPU)
      float best = previous[threadIdx.x];
      arg = int(threadIdx.x);
      for (int p = threadIdx.x + 32; p < kPrefixes; p += 32)
        if (previous[p] < best) best = previous[p], arg = p;
      for (int offset = 16; offset > 0; offset /= 2) {
        const float other = __shfl_xor_sync(0xffffffffu, best, offset);
        const int other_arg = __shfl_xor_sync(0xffffffffu, arg, offset);
        if (other < best || (other == best && other_arg < arg)) best = other, arg = other_arg;
      }
    }
    if (threadIdx.x == 0) end = arg;
  }
  __syncthreads();
  if (threadIdx.x == 0) {
    uint32_t prefix = uint32_t(end);
    for (int t = kSteps - 1; t >= 0; --t) {
      const uint32_t h = back[static_cast<long long>(t) * kPrefixes + prefix];
      states[t] = (h << (kTrellisStateBits - K)) | prefix;
      prefix = states[t] >> K;
    }
  }
  __syncthreads();
}

// Grid: one block per tile of this launch; `back` holds kSteps × 2^(16−K) bytes per block.
template <int K>
__global__ void __launch_bounds__(kThreads) trellis_search_kernel(const float* targets, uint8_t* back_all,
                                                                  uint32_t* states_out) {
  constexpr int kPrefixes = 1 << (kTrellisStateBits - K);
  extern __shared__ float rows[];  // previous, next
  __shared__ float x[kSteps];
  __shared__ uint32_t states[kSteps];
  const float* target = targets + static_cast<long long>(blockIdx.x) * kTrellisTileValues;
  uint8_t* back = back_all + static_cast<long long>(blockIdx.x) * kSteps * kPrefixes;
  // Pass 1: values 128..255, 0..127 (quant/trellis.cpp's rotation by half a tile).
  for (int t = threadIdx.x; t < kSteps; t += kThreads) x[t] = target[(t + kHalf) % kTrellisTileValues];
  __syncthreads();
  search<K>(x, -1, -1, rows, rows + kPrefixes, back, states);
  // x[kHalf − 1] is value 255, the one before the wrap point.
  const int overlap = int(states[kHalf - 1] & ((1u << (kTrellisStateBits - K)) - 1));
  for (int t = threadIdx.x; t < kSteps; t += kThreads) x[t] = target[t];
  __syncthreads();
  search<K>(x, overlap, overlap, rows, rows + kPrefixes, back, states);
  for (int t = threadIdx.x; t < kSteps; t += kThreads)
    states_out[static_cast<long long>(blockIdx.x) * kTrellisTileValues + t] = states[t];
}

// Dynamic shared memory of one block: the two cost rows.
constexpr int row_bytes(int k) { return 2 * (1 << (kTrellisStateBits - k)) * int(sizeof(float)); }
// Static shared memory: the targets, the path, the end prefix (and slack for the compiler's own).
constexpr int kStaticBytes = 2 * kSteps * 4 + 64;

template <int K>
void launch_search(const float* targets, int tiles, uint8_t* back, uint32_t* states) {
  constexpr int kRowBytes = row_bytes(K);
  ops_detail::allow_shared_memory(reinterpret_cast<const void*>(&trellis_search_kernel<K>), kRowBytes,
                                  "trellis_tile_states");
  trellis_search_kernel<K><<<tiles, kThreads, kRowBytes>>>(targets, back, states);
  check_cuda(cudaGetLastError(), "trellis_tile_states launch");
}

// Backpointer memory per launch: at most this many bytes (K = 2: 256 tiles of 4 MiB).
constexpr int64_t kBackBudget = int64_t(1) << 30;

// Device memory kept from call to call (the quantizer calls once per 16-column strip), grown on
// demand; calls are serialized.
struct Workspace {
  std::mutex mutex;
  DeviceArray<float> targets;
  DeviceArray<uint32_t> states;
  DeviceArray<uint8_t> back;
};

Workspace& workspace() {
  static Workspace w;
  return w;
}

template <typename T>
void grow(DeviceArray<T>& a, size_t count) {
  if (a.size() < count) a = DeviceArray<T>(count);
}

}  // namespace

bool trellis_search_supported(int k) {
  if (k < 2 || k > 8) return false;
  int device = 0, optin = 0;
  if (cudaGetDevice(&device) != cudaSuccess ||
      cudaDeviceGetAttribute(&optin, cudaDevAttrMaxSharedMemoryPerBlockOptin, device) != cudaSuccess)
    return false;
  return row_bytes(k) + kStaticBytes <= optin;
}

void trellis_tile_states(const float* targets, int64_t tiles, int k, uint32_t* states) {
  MARLIN_CHECK(trellis_search_supported(k),
               "trellis_tile_states: {} bits per value is outside 2..8 or needs more shared memory than this GPU has",
               k);
  MARLIN_CHECK(tiles >= 0, "trellis_tile_states: {} tiles", tiles);
  if (tiles == 0) return;
  MARLIN_CHECK(targets && states, "trellis_tile_states: null pointer");
  for (int64_t i = 0; i < tiles * kTrellisTileValues; ++i)
    MARLIN_CHECK(std::isfinite(targets[i]), "trellis_tile_states: target {} is not finite", i);
  const int64_t back_per_tile = int64_t(kSteps) << (kTrellisStateBits - k);
  const int64_t batch = std::min<int64_t>(tiles, std::max<int64_t>(1, kBackBudget / back_per_tile));
  Workspace& w = workspace();
  const std::lock_guard<std::mutex> lock(w.mutex);
  grow(w.targets, size_t(batch * kTrellisTileValues));
  grow(w.states, size_t(batch * kTrellisTileValues));
  grow(w.back, size_t(batch * back_per_tile));
  DeviceArray<float>& device_targets = w.targets;
  DeviceArray<uint32_t>& device_states = w.states;
  DeviceArray<uint8_t>& back = w.back;
  for (int64_t first = 0; first < tiles; first += batch) {
    const int n = int(std::min(batch, tiles - first));
    device_targets.upload(targets + first * kTrellisTileValues, size_t(n) * kTrellisTileValues);
    switch (k) {
      case 2: launch_search<2>(device_targets.get(), n, back.get(), device_states.get()); break;
      case 3: launch_search<3>(device_targets.get(), n, back.get(), device_states.get()); break;
      case 4: launch_search<4>(device_targets.get(), n, back.get(), device_states.get()); break;
      case 5: launch_search<5>(device_targets.get(), n, back.get(), device_states.get()); break;
      case 6: launch_search<6>(device_targets.get(), n, back.get(), device_states.get()); break;
      case 7: launch_search<7>(device_targets.get(), n, back.get(), device_states.get()); break;
      default: launch_search<8>(device_targets.get(), n, back.get(), device_states.get()); break;
    }
    check_cuda(cudaMemcpy(states + first * kTrellisTileValues, device_states.get(),
                          size_t(n) * kTrellisTileValues * sizeof(uint32_t), cudaMemcpyDeviceToHost),
               "trellis_tile_states: cudaMemcpy");
  }
}

}  // namespace marlin::cuda
