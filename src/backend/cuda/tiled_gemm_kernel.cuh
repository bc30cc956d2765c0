// The weight-tile × fp16 GEMM kernel (Hopper): C = A · Wᵀ with W in weight tiles
// (backend/weight_tiles.h) of any codec (tile_codecs.cuh: int4, int8, fp8, fp4, int3, int2).
//
// Computed transposed, Cᵀ = W · Aᵀ: the weights are the tensor cores' 16-row (mma.sync) or 64-row
// (wgmma) A operand, dequantized by each warp straight into registers, and the tokens are the
// narrow B operand read from shared memory: one decode token wastes 7/8 of an m16n8k16 product
// instead of 15/16.
//
// Work: the (row block, token chunk, 128-column step) items of the problem are numbered with the
// column step fastest and cut into gridDim.x equal stripes, one per block (one block per SM), so
// every SM streams weights even when there are fewer row blocks than SMs. A stripe that covers
// only part of a row block's K range leaves a partial sum; the last of the stripes sharing an
// output tile to finish (an atomic counter) adds all partials in stripe order — deterministic —
// and writes fp16.
//
// Pipeline: one producer warp fills a ring of shared-memory stages: weight tiles by bulk copy
// (TMA, L2 evict-first when read once), activations by 16-byte cp.async; both complete on the
// stage's "full" mbarrier. Consumer warps wait on it, compute, and release the stage through its
// "empty" mbarrier. Under programmatic dependent launch the first stages' weights are requested
// before waiting for the previous kernel. Activation columns past K (the zero-weight padding of
// the last tile) are filled with zeros, never read.
//
// Activations in a stage: chunk × 128 fp16 as [chunk/8][16][8 tokens][8 values] — 16-byte rows of
// 8 k-values, 8 tokens per 128-byte core matrix, so both ldmatrix (mma.sync) and wgmma's
// no-swizzle descriptor read them without bank conflicts.
#pragma once

#include <cuda_fp16.h>

#include <cstdint>

#include "backend/cuda/pdl_launch.cuh"
#include "backend/cuda/ptx.cuh"
#include "backend/cuda/tile_codecs.cuh"
#include "backend/cuda/tiled_gemm_kernels.h"
#include "backend/cuda/wgmma.cuh"

namespace marlin::cuda::tiled_detail {

constexpr int kTileCols = 128;
constexpr int kActBytesPerToken = kTileCols * 2;

// First item of block b's stripe, and the block whose stripe holds item i.
__device__ __forceinline__ long long stripe_begin(long long b, long long items) { return b * items / gridDim.x; }
__device__ __forceinline__ long long stripe_of(long long i, long long items) {
  return ((i + 1) * gridDim.x - 1) / items;
}

__device__ __forceinline__ void consumer_barrier(int threads) {
  asm volatile("bar.sync 1, %0;" ::"r"(threads) : "memory");
}

template <int kCodec, int kRowTiles, int kFragsN, int kFragsM, int kGroupsPerTile, bool kAsym, int kPath>
struct TiledGemm {
  using C = Codec<kCodec>;
  using Quant = typename C::Quant;
  using Codes = typename C::Codes;
  static constexpr int kCodeBytes = C::kCodeBytes;
  static constexpr int kStrips = 4 * kRowTiles;
  static constexpr int kWarps = kStrips / kFragsN;  // consumer warps
  static constexpr int kThreads = (kWarps + 1) * 32;
  static constexpr int kBlockRows = 64 * kRowTiles;
  static constexpr int kChunk = 8 * kFragsM;  // tokens per pass
  static constexpr int kScaleBytes = kGroupsPerTile * 128;
  static constexpr int kZeroBytes = kAsym ? kGroupsPerTile * 64 : 0;
  static constexpr int kTileBytes = kScaleBytes + kZeroBytes + kCodeBytes;
  static constexpr int kWeightBytes = kRowTiles * kTileBytes;
  static constexpr int kStageBytes = kWeightBytes + kChunk * kActBytesPerToken;
  static constexpr int kSlotFloats = kBlockRows * kChunk;
  static_assert(kStrips % kFragsN == 0, "strips split evenly over warps");
  static_assert(kPath != kPathWgmma || kFragsN == 1, "wgmma: each warp owns one strip of its warpgroup's tile");
  static_assert(kWeightBytes % 128 == 0, "activations start 128-byte aligned");

