// Entry checks shared by the transformer ops (ops.h). Plain C++, so the .cu files need no fmt:
// the messages are formatted in ops_check.cpp. Everything here runs on the host before a launch.
#pragma once

#include <cstdint>

#include "backend/cuda/ops.h"

namespace marlin::cuda::ops_detail {

// Throws marlin::Error "<op>: <what> (got <value>)".
[[noreturn]] void fail_argument(const char* op, const char* what, long long value);

inline void require(bool ok, const char* op, const char* what, long long value) {
  if (!ok) fail_argument(op, what, value);
}

inline bool aligned16(const void* p) { return reinterpret_cast<uintptr_t>(p) % 16 == 0; }

// Throws when the launch just made failed (bad configuration, no device); does not synchronize.
void check_launch(const char* op);

// Checks the attention geometry (head counts, head_dim 64/128/256, rotary_dim, page size a power
// of two) and returns log2(page_size).
int check_geometry(const char* op, const AttentionGeometry& g);

// Sets a kernel's dynamic shared memory limit when it needs more than the default 48 KiB (or more
// than an earlier call reserved for it).
void allow_shared_memory(const void* kernel, int bytes, const char* op);

}  // namespace marlin::cuda::ops_detail
