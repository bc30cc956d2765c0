// Counters through which the blocks of one launch hand results to each other (the routed
// products' epilogues, tiled_routed_gemv.cuh, and the one-launch decode step, moe_decode_kernel.cuh).
#pragma once

#include <cuda_runtime.h>

#include "backend/cuda/ptx.cuh"

namespace marlin::cuda::tiled_detail {

// Whether this block is the last of `arrivals` blocks to count themselves done on `counter`; its
// threads' global writes are visible device-wide before it counts, and the last block reads the
// others' after their counts. The last block resets the counter for the next launch. Every thread
// calls it.
__device__ __forceinline__ bool last_of_group(int* counter, int arrivals) {
  __shared__ bool last;
  __threadfence();  // this thread's rows, device-wide, before the block counts itself done
  __syncthreads();
  if (threadIdx.x == 0) {
    last = atomicAdd(counter, 1) == arrivals - 1;
    if (last) *counter = 0;
  }
  __syncthreads();
  if (last) __threadfence();  // and the other blocks' rows are read after their counts
  return last;
}

// Waits until *counter reaches `target` (thread 0 polls; the block follows), or traps after about
// two seconds: the blocks counted are resident in the same launch and a step takes microseconds,
// so that long means they were not (a trap is an error the host reports, a hang is not).
__device__ __forceinline__ void wait_for_count(const int* counter, int target) {
  if (threadIdx.x == 0) {
    const long long start = clock64();
    while (ld_acquire(counter) < target) {
      __nanosleep(32);
      if (clock64() - start > (1ll << 32)) __trap();
    }
  }
  __syncthreads();
}

}  // namespace marlin::cuda::tiled_detail
