// A sparse MLP's whole decode step in one launch (tiled_routed_gemv.h's MoeDecodeParams): the
// routing, every slot's gate|up product and SwiGLU, its down product, and each token's weighted sum
// of its slots.
//
// Each slot has `blocks_per_slot` blocks, and block j of a slot owns a j-th share of the gate rows
// with the matching up rows (so it finishes SwiGLU of its share itself) and a j-th share of the
// down rows. The down product of a slot needs every share of its SwiGLU output: a block publishes
// its share (threadfence, then one count on the slot's counter) and waits for the slot's count
// before multiplying its down rows. That wait needs every block of the launch resident at once,
// which the host guarantees (a grid no larger than the device holds; a wait that outlasts any real
// step traps rather than hangs). The last of a token's blocks with the same share j sums that
// share over the token's slots. The last block of the launch to finish resets the slot counters for
// the next launch (a graph replays the same counters); the sums' counters reset themselves.
//
// Where a block's shares of both products fit in its shared memory (one token of Qwen3-30B-A3B
// or GLM-4.7-Flash), it requests them whole with bulk copies as soon as it knows its expert; else
// its warps stream them through registers a few half-k-tiles deep, as the routed kernel does.
//
// Timed inside the kernel (%globaltimer per phase, Qwen3-30B-A3B's shape, one token, H200):
// routing 3.5 µs; staged, the copies 4.4 and gate|up from shared memory 4.3 (streamed: gate|up
// 7.2); SwiGLU and publishing 1.0; the wait 0.6-0.8; down 2.5 (streamed 4.3). Products from
// shared memory are bound by the decode's instructions at one block of 16 warps per SM. Reading
// each half-k-tile's activations from global memory just before its products (as the routed
// kernel does) had made gate|up 11.9 µs and down 7.1 on an H100: a block stages its row in shared
// memory first. An L2 prefetch of the down weights saved 0.7 µs of down but cost 1.6 of gate|up
// (H100); copying with cp.async rather than bulk copies took 0.9 µs longer, and starting gate|up on
// the first quarter of K to arrive (a barrier per quarter) made a layer 3.7 µs slower (H200;
// docs/models.md, "One launch per sparse layer at decode").
#pragma once

#include "backend/cuda/group_counters.cuh"
#include "backend/cuda/moe_route.cuh"
#include "backend/cuda/slot_math.cuh"
#include "backend/cuda/tiled_gemv_kernel.cuh"
#include "backend/cuda/tiled_routed_gemv.h"

namespace marlin::cuda::tiled_detail {

// Strips [first, first + count) of `strips`, cut into `parts` near-equal shares: share j.
struct Share {
  int first, count;
  __device__ Share(int strips, int parts, int j)
      : first(j * strips / parts), count((j + 1) * strips / parts - j * strips / parts) {}
};

template <int kCodec, int kWarps, int kDepth, int kGroupsPerTile, bool kAsym>
struct MoeDecode {
  using Gemv = TiledGemv<kCodec, kWarps, 1, 1, kDepth, kGroupsPerTile, kAsym>;
  using C = typename Gemv::C;

  // A strip's part of one tile in a staged image: its codes (both half-k-tiles), its 16 rows'
  // scales of each group, their zero points.
  static constexpr int kStripCodeBytes = C::kCodeBytes / 4;
  static constexpr int kStripBytes = Gemv::kTileBytes / 4;

  // Copies strips strip_of(l), l < count, of q's weights (every tile of each) into `image`
  // (kStripBytes per strip and tile, strip-major) with bulk copies (TMA) completing on `bar`: per
  // strip and tile its codes, then each group's scales and zero points, one run each.
  template <typename StripOf>
  static __device__ __forceinline__ void stage(const GemvParams& q, int count, StripOf strip_of, uint8_t* image,
                                               uint64_t* bar) {
#if __CUDA_ARCH__ >= 900
    constexpr int kRuns = 1 + kGroupsPerTile * (kAsym ? 2 : 1);
    const uint64_t policy = l2_policy(true);
    const int total = count * q.k_tiles * kRuns;
    for (int c = threadIdx.x; c < total; c += blockDim.x) {
      const int run = c % kRuns, t = c / kRuns % q.k_tiles, l = c / kRuns / q.k_tiles;
      const int strip = strip_of(l), s = strip % 4;
      const uint8_t* tile = q.tiles + (static_cast<long long>(strip / 4) * q.k_tiles + t) * Gemv::kTileBytes;
      uint8_t* to = image + (static_cast<long long>(l) * q.k_tiles + t) * kStripBytes;
      if (run == 0)
        bulk_load(to, tile + Gemv::kScaleBytes + Gemv::kZeroBytes + s * kStripCodeBytes, kStripCodeBytes, bar, policy);
      else if (run <= kGroupsPerTile)
        bulk_load(to + kStripCodeBytes + (run - 1) * 32, tile + ((run - 1) * 64 + s * 16) * 2, 32, bar, policy);
      else
        bulk_load(to + kStripCodeBytes + kGroupsPerTile * 32 + (run - 1 - kGroupsPerTile) * 16,
                  tile + Gemv::kScaleBytes + (run - 1 - kGroupsPerTile) * 64 + s * 16, 16, bar, policy);
    }
#endif
  }

