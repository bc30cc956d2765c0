// Continuous batching: one thread owns the model and a KV cache of `max_batch` slots. Every step
// it admits waiting sequences into free slots (feeding at most `prefill_chunk` prompt tokens per
// step, so a long prompt never stalls the running streams), then advances every running sequence
// by one token in a single decode step, and publishes each sequence's text. Sequences join and
// leave the batch at any step; a cancelled one frees its slot at the next step.
//
// The KV cache is paged (model/kv_cache.h): `kv_blocks` blocks of `block_size` positions shared by
// every slot. A new prompt starts from the longest prefix it shares with what another slot's cache
// holds and only computes the rest (a chat's system prompt, a growing conversation, n > 1): from a
// running sequence's whole blocks, mapped into its own page table, or from the blocks a finished
// sequence left in its slot (kept until their room is needed, oldest first; the new sequence takes
// that slot). Shared blocks are copied before they are written.
//
// Admission reserves blocks: a sequence enters the batch only when the pool can give it, besides
// what the running sequences may still take, the blocks for its prompt and max_tokens answer (in
// the worst case: no end of turn, no stop string); until then it waits (in order), so a running
// sequence never runs out of blocks. A sequence that could not fit even alone fails at once.
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
  int block_size = 16;     // positions per KV block
  int64_t kv_blocks = 0;   // KV blocks shared by the slots; 0: max_batch × context positions' worth
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
  // Where a new sequence goes: a free slot, and the slot whose cache holds the first `shared`
  // prompt tokens it starts from (`source` == `slot`: the slot's own leftover; -1: none).
  struct Placement {
    int slot = -1;
    int source = -1;
    int64_t shared = 0;
  };
  // The placement reusing the most prompt tokens (slot -1: no slot is free).
  Placement place(const std::vector<int32_t>& prompt) const;
  // How many leading prompt tokens the slot's cache holds that a new sequence may take (never the
  // whole prompt; whole blocks only from a running sequence, which goes on writing its last block).
  int64_t reusable_prefix(int slot, const std::vector<int32_t>& prompt) const;
  // Blocks the sequence may take from the pool after starting with `shared` positions.
  int64_t blocks_to_reserve(const SequenceSpec& spec, int64_t shared) const;
  // Blocks the running sequences may still take from the pool.
  int64_t outstanding_blocks() const;
  // Blocks kept only by free slots (finished sequences' prefixes), which can be given back.
  int64_t retained_blocks() const;
  // Gives back finished sequences' blocks, oldest first, until `blocks` are free (or none is left).
  void make_room(int64_t blocks);
  // Checks a sequence before it starts; publishes its failure and returns false when it cannot.
  bool valid(const Waiting& waiting) const;
  void start(const Waiting& waiting, const Placement& placement);
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
  std::vector<uint64_t> finished_at_;            // by free slot: when its sequence finished (a count)
  uint64_t finishes_ = 0;
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
  KvBlockGauges kv_;
  bool busy_ = false;        // the scheduler thread holds sequences (waiting or in slots)
  bool cancel_all_ = false;  // drain's deadline passed: cancel every task the thread holds
  bool accepting_ = true;
  bool stopping_ = false;
  std::thread thread_;
};

}  // namespace marlin::server