  // Position of a work item, advanced step by step (no division in the main loop).
  struct Item {
    int nb, mc, kt;
  };
  static __device__ __forceinline__ Item decode(long long item, const GemmParams& p) {
    const long long tile = item / p.k_tiles;
    return {int(tile / p.m_chunks), int(tile % p.m_chunks), int(item % p.k_tiles)};
  }
  static __device__ __forceinline__ void advance(Item& w, const GemmParams& p) {
    if (++w.kt == p.k_tiles) {
      w.kt = 0;
      if (++w.mc == p.m_chunks) {
        w.mc = 0;
        ++w.nb;
      }
    }
  }
  // Ring position: the stage slot and the parity of its current round.
  struct Ring {
    int slot = 0;
    uint32_t round = 0;
    __device__ __forceinline__ void advance(int stages) {
      if (++slot == stages) {
        slot = 0;
        ++round;
      }
    }
  };

  static __device__ __forceinline__ void load_weights(const GemmParams& p, uint8_t* stage, const Item& w,
                                                      uint64_t* bar, uint64_t policy) {
    mbar_expect_tx(bar, kWeightBytes);
    const uint8_t* src = p.tiles + (static_cast<long long>(w.nb) * kRowTiles * p.k_tiles + w.kt) * kTileBytes;
    for (int j = 0; j < kRowTiles; ++j)
      bulk_load(stage + j * kTileBytes, src + static_cast<long long>(j) * p.k_tiles * kTileBytes, kTileBytes, bar,
                policy);
  }

  // Copies the chunk's activations for one k-step. 16-byte piece c: values 8·kc .. 8·kc + 7 of
  // token 8·tg + r with kc = 2·((c / 16) % 8) + c % 2, r = (c / 2) % 8, tg = c / 128: two lanes read
  // one 32-byte sector of a row, and a phase of 8 lanes writes at most 2-way bank conflicts. Only
  // the last k-step of a K that is not a multiple of 128 zero-fills its padding: the zero-filling
  // form of cp.async (src-size operand) made every striped variant slower when used throughout
  // (run 6: +1 µs per launch at m = 1, 2× at m = 1024).
  template <bool kPadded>
  static __device__ __forceinline__ void load_activation_pieces(const GemmParams& p, uint8_t* stage, const Item& w,
                                                                int lane) {
    const int rows = min(kChunk, p.m - w.mc * kChunk);
    const __half* src = p.a + static_cast<long long>(w.mc * kChunk) * p.k + w.kt * kTileCols;
    const uint32_t dst = smem_addr(stage + kWeightBytes);
    const int pieces = (rows + 7) / 8 * 128;
    for (int c = lane; c < pieces; c += 32) {
      const int kc = 2 * ((c >> 4) & 7) + (c & 1), r = (c >> 1) & 7, tg = c >> 7;
      const int row = 8 * tg + r;
      if (row >= rows) continue;
      const uint32_t to = dst + tg * kActGroupBytes + kc * kCoreMatrixBytes + r * 16;
      const __half* from = src + static_cast<long long>(row) * p.k + kc * 8;
      if constexpr (kPadded) {
        const bool inside_k = w.kt * kTileCols + kc * 8 < p.k;
        cp_async16_or_zero(to, inside_k ? from : p.a, inside_k);
      } else {
        cp_async16(to, from);
      }
    }
  }

  static __device__ __forceinline__ void load_activations(const GemmParams& p, uint8_t* stage, const Item& w,
                                                          int lane) {
    if ((w.kt + 1) * kTileCols <= p.k)
      load_activation_pieces<false>(p, stage, w, lane);
    else
      load_activation_pieces<true>(p, stage, w, lane);
  }

  // Stage s is full once lane 0's expect-tx arrival, the weights' bytes and all 32 lanes'
  // cp.async arrivals (activations) are in: 33 arrivals.
  static constexpr int kFullArrivals = 33;

