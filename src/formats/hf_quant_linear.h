// What GPTQ and AWQ checkpoints have in common: a linear layer of integer codes q (K input
// features × N outputs), zero points and fp16 scales per group of K, and (GPTQ act-order) the
// group of every input feature. The importers repack their layouts into ImportedLinear; this
// file turns that into marlin's planar layout (quant/format.h) and checks stored tensors.
#pragma once

#include <cstdint>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "formats/safetensors.h"
#include "formats/safetensors_shards.h"
#include "quant/quant_buffers.h"

namespace marlin {

struct ImportedLinear {
  int bits = 4;
  int64_t k = 0;                 // input features
  int64_t n = 0;                 // output features
  int64_t group_size = 0;        // inputs per group; 0: one group per output
  std::vector<uint8_t> codes;    // [n][row_bytes()]: each output's codes in input order, packed as
                                 // a little-endian bit stream (marlin's codes row layout)
  std::vector<uint16_t> zeros;   // [groups][n] zero points (AutoGPTQ v1 can reach 2^bits)
  std::vector<uint16_t> scales;  // [groups][n] fp16 bits
  std::vector<int32_t> g_idx;    // [k] group of each input feature; empty: k / group_size

  int64_t groups() const { return group_size == 0 ? 1 : (k + group_size - 1) / group_size; }
  uint64_t row_bytes() const { return (uint64_t(k) * uint64_t(bits) + 7) / 8; }
};

// marlin planar int2/3/4/8 for w[n][k] = scale[g(k)][n] · (q[n][k] − zero[g(k)][n]): symmetric when
// every zero is 2^(bits−1), asymmetric otherwise; with an act-order g_idx, inputs are reordered so
// groups are contiguous and `perm` records the order. Errors name `name`: group sizes marlin has
// no format for, a g_idx whose groups are not contiguous runs of group_size inputs after sorting,
// zero points over 255.
QuantBuffers planar_from_imported(const ImportedLinear& linear, const std::string& name);

// The stored tensor PREFIX + "." + PART; marlin::Error "<source>: tensor 'x' is missing" when absent.
const SafetensorsShards::Entry& require_tensor(const SafetensorsShards& shards, const std::string& prefix,
                                               std::string_view part, std::string_view source);
// Checks dtype and rank-2 shape [rows, cols] (rows/cols < 0: any) with a one-line error naming
// the tensor, what it should be, and what it is.
void expect_tensor(const SafetensorsTensor& t, SafetensorsDtype dtype, int64_t rows, int64_t cols,
                   std::string_view source);

// Little-endian int32 word `index` of a tensor's bytes.
inline uint32_t word_at(std::span<const uint8_t> bytes, size_t index) {
  const uint8_t* p = bytes.data() + index * 4;
  return uint32_t(p[0]) | uint32_t(p[1]) << 8 | uint32_t(p[2]) << 16 | uint32_t(p[3]) << 24;
}

// fp16 bits of every element of an F16 tensor.
std::vector<uint16_t> read_f16(std::span<const uint8_t> bytes);

}  // namespace marlin
