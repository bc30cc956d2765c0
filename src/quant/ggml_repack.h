// Lossless conversion of GGML block formats whose values marlin's planar formats hold exactly:
// Q4_0 (w = d·(q − 8), 32 per block) is int4-g32 and Q8_0 (w = d·q) is int8-g32, both symmetric
// with the block's fp16 d as the group scale.
#pragma once

#include <optional>

#include "quant/format.h"
#include "quant/quant_buffers.h"

namespace marlin {

// The planar format a GGML type maps to exactly, if any.
std::optional<TensorFormat> lossless_planar_format(GgmlType type);

// Repacks a Q4_0 or Q8_0 tensor into lossless_planar_format(type); marlin::Error for other types.
QuantBuffers repack_ggml(const QuantTensor& t);

}  // namespace marlin
