// Decoders with multi-head latent attention (MLA): DeepSeek-V2 (q_proj, or q_a_proj → RMSNorm →
// q_b_proj), DeepSeek-V3 and GLM-4.7-Flash (the same attention). Pre-norm blocks of RMSNorm → MLA
// → residual, RMSNorm → SwiGLU MLP → residual; the cache keeps per token and layer only the
// normalized latent and the RoPE'd shared key (Backend::mla_store_kv, mla_attention). Sparse
// layers (ModelConfig::moe) replace the MLP by a router over the routed experts
// ("mlp.gate.weight", with "mlp.gate.e_score_correction_bias" when moe.score_bias), the experts
// "mlp.experts.E.{gate,up,down}_proj.weight" and the shared experts
// "mlp.shared_experts.{gate,up,down}_proj.weight": one expert wide (n_shared_experts = 1), they
// run inside the moe op as routing.n_shared = 1; wider, as a dense SwiGLU MLP beside it.
#pragma once

#include <memory>

#include "backend/backend.h"
#include "model/model.h"

namespace marlin {

std::unique_ptr<Model> load_deepseek(const ModelSource& source, std::unique_ptr<Backend> backend);

}  // namespace marlin
