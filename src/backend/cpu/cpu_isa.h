// Which SIMD instruction set the CPU kernels use, detected once at run time.
#pragma once

#include <optional>
#include <string_view>

namespace marlin::cpu {

enum class CpuIsa {
  Scalar,    // portable C++
  Avx2,      // AVX2 + FMA + F16C + BMI2
  Avx2Vnni,  // the above + AVX-VNNI (vpdpbusd on 256-bit registers)
  Avx512,    // AVX-512 F/BW/VL/VNNI/VBMI + FMA + F16C + BMI2
  Avx512Fp16,  // the above + AVX-512 FP16 and VBMI2 (the trellis kernels; else as Avx512)
};

// Whether kernels of `isa` may use CpuIsa::Avx512's instructions.
inline bool has_avx512(CpuIsa isa) { return isa >= CpuIsa::Avx512; }

std::string_view cpu_isa_name(CpuIsa isa);
std::optional<CpuIsa> parse_cpu_isa(std::string_view name);

// Whether this machine (CPU and OS register state) can run kernels of `isa`.
bool cpu_supports(CpuIsa isa);

// The best level this machine supports, or the one named by the environment variable
// MARLIN_CPU_ISA (scalar|avx2|avx2vnni|avx512|avx512fp16; an unsupported or unknown name throws marlin::Error),
// or the one set by set_cpu_isa_override. Read once, then cached.
CpuIsa active_cpu_isa();

// Forces a level (tests use this to run every path the machine supports); nullopt restores the
// default. Throws marlin::Error when the machine cannot run `isa`. Not thread-safe against
// concurrent matmul calls.
void set_cpu_isa_override(std::optional<CpuIsa> isa);

}  // namespace marlin::cpu