  // Half-k-tile h of staged strip l, as TiledGemv::load_step reads it from global memory.
  static __device__ __forceinline__ void load_staged(const uint8_t* image, int k_tiles, int l, int h, int lane,
                                                     typename Gemv::Step& step) {
    const uint8_t* part = image + (static_cast<long long>(l) * k_tiles + h / 2) * kStripBytes;
    step.codes = C::load(part + h % 2 * (kStripCodeBytes / 2), lane, SharedLoad{});
    const int row = lane / 4;
#pragma unroll
    for (int j = 0; j < Gemv::kHalfGroups; ++j) {
      const int group = h % 2 * kGroupsPerTile / 2 + j;
      const __half* scales = reinterpret_cast<const __half*>(part + kStripCodeBytes) + group * 16 + row;
      const uint8_t* zeros = part + kStripCodeBytes + kGroupsPerTile * 32 + group * 16 + row;
      step.quant[j][0] = C::quant(scales[0], kAsym ? zeros[0] : C::kSymmetricZero);
      step.quant[j][1] = C::quant(scales[8], kAsym ? zeros[8] : C::kSymmetricZero);
    }
  }

  // One token's row (`act`, q.k values in shared memory) times `count` strips of q's weights,
  // strip_of(l) for l < count, in passes of up to kWarps strips (each pass's warps split K as
  // TiledGemv::run's do); store(l, r, v) gets row r < 16 of strip l. Every thread calls it. The
  // weights come from `image` where they were staged there, else straight from global memory.
  // (The activations come from shared memory: read from global memory just before each
  // half-k-tile's products, as the routed kernel does, their latency was most of a step.)
  template <typename StripOf, typename Store>
  static __device__ __forceinline__ void product(const GemvParams& q, const __half* act, const uint8_t* image,
                                                 int count, StripOf strip_of, float* red, Store store) {
    const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
    const int halves = q.k / 64;
    // B fragments of token 0 (lanes 0-3); the other rows of the fragment are zero.
    const uint32_t* row = reinterpret_cast<const uint32_t*>(act) + lane % 4;
    const auto load_acts = [&](int h, uint32_t (&b)[4][1][2]) {
#pragma unroll
      for (int ks = 0; ks < 4; ++ks) {
        b[ks][0][0] = lane < 4 ? row[h * 32 + ks * 8] : 0u;
        b[ks][0][1] = lane < 4 ? row[h * 32 + ks * 8 + 4] : 0u;
      }
    };
    for (int pass = 0; pass < count; pass += kWarps) {
      const int here = min(kWarps, count - pass), k_split = kWarps / here;
      const int group = warp / k_split, piece = warp % k_split;
      const int h_begin = piece * halves / k_split, h_end = (piece + 1) * halves / k_split;
      typename Gemv::Strips w;
      w.valid[0] = group < here;
      const int strip = w.valid[0] ? strip_of(pass + group) : 0;
      w.tile_base[0] = q.tiles + static_cast<long long>(strip / 4) * q.k_tiles * Gemv::kTileBytes;
      w.strip_in_tile[0] = strip % 4;
      float acc[1][1][4] = {};
      if (!image) {
        Gemv::accumulate_deep(w, h_begin, h_end, lane, acc, load_acts);
      } else if (w.valid[0]) {
#pragma unroll 2
        for (int h = h_begin; h < h_end; ++h) {
          typename Gemv::Step step[1];
          uint32_t b[4][1][2];
          load_staged(image, q.k_tiles, pass + group, h, lane, step[0]);
          load_acts(h, b);
          Gemv::mma_steps(w, step, b, acc);
        }
      }
      if (Gemv::add_pieces(acc, red, warp, lane, piece, w.valid[0], k_split) && lane % 4 == 0) {
        const int r = lane / 4;  // fragment rows r and r + 8 of token 0
        float top = 1.0f, bottom = 1.0f;
        if constexpr (C::kRowScales) {
          top = q.row_scales[strip * 16 + r];
          bottom = q.row_scales[strip * 16 + r + 8];
        }
        store(pass + group, r, scale_output<C::kRowScales>(acc[0][0][0], top));
        store(pass + group, r + 8, scale_output<C::kRowScales>(acc[0][0][2], bottom));
      }
      __syncthreads();  // red is reused by the next pass; the stores are read after the last
    }
  }

