#include "server/metrics.h"

#include <algorithm>

#include <fmt/format.h>

namespace marlin::server {

Histogram::Histogram(std::vector<double> bounds) : bounds_(std::move(bounds)), counts_(bounds_.size() + 1, 0) {}

void Histogram::observe(double value) {
  const size_t bucket = size_t(std::lower_bound(bounds_.begin(), bounds_.end(), value) - bounds_.begin());
  counts_[bucket]++;
  sum_ += value;
  count_++;
}

std::string Histogram::render(const std::string& name) const {
  std::string out;
  uint64_t cumulative = 0;
  for (size_t i = 0; i < bounds_.size(); ++i) {
    cumulative += counts_[i];
    out += fmt::format("{}_bucket{{le=\"{}\"}} {}\n", name, bounds_[i], cumulative);
  }
  out += fmt::format("{}_bucket{{le=\"+Inf\"}} {}\n", name, count_);
  out += fmt::format("{}_sum {}\n{}_count {}\n", name, sum_, name, count_);
  return out;
}

Metrics::Metrics()
    : time_to_first_token_({0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60}),
      inter_token_latency_({0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5}) {}

void Metrics::count_request(const std::string& endpoint, int status) {
  std::lock_guard lock(mutex_);
  requests_[{endpoint, status}]++;
}

void Metrics::count_tokens(int64_t prompt, int64_t generated) {
  std::lock_guard lock(mutex_);
  prompt_tokens_ += uint64_t(prompt);
  generated_tokens_ += uint64_t(generated);
}

void Metrics::observe_time_to_first_token(double seconds) {
  std::lock_guard lock(mutex_);
  time_to_first_token_.observe(seconds);
}

void Metrics::observe_inter_token_latency(double seconds) {
  std::lock_guard lock(mutex_);
  inter_token_latency_.observe(seconds);
}

std::string Metrics::render(const SchedulerGauges& gauges) const {
  std::lock_guard lock(mutex_);
  std::string out;
  out += "# HELP marlin_requests_total HTTP requests answered, by endpoint and status.\n";
  out += "# TYPE marlin_requests_total counter\n";
  for (const auto& [key, count] : requests_)
    out += fmt::format("marlin_requests_total{{endpoint=\"{}\",status=\"{}\"}} {}\n", key.first, key.second, count);
  out += "# HELP marlin_prompt_tokens_total Prompt tokens of finished sequences.\n";
  out += "# TYPE marlin_prompt_tokens_total counter\n";
  out += fmt::format("marlin_prompt_tokens_total {}\n", prompt_tokens_);
  out += "# HELP marlin_generation_tokens_total Tokens generated.\n";
  out += "# TYPE marlin_generation_tokens_total counter\n";
  out += fmt::format("marlin_generation_tokens_total {}\n", generated_tokens_);
  out += "# HELP marlin_queue_depth Requests waiting for the scheduler.\n";
  out += "# TYPE marlin_queue_depth gauge\n";
  out += fmt::format("marlin_queue_depth {}\n", gauges.queue_depth);
  out += "# HELP marlin_running_sequences Sequences in the running batch.\n";
  out += "# TYPE marlin_running_sequences gauge\n";
  out += fmt::format("marlin_running_sequences {}\n", gauges.running_sequences);
  if (gauges.kv_blocks.total > 0) {
    const KvBlockGauges& kv = gauges.kv_blocks;
    out += "# HELP marlin_kv_blocks_used KV cache blocks mapped by running sequences.\n";
    out += "# TYPE marlin_kv_blocks_used gauge\n";
    out += fmt::format("marlin_kv_blocks_used {}\n", kv.used);
    out += "# HELP marlin_kv_blocks_cached KV cache blocks kept only for prefix reuse (given back when needed).\n";
    out += "# TYPE marlin_kv_blocks_cached gauge\n";
    out += fmt::format("marlin_kv_blocks_cached {}\n", kv.cached);
    out += "# HELP marlin_kv_blocks_free KV cache blocks free.\n";
    out += "# TYPE marlin_kv_blocks_free gauge\n";
    out += fmt::format("marlin_kv_blocks_free {}\n", kv.free);
    out += "# HELP marlin_kv_blocks_total KV cache blocks in the pool.\n";
    out += "# TYPE marlin_kv_blocks_total gauge\n";
    out += fmt::format("marlin_kv_blocks_total {}\n", kv.total);
  }
  out += "# HELP marlin_time_to_first_token_seconds From a request's arrival to its first generated token.\n";
  out += "# TYPE marlin_time_to_first_token_seconds histogram\n";
  out += time_to_first_token_.render("marlin_time_to_first_token_seconds");
  out += "# HELP marlin_inter_token_latency_seconds Between consecutive tokens of a sequence.\n";
  out += "# TYPE marlin_inter_token_latency_seconds histogram\n";
  out += inter_token_latency_.render("marlin_inter_token_latency_seconds");
  return out;
}

}  // namespace marlin::server
