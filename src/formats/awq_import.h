// AWQ checkpoints (AutoAWQ "gemm" packing) read as marlin planar int4 tensors.
//
// Per quantized linear PREFIX (K inputs, N outputs, G = K / group_size groups):
//   PREFIX.qweight  I32 [K, N/8]  each word holds 8 outputs of one input; nibble i (bits 4i..4i+3)
//                                 is output 8w + [0, 2, 4, 6, 1, 3, 5, 7][i]
//   PREFIX.qzeros   I32 [G, N/8]  zero points, packed the same way
//   PREFIX.scales   F16 [G, N]
// and w[n][k] = scales[k / group_size][n] · (q[k][n] − z[k / group_size][n]).
#pragma once

#include <nlohmann/json.hpp>
#include <string>
#include <string_view>

#include "formats/safetensors_shards.h"
#include "quant/quant_buffers.h"

namespace marlin {

struct AwqConfig {
  int bits = 4;
  int group_size = 128;
};

// From config.json's quantization_config or AutoAWQ's quant_config.json ("w_bit",
// "q_group_size", "zero_point", "version"); marlin::Error naming the key for anything but 4-bit
// GEMM packing with zero points.
AwqConfig awq_config_from_json(const nlohmann::json& json, std::string_view source);

QuantBuffers import_awq_linear(const SafetensorsShards& shards, const std::string& prefix, const AwqConfig& config,
                               std::string_view source);

}  // namespace marlin
