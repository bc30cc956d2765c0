#include "backend/backend.h"

#include "backend/cpu/cpu_backend.h"
#include "core/error.h"
#ifdef MARLIN_HAVE_CUDA
#include "backend/cuda/cuda_backend.h"
#include "backend/cuda/device_info.h"
#endif

namespace marlin {

DeviceKind parse_device(const std::string& name) {
  if (name == "cpu") return DeviceKind::kCpu;
  if (name == "cuda") return DeviceKind::kCuda;
  fail("unknown device '{}' (choose cpu or cuda)", name);
}

const char* device_name(DeviceKind kind) { return kind == DeviceKind::kCpu ? "cpu" : "cuda"; }

namespace {

[[noreturn]] void moe_unsupported(DeviceKind kind) {
  fail("MoE layers are not supported on {} yet", kind == DeviceKind::kCuda ? "CUDA" : device_name(kind));
}

}  // namespace

std::unique_ptr<BackendExperts> Backend::experts(std::span<const ExpertWeights>, std::span<const float>) { moe_unsupported(kind()); }

void Backend::moe(const BackendExperts&, Act, Act, const MoeRouting&, Act, const ExpertInputObserver*) {
  moe_unsupported(kind());
}

void Backend::mla_store_kv(Act, const BackendTensor&, float, KvCache&, int) {
  fail("{}: multi-head latent attention is not supported on this backend yet", description());
}

void Backend::mla_attention(Act, const BackendTensor&, KvCache&, int, Act) {
  fail("{}: multi-head latent attention is not supported on this backend yet", description());
}

std::unique_ptr<Backend> make_backend(DeviceKind kind, ThreadPool& pool) {
  if (kind == DeviceKind::kCpu) return make_cpu_backend(pool);
#ifdef MARLIN_HAVE_CUDA
  return make_cuda_backend();
#else
  fail("this build of marlin has no CUDA backend (nvcc was not found when it was configured)");
#endif
}

bool cuda_device_present() {
#ifdef MARLIN_HAVE_CUDA
  return cuda::device_count() > 0;
#else
  return false;
#endif
}

}  // namespace marlin
