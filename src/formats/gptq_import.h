// GPTQ checkpoints (AutoGPTQ, GPTQModel) read as marlin planar integer tensors.
//
// Per quantized linear PREFIX (K inputs, N outputs, b bits, G = ceil(K / group_size) groups):
//   PREFIX.qweight  I32 [K·b/32, N]  each column a little-endian bit stream of K b-bit codes
//                                    (8 per word for 4 bits; 3 bits straddle words)
//   PREFIX.qzeros   I32 [G, N·b/32]  zero points, packed the same way along N
//   PREFIX.scales   F16 [G, N]
//   PREFIX.g_idx    I32 [K]          group of each input (act-order / desc_act); optional
// and w[n][k] = scales[g_idx[k]][n] · (q[k][n] − z[g_idx[k]][n]). checkpoint_format "gptq"
// (AutoGPTQ, the default) stores z − 1 (so a stored 2^b − 1 means z = 2^b); "gptq_v2" stores z.
#pragma once

#include <nlohmann/json.hpp>
#include <string>
#include <string_view>

#include "formats/safetensors_shards.h"
#include "quant/quant_buffers.h"

namespace marlin {

struct GptqConfig {
  int bits = 4;
  int group_size = 128;  // -1: one group per output
  bool desc_act = false;
  bool sym = true;
  bool zeros_minus_one = true;  // checkpoint_format "gptq" (v1)
};

// From config.json's quantization_config or quantize_config.json; marlin::Error naming `source`
// and the key for values marlin cannot read (other bit widths, packings, formats).
GptqConfig gptq_config_from_json(const nlohmann::json& json, std::string_view source);

// The linear PREFIX of `shards` as a planar int2/3/4/8 tensor (rows N, cols K); shapes, dtypes and
// g_idx are checked against `config` with errors naming the tensor.
QuantBuffers import_gptq_linear(const SafetensorsShards& shards, const std::string& prefix, const GptqConfig& config,
                                std::string_view source);

}  // namespace marlin
