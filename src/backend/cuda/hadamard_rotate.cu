// The randomized Hadamard rotations of trellis layers on the GPU (trellis_kernels.h,
// quant/hadamard.h): one warp per 128 values of one row, four consecutive values per lane; the
// butterflies of strides 1 and 2 inside the lane, the larger ones across lanes by shuffles. Blocks
// never straddle a 128-value chunk (the block divides the dimension and is at most 128), so a
// chunk's unused lanes (a dimension that is not a multiple of 128) only ever meet each other.
#include "backend/cuda/pdl_launch.cuh"
#include "backend/cuda/trellis_kernels.h"

namespace marlin::cuda {
namespace {

struct RotateArgs {
  RotationParams p;
  const void* in;
  void* out;
  int m, chunks_per_row;
  bool in_f32, out_f32;
};

__device__ __forceinline__ void butterfly(float& a, float& b) {
  const float s = a + b, d = a - b;
  a = s;
  b = d;
}

__global__ void __launch_bounds__(128) hadamard_rotate_kernel(const __grid_constant__ RotateArgs args) {
  pdl_prologue();
  const RotationParams& p = args.p;
  const long long unit = (static_cast<long long>(blockIdx.x) * blockDim.x + threadIdx.x) / 32;
  const int lane = threadIdx.x % 32;
  if (unit >= static_cast<long long>(args.m) * args.chunks_per_row) return;  // whole warps
  const int row = int(unit / args.chunks_per_row);
  int chunk = int(unit % args.chunks_per_row), seg = 0;
  while (seg + 1 < p.count && chunk >= (p.segments[seg].dim + 127) / 128) chunk -= (p.segments[seg++].dim + 127) / 128;
  const RotationSegment& s = p.segments[seg];
  const int first = chunk * 128 + 4 * lane;  // this lane's first value in the segment
  const bool valid = first < s.dim;
  const long long at = static_cast<long long>(row) * p.row_len + s.begin + first;

  float v[4] = {};
  if (valid) {
    if (args.in_f32) {
      const float4 f = *reinterpret_cast<const float4*>(static_cast<const float*>(args.in) + at);
      v[0] = f.x, v[1] = f.y, v[2] = f.z, v[3] = f.w;
    } else {
      const uint2 h = *reinterpret_cast<const uint2*>(static_cast<const __half*>(args.in) + at);
      const float2 lo = __half22float2(*reinterpret_cast<const __half2*>(&h.x));
      const float2 hi = __half22float2(*reinterpret_cast<const __half2*>(&h.y));
      v[0] = lo.x, v[1] = lo.y, v[2] = hi.x, v[3] = hi.y;
    }
  }
  const uint32_t signs = valid ? s.signs[first / 32] >> (first % 32) : 0u;
  if (!p.transpose)
#pragma unroll
    for (int j = 0; j < 4; ++j) v[j] = (signs >> j & 1) ? -v[j] : v[j];
  butterfly(v[0], v[1]);
  butterfly(v[2], v[3]);
  butterfly(v[0], v[2]);
  butterfly(v[1], v[3]);
  for (int mask = 1; mask < s.block / 4; mask *= 2) {
#pragma unroll
    for (int j = 0; j < 4; ++j) {
      const float other = __shfl_xor_sync(0xffffffffu, v[j], mask);
      v[j] = (lane & mask) ? other - v[j] : v[j] + other;
    }
  }
  const float norm = rsqrtf(float(s.block));
#pragma unroll
  for (int j = 0; j < 4; ++j) {
    v[j] *= norm;
    if (p.transpose && (signs >> j & 1)) v[j] = -v[j];
  }
  if (!valid) return;
  if (args.out_f32) {
    *reinterpret_cast<float4*>(static_cast<float*>(args.out) + at) = make_float4(v[0], v[1], v[2], v[3]);
  } else if (p.pairs) {  // (v, v) halves: each value in both halves of a word
    const auto twice = [](float f) { return uint32_t(__half_as_ushort(__float2half_rn(f))) * 0x10001u; };
    uint4 h;
    h.x = twice(v[0]);
    h.y = twice(v[1]);
    h.z = twice(v[2]);
    h.w = twice(v[3]);
    *reinterpret_cast<uint4*>(static_cast<__half*>(args.out) + 2 * at) = h;
  } else {
    const __half2 lo = __floats2half2_rn(v[0], v[1]), hi = __floats2half2_rn(v[2], v[3]);
    uint2 h;
    h.x = *reinterpret_cast<const uint32_t*>(&lo);
    h.y = *reinterpret_cast<const uint32_t*>(&hi);
    *reinterpret_cast<uint2*>(static_cast<__half*>(args.out) + at) = h;
  }
}

}  // namespace

cudaError_t hadamard_rotate(const RotationParams& p, const void* in, bool in_f32, void* out, bool out_f32, int m,
                            cudaStream_t stream) {
  if (p.count < 1 || p.count > kMaxRotationSegments || m < 1 || (p.pairs && (out_f32 || in == out)))
    return cudaErrorInvalidValue;
  int chunks = 0;
  for (int i = 0; i < p.count; ++i) {
    const RotationSegment& s = p.segments[i];
    const bool block_ok = s.block == 16 || s.block == 32 || s.block == 64 || s.block == 128;
    if (!block_ok || s.dim <= 0 || s.dim % s.block || s.begin % 16 || s.begin + s.dim > p.row_len || !s.signs)
      return cudaErrorInvalidValue;
    chunks += (s.dim + 127) / 128;
  }
  const long long warps = static_cast<long long>(m) * chunks;
  const RotateArgs args{p, in, out, m, chunks, in_f32, out_f32};
  return launch_pdl(hadamard_rotate_kernel, dim3(unsigned((warps + 3) / 4)), dim3(128), 0, stream, args);
}

}  // namespace marlin::cuda
