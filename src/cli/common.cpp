#include "cli/common.h"

#include <unistd.h>

#include <filesystem>

#include "core/error.h"

namespace marlin::cli {
namespace {

constexpr const char* kDefaultModel = "models/SmolLM2-135M-Instruct.Q4_1.gguf";

// The directory holding the marlin executable (build/), via /proc/self/exe.
std::filesystem::path executable_dir() {
  std::error_code ec;
  auto exe = std::filesystem::read_symlink("/proc/self/exe", ec);
  return ec ? std::filesystem::current_path() : exe.parent_path();
}

}  // namespace

std::string default_model_path() {
  // build/marlin -> <repo>/models/...; fall back to the working directory.
  for (const auto& base : {executable_dir().parent_path(), std::filesystem::current_path()}) {
    auto candidate = base / kDefaultModel;
    if (std::filesystem::exists(candidate)) return candidate.string();
  }
  return (executable_dir().parent_path() / kDefaultModel).string();
}

std::string resolve_model_path(const std::string& path) {
  if (!path.empty()) {
    MARLIN_CHECK(std::filesystem::exists(path), "model file '{}' does not exist", path);
    return path;
  }
  auto fallback = default_model_path();
  MARLIN_CHECK(std::filesystem::exists(fallback),
               "the default model is missing ({}); fetch it with scripts/setup.sh or pass --model PATH",
               fallback);
  return fallback;
}

}  // namespace marlin::cli
