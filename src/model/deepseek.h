// Decoders with multi-head latent attention (MLA): DeepSeek-V2 (q_proj, or q_a_proj → RMSNorm →
// q_b_proj), DeepSeek-V3 and GLM-4.7-Flash (the same attention). Pre-norm blocks of RMSNorm → MLA
// → residual, RMSNorm → SwiGLU MLP → residual; the cache keeps per token and layer only the
// normalized latent and the RoPE'd shared key (Backend::mla_store_kv, mla_attention). Only dense
// MLP layers are supported so far: a checkpoint with MoE layers is refused.
#pragma once

#include <memory>

#include "backend/backend.h"
#include "model/model.h"

namespace marlin {

std::unique_ptr<Model> load_deepseek(const ModelSource& source, std::unique_ptr<Backend> backend);

}  // namespace marlin
