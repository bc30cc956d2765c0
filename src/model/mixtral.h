// Mixtral: the Llama block with its MLP replaced by a sparse MLP (softmax router, top-k experts
// with renormalized weights, SwiGLU experts).
#pragma once

#include <memory>

#include "backend/backend.h"
#include "model/model.h"

namespace marlin {

std::unique_ptr<Model> load_mixtral(const ModelSource& source, std::unique_ptr<Backend> backend);

}  // namespace marlin
