// The experts of one sparse MLP layer on the GPU (Backend::experts and Backend::moe), first
// version: the router logits are read back to the host (one stream synchronization per sparse
// layer), tokens are routed and grouped per expert there by the CPU's rule (backend/cpu/moe.h),
// and every chosen expert runs its stacked gate|up and its down as ordinary CudaLinear products over
// the rows routed to it (gathered), its weighted outputs added to the tokens' fp32 sums in expert
// order. Steps of models with sparse layers are therefore never recorded into CUDA graphs.
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
};

class CudaExperts final : public BackendExperts {
 public:
  static std::unique_ptr<CudaExperts> upload(std::span<const ExpertWeights> experts, LinearContext& ctx);

  // out (rows × d_model, fp16) = the sparse MLP of h (rows × d_model, fp16) for router_logits
  // (rows × n_experts, fp32), as Backend::moe describes.
  void forward(const __half* h, int64_t rows, const float* router_logits, const MoeRouting& routing, __half* out,
               LinearContext& ctx, MoeScratch& scratch) const;

 private:
  std::vector<std::unique_ptr<CudaLinear>> gate_up_, down_;  // per expert: [gate | up] and down
};

}  // namespace marlin::cuda
