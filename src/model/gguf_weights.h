// Looking up model weights in a GGUF file by name, with their shapes checked.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "backend/cpu/matmul.h"

namespace marlin {

class GgufFile;

// A rows × cols matrix (GGUF shape [cols, rows]) kept in its stored format.
cpu::QuantMatrix gguf_matrix(const GgufFile& file, const std::string& name, int64_t rows, int64_t cols);

// A vector of n values converted to fp32.
std::vector<float> gguf_vector(const GgufFile& file, const std::string& name, int64_t n);

bool gguf_has_tensor(const GgufFile& file, const std::string& name);

}  // namespace marlin
