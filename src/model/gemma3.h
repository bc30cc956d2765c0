// Gemma 3 text decoder: Llama-shaped blocks with per-head Q/K RMSNorm, RMSNorms after attention
// and after the MLP (before each residual add), a GELU-tanh gated MLP, sliding-window attention
// on most layers (their own RoPE theta), and embeddings scaled by sqrt(d_model).
#pragma once

#include <memory>

#include "backend/backend.h"
#include "model/model.h"

namespace marlin {

std::unique_ptr<Model> load_gemma3(const ModelSource& source, std::unique_ptr<Backend> backend);

}  // namespace marlin
