#include "quant/trellis_gpu_search.h"

#include <atomic>
#include <cstdio>
#include <cstdlib>
#include <mutex>
#include <string_view>

#include "core/error.h"

#include "quant/trellis.h"

#ifdef MARLIN_HAVE_CUDA
#include "backend/cuda/device_info.h"
#include "backend/cuda/trellis_encode.h"
#endif

namespace marlin {
namespace {

std::atomic<bool>& gpu_search_allowed() {
  static std::atomic<bool> allowed = [] {
    const char* v = std::getenv("MARLIN_TRELLIS_GPU_SEARCH");
    return v == nullptr || std::string_view(v) != "0";
  }();
  return allowed;
}

}  // namespace

void allow_trellis_gpu_search(bool allowed) { gpu_search_allowed() = allowed; }

bool trellis_search_on_gpu(const float* targets, int64_t tiles, int k, std::vector<uint32_t>& states) {
#ifdef MARLIN_HAVE_CUDA
  if (!gpu_search_allowed() || cuda::device_count() == 0 || !cuda::trellis_search_supported(k)) return false;
  try {
    states.resize(size_t(tiles) * kTrellisTileValues);
    cuda::trellis_tile_states(targets, tiles, k, states.data());
    static std::once_flag said;  // where the time goes, once (tools/make_trellis_table.py reads it)
    std::call_once(said, [] {
      std::fprintf(stderr, "trellis: searching tiles on the GPU (%s); MARLIN_TRELLIS_GPU_SEARCH=0 keeps them on the CPU\n",
                   cuda::device_name(0).c_str());
    });
    return true;
  } catch (const Error& e) {  // out of device memory, say: the CPU searches instead
    static std::once_flag warned;
    std::call_once(warned,
                   [&] { std::fprintf(stderr, "trellis: the GPU search failed (%s); searching on the CPU\n", e.what()); });
    return false;
  }
#else
  (void)targets, (void)tiles, (void)k, (void)states;
  return false;
#endif
}

}  // namespace marlin
