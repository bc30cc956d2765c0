// Models of a known shape with random weights, for benchmarks (nothing is read from disk): the
// speed of an 8B model without fetching one. The weights are noise scaled to keep activations
// bounded; the outputs mean nothing and there is no tokenizer.
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "model/model_source.h"

namespace marlin {

// Shape names make_synthetic_source knows: "llama3-8b" (Llama-3.1-8B), "tiny" (2 layers, for
// tests), "qwen3-30b-a3b" (Qwen3-30B-A3B: 128 experts, 8 per token), "tiny-moe" (its layout in
// 2 layers of 8 experts, 2 per token), "glm-4.7-flash" (GLM-4.7-Flash: MLA, 64 experts, 4 per
// token, one shared, a dense first layer) and "tiny-glm" (its layout in 2 layers, dense then
// sparse with 8 experts).
std::vector<std::string> synthetic_shapes();

// Linear weights in `format` (f16, or a planar integer format: int8/int4/int3/int2 with any group
// size, symmetric or asymmetric, or trellisK with random bitstreams); lm_head in int8-g32 below 8 bits (as `marlin quantize` makes
// it), else in `format`; embeddings and norms are f16/f32. Throws marlin::Error for an
// unknown shape or an unsupported format.
std::unique_ptr<ModelSource> make_synthetic_source(const std::string& shape, const TensorFormat& format,
                                                   uint64_t seed = 1);

}  // namespace marlin
