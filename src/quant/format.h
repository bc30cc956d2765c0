// Every weight format marlin stores or runs: one row of one table (format.cpp), plus the concrete
// format of one tensor (kind + group size + options) and a view of its bytes for kernels.
//
// Storage of a quantized rows × cols matrix W (rows = output features, cols = K = input features),
// "planar" like GPTQ/AWQ checkpoints:
//   codes  rows × code_row_bytes: row-major; within a row, value k occupies bits
//          [k·bits, (k+1)·bits) of the row's little-endian bit stream (int3: 8 values in 3 bytes).
//   scales rows × groups, one per `group_size` values along K (fp16, or E8M0 / E4M3 bytes).
//   zeros  rows × groups unsigned codes (asymmetric integer formats only).
//   perm   K int32 (act-order only): the kernel multiplies x[perm[k]] with column k.
// Values: int, symmetric   w = s·(q − 2^(bits−1))         int, asymmetric  w = s·(q − z)
//         fp8 (E4M3)       w = s·e4m3(q)                   fp4 (E2M1)       w = s·e2m1(q)
//         mxfp4            w = 2^(e−127)·e2m1(q), 32/group  nvfp4           w = t·e4m3(s)·e2m1(q), 16/group
// (t: one fp32 scale per tensor). GGML block formats keep their GGUF blocks as `codes`.
// Trellis ("trellis2".."trellis8", also "trellis1") is not planar: `codes` holds 16×16 tiles
// strip by strip (code_row_bytes = cols·K/8 is bookkeeping: strip i starts at byte
// 16·i·code_row_bytes), scales are per row (fp16) in a rotated basis, and rotation_seed names the
// rotations; quant/trellis_matrix.h has the full layout.
//
// Details (docs/quantization.md has the full description):
// - Groups: group g of a row covers columns [g·group_size, (g+1)·group_size); groups() =
//   ceil(cols / group_size), so the last group may be partial (K = 576 with g128: 4 full groups and
//   one of 64). Per channel (group_size 0): one group per row.
// - Act-order: codes, scales and zeros are all in the stored (permuted) column order; groups are
//   contiguous in that order. Stored column k holds the weight of input feature perm[k].
// - 2:4 sparsity: of every 4 consecutive stored columns 2 are kept; `codes` holds only the kept
//   values (cols/2 per row, in column order) and `sparse_meta` says which: rows ×
//   sparse_meta_row_bytes(cols) bytes, 4 bits per 4 columns at bits [4j, 4j+4) of the row's
//   little-endian bit stream (low nibble first), the low 2 bits the index (0..3) of the first kept
//   column and the high 2 bits that of the second, first < second. Dropped columns are exactly 0.
//   Groups count stored (uncompressed) columns, so scales/zeros have the dense shape.
// - Unquantized f32/f16/bf16 store their raw little-endian values as `codes`.
// - nvfp4 is evaluated as (t·e4m3(s))·e2m1(q): the two scales first, as fp32.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

#include "quant/ggml_types.h"

namespace marlin {

enum class FormatKind : uint8_t {
  kF32,
  kF16,
  kBF16,
  kGgml,  // a GGUF block format; TensorFormat::ggml says which
  kInt8,
  kInt4,
  kInt3,
  kInt2,
  kFp8E4M3,
  kFp4,    // E2M1 codes, fp16 group scales
  kMxFp4,  // E2M1 codes, E8M0 scale per 32 (OCP microscaling)
  kNvFp4,  // E2M1 codes, E4M3 scale per 16, fp32 tensor scale
  kTrellis,  // trellis-coded 16×16 tiles, K bits per weight (TensorFormat::bits), fp16 row scales,
             // randomized Hadamard rotations on both sides (quant/trellis_matrix.h)
};

enum class ScaleType : uint8_t { kNone, kF16, kE8M0, kE4M3 };

// One row of the format table.
struct FormatInfo {
  FormatKind kind;
  std::string_view name;  // as written in format names: "int4", "fp8", "mxfp4", ...
  int code_bits;          // bits per stored value (32/16 for unquantized; 0 for kGgml: see its block table)
  ScaleType scale;
  bool zero_points;       // an asymmetric (zero-point) variant exists
  int fixed_group;        // the group size the format prescribes; 0: chosen per tensor
  bool sparse_24;         // a 2:4 structured-sparse variant exists
};

const FormatInfo& format_info(FormatKind kind);

// Bytes of one stored scale entry (0 for kNone).
int scale_bytes(ScaleType type);

// Bytes of one row of 2:4 metadata for a row of `cols` stored columns (4 bits per 4 columns).
inline uint64_t sparse_meta_row_bytes(int64_t cols) { return (uint64_t(cols) / 4 + 1) / 2; }

// Group sizes a tensor may use when its format does not prescribe one (0 = per channel).
inline constexpr int kGroupSizes[] = {32, 64, 128, 0};

// The concrete format of one tensor.
struct TensorFormat {
  FormatKind kind = FormatKind::kF32;
  GgmlType ggml = GgmlType::F32;  // kind == kGgml only
  int group_size = 0;             // values per scale along K; 0: one scale per row
  bool asymmetric = false;        // zero points stored
  bool act_order = false;         // columns permuted (GPTQ desc_act)
  bool sparse_24 = false;         // 2 of every 4 values along K stored
  int bits = 0;                   // kind == kTrellis only: K, bits per weight (1..8); 0 otherwise

