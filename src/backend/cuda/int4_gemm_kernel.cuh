// The int4 × fp16 GEMM kernel (Hopper): C = A · Wᵀ with W in int4 tiles (backend/int4_tiles.h).
//
// Computed transposed, Cᵀ = W · Aᵀ, so the weights are the tensor cores' 16-row A operand (each
// warp dequantizes its strip of 16 rows straight into registers) and the tokens are the 8-column
// B operand: a decode step with one token wastes 7/8 of an m16n8k16 product instead of 15/16.
//
// Work: the (row block, token chunk, 128-column step) items of the problem are numbered with the
// column step fastest and cut into gridDim.x equal stripes, one per block (one block per SM), so
// every SM streams weights even when there are fewer row blocks than SMs. A stripe that covers
// only part of a row block's K range leaves a partial sum; the last of the stripes sharing an
// output tile to finish (an atomic counter) adds all partials in stripe order — deterministic —
// and writes fp16.
//
// Pipeline: one producer warp streams each step's weight tiles and activation rows into a ring of
// shared-memory stages with bulk copies (TMA) that complete on an mbarrier; the consumer warps wait
// on it, compute, and release the stage through a second mbarrier.
#pragma once

#include <cuda_fp16.h>

#include <cstdint>

#include "backend/cuda/int4_gemm_kernels.h"

namespace marlin::cuda::int4_detail {

constexpr int kTileCols = 128;
constexpr int kCodeBytes = 4096;
// Activation rows in shared memory are padded by 16 bytes so the 8 row addresses of an ldmatrix
// phase fall in distinct banks.
constexpr int kActRowBytes = kTileCols * 2 + 16;

__device__ __forceinline__ uint32_t smem_addr(const void* p) {
  return static_cast<uint32_t>(__cvta_generic_to_shared(p));
}

__device__ __forceinline__ void mbar_init(uint64_t* bar, int count) {
  asm volatile("mbarrier.init.shared::cta.b64 [%0], %1;" ::"r"(smem_addr(bar)), "r"(count));
}

__device__ __forceinline__ void mbar_expect_tx(uint64_t* bar, uint32_t bytes) {
  asm volatile("mbarrier.arrive.expect_tx.shared::cta.b64 _, [%0], %1;" ::"r"(smem_addr(bar)), "r"(bytes)
               : "memory");
}

__device__ __forceinline__ void mbar_arrive(uint64_t* bar) {
  asm volatile("mbarrier.arrive.shared::cta.b64 _, [%0];" ::"r"(smem_addr(bar)) : "memory");
}

__device__ __forceinline__ void mbar_wait(uint64_t* bar, uint32_t parity) {
  asm volatile(
      "{\n"
      ".reg .pred done;\n"
      "WAIT:\n"
      "mbarrier.try_wait.parity.shared::cta.b64 done, [%0], %1;\n"
      "@!done bra WAIT;\n"
      "}\n" ::"r"(smem_addr(bar)),
      "r"(parity)
      : "memory");
}

__device__ __forceinline__ uint64_t l2_policy(bool evict_first) {
  uint64_t policy;
  if (evict_first)
    asm volatile("createpolicy.fractional.L2::evict_first.b64 %0, 1.0;" : "=l"(policy));
  else
    asm volatile("createpolicy.fractional.L2::evict_normal.b64 %0, 1.0;" : "=l"(policy));
  return policy;
}

// Bulk copy (TMA) of `bytes` (a multiple of 16, both addresses 16-byte aligned) into this block's
// shared memory, completing on `bar`.
__device__ __forceinline__ void bulk_load(void* dst, const void* src, uint32_t bytes, uint64_t* bar,
                                          uint64_t policy) {
  asm volatile(
      "cp.async.bulk.shared::cluster.global.mbarrier::complete_tx::bytes.L2::cache_hint [%0], [%1], %2, [%3], %4;" ::
          "r"(smem_addr(dst)),
      "l"(src), "r"(bytes), "r"(smem_addr(bar)), "l"(policy)
      : "memory");
}

// 16-byte asynchronous copy into shared memory (the activations: many short rows, where one bulk
// copy per row costs far more than its bytes).
__device__ __forceinline__ void cp_async16(uint32_t dst, const void* src) {
  asm volatile("cp.async.cg.shared.global [%0], [%1], 16;" ::"r"(dst), "l"(src) : "memory");
}

// One arrival on `bar` once all of this thread's earlier cp.async copies have landed.
__device__ __forceinline__ void cp_async_arrive(uint64_t* bar) {
  asm volatile("cp.async.mbarrier.arrive.noinc.shared::cta.b64 [%0];" ::"r"(smem_addr(bar)) : "memory");
}

// Programmatic dependent launch: wait for the previous kernel's results / let the next kernel start.
__device__ __forceinline__ void grid_dependency_wait() { asm volatile("griddepcontrol.wait;" ::: "memory"); }
__device__ __forceinline__ void allow_dependent_launch() { asm volatile("griddepcontrol.launch_dependents;"); }

__device__ __forceinline__ void ldmatrix_x4(uint32_t (&r)[4], uint32_t addr) {
  asm volatile("ldmatrix.sync.aligned.m8n8.x4.shared.b16 {%0,%1,%2,%3}, [%4];"
               : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
               : "r"(addr));
}

__device__ __forceinline__ void mma_16816(float (&d)[4], const uint32_t (&a)[4], uint32_t b0, uint32_t b1) {
  asm("mma.sync.aligned.m16n8k16.row.col.f32.f16.f16.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, {%0,%1,%2,%3};"
      : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3])
      : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
}

