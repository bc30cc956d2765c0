// The sparse MLP of mixture-of-experts decoders (Mixtral, Qwen3-MoE; later DeepSeek, GLM): a
// router (a linear from d_model to one logit per expert) and the experts (SwiGLU MLPs), run as
// one Backend::moe op. Architectures with sparse layers derive from MoeDecoderModel.
#pragma once

#include <array>
#include <string>
#include <vector>

#include "model/decoder.h"

namespace marlin {

// Where one layer's sparse MLP lives in the checkpoint (Hugging Face names).
struct SparseMlpNames {
  std::string router;
  std::vector<std::array<std::string, 3>> experts;  // per expert: gate, up, down
};

struct SparseMlp {
  const StackedLinear* router = nullptr;
  const ExpertStack* experts = nullptr;
  int router_group = 0;  // the router's linear group (calibration); the experts' follow
};

class MoeDecoderModel : public DecoderModel {
 protected:
  using DecoderModel::DecoderModel;

  // Loads the router (n_experts × d_model) and the experts (config().moe.d_expert_ffn wide) of
  // layer `layer`.
  SparseMlp add_sparse_mlp(int layer, const ModelSource& source, SparseMlpNames names);
  // out (rows × d_model) = the sparse MLP of h; the router logits use activation slot
  // `logits_slot`. Reports the router's and each chosen expert's inputs to the observer.
  void sparse_mlp(const SparseMlp& mlp, Act h, Act out, int logits_slot, const LinearInputObserver* observer);
};

}  // namespace marlin
