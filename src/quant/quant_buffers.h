// Owned storage of one quantized (or plain) tensor, laid out as format.h describes; view() gives
// the QuantTensor kernels and the dequantizer read.
#pragma once

#include <cstdint>
#include <vector>

#include "quant/format.h"

namespace marlin {

struct QuantBuffers {
  TensorFormat format;
  int64_t rows = 0;
  int64_t cols = 0;
  std::vector<uint8_t> codes;  // rows × code_row_bytes
  uint64_t code_row_bytes = 0;
  std::vector<uint8_t> scales;       // rows × groups × scale_bytes
  std::vector<uint8_t> zeros;        // rows × groups (asymmetric only)
  std::vector<uint8_t> sparse_meta;  // rows × sparse_meta_row_bytes(cols) (2:4 only)
  std::vector<int32_t> perm;         // cols (act-order only)
  float tensor_scale = 1.0f;         // nvfp4
  uint64_t rotation_seed = 0;        // trellis

  // Zero-filled storage for a rows × cols tensor of `format` (checked with check_shape), with the
  // minimal row stride.
  static QuantBuffers allocate(const TensorFormat& format, int64_t rows, int64_t cols);

  QuantTensor view() const;
};

}  // namespace marlin
