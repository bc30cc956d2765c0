// Decoding of weight-tile fragments (backend/weight_tiles.h) into tensor-core A registers, one
// struct per codec: int4 (int4_tiles.h), int8 and fp8 (int8_tiles.h), fp4 (fp4_tiles.h), int3 and
// int2 (lowbit_tiles.h).
//
// A codec keeps a lane's codes of one strip (16 rows) and half-k-tile (64 columns, 4 k-steps) as
// `Codes`: load() reads them from the half's first byte, s·kCodeBytes/4 + h·kCodeBytes/8 of the
// tile's code block for strip s and half h, with 16-, 8- or 4-byte loads of lane-contiguous
// vectors (one coalesced run per warp and vector) through a Load functor (shared memory, or
// streamed from global memory). dequant() makes the four fp16×2 A registers of k-step ks (0..3) of
// such a half from the codes and the per-row constants (Quant) of the rows g (top) and g + 8
// (bottom). kRowScales: the outputs are multiplied by GemmParams::row_scales before rounding.
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

// Bits of a where mask is set, of b elsewhere, in one instruction.
__device__ __forceinline__ uint32_t bit_select(uint32_t a, uint32_t b, uint32_t mask) {
  uint32_t r;
  asm("lop3.b32 %0, %1, %2, %3, 0xE4;" : "=r"(r) : "r"(a), "r"(b), "r"(mask));
  return r;
}

struct SharedLoad {
  template <typename T>
  __device__ __forceinline__ T operator()(const T* p) const {
    return *p;
  }
};
struct StreamLoad {
  template <typename T>
  __device__ __forceinline__ T operator()(const T* p) const {
    return __ldcs(p);
  }
};

template <int kCodec>
struct Codec;

// An fp32 output times its row's multiplier, where the codec has them (fp4).
template <bool kRowScales>
__device__ __forceinline__ float scale_output(float acc, float row_scale) {
  if constexpr (kRowScales) return acc * row_scale;
  return acc;
}

// The integer codecs whose k-step is one word of 4-bit fields in int4's nibble order (int4, and
// int3 / int2 once the word is assembled): a field q under kLowMask (bits 0.. of a nibble) becomes
// the fp16 1024 + q, one under kHighMask (bits 4..) 1024 + 16q, by OR-ing in the exponent of 1024;
// one subtraction or fused multiply-add turns that into q − z exactly, and the scale multiply is
// the only rounding. Per-row constants: the scale, and the zero point folded into the two
// exponent tricks (0x6400|z is 1024 + z; 0xd400|16z is −(64 + z)).
struct NibbleQuant {
  half2 scale;
  half2 lo_offset;
  half2 hi_offset;
};

__device__ __forceinline__ NibbleQuant nibble_quant(__half scale, uint32_t zero) {
  return {__half2half2(scale), as_half2((0x6400u | zero) * 0x10001u), as_half2((0xd400u | (zero << 4)) * 0x10001u)};
}

