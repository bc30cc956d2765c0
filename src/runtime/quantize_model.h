// Quantizing a whole model: every tensor of a source, in the format the rules choose, by
// round-to-nearest or by GPTQ calibrated block by block on sample text. Tensors are handed to a
// sink one by one (to be written to a .marlin checkpoint), so memory stays bounded by one block.
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "core/thread_pool.h"
#include "model/model_source.h"
#include "quant/gptq.h"
#include "runtime/quant_rules.h"

namespace marlin {

struct QuantizeOptions {
  std::optional<TensorFormat> format;  // for matrices; nullopt keeps every tensor as stored
  bool gptq = false;                   // GPTQ for the blocks' linear layers (else RTN)
  std::vector<QuantRule> rules;        // override the defaults; the first match wins
  std::map<std::string, TensorFormat> tensor_formats;  // exact names, ahead of the rules (--moe-bits)
  std::vector<std::vector<int32_t>> calibration;  // token sequences for GPTQ
  GptqOptions gptq_options;
  // Bytes the Hessians of one block may take at once (GPTQ); a block needing more collects them in
  // several passes over the calibration text, with the same result. nullopt: a share of the free
  // memory when GPTQ starts (runtime/hessian_budget.h).
  std::optional<uint64_t> hessian_budget;
  // Bytes a set of trellis linears quantized as one stack may hold (trellis_stack_bytes); a set
  // needing more is quantized one by one, with the same result. nullopt: half of the memory free
  // when the set comes up (no figure for the free memory: no limit).
  std::optional<uint64_t> trellis_stack_budget;
};

struct QuantizedTensor {
  std::string name;
  TensorFormat format;
  int64_t rows = 0, cols = 0;
  double gptq_loss = -1;  // GPTQ's objective, or -1 for tensors not quantized by GPTQ
};

struct QuantizeReport {
  std::vector<QuantizedTensor> tensors;
  double seconds = 0;
  int64_t hessian_passes = 0;  // GPTQ runs of a block over the calibration text to collect its Hessians
  int64_t trellis_stacks = 0;  // sets of trellis linears quantized as one stack
};

using TensorSink = std::function<void(const std::string& name, const QuantTensor& tensor)>;
using QuantizeProgress = std::function<void(int64_t done, int64_t total)>;
// A one-line message for the user (GPTQ's memory budget, blocks that need several passes).
using QuantizeNotice = std::function<void(const std::string& message)>;

// Every tensor of `source`, Hugging Face names, written through `sink` (views valid only during
// the call). Sources whose Q/K rows are stored for adjacent-pair RoPE (GGUF) come out in the
// Hugging Face row order, so the result is an ordinary Hugging Face layout.
QuantizeReport quantize_model(const ModelSource& source, const QuantizeOptions& options, ThreadPool& pool,
                              const TensorSink& sink, const QuantizeProgress& progress = {},
                              const QuantizeNotice& notice = {});

}  // namespace marlin