  static __device__ void run(const MoeDecodeParams& p, float* red) {
    const int slot = blockIdx.x / p.blocks_per_slot, part = blockIdx.x % p.blocks_per_slot;
    const int token = slot / p.slot_div;
    __shared__ RouteScratch scratch;
    __shared__ int32_t slot_ids[32];
    __shared__ float slot_weights[32];
    __shared__ const uint8_t* tables[2][kMaxExperts];
    // The expert tables do not change between launches: read before the previous kernel ends.
    for (int e = threadIdx.x; e < p.n_experts; e += blockDim.x) {
      tables[0][e] = p.gate_up_tiles[e];
      tables[1][e] = p.down_tiles[e];
    }
    __half* act = reinterpret_cast<__half*>(red + kWarps * 32 * Gemv::kRedFloats);  // a token's row
    grid_dependency_wait();  // the router's logits and the activations
    if (threadIdx.x < 32) {
      int32_t id;
      float weight;
      route_token(p.route_logits + static_cast<long long>(token) * p.route.n_experts, p.route_bias, p.route,
                  scratch, threadIdx.x, id, weight);
      if (threadIdx.x < p.slot_div) slot_ids[threadIdx.x] = id, slot_weights[threadIdx.x] = weight;
    } else {  // the other warps stage the token's row meanwhile
      const uint4* h = reinterpret_cast<const uint4*>(p.h + static_cast<long long>(token) * p.d_model);
      for (int c = threadIdx.x - 32; c < p.d_model / 8; c += blockDim.x - 32) reinterpret_cast<uint4*>(act)[c] = h[c];
    }
    __syncthreads();
    const int expert = slot_ids[slot % p.slot_div];
    const uint8_t* gate_up = tables[0][expert];
    const uint8_t* down = tables[1][expert];
    const int ffn_strips = p.d_ffn / 16, model_strips = p.d_model / 16;
    const Share mine(ffn_strips, p.blocks_per_slot, part), out(model_strips, p.blocks_per_slot, part);

    // The share's gate strips, then the matching up strips (ffn_strips further on); its down strips.
    const auto gate_up_strip = [&](int l) {
      return l < mine.count ? mine.first + l : ffn_strips + mine.first + l - mine.count;
    };
    const auto down_strip = [&](int l) { return out.first + l; };
    GemvParams q{}, qd{};
    q.tiles = gate_up;
    q.m = 1;
    q.n = 2 * p.d_ffn;
    q.k = p.d_model;
    q.k_tiles = p.gate_up_k_tiles;
    if constexpr (C::kRowScales) q.row_scales = reinterpret_cast<const float*>(gate_up + p.gate_up_tiles_bytes);
    qd.tiles = down;
    qd.m = 1;
    qd.n = p.d_model;
    qd.k = p.d_ffn;
    qd.k_tiles = p.down_k_tiles;
    if constexpr (C::kRowScales) qd.row_scales = reinterpret_cast<const float*>(down + p.down_tiles_bytes);
    // Staged: every byte of both shares is requested at once, so the weights arrive at the memory's
    // rate rather than a few rounds of registers at a time.
    uint8_t* gate_up_image = nullptr;
    uint8_t* down_image = nullptr;
#if __CUDA_ARCH__ >= 900
    __shared__ uint64_t arrived[2];  // the staged gate|up and down weights
    if (p.staged_offset) {
      gate_up_image = reinterpret_cast<uint8_t*>(red) + p.staged_offset;
      down_image = gate_up_image + 2 * mine.count * q.k_tiles * kStripBytes;
      if (threadIdx.x == 0) {
        mbar_init(&arrived[0], 1);
        mbar_init(&arrived[1], 1);
        asm volatile("fence.mbarrier_init.release.cluster;" ::: "memory");
        mbar_expect_tx(&arrived[0], uint32_t(2 * mine.count * q.k_tiles * kStripBytes));
        mbar_expect_tx(&arrived[1], uint32_t(out.count * qd.k_tiles * kStripBytes));
      }
      __syncthreads();
      stage(q, 2 * mine.count, gate_up_strip, gate_up_image, &arrived[0]);
      stage(qd, out.count, down_strip, down_image, &arrived[1]);
      mbar_wait(&arrived[0], 0);
    }
#endif

    // gate|up rounded to fp16 as a routed product would store it, then SwiGLU of the share.
    __half* gated = act + max(p.d_model, p.d_ffn);
    product(q, act, gate_up_image, 2 * mine.count, gate_up_strip, red,
            [&](int l, int r, float v) { gated[l * 16 + r] = __float2half_rn(v); });
    __half* hidden = p.hidden + static_cast<long long>(slot) * p.d_ffn + mine.first * 16;
    const uint4* gate_chunks = reinterpret_cast<const uint4*>(gated);
    for (int c = threadIdx.x; c < mine.count * 2; c += blockDim.x)  // 8 values a chunk
      reinterpret_cast<uint4*>(hidden)[c] = gated_chunk<Silu>(gate_chunks[c], gate_chunks[mine.count * 2 + c]);
    __threadfence();
    __syncthreads();
    if (threadIdx.x == 0) atomicAdd(p.counters + slot, 1);

    // down: the share's rows of this slot's output, once every share of its SwiGLU is written.
    wait_for_count(p.counters + slot, p.blocks_per_slot);
    const uint4* slot_hidden = reinterpret_cast<const uint4*>(p.hidden + static_cast<long long>(slot) * p.d_ffn);
    for (int c = threadIdx.x; c < p.d_ffn / 8; c += blockDim.x)  // through L2: other blocks wrote it
      reinterpret_cast<uint4*>(act)[c] = __ldcg(slot_hidden + c);
#if __CUDA_ARCH__ >= 900
    if (p.staged_offset) mbar_wait(&arrived[1], 0);
#endif
    __syncthreads();
    __half* y = p.y + static_cast<long long>(slot) * p.d_model + out.first * 16;
    product(qd, act, down_image, out.count, down_strip, red,
            [&](int l, int r, float v) { y[l * 16 + r] = __float2half_rn(v); });

    // The token's weighted sum of its slots over the share, by the last of its slots' blocks.
    int* sum_counter = p.counters + p.slots + token * p.blocks_per_slot + part;
    if (last_of_group(sum_counter, p.slot_div)) {
      const long long first = static_cast<long long>(token) * p.slot_div * p.d_model + out.first * 16;
      __half* sum = p.out + static_cast<long long>(token) * p.d_model + out.first * 16;
      for (int c = threadIdx.x; c < out.count * 16; c += blockDim.x)
        sum[c] = weighted_slot_sum(p.y + first + c, slot_weights, p.slot_div, p.d_model,
                                   [](const __half* v) { return __ldcg(v); });
    }
    // The last block of the launch: every wait is over, so the slot counters go back to zero.
    if (last_of_group(p.counters + p.slots + p.rows * p.blocks_per_slot, gridDim.x))
      for (int s = threadIdx.x; s < p.slots; s += blockDim.x) p.counters[s] = 0;
  }
};

template <int kCodec, int kWarps, int kStripsPerWarp, int kFragsM, int kDepth, int kGroupsPerTile, bool kAsym>
__global__ void __launch_bounds__(kWarps * 32, 1) moe_decode_kernel(const __grid_constant__ MoeDecodeParams p) {
  allow_dependent_launch();
  extern __shared__ __align__(16) float red[];
  MoeDecode<kCodec, kWarps, kDepth, kGroupsPerTile, kAsym>::run(p, red);
}

template <int kCodec, int kWarps, int kStripsPerWarp, int kFragsM, int kDepth, int kGroupsPerTile, bool kAsym>
cudaError_t launch_moe_decode_variant(const MoeDecodeParams& params, int grid, size_t smem, cudaStream_t stream) {
  return launch_overlapping(true, moe_decode_kernel<kCodec, kWarps, kStripsPerWarp, kFragsM, kDepth, kGroupsPerTile, kAsym>,
                            dim3(grid), dim3(kWarps * 32), smem, stream, params);
}

template <int kCodec, int kWarps, int kStripsPerWarp, int kFragsM, int kDepth, int kGroupsPerTile, bool kAsym>
cudaError_t moe_decode_variant_limits(int* max_smem, int* blocks_per_sm) {
  const auto kernel = moe_decode_kernel<kCodec, kWarps, kStripsPerWarp, kFragsM, kDepth, kGroupsPerTile, kAsym>;
  int device = 0, optin = 0;
  cudaFuncAttributes attributes{};
  cudaError_t err = cudaGetDevice(&device);
  if (err == cudaSuccess) err = cudaDeviceGetAttribute(&optin, cudaDevAttrMaxSharedMemoryPerBlockOptin, device);
  if (err == cudaSuccess) err = cudaFuncGetAttributes(&attributes, kernel);
  if (err != cudaSuccess) return err;
  *max_smem = optin - int(attributes.sharedSizeBytes);
  err = cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, *max_smem);
  if (err != cudaSuccess) return err;
  return cudaOccupancyMaxActiveBlocksPerMultiprocessor(blocks_per_sm, kernel, kWarps * 32, size_t(*max_smem));
}

}  // namespace marlin::cuda::tiled_detail
