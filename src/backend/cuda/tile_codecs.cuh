// Decoding of weight-tile fragments (backend/weight_tiles.h) into tensor-core A registers, one
// struct per codec: int4 (int4_tiles.h), int8 and fp8 (int8_tiles.h).
//
// Every codec keeps a strip's (16 rows) codes of one half-k-tile (64 columns, 4 k-steps) as
// kVecs 16-byte vectors per lane, vector j of half h of strip s at byte
// s·kCodeBytes/4 + h·kCodeBytes/8 + 512·j + 16·lane of the tile's code block — one coalesced
// 512-byte run per warp and vector. dequant() makes the four fp16×2 A registers of k-step ks (0..3)
// of such a half from the vectors and the per-row constants of the rows g (top) and g + 8 (bottom).
#pragma once

#include <cuda_fp16.h>

#include <cstdint>

#include "backend/cuda/ptx.cuh"
#include "backend/cuda/tiled_gemm_kernels.h"

namespace marlin::cuda::tiled_detail {

__device__ __forceinline__ half2 as_half2(uint32_t bits) { return *reinterpret_cast<half2*>(&bits); }
__device__ __forceinline__ uint32_t as_bits(half2 h) { return *reinterpret_cast<uint32_t*>(&h); }

__device__ __forceinline__ uint32_t byte_perm(uint32_t a, uint32_t b, uint32_t selector) {
  uint32_t r;
  asm("prmt.b32 %0, %1, %2, %3;" : "=r"(r) : "r"(a), "r"(b), "r"(selector));
  return r;
}

template <int kCodec>
struct Codec;

// int4: one 32-bit word per k-step; a nibble q becomes the fp16 1024 + q (low nibble of a byte) or
// 1024 + 16q (high nibble) by OR-ing in the exponent of 1024, and one subtraction or fused
// multiply-add turns that into q − z exactly; the scale multiply is the only rounding.
template <>
struct Codec<kCodecInt4> {
  static constexpr int kCodeBytes = 4096;
  static constexpr int kVecs = 1;
  static constexpr uint32_t kSymmetricZero = 8;

  // Per-row constants of one group: the scale, and the zero point folded into the two exponent
  // tricks (0x6400|z is 1024 + z; 0xd400|16z is −(64 + z)).
  struct Quant {
    half2 scale;
    half2 lo_offset;
    half2 hi_offset;
  };

  static __device__ __forceinline__ Quant quant(__half scale, uint32_t zero) {
    return {__half2half2(scale), as_half2((0x6400u | zero) * 0x10001u), as_half2((0xd400u | (zero << 4)) * 0x10001u)};
  }

  static __device__ __forceinline__ void dequant(const uint4 (&v)[kVecs], int ks, const Quant& top,
                                                 const Quant& bottom, uint32_t (&a)[4]) {
    const uint32_t word = ks == 0 ? v[0].x : ks == 1 ? v[0].y : ks == 2 ? v[0].z : v[0].w;
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
};

// The two words of k-step ks (0..3) of an 8-bit half-k-tile: vector ks/2, words 0–1 or 2–3.
__device__ __forceinline__ void words8(const uint4 (&v)[2], int ks, uint32_t& w0, uint32_t& w1) {
  const uint4& x = v[ks / 2];
  w0 = ks % 2 == 0 ? x.x : x.z;
  w1 = ks % 2 == 0 ? x.y : x.w;
}

// int8: bytes 0, 2 (row g) and 1, 3 (row g + 8) of a word, each put under the exponent byte 0x64,
// are the fp16 1024 + q; minus 1024 + z is q − z exactly, and the scale multiply rounds once.
template <>
struct Codec<kCodecInt8> {
  static constexpr int kCodeBytes = 8192;
  static constexpr int kVecs = 2;
  static constexpr uint32_t kSymmetricZero = 128;

  struct Quant {
    half2 scale;
    half2 offset;  // 1024 + z
  };

  static __device__ __forceinline__ Quant quant(__half scale, uint32_t zero) {
    return {__half2half2(scale), as_half2((0x6400u | zero) * 0x10001u)};
  }

  static __device__ __forceinline__ uint32_t reg(uint32_t word, uint32_t selector, const Quant& q) {
    return as_bits(__hmul2(__hsub2(as_half2(byte_perm(word, 0x64646464u, selector)), q.offset), q.scale));
  }

  static __device__ __forceinline__ void dequant(const uint4 (&v)[kVecs], int ks, const Quant& top,
                                                 const Quant& bottom, uint32_t (&a)[4]) {
    uint32_t w0, w1;
    words8(v, ks, w0, w1);
    a[0] = reg(w0, 0x4240, top);
    a[1] = reg(w0, 0x4341, bottom);
    a[2] = reg(w1, 0x4240, top);
    a[3] = reg(w1, 0x4341, bottom);
  }
};

// fp8 (E4M3): a code in the high byte of an fp16 lane, its sign kept and its 7 exponent and
// mantissa bits shifted right by one, is the fp16 e4m3(q)/256 exactly (subnormals included; the
// exponent biases differ by 8). The tiles store 256·s, so the scale multiply is the only rounding.
template <>
struct Codec<kCodecFp8> {
  static constexpr int kCodeBytes = 8192;
  static constexpr int kVecs = 2;
  static constexpr uint32_t kSymmetricZero = 0;  // unused

  struct Quant {
    half2 scale;  // 256·s
  };

  static __device__ __forceinline__ Quant quant(__half scale, uint32_t) { return {__half2half2(scale)}; }

  // Bytes 1 and 3 of x as fp16 values / 256.
  static __device__ __forceinline__ uint32_t high_bytes(uint32_t x) {
    return (x & 0x80008000u) | ((x >> 1) & 0x3f803f80u);
  }

  static __device__ __forceinline__ void dequant(const uint4 (&v)[kVecs], int ks, const Quant& top,
                                                 const Quant& bottom, uint32_t (&a)[4]) {
    uint32_t w0, w1;
    words8(v, ks, w0, w1);
    a[0] = as_bits(__hmul2(as_half2(high_bytes(w0 << 8)), top.scale));
    a[1] = as_bits(__hmul2(as_half2(high_bytes(w0)), bottom.scale));
    a[2] = as_bits(__hmul2(as_half2(high_bytes(w1 << 8)), top.scale));
    a[3] = as_bits(__hmul2(as_half2(high_bytes(w1)), bottom.scale));
  }
};

}  // namespace marlin::cuda::tiled_detail
