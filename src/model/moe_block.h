// The sparse MLP of mixture-of-experts decoders (Mixtral, Qwen3-MoE, DeepSeek-V2/V3, GLM-4.7-Flash):
// a router (a linear from d_model to one logit per routed expert), optionally the router's score
// bias, and the experts (SwiGLU MLPs) — the routed ones, then any shared ones of the same width —
// run as one Backend::moe op. Architectures with sparse layers derive from MoeDecoderModel.
#pragma once

#include <array>
#include <string>
#include <vector>

#include "model/decoder.h"

namespace marlin {

// Where one layer's sparse MLP lives in the checkpoint (Hugging Face names).
struct SparseMlpNames {
  std::string router;
  // Per expert: gate, up, down. The config's moe.n_experts routed experts, then its
  // moe.routing.n_shared shared ones.
  std::vector<std::array<std::string, 3>> experts;
  // The router's score bias (n_experts values; e_score_correction_bias) when the config's
  // moe.score_bias is set, else empty.
  std::string score_bias;
};

struct SparseMlp {
  const StackedLinear* router = nullptr;
  const ExpertStack* experts = nullptr;
  int router_group = 0;  // the router's linear group (calibration); the experts' follow
};

class MoeDecoderModel : public DecoderModel {
 protected:
  using DecoderModel::DecoderModel;

  // Loads the router (n_experts × d_model), its score bias and the experts (config().moe.d_expert_ffn
  // wide) of layer `layer`.
  SparseMlp add_sparse_mlp(int layer, const ModelSource& source, SparseMlpNames names);
  // out (rows × d_model) = the sparse MLP of h; the router logits use activation slot
  // `logits_slot`. Reports the router's and each chosen expert's inputs to the observer (shared
  // experts: every row).
  void sparse_mlp(const SparseMlp& mlp, Act h, Act out, int logits_slot, const LinearInputObserver* observer);
};

}  // namespace marlin
