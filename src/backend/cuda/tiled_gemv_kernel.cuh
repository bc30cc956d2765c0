// The weight-tile × fp16 product for few tokens (decode): C = A · Wᵀ, m ≤ 8·kFragsM, W in weight
// tiles of any codec (tile_codecs.cuh).
//
// Rows across SMs, K inside the block: block b owns `strips_per_block` consecutive 16-row strips
// and their whole K range, so no partial sum ever leaves the block (no workspace, no atomics, no
// end-of-kernel reduction chain). Its warps split the strips into `strip_split` groups and each
// group's K range into `k_split` pieces; every lane loads its own bytes of fragment words (16 for
// int4, 8 + 4 for int3, ...) straight into registers (the tile layout is already in register
// order, so a warp's load is one coalesced run), kDepth half-k-tiles ahead (codecs of fewer bytes
// per lane go deeper to keep as many bytes in flight), and takes its activation fragments from
// global memory (L1/L2), in rounds (run; accumulate_deep for rounds twice as deep). The k_split
// partial sums are added in shared memory in a fixed order.
// K is a multiple of 64, so a half-k-tile lies wholly inside K or wholly in the last tile's
// padding, which is skipped. (An L2 prefetch of the next kDepth half-k-tiles' codes was 0–8 %
// slower in run 6.)
#pragma once

#include <cuda_fp16.h>

#include <cstdint>

#include "backend/cuda/pdl_launch.cuh"
#include "backend/cuda/ptx.cuh"
#include "backend/cuda/tile_codecs.cuh"
#include "backend/cuda/tiled_gemm_kernels.h"

namespace marlin::cuda::tiled_detail {

template <int kCodec, int kWarps, int kStripsPerWarp, int kFragsM, int kDepth, int kGroupsPerTile, bool kAsym>
struct TiledGemv {
  using C = Codec<kCodec>;
  using Quant = typename C::Quant;
  static constexpr int kScaleBytes = kGroupsPerTile * 128;
  static constexpr int kZeroBytes = kAsym ? kGroupsPerTile * 64 : 0;
  static constexpr int kCodeBytes = C::kCodeBytes;
  static constexpr int kTileBytes = kScaleBytes + kZeroBytes + kCodeBytes;
  // Groups of a half-k-tile (64 columns): 1 for g128 and g64, 2 for g32.
  static constexpr int kHalfGroups = kGroupsPerTile > 2 ? kGroupsPerTile / 2 : 1;
  static constexpr int kRedFloats = kStripsPerWarp * kFragsM * 4;

  // One half-k-tile of one strip, as this lane needs it.
  struct Step {
    typename C::Codes codes;
    Quant quant[kHalfGroups][2];
  };

  static __device__ __forceinline__ void load_step(const uint8_t* tile, int strip_in_tile, int half, int lane,
                                                   Step& s) {
    s.codes = C::load(tile + kScaleBytes + kZeroBytes + strip_in_tile * (kCodeBytes / 4) + half * (kCodeBytes / 8),
                      lane, StreamLoad{});
    const int row = strip_in_tile * 16 + lane / 4;
#pragma unroll
    for (int j = 0; j < kHalfGroups; ++j) {
      const int group = half * kGroupsPerTile / 2 + j;
      const __half* scales = reinterpret_cast<const __half*>(tile) + group * 64 + row;
      const uint8_t* zeros = tile + kScaleBytes + group * 64 + row;
      s.quant[j][0] = C::quant(__ldg(scales), kAsym ? __ldg(zeros) : C::kSymmetricZero);
      s.quant[j][1] = C::quant(__ldg(scales + 8), kAsym ? __ldg(zeros + 8) : C::kSymmetricZero);
    }
  }

  // B fragments of k-step ks of half-k-tile h for token group fm (zero past m).
  static __device__ __forceinline__ void load_acts(const GemvParams& p, int h, int lane,
                                                   uint32_t (&b)[4][kFragsM][2]) {
    const int g = lane / 4, t = lane % 4;
#pragma unroll
    for (int fm = 0; fm < kFragsM; ++fm) {
      const int tok = fm * 8 + g;
      const __half* row = p.a + static_cast<long long>(tok) * p.k + h * 64 + 2 * t;
#pragma unroll
      for (int ks = 0; ks < 4; ++ks) {
        b[ks][fm][0] = tok < p.m ? __ldg(reinterpret_cast<const uint32_t*>(row + ks * 16)) : 0u;
        b[ks][fm][1] = tok < p.m ? __ldg(reinterpret_cast<const uint32_t*>(row + ks * 16 + 8)) : 0u;
      }
    }
  }

  // This warp's strips, as the main loops read them.
  struct Strips {
    const uint8_t* tile_base[kStripsPerWarp];
    int strip_in_tile[kStripsPerWarp];
    bool valid[kStripsPerWarp];
  };