  // "int4-g128", "int4-g128-asym", "int8-pc" (per channel), "mxfp4", "fp8-g128", "f16",
  // "q4_1" (GGML), with "-act" / "-24" suffixes for act-order and 2:4 sparsity; "trellis4"
  // (K = 1..8, no options).
  std::string name() const;
  // Inverse of name(); marlin::Error naming the problem for anything unknown or inconsistent
  // (e.g. "int4-g100", "mxfp4-g64", "fp8-asym").
  static TensorFormat parse(std::string_view name);

  // Average storage bits per weight, scales and zero points included (for K = a multiple of
  // the group size; per-channel formats count their scale as 0, so trellisK gives exactly K:
  // its fp16 row scale adds 16/cols and its 64-bit seed 64/(rows·cols) in a real tensor).
  double bits_per_weight() const;

  // Throws marlin::Error naming the problem when the fields contradict the table (what parse
  // rejects): a group size not in kGroupSizes, options the kind does not have, a ggml type that is
  // not a block format, ...
  void validate() const;
  // validate(), and that a rows × cols tensor can have this format (cols a whole number of ggml
  // blocks, a multiple of 4 for 2:4, rows and cols multiples of 16 for trellis, sizes in range).
  void check_shape(int64_t rows, int64_t cols) const;
  // Scale groups per row: ceil(cols / group_size), 1 per channel, 0 for unquantized and ggml kinds.
  int64_t groups(int64_t cols) const;
  // The least code_row_bytes a row of `cols` values needs (2:4: only the cols/2 kept values).
  uint64_t min_code_row_bytes(int64_t cols) const;
  bool quantized() const { return kind != FormatKind::kF32 && kind != FormatKind::kF16 && kind != FormatKind::kBF16; }
  friend bool operator==(const TensorFormat&, const TensorFormat&) = default;
};

// The format of a tensor stored as GGUF type `type` (F32/F16/BF16 map to the plain kinds).
TensorFormat format_of_ggml(GgmlType type);

// A weight matrix as kernels see it: views into mapped or owned memory, never owning.
struct QuantTensor {
  TensorFormat format;
  int64_t rows = 0;
  int64_t cols = 0;
  const uint8_t* codes = nullptr;  // GGML blocks, raw floats, or packed codes
  uint64_t code_row_bytes = 0;
  const uint8_t* scales = nullptr;  // rows × groups(cols) entries
  const uint8_t* zeros = nullptr;   // rows × groups(cols) codes, one byte each
  const int32_t* perm = nullptr;    // cols entries when act_order
  float tensor_scale = 1.0f;        // nvfp4
  const uint8_t* sparse_meta = nullptr;  // 2:4 only: rows × sparse_meta_row_bytes(cols) bytes
  uint64_t rotation_seed = 0;            // trellis only: R_in = Rotation(cols, seed), R_out = Rotation(rows, seed + 1)

  int64_t groups() const;  // scale groups per row
  // Bytes of the stored data at the minimal row stride: codes, scales, zero points, permutation
  // and 2:4 metadata.
  uint64_t stored_bytes() const;
  // Throws marlin::Error naming the problem when the shape, a stride or a required pointer does not
  // fit the format (kernels call it at their entry). Does not read the data.
  void validate() const;
};

}  // namespace marlin