  static __device__ void produce(const GemmParams& p, uint8_t* smem, uint64_t* full, uint64_t* empty,
                                 long long begin, long long end, int lane) {
    const uint64_t weight_policy = l2_policy(p.weights_evict_first != 0);
    const long long count = end - begin;
    const int prefetch = int(min(static_cast<long long>(p.stages), count));
    Item w = decode(begin, p);
    // Weights do not depend on earlier kernels: under programmatic dependent launch the first
    // stages' copies overlap the previous kernel's tail.
    if (lane == 0) {
      Item v = w;
      for (int i = 0; i < prefetch; ++i, advance(v, p)) load_weights(p, smem + i * kStageBytes, v, &full[i], weight_policy);
    }
    grid_dependency_wait();
    Ring ring;
    for (long long i = 0; i < count; ++i, advance(w, p), ring.advance(p.stages)) {
      uint8_t* stage = smem + ring.slot * kStageBytes;
      if (i >= prefetch) {
        mbar_wait(&empty[ring.slot], (ring.round - 1) & 1);
        if (lane == 0) load_weights(p, stage, w, &full[ring.slot], weight_policy);
      }
      load_activations(p, stage, w, lane);
      cp_async_arrive(&full[ring.slot]);
    }
  }

  using Acc = float[kFragsN][kFragsM][4];

  // Stores this thread's accumulators into C (fp16), skipping tokens past m; rows n and n + 8 times
  // their multipliers first where the codec has them.
  static __device__ __forceinline__ void store_c(const GemmParams& p, const Item& w, int warp, int lane,
                                                 const Acc& acc) {
    const int g = lane / 4, t = lane % 4;
#pragma unroll
    for (int fn = 0; fn < kFragsN; ++fn) {
      const int n = w.nb * kBlockRows + (warp * kFragsN + fn) * 16 + g;
      float top = 1.0f, bottom = 1.0f;
      if constexpr (C::kRowScales) {
        top = p.row_scales[n];
        bottom = p.row_scales[n + 8];
      }
#pragma unroll
      for (int fm = 0; fm < kFragsM; ++fm) {
        const int tok = w.mc * kChunk + fm * 8 + 2 * t;
        __half* c = p.c + static_cast<long long>(tok) * p.n + n;
        if (tok < p.m) {
          c[0] = __float2half_rn(scale_output<C::kRowScales>(acc[fn][fm][0], top));
          c[8] = __float2half_rn(scale_output<C::kRowScales>(acc[fn][fm][2], bottom));
        }
        if (tok + 1 < p.m) {
          c[p.n] = __float2half_rn(scale_output<C::kRowScales>(acc[fn][fm][1], top));
          c[p.n + 8] = __float2half_rn(scale_output<C::kRowScales>(acc[fn][fm][3], bottom));
        }
      }
    }
  }

  static __device__ __forceinline__ float* slot_of(const GemmParams& p, long long block, int slot, int warp,
                                                   int fn, int fm, int lane) {
    return p.partials + (block * 2 + slot) * kSlotFloats + (((warp * kFragsN + fn) * kFragsM + fm) * 32 + lane) * 4;
  }

  // acc += the partials of stripes [b0, b1] of the tile starting at item `first`, in stripe order.
  static __device__ __forceinline__ void add_partials(const GemmParams& p, long long b0, long long b1, long long first,
                                                      int warp, int lane, Acc& acc) {
#pragma unroll 4
    for (long long b = b0; b <= b1; ++b) {
      const int slot = stripe_begin(b, p.items) < first ? 1 : 0;
#pragma unroll
      for (int fn = 0; fn < kFragsN; ++fn)
#pragma unroll
        for (int fm = 0; fm < kFragsM; ++fm) {
          const float4 v = __ldcg(reinterpret_cast<const float4*>(slot_of(p, b, slot, warp, fn, fm, lane)));
          acc[fn][fm][0] += v.x;
          acc[fn][fm][1] += v.y;
          acc[fn][fm][2] += v.z;
          acc[fn][fm][3] += v.w;
        }
    }
  }