  static __device__ __forceinline__ void load_steps(const Strips& w, int h, int lane, Step (&s)[kStripsPerWarp]) {
#pragma unroll
    for (int j = 0; j < kStripsPerWarp; ++j)
      if (w.valid[j])
        load_step(w.tile_base[j] + static_cast<long long>(h / 2) * kTileBytes, w.strip_in_tile[j], h % 2, lane, s[j]);
  }

  static __device__ __forceinline__ void mma_steps(const Strips& w, const Step (&s)[kStripsPerWarp],
                                                   const uint32_t (&b)[4][kFragsM][2],
                                                   float (&acc)[kStripsPerWarp][kFragsM][4]) {
#pragma unroll
    for (int j = 0; j < kStripsPerWarp; ++j) {
      if (!w.valid[j]) continue;
#pragma unroll
      for (int ks = 0; ks < 4; ++ks) {
        const int q = ks * kHalfGroups / 4;
        uint32_t a[4];
        C::dequant(s[j].codes, ks, s[j].quant[q][0], s[j].quant[q][1], a);
#pragma unroll
        for (int fm = 0; fm < kFragsM; ++fm) mma_16816(acc[j][fm], a, b[ks][fm][0], b[ks][fm][1]);
      }
    }
  }

  // Deep rounds: like the rounds of run(), but each half-k-tile's activations are loaded just
  // before it is multiplied (from L1 mostly), which leaves the registers for rounds twice as deep:
  // half as many round trips to memory where the weights cannot be loaded before the previous
  // kernel ends (the routed kernel). (A register ring that refilled each slot as soon as it was
  // used was slower than plain rounds at a Qwen3-30B-A3B decode step on an H100: 30.8 against
  // 28.4 µs for one token, 142 against 132 µs for eight, where these deep rounds take 26.6 and
  // 106; its loads share a warp's few scoreboards, so a step can wait for loads issued after it.)
  // load_acts(h, b) gives half-k-tile h's B fragments (load_acts above, or another source).
  template <typename LoadActs>
  static __device__ __forceinline__ void accumulate_deep(const Strips& w, int h_begin, int h_end, int lane,
                                                         float (&acc)[kStripsPerWarp][kFragsM][4], LoadActs load_acts) {
    bool waited = false;
    for (int h0 = h_begin; h0 < h_end; h0 += kDepth) {
      Step steps[kDepth][kStripsPerWarp];
#pragma unroll
      for (int d = 0; d < kDepth; ++d)
        if (h0 + d < h_end) load_steps(w, h0 + d, lane, steps[d]);
      if (!waited) {
        grid_dependency_wait();
        waited = true;
      }
#pragma unroll
      for (int d = 0; d < kDepth; ++d) {
        if (h0 + d >= h_end) break;
        uint32_t b[4][kFragsM][2];
        load_acts(h0 + d, b);
        mma_steps(w, steps[d], b, acc);
      }
    }
    if (!waited) grid_dependency_wait();
  }

  // The partial sums of the k_split pieces of a strip group (consecutive warps), added in piece
  // order through `red` (one kRedFloats slice per thread). Every thread calls it; true for the
  // warps that then hold their group's sums (piece 0 of a group that has strips).
  static __device__ __forceinline__ bool add_pieces(float (&acc)[kStripsPerWarp][kFragsM][4], float* red, int warp,
                                                    int lane, int piece, bool has_strips, int k_split) {
    float* mine = red + (static_cast<long long>(warp) * 32 + lane) * kRedFloats;
#pragma unroll
    for (int j = 0; j < kStripsPerWarp; ++j)
#pragma unroll
      for (int fm = 0; fm < kFragsM; ++fm)
#pragma unroll
        for (int i = 0; i < 4; ++i) mine[(j * kFragsM + fm) * 4 + i] = acc[j][fm][i];
    __syncthreads();
    if (piece != 0 || !has_strips) return false;
    for (int other = 1; other < k_split; ++other) {
      const float* theirs = red + (static_cast<long long>(warp + other) * 32 + lane) * kRedFloats;
#pragma unroll
      for (int j = 0; j < kStripsPerWarp; ++j)
#pragma unroll
        for (int fm = 0; fm < kFragsM; ++fm)
#pragma unroll
          for (int i = 0; i < 4; ++i) acc[j][fm][i] += theirs[(j * kFragsM + fm) * 4 + i];
    }
    return true;
  }

