// Counters, gauges and latency histograms of the server, rendered in Prometheus' text format.
// Thread-safe: HTTP threads count requests, the scheduler counts tokens and latencies.
#pragma once

#include <cstdint>
#include <map>
#include <mutex>
#include <string>
#include <vector>

namespace marlin::server {

class Histogram {
 public:
  // `bounds`: the buckets' upper bounds, increasing (a +Inf bucket is implied).
  explicit Histogram(std::vector<double> bounds);
  void observe(double value);
  // The _bucket, _sum and _count lines of metric `name`.
  std::string render(const std::string& name) const;

 private:
  std::vector<double> bounds_;
  std::vector<uint64_t> counts_;  // per bucket (not cumulative), the last one is +Inf
  double sum_ = 0;
  uint64_t count_ = 0;
};

// The paged KV cache's blocks: used + cached + free = total.
struct KvBlockGauges {
  int64_t used = 0;    // mapped by a running sequence
  int64_t cached = 0;  // kept only for prefix reuse (finished sequences' tokens), given back on demand
  int64_t free = 0;
  int64_t total = 0;   // 0: not reported
};

// What the scheduler reports when the metrics are rendered.
struct SchedulerGauges {
  int queue_depth = 0;
  int running_sequences = 0;
  KvBlockGauges kv_blocks;
};

class Metrics {
 public:
  Metrics();
  void count_request(const std::string& endpoint, int status);
  void count_tokens(int64_t prompt, int64_t generated);
  void observe_time_to_first_token(double seconds);
  void observe_inter_token_latency(double seconds);
  std::string render(const SchedulerGauges& gauges) const;

 private:
  mutable std::mutex mutex_;
  std::map<std::pair<std::string, int>, uint64_t> requests_;  // (endpoint, status) -> count
  uint64_t prompt_tokens_ = 0;
  uint64_t generated_tokens_ = 0;
  Histogram time_to_first_token_;
  Histogram inter_token_latency_;
};

}  // namespace marlin::server
