// placeholder
#include "backend/cpu/kernels.h"
namespace marlin::cpu::detail {
KernelSet kernels_avx2(GgmlType, bool) { return {}; }
}
