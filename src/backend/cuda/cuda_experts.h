// The experts of one sparse MLP layer on the GPU (Backend::experts and Backend::moe). Three paths:
//  - device-routed, for steps of at most kDeviceRows tokens (decode): the router's top-k on the
//    GPU (moe_route), then one routed product for all (token, expert) slots of the stacked
//    gate|up (routed_gemv on tiles, routed_dense_gemv on fp16 experts), SwiGLU, one routed product
//    of the downs, and each token's weighted sum of its slots (combine_slots; on tiles, the
//    routing is the gate|up product's prologue where that launch fits one wave of blocks, and
//    SwiGLU and the sum are the products' epilogues: two or three launches a layer;
//    MARLIN_MOE_FUSED=0 at upload keeps them in launches of their own, with the same bits). Where
//    the step's slots are no more than the blocks the device holds at once, all of it is one
//    launch instead (tiled_gemm.h's moe_decode; MARLIN_MOE_ONE_LAUNCH=0 at upload keeps the two
//    launches) — no host synchronization, so these steps can be recorded into CUDA graphs. Each
//    slot reads its expert's weights, so an expert chosen by several tokens of a step is read
//    several times.
//  - grouped, for longer steps (prompts) of tiled experts: moe_route, the slots grouped by expert
//    on the device (group_slots), one grouped GEMM of every expert's gate|up over its tokens'
//    rows (gathered as the kernel loads them), silu_mul over all slots, one grouped GEMM of the
//    downs writing each slot's output back in slot order, and combine_slots: six launches per
//    layer whatever the number of experts, and no host synchronization. Where the experts average
//    many rows the GEMMs take chunks of 64 positions with wgmma, else 32 with mma.sync
//    (grouped_gemm_chunk; MARLIN_MOE_WGMMA=0 or 1 at upload keeps 32 or 64).
//  - host-routed, for longer steps of experts the grouped kernel does not take (fp16, int3, int2,
//    mixed formats): the router logits are read back (one stream synchronization per sparse
//    layer), tokens are routed and grouped per expert on the host by backend/cpu/moe.h's rule, and
//    every chosen expert runs its gate|up and down as CudaLinear products over the rows routed to
//    it (gathered), its weighted outputs added to the tokens' fp32 sums in expert order.
#pragma once

#include <cuda_fp16.h>

#include <memory>
#include <span>
#include <vector>

#include "backend/backend.h"
#include "backend/cuda/cuda_linear.h"
#include "backend/cuda/device_memory.h"

namespace marlin::cuda {

// Device scratch of the sparse MLPs of one backend, grown on demand (outside graphs only).
struct MoeScratch {
  std::vector<float> host_logits;
  std::vector<int32_t> host_rows;   // per chosen (token, expert): the token, grouped by expert
  std::vector<float> host_weights;  // and its weight
  DeviceArray<int32_t> rows;
  DeviceArray<float> weights, sums;
  DeviceArray<__half> x, gate_up, hidden, y;
  // The device-routed path's (token, expert) slots: ids, weights, and their products; counters
  // for the routed products' epilogues (tiled_gemm.h's RoutedEpilogue) and the one-launch decode
  // step (moe_decode), zero between launches.
  DeviceArray<int32_t> slot_ids, slot_counters, one_launch_counters;
  DeviceArray<float> slot_weights;
  DeviceArray<__half> slot_gate_up, slot_hidden, slot_y;
  // The grouped path's order of the slots by expert, and its expert and chunk offsets.
  DeviceArray<int32_t> group_order, group_offsets;
};

class CudaExperts final : public BackendExperts {
 public:
  // The most tokens of a step that takes the device-routed path (at most 32 experts each).
  static constexpr int64_t kDeviceRows = 8;
  static constexpr int kMaxTopK = 32;

  // experts: the routed ones, then the shared ones; score_bias: one per routed expert, or empty.
  static std::unique_ptr<CudaExperts> upload(std::span<const ExpertWeights> experts, std::span<const float> score_bias,
                                             LinearContext& ctx);
  // Whether steps of `rows` tokens avoid the host (and may be recorded into graphs).
  bool device_routed(int64_t rows) const { return device_routable_ && rows <= kDeviceRows; }
  // Whether a device-routed step of `slots` (token, expert) slots runs in one launch (moe_decode).
  bool one_launch(int slots) const { return slots <= one_launch_.resident_blocks; }
  // Whether longer steps take the grouped path (else the host-routed one).
  bool grouped() const { return grouped_; }
  // Whether longer steps may take wide chunks (grouped_gemm_chunk).
  bool wide_chunks() const { return chunks_ != ChunkChoice::kNarrow; }
  int64_t score_bias_size() const { return int64_t(host_score_bias_.size()); }

  // out (rows × d_model, fp16) = the sparse MLP of h (rows × d_model, fp16) for router_logits
  // (rows × n_experts, fp32), as Backend::moe describes.
  void forward(const __half* h, int64_t rows, const float* router_logits, const MoeRouting& routing, __half* out,
               LinearContext& ctx, MoeScratch& scratch) const;

 private:
  void forward_on_device(const __half* h, int64_t rows, const float* router_logits, const MoeRouting& routing,
                         __half* out, LinearContext& ctx, MoeScratch& scratch) const;
  void forward_grouped(const __half* h, int64_t rows, const float* router_logits, const MoeRouting& routing,
                       __half* out, LinearContext& ctx, MoeScratch& scratch) const;
  void forward_on_host(const __half* h, int64_t rows, const float* router_logits, const MoeRouting& routing,
                       __half* out, LinearContext& ctx, MoeScratch& scratch) const;
  // One routed product over `slots` slots (tiles or fp16, by what the experts hold).
  void routed_product(const DeviceArray<const void*>& table, const CudaLinear& first, const int32_t* ids, int slots,
                      int slot_div, const __half* a, __half* c, LinearContext& ctx) const;

  std::vector<float> host_score_bias_;  // the router's correction bias (host-routed steps), or empty
  DeviceArray<float> score_bias_;       // and on the device
  std::vector<std::unique_ptr<CudaLinear>> gate_up_, down_;  // per expert: [gate | up] and down
  // Device tables of every expert's weights (tile or fp16 pointers) for the routed products.
  DeviceArray<const void*> gate_up_table_, down_table_;
  bool device_routable_ = false;
  bool grouped_ = false;
  bool fused_decode_ = false;  // tiled experts: decode steps in two or three launches (see the top)
  // The one-launch decode step's limits (moe_decode): its blocks the device holds at once (its
  // most slots), 0 where it does not take these experts or is off (MARLIN_MOE_ONE_LAUNCH=0 at
  // upload).
  MoeDecodeLimits one_launch_;
  ChunkChoice chunks_ = ChunkChoice::kPick;  // grouped steps' chunk widths (grouped_gemm_chunk)
};

}  // namespace marlin::cuda
