// Per-op GPU time of the CUDA backend, for finding where a step's time goes: with
// MARLIN_PROFILE_OPS=1 every op is bracketed by CUDA events (graphs are off, so each op runs as
// launched), and the totals per op label are printed to stderr when the backend is destroyed.
// The sum of the ops next to a step's wall time shows the launch and synchronisation overhead.
// Each label's first call is reported on its own and left out of its mean: it carries one-time
// costs (the lazy loading of kernels and cuBLAS's, workspace allocation) that are not the op's.
#pragma once

#include <cuda_runtime.h>

#include <map>
#include <string>
#include <vector>

namespace marlin::cuda {

class OpProfiler {
 public:
  OpProfiler();  // on when MARLIN_PROFILE_OPS is set and not "0"
  ~OpProfiler();
  OpProfiler(const OpProfiler&) = delete;
  OpProfiler& operator=(const OpProfiler&) = delete;

  bool enabled() const { return enabled_; }

  // Brackets one op on `stream`; a no-op when disabled.
  void begin(cudaStream_t stream);
  void end(cudaStream_t stream, std::string label);

  // Adds the elapsed times of the ops recorded since the last collect (the stream must be idle).
  void collect();
  // The table: label, calls after the first, their total ms, mean µs and share of the total, and
  // the first call's µs.
  std::string report() const;

 private:
  struct Pending {
    cudaEvent_t start, stop;
    std::string label;
  };
  struct Total {
    long calls = 0;  // after the first
    double ms = 0;
    double first_ms = -1;  // not yet seen
  };
  cudaEvent_t take_event();

  bool enabled_ = false;
  std::vector<cudaEvent_t> free_events_;
  std::vector<Pending> pending_;
  cudaEvent_t open_ = nullptr;
  std::map<std::string, Total> totals_;
};

}  // namespace marlin::cuda