  // Writes the output tile the block just finished: directly when its stripe covered the tile's
  // whole K range, else through the partial-sum slots. Slot 1 of a stripe holds its partial of the
  // tile it ends in, slot 0 of the tile it starts in. The sum is always (((p_first + p_2) + p_3) …)
  // in stripe order, whichever stripe finishes last, so the result does not depend on timing.
  static __device__ void finish_tile(const GemmParams& p, const Item& w, long long begin, int warp, int lane,
                                     int* flag, Acc& acc) {
    const long long out_tile = static_cast<long long>(w.nb) * p.m_chunks + w.mc;
    const long long first = out_tile * p.k_tiles;
    const long long b_first = stripe_of(first, p.items), b_last = stripe_of(first + p.k_tiles - 1, p.items);
    if (b_first == b_last) {
      store_c(p, w, warp, lane, acc);
      return;
    }
    const int others = int(b_last - b_first);
    consumer_barrier(kWarps * 32);  // everyone has read the flag of the previous tile
    // The stripe holding the tile's first k-steps finishes them at the very end of its run, after
    // the later stripes stored theirs: then it adds those in place and skips storing its own.
    if (threadIdx.x == 0) *flag = blockIdx.x == b_first && ld_acquire(&p.counters[out_tile]) == others;
    consumer_barrier(kWarps * 32);
    if (*flag) {
      __threadfence();
      add_partials(p, b_first + 1, b_last, first, warp, lane, acc);
    } else {
      const int my_slot = begin < first ? 1 : 0;
#pragma unroll
      for (int fn = 0; fn < kFragsN; ++fn)
#pragma unroll
        for (int fm = 0; fm < kFragsM; ++fm)
          __stcg(reinterpret_cast<float4*>(slot_of(p, blockIdx.x, my_slot, warp, fn, fm, lane)),
                 make_float4(acc[fn][fm][0], acc[fn][fm][1], acc[fn][fm][2], acc[fn][fm][3]));
      __threadfence();
      consumer_barrier(kWarps * 32);
      if (threadIdx.x == 0) *flag = atomicAdd(&p.counters[out_tile], 1) == others;
      consumer_barrier(kWarps * 32);
      if (!*flag) return;
      __threadfence();
      const int slot = stripe_begin(b_first, p.items) < first ? 1 : 0;
#pragma unroll
      for (int fn = 0; fn < kFragsN; ++fn)
#pragma unroll
        for (int fm = 0; fm < kFragsM; ++fm) {
          const float4 v = __ldcg(reinterpret_cast<const float4*>(slot_of(p, b_first, slot, warp, fn, fm, lane)));
          acc[fn][fm][0] = v.x;
          acc[fn][fm][1] = v.y;
          acc[fn][fm][2] = v.z;
          acc[fn][fm][3] = v.w;
        }
      add_partials(p, b_first + 1, b_last, first, warp, lane, acc);
    }
    store_c(p, w, warp, lane, acc);
    if (threadIdx.x == 0) p.counters[out_tile] = 0;
  }

  static __device__ void consume(const GemmParams& p, const uint8_t* smem, uint64_t* full, uint64_t* empty,
                                 long long begin, long long end, int warp, int lane, int* flag) {
    const int g = lane / 4;
    Acc acc;
    // Byte offsets of this warp's strips inside a stage, and this lane's rows in the tile.
    int tile_off[kFragsN], row_off[kFragsN];
#pragma unroll
    for (int fn = 0; fn < kFragsN; ++fn) {
      const int strip = warp * kFragsN + fn;
      tile_off[fn] = (strip / 4) * kTileBytes;
      row_off[fn] = (strip % 4) * 16 + g;
    }
    grid_dependency_wait();  // C, the partials and the counters may still be in use before
    Item w = decode(begin, p);
    Ring ring;
    for (long long item = begin; item < end; ++item, advance(w, p), ring.advance(p.stages)) {
      if (item == begin || w.kt == 0) {
#pragma unroll
        for (int fn = 0; fn < kFragsN; ++fn)
#pragma unroll
          for (int fm = 0; fm < kFragsM; ++fm)
#pragma unroll
            for (int i = 0; i < 4; ++i) acc[fn][fm][i] = 0.0f;
      }
      mbar_wait(&full[ring.slot], ring.round & 1);
      const uint8_t* stage = smem + ring.slot * kStageBytes;
      if constexpr (kPath == kPathMma) mma_stage(stage, tile_off, row_off, lane, acc);
      if constexpr (kPath == kPathWgmma) wgmma_stage(stage, tile_off[0], row_off[0], lane, acc);
      __syncwarp();
      if (lane == 0) mbar_arrive(&empty[ring.slot]);
      if (w.kt == p.k_tiles - 1 || item == end - 1) finish_tile(p, w, begin, warp, lane, flag, acc);
    }
  }

