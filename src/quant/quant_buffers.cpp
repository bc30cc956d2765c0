#include "quant/quant_buffers.h"

namespace marlin {

QuantBuffers QuantBuffers::allocate(const TensorFormat& format, int64_t rows, int64_t cols) {
  format.check_shape(rows, cols);
  QuantBuffers b;
  b.format = format;
  b.rows = rows;
  b.cols = cols;
  b.code_row_bytes = format.min_code_row_bytes(cols);
  b.codes.assign(size_t(b.code_row_bytes) * size_t(rows), 0);
  if (!format.quantized() || format.kind == FormatKind::kGgml) return b;
  const size_t entries = size_t(rows) * size_t(format.groups(cols));
  b.scales.assign(entries * size_t(scale_bytes(format_info(format.kind).scale)), 0);
  if (format.asymmetric) b.zeros.assign(entries, 0);
  if (format.sparse_24) b.sparse_meta.assign(size_t(rows) * size_t(sparse_meta_row_bytes(cols)), 0);
  if (format.act_order) {
    b.perm.resize(size_t(cols));
    for (int64_t k = 0; k < cols; ++k) b.perm[size_t(k)] = int32_t(k);
  }
  return b;
}

QuantTensor QuantBuffers::view() const {
  QuantTensor t;
  t.format = format;
  t.rows = rows;
  t.cols = cols;
  t.codes = codes.data();
  t.code_row_bytes = code_row_bytes;
  t.scales = scales.empty() ? nullptr : scales.data();
  t.zeros = zeros.empty() ? nullptr : zeros.data();
  t.perm = perm.empty() ? nullptr : perm.data();
  t.tensor_scale = tensor_scale;
  t.rotation_seed = rotation_seed;
  t.sparse_meta = sparse_meta.empty() ? nullptr : sparse_meta.data();
  return t;
}

}  // namespace marlin