// (a & b) | c in one instruction.
__device__ __forceinline__ uint32_t and_or(uint32_t a, uint32_t b, uint32_t c) {
  uint32_t r;
  asm("lop3.b32 %0, %1, %2, %3, 0xEA;" : "=r"(r) : "r"(a), "r"(b), "r"(c));
  return r;
}

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

// First item of block b's stripe, and the block whose stripe holds item i.
__device__ __forceinline__ long long stripe_begin(long long b, long long items) { return b * items / gridDim.x; }
__device__ __forceinline__ long long stripe_of(long long i, long long items) {
  return ((i + 1) * gridDim.x - 1) / items;
}

__device__ __forceinline__ void consumer_barrier(int threads) {
  asm volatile("bar.sync 1, %0;" ::"r"(threads) : "memory");
}

// kMath false: a diagnostic that streams and releases every stage but does no arithmetic.
template <int kRowTiles, int kFragsN, int kFragsM, int kGroupsPerTile, bool kAsym, bool kMath>
struct Int4Gemm {
  static constexpr int kStrips = 4 * kRowTiles;
  static constexpr int kWarps = kStrips / kFragsN;  // consumer warps
  static constexpr int kThreads = (kWarps + 1) * 32;
  static constexpr int kBlockRows = 64 * kRowTiles;
  static constexpr int kChunk = 8 * kFragsM;  // tokens per pass
  static constexpr int kScaleBytes = kGroupsPerTile * 128;
  static constexpr int kZeroBytes = kAsym ? kGroupsPerTile * 64 : 0;
  static constexpr int kTileBytes = kScaleBytes + kZeroBytes + kCodeBytes;
  static constexpr int kWeightBytes = kRowTiles * kTileBytes;
  static constexpr int kStageBytes = kWeightBytes + kChunk * kActRowBytes;
  static constexpr int kSlotFloats = kBlockRows * kChunk;
  static_assert(kStrips % kFragsN == 0, "strips split evenly over warps");

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
      const int slot = ring.slot;
      uint8_t* stage = smem + slot * kStageBytes;
      if (i >= prefetch) {
        mbar_wait(&empty[slot], (ring.round - 1) & 1);
        if (lane == 0) load_weights(p, stage, w, &full[slot], weight_policy);
      }
      // Activation rows: lanes 16·j .. 16·j + 15 copy row j's 256 bytes (coalesced, and
      // conflict-free into the padded rows).
      const int rows = min(kChunk, p.m - w.mc * kChunk);
      const __half* src = p.a + static_cast<long long>(w.mc * kChunk) * p.k + w.kt * kTileCols;
      const uint32_t dst = smem_addr(stage + kWeightBytes);
      for (int c = lane; c < rows * 16; c += 32)
        cp_async16(dst + (c / 16) * kActRowBytes + (c % 16) * 16, src + static_cast<long long>(c / 16) * p.k + (c % 16) * 8);
      cp_async_arrive(&full[slot]);
    }
  }

  // Stores this thread's accumulators into C (fp16), skipping tokens past m.
  static __device__ __forceinline__ void store_c(const GemmParams& p, const Item& w, int warp, int lane,
                                                 const float (&acc)[kFragsN][kFragsM][4]) {
    const int g = lane / 4, t = lane % 4;
#pragma unroll
    for (int fn = 0; fn < kFragsN; ++fn) {
      const int n = w.nb * kBlockRows + (warp * kFragsN + fn) * 16 + g;
#pragma unroll
      for (int fm = 0; fm < kFragsM; ++fm) {
        const int tok = w.mc * kChunk + fm * 8 + 2 * t;
        __half* c = p.c + static_cast<long long>(tok) * p.n + n;
        if (tok < p.m) {
          c[0] = __float2half_rn(acc[fn][fm][0]);
          c[8] = __float2half_rn(acc[fn][fm][2]);
        }
        if (tok + 1 < p.m) {
          c[p.n] = __float2half_rn(acc[fn][fm][1]);
          c[p.n + 8] = __float2half_rn(acc[fn][fm][3]);
        }
      }
    }
  }

  // Writes the output tile the block just finished: directly when its stripe covered the tile's
  // whole K range, else through the partial-sum slots (see the file comment).
  static __device__ void finish_tile(const GemmParams& p, const Item& w, long long begin, int warp, int lane,
                                     int* flag, float (&acc)[kFragsN][kFragsM][4]) {
    const long long out_tile = static_cast<long long>(w.nb) * p.m_chunks + w.mc;
    const long long first = out_tile * p.k_tiles;
    const long long b_first = stripe_of(first, p.items), b_last = stripe_of(first + p.k_tiles - 1, p.items);
    if (b_first == b_last) {
      store_c(p, w, warp, lane, acc);
      return;
    }
    // Slot 1 holds a partial of the tile a stripe ends in, slot 0 of the tile it starts in.
    const int my_slot = begin < first ? 1 : 0;
    float* mine = p.partials + (static_cast<long long>(blockIdx.x) * 2 + my_slot) * kSlotFloats;
#pragma unroll
    for (int fn = 0; fn < kFragsN; ++fn)
#pragma unroll
      for (int fm = 0; fm < kFragsM; ++fm)
        __stcg(reinterpret_cast<float4*>(mine + (((warp * kFragsN + fn) * kFragsM + fm) * 32 + lane) * 4),
               make_float4(acc[fn][fm][0], acc[fn][fm][1], acc[fn][fm][2], acc[fn][fm][3]));
    __threadfence();
    consumer_barrier(kWarps * 32);
    if (threadIdx.x == 0) {
      const int arrived = atomicAdd(&p.counters[out_tile], 1);
      *flag = arrived == int(b_last - b_first);
    }
    consumer_barrier(kWarps * 32);
    if (!*flag) return;
    __threadfence();
#pragma unroll
    for (int fn = 0; fn < kFragsN; ++fn)
#pragma unroll
      for (int fm = 0; fm < kFragsM; ++fm)
#pragma unroll
        for (int i = 0; i < 4; ++i) acc[fn][fm][i] = 0.0f;
    for (long long b = b_first; b <= b_last; ++b) {
      const int slot = stripe_begin(b, p.items) < first ? 1 : 0;
      const float* part = p.partials + (b * 2 + slot) * kSlotFloats;
#pragma unroll
      for (int fn = 0; fn < kFragsN; ++fn)
#pragma unroll
        for (int fm = 0; fm < kFragsM; ++fm) {
          const float4 v =
              __ldcg(reinterpret_cast<const float4*>(part + (((warp * kFragsN + fn) * kFragsM + fm) * 32 + lane) * 4));
          acc[fn][fm][0] += v.x;
          acc[fn][fm][1] += v.y;
          acc[fn][fm][2] += v.z;
          acc[fn][fm][3] += v.w;
        }
    }
    store_c(p, w, warp, lane, acc);
    if (threadIdx.x == 0) p.counters[out_tile] = 0;
  }

  static __device__ void consume(const GemmParams& p, const uint8_t* smem, uint64_t* full, uint64_t* empty,
                                 long long begin, long long end, int warp, int lane, int* flag) {
    const int g = lane / 4;
    float acc[kFragsN][kFragsM][4];
    // Byte offsets of this lane's strips inside a stage, and its ldmatrix row address (token
    // lane % 8, columns 8·(lane / 8) onward: four 8×8 matrices covering two k-steps).
    int tile_off[kFragsN], row_off[kFragsN];
#pragma unroll
    for (int fn = 0; fn < kFragsN; ++fn) {
      const int strip = warp * kFragsN + fn;
      tile_off[fn] = (strip / 4) * kTileBytes;
      row_off[fn] = (strip % 4) * 16 + g;
    }
    const int act_lane_off = kWeightBytes + (lane % 8) * kActRowBytes + (lane / 8) * 16;
    grid_dependency_wait();  // C, the partials and the counters may still be in use before
    Item w = decode(begin, p);
    Ring ring;
    for (long long item = begin; item < end; ++item, advance(w, p), ring.advance(p.stages)) {
      const int slot = ring.slot;
      if (item == begin || w.kt == 0) {
#pragma unroll
        for (int fn = 0; fn < kFragsN; ++fn)
#pragma unroll
          for (int fm = 0; fm < kFragsM; ++fm)
#pragma unroll
            for (int i = 0; i < 4; ++i) acc[fn][fm][i] = 0.0f;
      }
      mbar_wait(&full[slot], ring.round & 1);
      const uint8_t* stage = smem + slot * kStageBytes;
      if constexpr (kMath) compute_stage(stage, tile_off, row_off, act_lane_off, lane, acc);
      __syncwarp();
      if (lane == 0) mbar_arrive(&empty[slot]);
      if (w.kt == p.k_tiles - 1 || item == end - 1) finish_tile(p, w, begin, warp, lane, flag, acc);
    }
  }

  // The products of one stage: this warp's strips × the chunk's tokens × 128 columns.
  static __device__ __forceinline__ void compute_stage(const uint8_t* stage, const int (&tile_off)[kFragsN],
                                                       const int (&row_off)[kFragsN], int act_lane_off, int lane,
                                                       float (&acc)[kFragsN][kFragsM][4]) {
    RowQuant quant[kGroupsPerTile][kFragsN][2];
#pragma unroll
    for (int j = 0; j < kGroupsPerTile; ++j)
#pragma unroll
      for (int fn = 0; fn < kFragsN; ++fn) {
        const __half* scales = reinterpret_cast<const __half*>(stage + tile_off[fn]) + j * 64 + row_off[fn];
        const uint8_t* zeros = stage + tile_off[fn] + kScaleBytes + j * 64 + row_off[fn];
        quant[j][fn][0] = row_quant(scales[0], kAsym ? zeros[0] : 8u);
        quant[j][fn][1] = row_quant(scales[8], kAsym ? zeros[8] : 8u);
      }

    const uint32_t act_base = smem_addr(stage) + act_lane_off;
#pragma unroll
    for (int h = 0; h < 2; ++h) {
      uint4 codes[kFragsN];
#pragma unroll
      for (int fn = 0; fn < kFragsN; ++fn)
        codes[fn] = *reinterpret_cast<const uint4*>(stage + tile_off[fn] + kScaleBytes + kZeroBytes +
                                                    (row_off[fn] / 16) * 1024 + h * 512 + lane * 16);
#pragma unroll
      for (int kp = 0; kp < 2; ++kp) {
        const int ks0 = 4 * h + 2 * kp;
        uint32_t b[kFragsM][4];
#pragma unroll
        for (int fm = 0; fm < kFragsM; ++fm) ldmatrix_x4(b[fm], act_base + fm * 8 * kActRowBytes + ks0 * 32);
#pragma unroll
        for (int j = 0; j < 2; ++j) {
          const int group = (ks0 + j) * kGroupsPerTile / 8;
#pragma unroll
          for (int fn = 0; fn < kFragsN; ++fn) {
            const uint32_t word = kp == 0 ? (j == 0 ? codes[fn].x : codes[fn].y) : (j == 0 ? codes[fn].z : codes[fn].w);
            uint32_t a[4];
            dequant(word, quant[group][fn][0], quant[group][fn][1], a);
#pragma unroll
            for (int fm = 0; fm < kFragsM; ++fm) mma_16816(acc[fn][fm], a, b[fm][2 * j], b[fm][2 * j + 1]);
          }
        }
      }
    }
  }
};

template <int kRowTiles, int kFragsN, int kFragsM, int kGroupsPerTile, bool kAsym, bool kMath>
__global__ void __launch_bounds__(Int4Gemm<kRowTiles, kFragsN, kFragsM, kGroupsPerTile, kAsym, kMath>::kThreads, 1)
    int4_gemm_kernel(const __grid_constant__ GemmParams p) {
  using K = Int4Gemm<kRowTiles, kFragsN, kFragsM, kGroupsPerTile, kAsym, kMath>;
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
}

}  // namespace marlin::cuda::int4_detail
