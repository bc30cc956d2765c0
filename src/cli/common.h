// Helpers shared by the subcommands.
#pragma once

#include <string>

namespace marlin::cli {

// The model setup.sh fetches, relative to the repository (resolved from the executable's path).
std::string default_model_path();

// `path` when given, else the default model; throws marlin::Error saying how to fetch the
// default model when it is missing.
std::string resolve_model_path(const std::string& path);

}  // namespace marlin::cli
