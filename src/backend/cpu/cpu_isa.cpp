#include "backend/cpu/cpu_isa.h"

#include <cstdlib>

#include "core/error.h"

namespace marlin::cpu {
namespace {

bool detect(CpuIsa isa) {
  __builtin_cpu_init();
  const bool avx2 = __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma") &&
                    __builtin_cpu_supports("f16c") && __builtin_cpu_supports("bmi2");
  switch (isa) {
    case CpuIsa::Scalar: return true;
    case CpuIsa::Avx2: return avx2;
    case CpuIsa::Avx2Vnni: return avx2 && __builtin_cpu_supports("avxvnni");
    case CpuIsa::Avx512:
      return avx2 && __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
             __builtin_cpu_supports("avx512vl") && __builtin_cpu_supports("avx512vnni") &&
             __builtin_cpu_supports("avx512vbmi");
    case CpuIsa::Avx512Fp16:
      return detect(CpuIsa::Avx512) && __builtin_cpu_supports("avx512fp16") && __builtin_cpu_supports("avx512vbmi2");
  }
  return false;
}

CpuIsa best_supported() {
  for (CpuIsa isa : {CpuIsa::Avx512Fp16, CpuIsa::Avx512, CpuIsa::Avx2Vnni, CpuIsa::Avx2})
    if (detect(isa)) return isa;
  return CpuIsa::Scalar;
}

CpuIsa from_environment() {
  const char* env = std::getenv("MARLIN_CPU_ISA");
  if (!env || !*env) return best_supported();
  auto isa = parse_cpu_isa(env);
  MARLIN_CHECK(isa, "MARLIN_CPU_ISA={} is not one of scalar, avx2, avx2vnni, avx512, avx512fp16", env);
  MARLIN_CHECK(detect(*isa), "MARLIN_CPU_ISA={}: this CPU does not support it", env);
  return *isa;
}

std::optional<CpuIsa> g_override;

}  // namespace

std::string_view cpu_isa_name(CpuIsa isa) {
  switch (isa) {
    case CpuIsa::Scalar: return "scalar";
    case CpuIsa::Avx2: return "avx2";
    case CpuIsa::Avx2Vnni: return "avx2vnni";
    case CpuIsa::Avx512: return "avx512";
    case CpuIsa::Avx512Fp16: return "avx512fp16";
  }
  return "?";
}

std::optional<CpuIsa> parse_cpu_isa(std::string_view name) {
  for (CpuIsa isa : {CpuIsa::Scalar, CpuIsa::Avx2, CpuIsa::Avx2Vnni, CpuIsa::Avx512, CpuIsa::Avx512Fp16})
    if (name == cpu_isa_name(isa)) return isa;
  return std::nullopt;
}

bool cpu_supports(CpuIsa isa) { return detect(isa); }

CpuIsa active_cpu_isa() {
  if (g_override) return *g_override;
  static const CpuIsa isa = from_environment();
  return isa;
}

void set_cpu_isa_override(std::optional<CpuIsa> isa) {
  if (isa) MARLIN_CHECK(detect(*isa), "CPU ISA {} is not supported on this machine", cpu_isa_name(*isa));
  g_override = isa;
}

}  // namespace marlin::cpu
