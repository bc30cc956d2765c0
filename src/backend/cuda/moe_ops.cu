// The small kernels of a sparse MLP on the GPU (cuda_experts.h): routing on the device, grouping
// the routed slots by expert, a routed product for fp16 experts, combining each token's expert
// outputs; and for the host-routed path, gathering the rows routed to one expert, adding its
// weighted outputs back into the tokens' fp32 sums, and rounding the sums to fp16.
#include <cuda_fp16.h>

#include <cstdint>

#include "backend/cuda/moe_route.cuh"
#include "backend/cuda/ops.h"
#include "backend/cuda/ops_check.h"
#include "backend/cuda/pdl_launch.cuh"
#include "backend/cuda/slot_math.cuh"

namespace marlin::cuda {
namespace {

constexpr int kThreads = 256;

// out[i] = in[rows[i]] for n rows of `cols` fp16 values (cols a multiple of 8): one block per row.
__global__ void gather_rows_kernel(const __half* in, int64_t cols, const int32_t* rows, __half* out) {
  const int64_t i = blockIdx.x;
  const uint4* from = reinterpret_cast<const uint4*>(in + int64_t(rows[i]) * cols);
  uint4* to = reinterpret_cast<uint4*>(out + i * cols);
  for (int64_t c = threadIdx.x; c < cols / 8; c += blockDim.x) to[c] = from[c];
}

// sums[rows[i]] += weights[i] · y[i] for n rows of `cols` values: one block per row. A row index
// appears at most once per launch, so no two blocks touch the same sum.
__global__ void add_weighted_rows_kernel(const __half* y, int64_t cols, const int32_t* rows, const float* weights,
                                         float* sums) {
  const int64_t i = blockIdx.x;
  const float w = weights[i];
  const __half* from = y + i * cols;
  float* to = sums + int64_t(rows[i]) * cols;
  for (int64_t c = threadIdx.x; c < cols; c += blockDim.x) to[c] += w * __half2float(from[c]);
}

__global__ void float_to_half_kernel(const float* in, int64_t count, __half* out) {
  const int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x;
  if (i < count) out[i] = __float2half_rn(in[i]);
}

// One warp per token (moe_route.cuh).
constexpr int kRouteWarps = 4;

__global__ void moe_route_kernel(const float* logits, const float* bias, RouteParams p, int32_t* ids,
                                 float* weights) {
  pdl_prologue();
  __shared__ RouteScratch scratch[kRouteWarps];
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
  const int row = blockIdx.x * kRouteWarps + warp;
  if (row >= p.rows) return;
  int32_t id;
  float weight;
  route_token(logits + static_cast<long long>(row) * p.n_experts, bias, p, scratch[warp], lane, id, weight);
  const int per_token = p.top_k + p.n_shared;
  if (lane < per_token) {
    ids[row * per_token + lane] = id;
    weights[row * per_token + lane] = weight;
  }
}

// c[slot] = a[slot / slot_div] · W_eᵀ for fp16 experts (W_e rows × cols at weights[e]): one warp
// per output value, 16-byte loads along K.
__global__ void routed_dense_gemv_kernel(const __half* const* weights, const int32_t* ids, int slot_div,
                                         const __half* a, int64_t rows, int64_t cols, __half* c) {
  pdl_prologue();
  const int slot = blockIdx.y;
  const int64_t row = int64_t(blockIdx.x) * (blockDim.x / 32) + threadIdx.x / 32;
  const int lane = threadIdx.x % 32;
  if (row >= rows) return;
  const uint4* w = reinterpret_cast<const uint4*>(weights[ids[slot]] + row * cols);
  const uint4* x = reinterpret_cast<const uint4*>(a + int64_t(slot / slot_div) * cols);
  float acc = 0;
  for (int64_t i = lane; i < cols / 8; i += 32) {
    const uint4 wv = w[i], xv = x[i];
    const __half2* wh = reinterpret_cast<const __half2*>(&wv);
    const __half2* xh = reinterpret_cast<const __half2*>(&xv);
    for (int j = 0; j < 4; ++j) {
      const float2 wf = __half22float2(wh[j]), xf = __half22float2(xh[j]);
      acc += wf.x * xf.x + wf.y * xf.y;
    }
  }
  for (int offset = 16; offset > 0; offset /= 2) acc += __shfl_xor_sync(0xffffffffu, acc, offset);
  if (lane == 0) c[int64_t(slot) * rows + row] = __float2half_rn(acc);
}

// out[t] = Σ_j weights[t·top_k + j] · y[t·top_k + j], in slot order, rounded once to fp16.
// Rows of a multiple of 8 values (16-byte aligned) take 16-byte loads, 8 sums per thread (the same
// arithmetic per value as weighted_slot_sum).
__global__ void combine_slots_kernel(const __half* y, const float* weights, int top_k, int64_t cols, __half* out) {
  pdl_prologue();
  const int64_t t = blockIdx.x;
  const __half* slots = y + t * top_k * cols;
  const float* w = weights + t * top_k;
  if (cols % 8 != 0 || (reinterpret_cast<uintptr_t>(y) | reinterpret_cast<uintptr_t>(out)) % 16 != 0) {
    for (int64_t c = threadIdx.x; c < cols; c += blockDim.x)
      out[t * cols + c] = weighted_slot_sum(slots + c, w, top_k, cols, [](const __half* v) { return *v; });
    return;
  }
  for (int64_t c = 8 * threadIdx.x; c < cols; c += 8 * blockDim.x) {
    float sum[8] = {};
    for (int j = 0; j < top_k; ++j) {
      const uint4 v = *reinterpret_cast<const uint4*>(slots + j * cols + c);
      const __half2* h = reinterpret_cast<const __half2*>(&v);
      const float wj = w[j];
#pragma unroll
      for (int k = 0; k < 4; ++k) {
        const float2 f = __half22float2(h[k]);
        sum[2 * k] += wj * f.x;
        sum[2 * k + 1] += wj * f.y;
      }
    }
    uint4 result;
    __half2* r = reinterpret_cast<__half2*>(&result);
#pragma unroll
    for (int k = 0; k < 4; ++k) r[k] = __floats2half2_rn(sum[2 * k], sum[2 * k + 1]);
    *reinterpret_cast<uint4*>(out + t * cols + c) = result;
  }
}

// Stable counting sort of a step's slots by expert, in one block of kGroupWarps warps: warp w
// takes a contiguous segment of the slots, counts each expert's slots in it (shared-memory
// atomics: a count does not depend on their order), the counts become starting positions (by
// expert, then by segment), and a second walk writes each slot at its expert's next position
// (lanes of one step with the same expert found by __match_any_sync, ranked by lane).
// A slot's position so follows the slot order within its expert, whatever the timing.
constexpr int kGroupWarps = 32;
constexpr int kGroupMaxExperts = 256;
constexpr int kGroupExpertsPerLane = kGroupMaxExperts / 32;

__global__ void __launch_bounds__(kGroupWarps * 32)
    group_slots_kernel(const int32_t* ids, int slots, int n_experts, int chunk, int32_t* order,
                       int32_t* expert_begin, int32_t* chunk_begin) {
  pdl_prologue();
  __shared__ int count[kGroupWarps][kGroupMaxExperts];  // per segment: slots, then next position
  __shared__ int start[kGroupMaxExperts];
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
  for (int i = threadIdx.x; i < kGroupWarps * kGroupMaxExperts; i += blockDim.x)
    count[i / kGroupMaxExperts][i % kGroupMaxExperts] = 0;
  __syncthreads();
  const int per_warp = (slots + kGroupWarps * 32 - 1) / (kGroupWarps * 32) * 32;
  const int begin = min(slots, warp * per_warp), end = min(slots, begin + per_warp);
  const unsigned lanes_below = (1u << lane) - 1;
  for (int s = begin + lane; s < end; s += 32) {
    const int e = ids[s];
    if (e >= 0 && e < n_experts) atomicAdd(&count[warp][e], 1);
  }
  __syncthreads();
  if (threadIdx.x < n_experts) {  // each segment's offset within its expert
    const int e = threadIdx.x;
    int sum = 0;
    for (int w = 0; w < kGroupWarps; ++w) {
      const int c = count[w][e];
      count[w][e] = sum;
      sum += c;
    }
    start[e] = sum;
  }
  __syncthreads();
  if (warp == 0) {  // exclusive scans over the experts of their slots and chunks
    int slots_of[kGroupExpertsPerLane], mine = 0, mine_chunks = 0;
    for (int j = 0; j < kGroupExpertsPerLane; ++j) {
      const int e = kGroupExpertsPerLane * lane + j;
      slots_of[j] = e < n_experts ? start[e] : 0;
      mine += slots_of[j];
      mine_chunks += (slots_of[j] + chunk - 1) / chunk;
    }
    int total = mine, total_chunks = mine_chunks;
    for (int offset = 1; offset < 32; offset *= 2) {
      const int a = __shfl_up_sync(0xffffffffu, total, offset), b = __shfl_up_sync(0xffffffffu, total_chunks, offset);
      if (lane >= offset) total += a, total_chunks += b;
    }
    int at = total - mine, at_chunk = total_chunks - mine_chunks;
    for (int j = 0; j < kGroupExpertsPerLane; ++j) {
      const int e = kGroupExpertsPerLane * lane + j;
      if (e >= n_experts) break;
      start[e] = at;
      expert_begin[e] = at;
      chunk_begin[e] = at_chunk;
      at += slots_of[j];
      at_chunk += (slots_of[j] + chunk - 1) / chunk;
    }
    if (lane == 31) {
      expert_begin[n_experts] = total;
      chunk_begin[n_experts] = total_chunks;
    }
  }
  __syncthreads();
  for (int s0 = begin; s0 < end; s0 += 32) {
    const int s = s0 + lane;
    const int e = s < end ? ids[s] : -1;
    const bool valid = e >= 0 && e < n_experts;
    const unsigned peers = __match_any_sync(0xffffffffu, valid ? e : -1);
    if (valid) order[start[e] + count[warp][e] + __popc(peers & lanes_below)] = s;
    __syncwarp();
    if (valid && (peers & lanes_below) == 0) count[warp][e] += __popc(peers);
    __syncwarp();
  }
}

}  // namespace

RouteParams route_params(const char* op, int rows, int n_experts, const MoeRouting& routing) {
  using ops_detail::require;
  require(n_experts >= 1 && n_experts <= 32 * kRoutePerLane, op, "expert count out of range", n_experts);
  require(routing.top_k >= 1 && routing.top_k <= n_experts && routing.top_k + routing.n_shared <= 32 &&
              routing.n_shared >= 0,
          op, "experts per token out of range", routing.top_k);
  require(routing.n_groups >= 1 && routing.n_groups <= kRouteMaxGroups && n_experts % routing.n_groups == 0 &&
              routing.top_groups >= 1 && routing.top_groups <= routing.n_groups &&
              (routing.n_groups == 1 || routing.top_k <= routing.top_groups * (n_experts / routing.n_groups)),
          op, "expert groups do not fit the experts", routing.n_groups);
  require(rows >= 0, op, "row count out of range", rows);
  return {rows,
          n_experts,
          routing.top_k,
          routing.n_shared,
          routing.scoring == RouterScoring::kSigmoid,
          routing.renormalize,
          routing.n_groups,
          routing.top_groups,
          routing.group_score == GroupScore::kTopTwoSum,
          routing.scale};
}

void moe_route(const float* logits, const float* score_bias, int rows, int n_experts, const MoeRouting& routing,
               int32_t* ids, float* weights, cudaStream_t stream) {
  const RouteParams p = route_params("moe_route", rows, n_experts, routing);
  if (rows == 0) return;
  launch_pdl(moe_route_kernel, unsigned((rows + kRouteWarps - 1) / kRouteWarps), kRouteWarps * 32, 0, stream, logits,
             score_bias, p, ids, weights);
  ops_detail::check_launch("moe_route");
}

void routed_dense_gemv(const __half* const* weights, const int32_t* ids, int slots, int slot_div, const __half* a,
                       int64_t rows, int64_t cols, __half* c, cudaStream_t stream) {
  using ops_detail::require;
  require(cols > 0 && cols % 8 == 0, "routed_dense_gemv", "cols must be a positive multiple of 8", cols);
  require(rows > 0 && rows < (int64_t(1) << 31), "routed_dense_gemv", "row count out of range", rows);
  require(slots >= 1 && slots <= 65535 && slot_div >= 1, "routed_dense_gemv", "slot count out of range", slots);
  require(ops_detail::aligned16(a), "routed_dense_gemv", "activations must be 16-byte aligned", 0);
  constexpr int kWarps = 8;
  launch_pdl(routed_dense_gemv_kernel, dim3(unsigned((rows + kWarps - 1) / kWarps), unsigned(slots)), kWarps * 32, 0,
             stream, weights, ids, slot_div, a, rows, cols, c);
  ops_detail::check_launch("routed_dense_gemv");
}

void combine_slots(const __half* y, const float* weights, int64_t rows, int top_k, int64_t cols, __half* out,
                   cudaStream_t stream) {
  using ops_detail::require;
  require(rows >= 0 && rows < (int64_t(1) << 31) && top_k >= 1 && cols > 0, "combine_slots", "sizes out of range",
          rows);
  if (rows == 0) return;
  launch_pdl(combine_slots_kernel, unsigned(rows), kThreads, 0, stream, y, weights, top_k, cols, out);
  ops_detail::check_launch("combine_slots");
}

void group_slots(const int32_t* ids, int slots, int n_experts, int chunk, int32_t* order, int32_t* expert_begin,
                 int32_t* chunk_begin, cudaStream_t stream) {
  using ops_detail::require;
  require(n_experts >= 1 && n_experts <= kGroupMaxExperts, "group_slots", "expert count out of range", n_experts);
  require(slots >= 1 && chunk >= 1, "group_slots", "slot count out of range", slots);
  launch_pdl(group_slots_kernel, 1, kGroupWarps * 32, 0, stream, ids, slots, n_experts, chunk, order, expert_begin,
             chunk_begin);
  ops_detail::check_launch("group_slots");
}

void gather_rows(const __half* in, int64_t cols, const int32_t* rows, int64_t n, __half* out, cudaStream_t stream) {
  ops_detail::require(cols > 0 && cols % 8 == 0, "gather_rows", "cols must be a positive multiple of 8", cols);
  ops_detail::require(n >= 0 && n < (int64_t(1) << 31), "gather_rows", "row count out of range", n);
  ops_detail::require(ops_detail::aligned16(in) && ops_detail::aligned16(out), "gather_rows",
                      "pointers must be 16-byte aligned", 0);
  if (n == 0) return;
  gather_rows_kernel<<<unsigned(n), kThreads, 0, stream>>>(in, cols, rows, out);
  ops_detail::check_launch("gather_rows");
}

void add_weighted_rows(const __half* y, int64_t cols, const int32_t* rows, const float* weights, int64_t n, float* sums,
                       cudaStream_t stream) {
  ops_detail::require(cols > 0, "add_weighted_rows", "cols must be positive", cols);
  ops_detail::require(n >= 0 && n < (int64_t(1) << 31), "add_weighted_rows", "row count out of range", n);
  if (n == 0) return;
  add_weighted_rows_kernel<<<unsigned(n), kThreads, 0, stream>>>(y, cols, rows, weights, sums);
  ops_detail::check_launch("add_weighted_rows");
}

void float_to_half(const float* in, int64_t count, __half* out, cudaStream_t stream) {
  ops_detail::require(count >= 0, "float_to_half", "count must not be negative", count);
  if (count == 0) return;
  float_to_half_kernel<<<unsigned((count + kThreads - 1) / kThreads), kThreads, 0, stream>>>(in, count, out);
  ops_detail::check_launch("float_to_half");
}

}  // namespace marlin::cuda