  // This lane's scale and zero-point constants for every group of the stage and each of its strips
  // (rows g and g + 8).
  static __device__ __forceinline__ void load_quant(const uint8_t* stage, int tile_off, int row_off,
                                                    Quant (&quant)[kGroupsPerTile][2]) {
#pragma unroll
    for (int j = 0; j < kGroupsPerTile; ++j) {
      const __half* scales = reinterpret_cast<const __half*>(stage + tile_off) + j * 64 + row_off;
      const uint8_t* zeros = stage + tile_off + kScaleBytes + j * 64 + row_off;
      quant[j][0] = C::quant(scales[0], kAsym ? zeros[0] : C::kSymmetricZero);
      quant[j][1] = C::quant(scales[8], kAsym ? zeros[8] : C::kSymmetricZero);
    }
  }

  // This lane's codes of half h (k-steps 4h .. 4h + 3) of a strip (tile_codecs.cuh).
  static __device__ __forceinline__ Codes load_codes(const uint8_t* stage, int tile_off, int row_off, int h, int lane) {
    const uint8_t* half =
        stage + tile_off + kScaleBytes + kZeroBytes + (row_off / 16) * (kCodeBytes / 4) + h * (kCodeBytes / 8);
    return C::load(half, lane, SharedLoad{});
  }

  // mma.sync: this warp's strips × the chunk's tokens × 128 columns.
  static __device__ __forceinline__ void mma_stage(const uint8_t* stage, const int (&tile_off)[kFragsN],
                                                   const int (&row_off)[kFragsN], int lane, Acc& acc) {
    Quant quant[kFragsN][kGroupsPerTile][2];
#pragma unroll
    for (int fn = 0; fn < kFragsN; ++fn) load_quant(stage, tile_off[fn], row_off[fn], quant[fn]);
    // ldmatrix.x4 of token group fm and k-steps ks, ks + 1: lane l addresses row l % 8 of core
    // matrix 2·ks + l / 8, i.e. 512 contiguous bytes.
    const uint32_t act = smem_addr(stage + kWeightBytes) + lane * 16;
#pragma unroll
    for (int h = 0; h < 2; ++h) {
      Codes codes[kFragsN];
#pragma unroll
      for (int fn = 0; fn < kFragsN; ++fn) codes[fn] = load_codes(stage, tile_off[fn], row_off[fn], h, lane);
#pragma unroll
      for (int kp = 0; kp < 2; ++kp) {
        const int ks0 = 4 * h + 2 * kp;
        uint32_t b[kFragsM][4];
#pragma unroll
        for (int fm = 0; fm < kFragsM; ++fm) ldmatrix_x4(b[fm], act + fm * kActGroupBytes + ks0 * 2 * kCoreMatrixBytes);
#pragma unroll
        for (int j = 0; j < 2; ++j) {
          const int group = (ks0 + j) * kGroupsPerTile / 8;
#pragma unroll
          for (int fn = 0; fn < kFragsN; ++fn) {
            uint32_t a[4];
            C::dequant(codes[fn], 2 * kp + j, quant[fn][group][0], quant[fn][group][1], a);
#pragma unroll
            for (int fm = 0; fm < kFragsM; ++fm) mma_16816(acc[fn][fm], a, b[fm][2 * j], b[fm][2 * j + 1]);
          }
        }
      }
    }
  }

