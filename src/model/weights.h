// Looking up a model's weights in its source, with their shapes checked.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "model/model_source.h"

namespace marlin {

// A rows × cols matrix, kept in its stored format.
QuantTensor require_matrix(const ModelSource& source, const std::string& name, int64_t rows, int64_t cols);

// A vector of n values (norm weights) converted to fp32.
std::vector<float> require_vector(const ModelSource& source, const std::string& name, int64_t n);

}  // namespace marlin
