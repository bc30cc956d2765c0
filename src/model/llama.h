// The Llama family decoder (Llama 1/2/3, SmolLM, Mistral-style GQA, Qwen3): pre-norm blocks of
// RMSNorm → attention with RoPE → residual, RMSNorm → SwiGLU MLP → residual; Qwen3 normalizes
// each q and k head (RMSNorm over head_dim) before RoPE.
#pragma once

#include <memory>

#include "backend/backend.h"
#include "model/model.h"

namespace marlin {

std::unique_ptr<Model> load_llama(const ModelSource& source, std::unique_ptr<Backend> backend);

}  // namespace marlin
