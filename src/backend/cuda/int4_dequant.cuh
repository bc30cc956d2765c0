// Dequantization of int4 tile fragments (backend/int4_tiles.h) into tensor-core A registers.
#pragma once

#include <cuda_fp16.h>

#include <cstdint>

#include "backend/cuda/ptx.cuh"

namespace marlin::cuda::int4_detail {

__device__ __forceinline__ half2 as_half2(uint32_t bits) { return *reinterpret_cast<half2*>(&bits); }
__device__ __forceinline__ uint32_t as_bits(half2 h) { return *reinterpret_cast<uint32_t*>(&h); }

// Per-row constants of one group: the scale, and the zero point folded into the two exponent
// tricks below (0x6400|z is 1024 + z; 0xd400|16z is −(64 + z)).
struct RowQuant {
  half2 scale;
  half2 lo_offset;  // 1024 + z
  half2 hi_offset;  // −(64 + z)
};

__device__ __forceinline__ RowQuant row_quant(__half scale, uint32_t zero) {
  return {__half2half2(scale), as_half2((0x6400u | zero) * 0x10001u), as_half2((0xd400u | (zero << 4)) * 0x10001u)};
}

// The four A registers of one m16n8k16 product from one fragment word: a nibble q becomes the
// fp16 1024 + q (low nibble of a byte) or 1024 + 16q (high nibble) by OR-ing in the exponent of
// 1024, and one subtraction or fused multiply-add turns that into q − z exactly; the scale
// multiply is the only rounding.
__device__ __forceinline__ void dequant(uint32_t word, const RowQuant& top, const RowQuant& bottom,
                                        uint32_t (&a)[4]) {
  const uint32_t kLowMask = 0x000f000f, kHighMask = 0x00f000f0, kExp1024 = 0x64006400;
  const half2 kSixteenth = as_half2(0x2c002c00);
  const uint32_t shifted = word >> 8;
  const half2 r0 = __hsub2(as_half2(and_or(word, kLowMask, kExp1024)), top.lo_offset);
  const half2 r1 = __hfma2(as_half2(and_or(word, kHighMask, kExp1024)), kSixteenth, bottom.hi_offset);
  const half2 r2 = __hsub2(as_half2(and_or(shifted, kLowMask, kExp1024)), top.lo_offset);
  const half2 r3 = __hfma2(as_half2(and_or(shifted, kHighMask, kExp1024)), kSixteenth, bottom.hi_offset);
  a[0] = as_bits(__hmul2(r0, top.scale));
  a[1] = as_bits(__hmul2(r1, bottom.scale));
  a[2] = as_bits(__hmul2(r2, top.scale));
  a[3] = as_bits(__hmul2(r3, bottom.scale));
}

}  // namespace marlin::cuda::int4_detail