  template <bool kDeep = false>
  static __device__ void run(const GemvParams& p, float* red) {
    const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
    const int group = warp / p.k_split, piece = warp % p.k_split;
    const int block_strip0 = blockIdx.x * p.strips_per_block;
    const int strips = p.n / 16;
    // This warp's strips (block-relative index group + j·strip_split) and its half-k-tile range.
    Strips w;
#pragma unroll
    for (int j = 0; j < kStripsPerWarp; ++j) {
      const int local = group + j * p.strip_split;
      const int strip = block_strip0 + local;
      w.valid[j] = group < p.strip_split && local < p.strips_per_block && strip < strips;
      const int s = w.valid[j] ? strip : 0;
      w.tile_base[j] = p.tiles + static_cast<long long>(s / 4) * p.k_tiles * kTileBytes;
      w.strip_in_tile[j] = s % 4;
    }
    const int halves = p.k / 64;
    const int h_begin = piece * halves / p.k_split, h_end = (piece + 1) * halves / p.k_split;

    float acc[kStripsPerWarp][kFragsM][4] = {};
    if constexpr (kDeep) {
      accumulate_deep(w, h_begin, h_end, lane, acc,
                      [&](int h, uint32_t (&b)[4][kFragsM][2]) { load_acts(p, h, lane, b); });
    } else {  // rounds: kDepth half-k-tiles are loaded, then multiplied, then the next kDepth loaded
      // (written out rather than through load_steps and mma_steps: through them nvcc allocated the
      // tuned dense variants' registers differently, in one form with a spill)
      bool waited = false;
      for (int h0 = h_begin; h0 < h_end; h0 += kDepth) {
        Step steps[kDepth][kStripsPerWarp];
#pragma unroll
        for (int d = 0; d < kDepth; ++d)
#pragma unroll
          for (int j = 0; j < kStripsPerWarp; ++j)
            if (h0 + d < h_end && w.valid[j])
              load_step(w.tile_base[j] + static_cast<long long>((h0 + d) / 2) * kTileBytes, w.strip_in_tile[j],
                        (h0 + d) % 2, lane, steps[d][j]);
        if (!waited) {  // the weights above do not depend on the previous kernel; A does
          grid_dependency_wait();
          waited = true;
        }
        uint32_t b[kDepth][4][kFragsM][2];
#pragma unroll
        for (int d = 0; d < kDepth; ++d)
          if (h0 + d < h_end) load_acts(p, h0 + d, lane, b[d]);
#pragma unroll
        for (int d = 0; d < kDepth; ++d) {
          if (h0 + d >= h_end) break;
#pragma unroll
          for (int j = 0; j < kStripsPerWarp; ++j) {
            if (!w.valid[j]) continue;
#pragma unroll
            for (int ks = 0; ks < 4; ++ks) {
              const int q = ks * kHalfGroups / 4;
              uint32_t a[4];
              C::dequant(steps[d][j].codes, ks, steps[d][j].quant[q][0], steps[d][j].quant[q][1], a);
#pragma unroll
              for (int fm = 0; fm < kFragsM; ++fm) mma_16816(acc[j][fm], a, b[d][ks][fm][0], b[d][ks][fm][1]);
            }
          }
        }
      }
      if (!waited) grid_dependency_wait();
    }

    if (!add_pieces(acc, red, warp, lane, piece, group < p.strip_split, p.k_split)) return;
    const int g = lane / 4, t = lane % 4;
#pragma unroll
    for (int j = 0; j < kStripsPerWarp; ++j) {
      if (!w.valid[j]) continue;
      const int n = (block_strip0 + group + j * p.strip_split) * 16 + g;
      float top = 1.0f, bottom = 1.0f;
      if constexpr (C::kRowScales) {
        top = p.row_scales[n];
        bottom = p.row_scales[n + 8];
      }
#pragma unroll
      for (int fm = 0; fm < kFragsM; ++fm) {
        const int tok = fm * 8 + 2 * t;
        __half* c = p.c + static_cast<long long>(tok) * p.n + n;
        if (tok < p.m) {
          c[0] = __float2half_rn(scale_output<C::kRowScales>(acc[j][fm][0], top));
          c[8] = __float2half_rn(scale_output<C::kRowScales>(acc[j][fm][2], bottom));
        }
        if (tok + 1 < p.m) {
          c[p.n] = __float2half_rn(scale_output<C::kRowScales>(acc[j][fm][1], top));
          c[p.n + 8] = __float2half_rn(scale_output<C::kRowScales>(acc[j][fm][3], bottom));
        }
      }
    }
  }
};

template <int kCodec, int kWarps, int kStripsPerWarp, int kFragsM, int kDepth, int kGroupsPerTile, bool kAsym>
__global__ void __launch_bounds__(kWarps * 32, 1) tiled_gemv_kernel(const __grid_constant__ GemvParams p) {
  allow_dependent_launch();
  extern __shared__ __align__(16) float red[];
  TiledGemv<kCodec, kWarps, kStripsPerWarp, kFragsM, kDepth, kGroupsPerTile, kAsym>::run(p, red);
}

// Launches one variant (see launch_gemv in tiled_gemm_kernels.h); dynamic shared memory holds the
// partial sums.
template <int kCodec, int kWarps, int kStripsPerWarp, int kFragsM, int kDepth, int kGroupsPerTile, bool kAsym>
cudaError_t launch_gemv_variant(const GemvParams& params, int grid, bool pdl, cudaStream_t stream) {
  return launch_overlapping(pdl, tiled_gemv_kernel<kCodec, kWarps, kStripsPerWarp, kFragsM, kDepth, kGroupsPerTile, kAsym>,
                            dim3(grid), dim3(kWarps * 32), size_t(kWarps * 32 * kStripsPerWarp * kFragsM * 16), stream,
                            params);
}

}  // namespace marlin::cuda::tiled_detail
