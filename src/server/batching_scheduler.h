// Continuous batching: one thread owns the model and a KV cache of `max_batch` slots. Every step
// it admits waiting sequences into free slots (feeding at most `prefill_chunk` prompt tokens per
// step, so a long prompt never stalls the running streams), then advances every running sequence
// by one token in a single decode step, and publishes each sequence's text. Sequences join and
// leave the batch at any step; a cancelled one frees its slot at the next step.
//
// A finished sequence leaves its tokens in its slot: a new prompt goes to the free slot sharing the
// longest prefix with it and only computes the rest (a chat's system prompt, a growing conversation).
//
// Each sequence gets exactly what it gets alone: the model decodes every slot at its own length,
// and each has its own Sampler seeded by its request.
#pragma once

#include <condition_variable>
#include <deque>
#include <memory>
#include <mutex>
#include <thread>
#include <vector>

#include "runtime/engine.h"
#include "server/scheduler.h"

namespace marlin::server {

struct BatchingOptions {
  int64_t context = 4096;  // positions per slot (prompt + answer)
  int max_batch = 8;       // slots: sequences running together
  size_t max_queue = 64;   // tasks that may wait (besides those admitted)
  int prefill_chunk = 256; // most prompt tokens fed per step
};

class BatchingScheduler final : public Scheduler {
 public:
  BatchingScheduler(Engine& engine, const BatchingOptions& options, Metrics& metrics);
  ~BatchingScheduler() override;

  SubmitResult submit(std::shared_ptr<Task> task) override;
  void drain(Clock::time_point deadline) override;
  SchedulerGauges gauges() const override;

 private:
  struct Running;  // a sequence in a slot
  struct Waiting {
    std::shared_ptr<Task> task;
    const SequenceSpec* spec;
  };

  void loop();
  // Moves waiting sequences into free slots; returns false when stopping with nothing left.
  bool admit();
  // The free slot whose cached tokens share the longest prefix with `prompt` (-1: none free).
  int pick_slot(const std::vector<int32_t>& prompt) const;
  // How many leading prompt tokens the slot's cache already holds (never the whole prompt).
  size_t reusable_prefix(int slot, const std::vector<int32_t>& prompt) const;
  void start(const Waiting& waiting, int slot);
  // Picks r's next token from `logits` (one row) with its logit bias, as Session does.
  int32_t sample_on_host(Running& r, const float* logits);
  void prefill();
  void decode();
  // Records a sampled token and publishes its text; false when the sequence is done.
  bool accept(Running& r, int32_t token, std::span<const float> logits);
  void finish(int slot, FinishReason reason);
  void fail(int slot, const std::string& message);
  void publish_gauges();

  Engine& engine_;
  const BatchingOptions options_;
  Metrics& metrics_;
  std::unique_ptr<KvCache> cache_;
  std::vector<std::unique_ptr<Running>> slots_;  // by slot; null: free
  std::vector<std::vector<int32_t>> cached_;     // by free slot: the tokens its finished sequence left
  std::deque<Waiting> waiting_;                  // sequences of admitted tasks not yet in a slot
  std::vector<float> logits_;                    // a step's logits, when sampled on the host
  std::vector<float> sampled_logits_;            // what the host sampler modifies
  SampleBatch request_;                          // a step's sampling rows (sampled where the model runs)
  std::vector<int32_t> seqs_, tokens_, next_;    // a decode step's slots, fed and sampled tokens

  mutable std::mutex mutex_;
  std::condition_variable wake_;  // a task arrived, or stopping
  std::condition_variable idle_;  // nothing queued, waiting or running
  std::deque<std::shared_ptr<Task>> queue_;
  int running_sequences_ = 0;
  int64_t kv_used_ = 0;
  bool busy_ = false;        // the scheduler thread holds sequences (waiting or in slots)
  bool cancel_all_ = false;  // drain's deadline passed: cancel every task the thread holds
  bool accepting_ = true;
  bool stopping_ = false;
  std::thread thread_;
};

}  // namespace marlin::server
