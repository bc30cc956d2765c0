// Elementwise ops: SwiGLU's silu(gate)·up, GeGLU's gelu_tanh(gate)·up, the embedding lookup,
// fp16 → fp32 logits.
// Each thread moves 8 values (one 16-byte fp16 load); grid-stride loops over 64-bit indices.
#include <cuda_fp16.h>

#include <algorithm>

#include "backend/cuda/ops.h"
#include "backend/cuda/ops_check.h"
#include "backend/cuda/pdl_launch.cuh"
#include "backend/cuda/slot_math.cuh"

namespace marlin::cuda {
namespace {

constexpr int kThreads = 256;

// Enough blocks to fill the GPU several times over; the loops stride over the rest.
unsigned grid_for(int64_t items) { return unsigned(std::clamp<int64_t>((items + kThreads - 1) / kThreads, 1, 65536)); }

__device__ void half8_to_float8(uint4 packed, float4& lo, float4& hi) {
  const __half2* h = reinterpret_cast<const __half2*>(&packed);
  const float2 a = __half22float2(h[0]), b = __half22float2(h[1]), c = __half22float2(h[2]),
               d = __half22float2(h[3]);
  lo = make_float4(a.x, a.y, b.x, b.y);
  hi = make_float4(c.x, c.y, d.x, d.y);
}

struct GeluTanh {
  __device__ float operator()(float g) const {
    constexpr float kSqrt2OverPi = 0.7978845608028654f;
    return 0.5f * g * (1.0f + tanhf(kSqrt2OverPi * (g + 0.044715f * g * g * g)));
  }
};

template <typename Act>
__global__ void gated_mul_kernel(const __half* gate_up, int64_t rows, int64_t f, __half* out) {
  pdl_prologue();
  const int64_t chunks = f / 8, items = rows * chunks;
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < items; i += int64_t(gridDim.x) * blockDim.x) {
    const int64_t row = i / chunks, c = i % chunks;
    const uint4 g = reinterpret_cast<const uint4*>(gate_up + row * 2 * f)[c];
    const uint4 u = reinterpret_cast<const uint4*>(gate_up + row * 2 * f + f)[c];
    reinterpret_cast<uint4*>(out + row * f)[c] = gated_chunk<Act>(g, u);
  }
}

__global__ void embed_kernel(const __half* table, int64_t d, const int32_t* tokens, int64_t n, float scale,
                             float* x) {
  pdl_prologue();
  const int64_t chunks = d / 8, items = n * chunks;
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < items; i += int64_t(gridDim.x) * blockDim.x) {
    const int64_t t = i / chunks, c = i % chunks;
    const uint4 packed = reinterpret_cast<const uint4*>(table + int64_t(tokens[t]) * d)[c];
    float4 lo, hi;
    half8_to_float8(packed, lo, hi);
    float4* dst = reinterpret_cast<float4*>(x + t * d) + 2 * c;
    dst[0] = make_float4(lo.x * scale, lo.y * scale, lo.z * scale, lo.w * scale);
    dst[1] = make_float4(hi.x * scale, hi.y * scale, hi.z * scale, hi.w * scale);
  }
}

// The first `vectors` groups of 8 go as 16-byte loads, the rest (count - 8·vectors) one by one.
__global__ void half_to_float_kernel(const __half* in, int64_t count, int64_t vectors, float* out) {
  pdl_prologue();
  const int64_t items = vectors + (count - 8 * vectors);
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < items; i += int64_t(gridDim.x) * blockDim.x) {
    if (i < vectors) {
      float4* dst = reinterpret_cast<float4*>(out) + 2 * i;
      half8_to_float8(reinterpret_cast<const uint4*>(in)[i], dst[0], dst[1]);
    } else {
      const int64_t j = 8 * vectors + (i - vectors);
      out[j] = __half2float(in[j]);
    }
  }
}

template <typename Act>
void gated_mul(const char* op, const __half* gate_up, int64_t rows, int64_t f, __half* out, cudaStream_t stream) {
  using ops_detail::require;
  require(f > 0 && f % 8 == 0, op, "f must be a positive multiple of 8", f);
  require(rows >= 0, op, "row count must not be negative", rows);
  require(ops_detail::aligned16(gate_up) && ops_detail::aligned16(out), op, "pointers must be 16-byte aligned", 0);
  if (rows == 0) return;
  launch_pdl(gated_mul_kernel<Act>, grid_for(rows * f / 8), kThreads, 0, stream, gate_up, rows, f, out);
  ops_detail::check_launch(op);
}

}  // namespace

void silu_mul(const __half* gate_up, int64_t rows, int64_t f, __half* out, cudaStream_t stream) {
  gated_mul<Silu>("silu_mul", gate_up, rows, f, out, stream);
}

void gelu_tanh_mul(const __half* gate_up, int64_t rows, int64_t f, __half* out, cudaStream_t stream) {
  gated_mul<GeluTanh>("gelu_tanh_mul", gate_up, rows, f, out, stream);
}

void embed(const __half* table, int64_t d, const int32_t* tokens, int64_t n, float scale, float* x,
           cudaStream_t stream) {
  using ops_detail::require;
  require(d > 0 && d % 8 == 0, "embed", "d must be a positive multiple of 8", d);
  require(n >= 0, "embed", "token count must not be negative", n);
  require(ops_detail::aligned16(table) && ops_detail::aligned16(x), "embed", "pointers must be 16-byte aligned", 0);
  if (n == 0) return;
  launch_pdl(embed_kernel, grid_for(n * d / 8), kThreads, 0, stream, table, d, tokens, n, scale, x);
  ops_detail::check_launch("embed");
}

void half_to_float(const __half* in, int64_t count, float* out, cudaStream_t stream) {
  ops_detail::require(count >= 0, "half_to_float", "count must not be negative", count);
  if (count == 0) return;
  const bool vector = ops_detail::aligned16(in) && ops_detail::aligned16(out);
  const int64_t vectors = vector ? count / 8 : 0;
  launch_pdl(half_to_float_kernel, grid_for(vectors + count - 8 * vectors), kThreads, 0, stream, in, count, vectors, out);
  ops_detail::check_launch("half_to_float");
}

}  // namespace marlin::cuda