template <uint32_t kLowMask, uint32_t kHighMask>
__device__ __forceinline__ void dequant_nibbles(uint32_t word, const NibbleQuant& top, const NibbleQuant& bottom,
                                                uint32_t (&a)[4]) {
  const uint32_t kExp1024 = 0x64006400;
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

// The word of k-step ks (0..3) of a 16-byte vector of 4 words.
__device__ __forceinline__ uint32_t word_of(const uint4& v, int ks) {
  return ks == 0 ? v.x : ks == 1 ? v.y : ks == 2 ? v.z : v.w;
}

// int4: one 32-bit word per k-step, the nibbles are the codes.
template <>
struct Codec<kCodecInt4> {
  static constexpr int kCodeBytes = 4096;
  static constexpr uint32_t kSymmetricZero = 8;
  static constexpr bool kRowScales = false;
  using Quant = NibbleQuant;
  struct Codes {
    uint4 v;
  };

  template <typename Load>
  static __device__ __forceinline__ Codes load(const uint8_t* half, int lane, Load ld) {
    return {ld(reinterpret_cast<const uint4*>(half) + lane)};
  }
  static __device__ __forceinline__ Quant quant(__half scale, uint32_t zero) { return nibble_quant(scale, zero); }
  static __device__ __forceinline__ void dequant(const Codes& c, int ks, const Quant& top, const Quant& bottom,
                                                 uint32_t (&a)[4]) {
    dequant_nibbles<0x000f000f, 0x00f000f0>(word_of(c.v, ks), top, bottom, a);
  }
};

// int2: a word holds two k-steps, the second's codes 2 bits above the first's in every nibble.
template <>
struct Codec<kCodecInt2> {
  static constexpr int kCodeBytes = 2048;
  static constexpr uint32_t kSymmetricZero = 2;
  static constexpr bool kRowScales = false;
  using Quant = NibbleQuant;
  struct Codes {
    uint2 v;
  };

  template <typename Load>
  static __device__ __forceinline__ Codes load(const uint8_t* half, int lane, Load ld) {
    return {ld(reinterpret_cast<const uint2*>(half) + lane)};
  }
  static __device__ __forceinline__ Quant quant(__half scale, uint32_t zero) { return nibble_quant(scale, zero); }
  static __device__ __forceinline__ void dequant(const Codes& c, int ks, const Quant& top, const Quant& bottom,
                                                 uint32_t (&a)[4]) {
    const uint32_t pair = ks < 2 ? c.v.x : c.v.y;
    dequant_nibbles<0x00030003, 0x00300030>(ks % 2 ? pair >> 2 : pair, top, bottom, a);
  }
};

// int3: int2's plane of the low two bits, plus a word of third bits (bit 4i + ks of nibble i)
// shifted to bit 4i + 2 and merged by one bit select.
template <>
struct Codec<kCodecInt3> {
  static constexpr int kCodeBytes = 3072;
  static constexpr uint32_t kSymmetricZero = 4;
  static constexpr bool kRowScales = false;
  using Quant = NibbleQuant;
  struct Codes {
    uint2 low;
    uint32_t third;
  };

  template <typename Load>
  static __device__ __forceinline__ Codes load(const uint8_t* half, int lane, Load ld) {
    return {ld(reinterpret_cast<const uint2*>(half) + lane), ld(reinterpret_cast<const uint32_t*>(half + 256) + lane)};
  }
  static __device__ __forceinline__ Quant quant(__half scale, uint32_t zero) { return nibble_quant(scale, zero); }
  static __device__ __forceinline__ void dequant(const Codes& c, int ks, const Quant& top, const Quant& bottom,
                                                 uint32_t (&a)[4]) {
    const uint32_t pair = ks < 2 ? c.low.x : c.low.y;
    const uint32_t low = ks % 2 ? pair >> 2 : pair;
    const uint32_t third = ks == 0 ? c.third << 2 : ks == 1 ? c.third << 1 : ks == 2 ? c.third : c.third >> 1;
    dequant_nibbles<0x00070007, 0x00700070>(bit_select(low, third, 0x33333333), top, bottom, a);
  }
};

// The two words of k-step ks (0..3) of an 8-bit half-k-tile: vector ks/2, words 0–1 or 2–3.
__device__ __forceinline__ void words8(const uint4 (&v)[2], int ks, uint32_t& w0, uint32_t& w1) {
  const uint4& x = v[ks / 2];
  w0 = ks % 2 == 0 ? x.x : x.z;
  w1 = ks % 2 == 0 ? x.y : x.w;
}

// Two 16-byte vectors per lane, 512 bytes apart (int8 and fp8).
struct Codes8 {
  uint4 v[2];
};

template <typename Load>
__device__ __forceinline__ Codes8 load8(const uint8_t* half, int lane, Load ld) {
  Codes8 c;
#pragma unroll
  for (int j = 0; j < 2; ++j) c.v[j] = ld(reinterpret_cast<const uint4*>(half + 512 * j) + lane);
  return c;
}

// int8: bytes 0, 2 (row g) and 1, 3 (row g + 8) of a word, each put under the exponent byte 0x64,
// are the fp16 1024 + q; minus 1024 + z is q − z exactly, and the scale multiply rounds once.
template <>
struct Codec<kCodecInt8> {
  static constexpr int kCodeBytes = 8192;
  static constexpr uint32_t kSymmetricZero = 128;
  static constexpr bool kRowScales = false;
  using Codes = Codes8;

  struct Quant {
    half2 scale;
    half2 offset;  // 1024 + z
  };

  template <typename Load>
  static __device__ __forceinline__ Codes load(const uint8_t* half, int lane, Load ld) {
    return load8(half, lane, ld);
  }
  static __device__ __forceinline__ Quant quant(__half scale, uint32_t zero) {
    return {__half2half2(scale), as_half2((0x6400u | zero) * 0x10001u)};
  }

  static __device__ __forceinline__ uint32_t reg(uint32_t word, uint32_t selector, const Quant& q) {
    return as_bits(__hmul2(__hsub2(as_half2(byte_perm(word, 0x64646464u, selector)), q.offset), q.scale));
  }

  static __device__ __forceinline__ void dequant(const Codes& c, int ks, const Quant& top, const Quant& bottom,
                                                 uint32_t (&a)[4]) {
    uint32_t w0, w1;
    words8(c.v, ks, w0, w1);
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
  static constexpr uint32_t kSymmetricZero = 0;  // unused
  static constexpr bool kRowScales = false;
  using Codes = Codes8;

  struct Quant {
    half2 scale;  // 256·s
  };

  template <typename Load>
  static __device__ __forceinline__ Codes load(const uint8_t* half, int lane, Load ld) {
    return load8(half, lane, ld);
  }
  static __device__ __forceinline__ Quant quant(__half scale, uint32_t) { return {__half2half2(scale)}; }

  // Bytes 1 and 3 of x as fp16 values / 256.
  static __device__ __forceinline__ uint32_t high_bytes(uint32_t x) {
    return (x & 0x80008000u) | ((x >> 1) & 0x3f803f80u);
  }

  static __device__ __forceinline__ void dequant(const Codes& c, int ks, const Quant& top, const Quant& bottom,
                                                 uint32_t (&a)[4]) {
    uint32_t w0, w1;
    words8(c.v, ks, w0, w1);
    a[0] = as_bits(__hmul2(as_half2(high_bytes(w0 << 8)), top.scale));
    a[1] = as_bits(__hmul2(as_half2(high_bytes(w0)), bottom.scale));
    a[2] = as_bits(__hmul2(as_half2(high_bytes(w1 << 8)), top.scale));
    a[3] = as_bits(__hmul2(as_half2(high_bytes(w1)), bottom.scale));
  }
};

// fp4 (E2M1) in int4's nibble order: register i is nibbles i and i + 4, and each must become an
// fp16 with the nibble's sign (bit 3) at bit 15 and its e e m bits (2..0) at bits 11..9 — the
// fp16 e2m1(q)·2^-14 exactly (fp4_tiles.h). Sign and e e m move by different amounts, so the
// word's sign bits are first copied 3 places up (a rotation) into the gaps next to the nibbles
// of registers 0 and 2 (y02) or 1 and 3 (y13): one bit select each. Then one shift and one mask
// per register put e e m and sign in place: register 0 shifts y02 left by 9, 1 y13 by 5, 2 y02 by 1,
// and 3 rotates y13 right by 3 (its high half's sign bit wrapped around to bit 2). The tiles'
// scales are σ·2^(14−j), so the scale multiply is the only rounding.
template <>
struct Codec<kCodecFp4> {
  static constexpr int kCodeBytes = 4096;
  static constexpr uint32_t kSymmetricZero = 0;  // unused
  static constexpr bool kRowScales = true;
  struct Codes {
    uint4 v;
  };
  struct Quant {
    half2 scale;  // σ·2^(14−j)
  };

  template <typename Load>
  static __device__ __forceinline__ Codes load(const uint8_t* half, int lane, Load ld) {
    return {ld(reinterpret_cast<const uint4*>(half) + lane)};
  }
  static __device__ __forceinline__ Quant quant(__half scale, uint32_t) { return {__half2half2(scale)}; }

  static __device__ __forceinline__ void dequant(const Codes& c, int ks, const Quant& top, const Quant& bottom,
                                                 uint32_t (&a)[4]) {
    const uint32_t kPlace = 0x8e008e00;  // sign and e e m of both halves
    const uint32_t word = word_of(c.v, ks);
    const uint32_t signs_up = __funnelshift_l(word, word, 3);
    const uint32_t y02 = bit_select(signs_up, word, 0x40404040);
    const uint32_t y13 = bit_select(signs_up, word, 0x04040404);
    a[0] = as_bits(__hmul2(as_half2((y02 << 9) & kPlace), top.scale));
    a[1] = as_bits(__hmul2(as_half2((y13 << 5) & kPlace), bottom.scale));
    a[2] = as_bits(__hmul2(as_half2((y02 << 1) & kPlace), top.scale));
    a[3] = as_bits(__hmul2(as_half2(__funnelshift_r(y13, y13, 3) & kPlace), bottom.scale));
  }
};

}  // namespace marlin::cuda::tiled_detail
