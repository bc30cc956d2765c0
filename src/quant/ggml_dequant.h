// Scalar reference dequantization of GGML block formats to fp32.
//
// Each formula is the one ggml (and the python `gguf` package) uses, evaluated in the same fp32
// order, so results are bit-identical to gguf.quants.dequantize (tests/quant checks this).
#pragma once

#include <cstdint>

#include "quant/ggml_types.h"

namespace marlin {

// Writes the n values encoded at `src` to dst. n must be a multiple of the type's block size and
// `src` must hold n / block_elements blocks. Throws marlin::Error for unsupported types or bad n.
void dequantize_row(GgmlType type, const uint8_t* src, float* dst, int64_t n);

// Q4_K / Q5_K pack eight 6-bit scales and eight 6-bit mins into 12 bytes; this unpacks entry j.
inline void unpack_k_scale_min(const uint8_t* packed, int j, uint8_t& scale, uint8_t& min) {
  if (j < 4) {
    scale = packed[j] & 63;
    min = packed[j + 4] & 63;
  } else {
    scale = uint8_t((packed[j + 4] & 0x0f) | ((packed[j - 4] >> 6) << 4));
    min = uint8_t((packed[j + 4] >> 4) | ((packed[j] >> 6) << 4));
  }
}

}  // namespace marlin
