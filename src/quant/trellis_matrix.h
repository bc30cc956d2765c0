// A whole weight matrix in a trellis format (FormatKind::kTrellis, "trellis1".."trellis8"): the
// layout of its bytes, the reference decoder, and a calibration-free quantizer.
//
// A linear layer y = W·x, W rows × cols (both multiples of 16), K bits per weight, seed = the
// tensor's rotation_seed:
// - Rotations (quant/hadamard.h): R_in = Rotation(cols, seed), R_out = Rotation(rows, seed + 1).
//   What is stored is W' = R_out·W·R_inᵀ, quantized.
// - scales: one fp16 s_r per row of W' (little-endian), rows × 1 entries.
// - codes: 16 × 16 tiles of W' in the bitstream of quant/trellis.h (trellis_tile_words(K) = 16·K
//   little-endian uint16 words each). Tile (i, j) covers rows 16i..16i+15 and columns
//   16j..16j+15, its value t = (r mod 16)·16 + (c mod 16). Tiles go strip by strip: tile (i, j)
//   starts at byte 16·i·code_row_bytes + 32·K·j, where code_row_bytes ≥ cols·K/8 (the minimum,
//   what marlin writes; a larger stride only leaves padding at the end of each strip).
// - Decoded: Ŵ'[r][c] = s_r · trellis_value(state of value t of tile (i, j)), the product in fp32.
// - The matrix the layer means is Ŵ = R_outᵀ·Ŵ'·R_in; a runtime computes y = R_outᵀ·(Ŵ'·(R_in·x)).
#pragma once

#include <cstdint>

#include "quant/format.h"
#include "quant/quant_buffers.h"

namespace marlin {

class ThreadPool;

// Largest words of one tile (K = 8).
constexpr int kTrellisMaxTileWords = 16 * 8;

// Byte offset of tile (strip, tile_col) in t.codes.
inline uint64_t trellis_tile_offset(const QuantTensor& t, int64_t strip, int64_t tile_col) {
  return 16 * uint64_t(strip) * t.code_row_bytes + 32 * uint64_t(t.format.bits) * uint64_t(tile_col);
}

// Copies tile (strip, tile_col)'s words out of t.codes (little-endian bytes, any alignment).
void trellis_load_tile(const QuantTensor& t, int64_t strip, int64_t tile_col, uint16_t* words);

// The fp16 scale of row r, as fp32.
float trellis_row_scale(const QuantTensor& t, int64_t r);

// Ŵ' rows 16·strip .. 16·strip + 15 (16 × t.cols, row-major): s_r · value in fp32, the rotated
// basis. t must have passed validate() and be a trellis tensor.
void trellis_decode_strip(const QuantTensor& t, int64_t strip, float* out);

// Row `row` of Ŵ = R_outᵀ·Ŵ'·R_in (the original basis), each value the fp32 rounding of the
// rotations evaluated in double on the decoded Ŵ'. A row of Ŵ depends on the Hadamard block of
// rows around it (up to 128 rows of Ŵ'), so the last block is kept per thread and reused while the
// tensor's shape, seed, codes and scales of that block are byte-for-byte the same (checked on
// every call: memory reused for another tensor never gives stale rows). dequantize_row calls this
// for trellis tensors; a loop over consecutive rows decodes each block once.
void dequantize_trellis_row(const QuantTensor& t, int64_t row, float* out);

// Quantizes W (rows × cols, row-major, finite) into trellisK without calibration data: rotate
// (W' = R_out·W·R_inᵀ with `seed`), s_r = the RMS of row r of W' rounded to fp16 (the codebook has
// unit variance), then each tile's W'/s_r is encoded by trellis_encode_tiles (a Viterbi search per
// tile, no error feedback between tiles). A row whose scale is 0 stores 0 (its values decode to
// exactly 0). A baseline and a test fixture; LDLQ with a Hessian does better. Encoding is slow
// (tens of thousands of weights per second per core, quant/trellis.h): spread over `pool`.
QuantBuffers quantize_trellis_rtn(const float* w, int64_t rows, int64_t cols, int k, uint64_t seed,
                                  ThreadPool* pool = nullptr);

}  // namespace marlin
