#include "backend/cuda/op_profiler.h"

#include <algorithm>
#include <cstdlib>

#include <fmt/format.h>

#include "backend/cuda/device_memory.h"

namespace marlin::cuda {

OpProfiler::OpProfiler() {
  const char* flag = std::getenv("MARLIN_PROFILE_OPS");
  enabled_ = flag != nullptr && std::string(flag) != "0";
}

OpProfiler::~OpProfiler() {
  for (const Pending& p : pending_) {
    cudaEventDestroy(p.start);
    cudaEventDestroy(p.stop);
  }
  if (open_) cudaEventDestroy(open_);
  for (cudaEvent_t e : free_events_) cudaEventDestroy(e);
}

cudaEvent_t OpProfiler::take_event() {
  if (free_events_.empty()) {
    cudaEvent_t e = nullptr;
    check_cuda(cudaEventCreate(&e), "cudaEventCreate");
    return e;
  }
  cudaEvent_t e = free_events_.back();
  free_events_.pop_back();
  return e;
}

void OpProfiler::begin(cudaStream_t stream) {
  if (!enabled_) return;
  if (!open_) open_ = take_event();
  check_cuda(cudaEventRecord(open_, stream), "cudaEventRecord");
}

void OpProfiler::end(cudaStream_t stream, std::string label) {
  if (!enabled_ || !open_) return;
  cudaEvent_t stop = take_event();
  check_cuda(cudaEventRecord(stop, stream), "cudaEventRecord");
  pending_.push_back({open_, stop, std::move(label)});
  open_ = nullptr;
}

void OpProfiler::collect() {
  for (const Pending& p : pending_) {
    float ms = 0;
    check_cuda(cudaEventElapsedTime(&ms, p.start, p.stop), "cudaEventElapsedTime");
    Total& t = totals_[p.label];
    if (t.first_ms < 0) {
      t.first_ms = ms;
    } else {
      ++t.calls;
      t.ms += ms;
    }
    free_events_.push_back(p.start);
    free_events_.push_back(p.stop);
  }
  pending_.clear();
}

std::string OpProfiler::report() const {
  std::vector<std::pair<std::string, Total>> rows(totals_.begin(), totals_.end());
  std::sort(rows.begin(), rows.end(), [](const auto& a, const auto& b) { return a.second.ms > b.second.ms; });
  double sum = 0;
  for (const auto& [label, t] : rows) sum += t.ms;
  std::string out = fmt::format("{:<34} {:>9} {:>11} {:>10} {:>7} {:>12}\n", "op (MARLIN_PROFILE_OPS)", "calls",
                                "total ms", "mean us", "share", "first us");
  for (const auto& [label, t] : rows)
    out += fmt::format("{:<34} {:>9} {:>11.3f} {:>10.2f} {:>6.1f}% {:>12.2f}\n", label, t.calls, t.ms,
                       t.calls ? 1000 * t.ms / double(t.calls) : 0.0, sum > 0 ? 100 * t.ms / sum : 0.0,
                       1000 * t.first_ms);
  out += fmt::format("{:<34} {:>9} {:>11.3f}  (first calls not counted)\n", "sum", "", sum);
  return out;
}

}  // namespace marlin::cuda