  // wgmma: the warpgroup's 64-row tile × the chunk's tokens × 128 columns. All 8 k-steps are
  // dequantized first (the registers stay untouched while the asynchronous products read them),
  // then issued as one group; the other warpgroup's dequantization overlaps this one's products.
  static __device__ __forceinline__ void wgmma_stage(const uint8_t* stage, int tile_off, int row_off, int lane,
                                                     Acc& acc) {
    Quant quant[kGroupsPerTile][2];
    load_quant(stage, tile_off, row_off, quant);
    uint32_t a[8][4];
#pragma unroll
    for (int h = 0; h < 2; ++h) {
      const Codes codes = load_codes(stage, tile_off, row_off, h, lane);
#pragma unroll
      for (int i = 0; i < 4; ++i) {
        const int ks = 4 * h + i, group = ks * kGroupsPerTile / 8;
        C::dequant(codes, i, quant[group][0], quant[group][1], a[ks]);
      }
    }
    fence_proxy_async_shared();  // the activations arrived through cp.async
    const uint32_t act = smem_addr(stage + kWeightBytes);
    float(&d)[kFragsM * 4] = reinterpret_cast<float(&)[kFragsM * 4]>(acc[0]);
    fence_registers(d);
    fence_registers(a);
    wgmma_fence();
#pragma unroll
    for (int ks = 0; ks < 8; ++ks) wgmma_f16<kChunk>(d, a[ks], wgmma_desc(act + ks * 2 * kCoreMatrixBytes));
    wgmma_commit();
    wgmma_wait_all();
    fence_registers(d);
    fence_registers(a);
  }
};

template <int kCodec, int kRowTiles, int kFragsN, int kFragsM, int kGroupsPerTile, bool kAsym, int kPath>
__global__ void __launch_bounds__(TiledGemm<kCodec, kRowTiles, kFragsN, kFragsM, kGroupsPerTile, kAsym, kPath>::kThreads, 1)
    tiled_gemm_kernel(const __grid_constant__ GemmParams p) {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ < 900
  __trap();  // TMA, mbarrier transactions and wgmma need sm_90; tiled_gemm_supported() keeps older GPUs away
#else
  using K = TiledGemm<kCodec, kRowTiles, kFragsN, kFragsM, kGroupsPerTile, kAsym, kPath>;
  allow_dependent_launch();
  extern __shared__ __align__(128) uint8_t smem[];
  uint64_t* full = reinterpret_cast<uint64_t*>(smem + p.stages * K::kStageBytes);
  uint64_t* empty = full + p.stages;
  int* flag = reinterpret_cast<int*>(empty + p.stages);
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
  if (threadIdx.x == 0) {
    for (int s = 0; s < p.stages; ++s) {
      mbar_init(&full[s], K::kFullArrivals);
      mbar_init(&empty[s], K::kWarps);
    }
    asm volatile("fence.mbarrier_init.release.cluster;" ::: "memory");
  }
  __syncthreads();
  const long long begin = stripe_begin(blockIdx.x, p.items), end = stripe_begin(blockIdx.x + 1, p.items);
  if (warp == K::kWarps)
    K::produce(p, smem, full, empty, begin, end, lane);
  else
    K::consume(p, smem, full, empty, begin, end, warp, lane, flag);
#endif
}

// Launches one variant (see launch_gemm in tiled_gemm_kernels.h).
template <int kCodec, int kRowTiles, int kFragsN, int kFragsM, int kGroupsPerTile, bool kAsym, int kPath>
cudaError_t launch_gemm_variant(const GemmParams& params, int grid, int smem, bool pdl, cudaStream_t stream) {
  auto* kernel = tiled_gemm_kernel<kCodec, kRowTiles, kFragsN, kFragsM, kGroupsPerTile, kAsym, kPath>;
  // Raising the dynamic shared-memory limit is cheap; doing it on every launch keeps this
  // thread-safe and correct on every device.
  cudaError_t err = cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, smem);
  if (err != cudaSuccess) return err;
  return launch_overlapping(pdl, kernel, dim3(grid),
                            dim3(TiledGemm<kCodec, kRowTiles, kFragsN, kFragsM, kGroupsPerTile, kAsym, kPath>::kThreads),
                            size_t(smem), stream, params);
}

}  // namespace marlin::cuda::tiled_detail
