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

namespace {

// One unlabelled counter or gauge: its HELP and TYPE lines, then its value.
void append_metric(std::string& out, const char* name, const char* type, const char* help, uint64_t value) {
  out += fmt::format("# HELP {} {}\n# TYPE {} {}\n{} {}\n", name, help, name, type, name, value);
}

}  // namespace

std::string Metrics::render(const SchedulerGauges& gauges) const {
  std::lock_guard lock(mutex_);
  std::string out;
  out += "# HELP marlin_requests_total HTTP requests answered, by endpoint and status.\n";
  out += "# TYPE marlin_requests_total counter\n";
  for (const auto& [key, count] : requests_)
    out += fmt::format("marlin_requests_total{{endpoint=\"{}\",status=\"{}\"}} {}\n", key.first, key.second, count);
  append_metric(out, "marlin_prompt_tokens_total", "counter", "Prompt tokens of finished sequences.", prompt_tokens_);
  append_metric(out, "marlin_generation_tokens_total", "counter", "Tokens generated.", generated_tokens_);
  append_metric(out, "marlin_queue_depth", "gauge", "Requests waiting for the scheduler.", uint64_t(gauges.queue_depth));
  append_metric(out, "marlin_running_sequences", "gauge", "Sequences in the running batch.",
                uint64_t(gauges.running_sequences));
  if (gauges.kv_blocks.total > 0) {
    const KvBlockGauges& kv = gauges.kv_blocks;
    append_metric(out, "marlin_kv_blocks_used", "gauge", "KV cache blocks mapped by running sequences.",
                  uint64_t(kv.used));
    append_metric(out, "marlin_kv_blocks_cached", "gauge",
                  "KV cache blocks kept only for prefix reuse (given back when needed).", uint64_t(kv.cached));
    append_metric(out, "marlin_kv_blocks_free", "gauge", "KV cache blocks free.", uint64_t(kv.free));
    append_metric(out, "marlin_kv_blocks_total", "gauge", "KV cache blocks in the pool.", uint64_t(kv.total));
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
