// Qwen3-MoE: pre-norm blocks with per-head Q/K RMSNorm before RoPE, and a sparse MLP (softmax
// router, top-k experts, renormalized only with norm_topk_prob) in the sparse layers, a dense
// SwiGLU MLP in the others.
#pragma once

#include <memory>

#include "backend/backend.h"
#include "model/model.h"

namespace marlin {

std::unique_ptr<Model> load_qwen3_moe(const ModelSource& source, std::unique_ptr<Backend> backend);

}  // namespace marlin
