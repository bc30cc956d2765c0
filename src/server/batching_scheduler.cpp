#include "server/batching_scheduler.h"

#include <algorithm>
#include <exception>
#include <optional>

#include "core/error.h"
#include "runtime/sampler.h"
#include "runtime/stop_matcher.h"
#include "tokenizer/tokenizer.h"

namespace marlin::server {
namespace {

double seconds_between(Clock::time_point a, Clock::time_point b) { return std::chrono::duration<double>(b - a).count(); }

void publish_cancelled(Task& task, const SequenceSpec& spec) {
  TaskEvent done{.kind = TaskEvent::Kind::kFinished, .index = spec.index};
  done.finish = FinishReason::kCancelled;
  task.publish(std::move(done));
}

}  // namespace

// What Session::generate keeps for one sequence, kept across steps instead.
struct BatchingScheduler::Running {
  Running(std::shared_ptr<Task> task_, const SequenceSpec& spec_, int slot_, const Tokenizer& tokenizer, int vocab)
      : task(std::move(task_)),
        spec(spec_),
        slot(slot_),
        sampler(spec_.params.sampling, vocab),
        stream(tokenizer, /*skip_special=*/true),
        stops(spec_.params.stop),
        history(spec_.prompt),
        host_logits(spec_.top_logprobs >= 0 || !spec_.params.logit_bias.empty()),
        first_of_task(&spec_ == &task->sequences().front()) {}

  bool prefilled() const { return prompt_fed == spec.prompt.size(); }

  std::shared_ptr<Task> task;
  const SequenceSpec& spec;
  const int slot;
  Sampler sampler;
  TokenStream stream;
  StopMatcher stops;
  std::vector<int32_t> history;  // the prompt, then each generated token once it is fed
  size_t prompt_fed = 0;         // prompt tokens in the cache
  size_t cached = 0;             // of which were left by the slot's previous sequence
  int32_t next = 0;              // sampled, not yet fed
  int generated = 0;
  int64_t reserved_blocks = 0;    // the most blocks it may take from the pool
  int64_t allocated_before = 0;   // the slot's allocation count when it started
  const bool host_logits;  // logprobs or a logit bias: sampled on the host from the logits
  const bool first_of_task;
  std::vector<TokenLogprob> pending;  // logprobs of tokens whose text has not been published yet
  std::optional<Clock::time_point> last_token;
};

BatchingScheduler::BatchingScheduler(Engine& engine, const BatchingOptions& options, Metrics& metrics)
    : engine_(engine), options_(options), metrics_(metrics) {
  MARLIN_CHECK(options.max_batch >= 1, "max batch must be >= 1, got {}", options.max_batch);
  MARLIN_CHECK(options.prefill_chunk >= 1, "prefill chunk must be >= 1, got {}", options.prefill_chunk);
  MARLIN_CHECK(options.block_size >= 1, "block size must be >= 1, got {}", options.block_size);
  MARLIN_CHECK(options.kv_blocks >= 0, "kv blocks must be >= 0, got {}", options.kv_blocks);
  cache_ = engine.model().new_cache(options.context, options.max_batch, {options.block_size, options.kv_blocks});
  slots_.resize(size_t(options.max_batch));
  cached_.resize(size_t(options.max_batch));
  finished_at_.resize(size_t(options.max_batch), 0);
  logits_.resize(size_t(options.max_batch) * size_t(engine.model().config().vocab_size));
  next_.resize(size_t(options.max_batch));
  publish_gauges();
  thread_ = std::thread([this] { loop(); });
}

BatchingScheduler::~BatchingScheduler() { drain(Clock::now()); }

SubmitResult BatchingScheduler::submit(std::shared_ptr<Task> task) {
  {
    std::lock_guard lock(mutex_);
    if (!accepting_) return SubmitResult::kShuttingDown;
    if (queue_.size() >= options_.max_queue) return SubmitResult::kQueueFull;
    queue_.push_back(std::move(task));
  }
  wake_.notify_one();
  return SubmitResult::kAccepted;
}

void BatchingScheduler::drain(Clock::time_point deadline) {
  std::unique_lock lock(mutex_);
  accepting_ = false;
  auto is_idle = [&] { return queue_.empty() && !busy_; };
  if (!idle_.wait_until(lock, deadline, is_idle)) {
    for (auto& task : queue_) task->cancel();
    cancel_all_ = true;
    wake_.notify_all();
    idle_.wait(lock, is_idle);  // cancelled sequences leave within one step
  }
  stopping_ = true;
  lock.unlock();
  wake_.notify_all();
  if (thread_.joinable()) thread_.join();
}

SchedulerGauges BatchingScheduler::gauges() const {
  std::lock_guard lock(mutex_);
  SchedulerGauges g;
  g.queue_depth = int(queue_.size());
  g.running_sequences = running_sequences_;
  g.kv_blocks = kv_;
  return g;
}

void BatchingScheduler::loop() {
  while (admit()) {
    publish_gauges();
    for (auto& r : slots_)
      if (r && r->task->cancelled()) finish(r->slot, FinishReason::kCancelled);
    prefill();
    decode();
    publish_gauges();
  }
}

bool BatchingScheduler::admit() {
  const auto any_running = [&] { return std::any_of(slots_.begin(), slots_.end(), [](const auto& r) { return bool(r); }); };
  std::unique_lock lock(mutex_);
  if (!any_running() && waiting_.empty() && queue_.empty()) {
    busy_ = false;
    idle_.notify_all();
    wake_.wait(lock, [&] { return stopping_ || !queue_.empty(); });
    if (queue_.empty()) return false;  // stopping, and nothing left
  }
  busy_ = true;
  if (cancel_all_) {
    for (auto& w : waiting_) w.task->cancel();
    for (auto& r : slots_)
      if (r) r->task->cancel();
  }
  // Tasks whose client left while they waited end now; the others' sequences wait for a slot.
  std::erase_if(queue_, [](const auto& task) {
    if (!task->cancelled()) return false;
    for (const auto& spec : task->sequences()) publish_cancelled(*task, spec);
    return true;
  });
  const auto free_slots = size_t(std::count(slots_.begin(), slots_.end(), nullptr));
  while (!queue_.empty() && waiting_.size() < free_slots) {
    const auto task = std::move(queue_.front());
    queue_.pop_front();
    for (const auto& spec : task->sequences()) waiting_.push_back({task, &spec});
  }
  lock.unlock();

  std::erase_if(waiting_, [](const Waiting& w) {
    if (!w.task->cancelled()) return false;
    publish_cancelled(*w.task, *w.spec);
    return true;
  });
  while (!waiting_.empty()) {
    const Waiting& next = waiting_.front();
    if (!valid(next)) {
      waiting_.pop_front();
      continue;
    }
    Placement p = place(next.spec->prompt);
    if (p.slot < 0) break;
    const auto fits = [&] {
      // Blocks a finished sequence kept stop being given back once a running sequence maps them.
      const int64_t pinned = p.source >= 0 && !slots_[size_t(p.source)] ? cache_->blocks().blocks_for(p.shared) : 0;
      return blocks_to_reserve(*next.spec, p.shared) + pinned <=
             cache_->blocks().free_blocks() + retained_blocks() - outstanding_blocks();
    };
    if (!fits()) {
      if (std::any_of(slots_.begin(), slots_.end(), [](const auto& r) { return bool(r); })) break;  // wait
      make_room(cache_->blocks().total_blocks());  // alone it fits the empty pool (valid() checked)
      p = place(next.spec->prompt);
    }
    start(next, p);
    waiting_.pop_front();
  }
  return true;
}

int64_t BatchingScheduler::reusable_prefix(int slot, const std::vector<int32_t>& prompt) const {
  const Running* r = slots_[size_t(slot)].get();
  const std::vector<int32_t>& tokens = r ? r->history : cached_[size_t(slot)];
  // Always feed at least the last prompt token, to sample from its logits.
  int64_t limit = std::min<int64_t>({int64_t(tokens.size()), cache_->length(slot), int64_t(prompt.size()) - 1});
  if (r) limit = std::min<int64_t>(limit, cache_->length(slot) / cache_->block_size() * cache_->block_size());
  int64_t common = 0;
  while (common < limit && tokens[size_t(common)] == prompt[size_t(common)]) ++common;
  return common;
}

BatchingScheduler::Placement BatchingScheduler::place(const std::vector<int32_t>& prompt) const {
  Placement best;
  for (int slot = 0; slot < int(slots_.size()); ++slot) {
    const int64_t common = reusable_prefix(slot, prompt);
    // On a tie a free slot's own leftover wins: no other slot's leftover is given up for it.
    if (common > best.shared || (common == best.shared && common > 0 && !slots_[size_t(slot)] && best.source >= 0 &&
                                 slots_[size_t(best.source)])) {
      best.source = slot;
      best.shared = common;
    }
  }
  if (best.source >= 0 && !slots_[size_t(best.source)]) {
    best.slot = best.source;
    return best;
  }
  // Another free slot: the one whose leftover is shortest (the least worth keeping).
  for (int slot = 0; slot < int(slots_.size()); ++slot)
    if (!slots_[size_t(slot)] && (best.slot < 0 || cached_[size_t(slot)].size() < cached_[size_t(best.slot)].size()))
      best.slot = slot;
  if (best.shared == 0) best.source = -1;
  return best;
}

int64_t BatchingScheduler::blocks_to_reserve(const SequenceSpec& spec, int64_t shared) const {
  const int64_t final_length =
      std::min<int64_t>(int64_t(spec.prompt.size()) + std::max(spec.params.max_tokens, 0), cache_->capacity());
  // Whole shared blocks are never written; a partly shared one is copied (counted with the rest).
  return cache_->blocks().blocks_for(final_length) - shared / cache_->block_size();
}

int64_t BatchingScheduler::outstanding_blocks() const {
  int64_t outstanding = 0;
  for (const auto& r : slots_)
    if (r) outstanding += std::max<int64_t>(0, r->reserved_blocks - (cache_->blocks().allocated(r->slot) - r->allocated_before));
  return outstanding;
}

int64_t BatchingScheduler::retained_blocks() const {
  std::vector<bool> running(slots_.size());
  for (size_t s = 0; s < slots_.size(); ++s) running[s] = bool(slots_[s]);
  const KvBlockTable& blocks = cache_->blocks();
  return blocks.total_blocks() - blocks.free_blocks() - blocks.blocks_mapped_by(running);
}

void BatchingScheduler::make_room(int64_t blocks) {
  while (cache_->blocks().free_blocks() < blocks) {
    int oldest = -1;
    for (int slot = 0; slot < int(slots_.size()); ++slot)
      if (!slots_[size_t(slot)] && !cache_->blocks().page_table(slot).empty() &&
          (oldest < 0 || finished_at_[size_t(slot)] < finished_at_[size_t(oldest)]))
        oldest = slot;
    if (oldest < 0) return;
    cache_->truncate(0, oldest);
    cached_[size_t(oldest)].clear();
  }
}

bool BatchingScheduler::valid(const Waiting& waiting) const {
  const SequenceSpec& spec = *waiting.spec;
  const int vocab = engine_.model().config().vocab_size;
  try {
    MARLIN_CHECK(!spec.prompt.empty(), "the prompt is empty");
    MARLIN_CHECK(int64_t(spec.prompt.size()) < cache_->capacity(), "the prompt has {} tokens but the context holds {}",
                 spec.prompt.size(), cache_->capacity());
    MARLIN_CHECK(spec.params.max_tokens >= 0, "max tokens must be >= 0, got {}", spec.params.max_tokens);
    for (const auto& [token, bias] : spec.params.logit_bias)
      MARLIN_CHECK(token >= 0 && token < vocab, "logit bias for token {} outside the vocabulary ({})", token, vocab);
    const int64_t blocks = blocks_to_reserve(spec, 0), total = cache_->blocks().total_blocks();
    MARLIN_CHECK(blocks <= total, "the prompt and max_tokens need {} KV cache blocks but the cache has {}", blocks,
                 total);
    return true;
  } catch (const std::exception& e) {
    waiting.task->publish({.kind = TaskEvent::Kind::kFailed, .index = spec.index, .error = e.what()});
    return false;
  }
}

void BatchingScheduler::start(const Waiting& waiting, const Placement& p) {
  const SequenceSpec& spec = *waiting.spec;
  const int vocab = engine_.model().config().vocab_size;
  std::unique_ptr<Running> running;
  try {
    running = std::make_unique<Running>(waiting.task, spec, p.slot, engine_.tokenizer(), vocab);
  } catch (const std::exception& e) {
    waiting.task->publish({.kind = TaskEvent::Kind::kFailed, .index = spec.index, .error = e.what()});
    return;
  }
  if (p.source == p.slot) {
    cache_->truncate(p.shared, p.slot);
  } else {
    cache_->truncate(0, p.slot);
    if (p.source >= 0) cache_->share_prefix(p.slot, p.source, p.shared);
  }
  running->prompt_fed = running->cached = size_t(p.shared);
  running->reserved_blocks = blocks_to_reserve(spec, p.shared);
  running->allocated_before = cache_->blocks().allocated(p.slot);
  cached_[size_t(p.slot)].clear();
  slots_[size_t(p.slot)] = std::move(running);
}

int32_t BatchingScheduler::sample_on_host(Running& r, const float* logits) {
  const int vocab = engine_.model().config().vocab_size;
  sampled_logits_.assign(logits, logits + vocab);  // the sampler modifies its copy
  for (const auto& [id, bias] : r.spec.params.logit_bias) sampled_logits_[size_t(id)] += bias;
  return r.sampler.sample(sampled_logits_.data(), r.history);
}

void BatchingScheduler::prefill() {
  Model& model = engine_.model();
  const int vocab = model.config().vocab_size;
  size_t budget = size_t(options_.prefill_chunk);
  for (auto& slot : slots_) {
    if (budget == 0) break;
    if (!slot || slot->prefilled()) continue;
    Running& r = *slot;
    const size_t count = std::min(budget, r.spec.prompt.size() - r.prompt_fed);
    const std::span<const int32_t> chunk(r.spec.prompt.data() + r.prompt_fed, count);
    budget -= count;
    const int64_t length = cache_->length(r.slot);
    make_room(cache_->blocks().blocks_needed(r.slot, length, length + int64_t(count)));
    try {
      if (r.prompt_fed + count < r.spec.prompt.size()) {
        model.forward_sequence(r.slot, chunk, *cache_, logits_.data(), false);
        r.prompt_fed += count;
        continue;
      }
      int32_t token = 0;
      if (r.host_logits) {
        model.forward_sequence(r.slot, chunk, *cache_, logits_.data(), false);
        token = sample_on_host(r, logits_.data());
      } else {
        request_.rows.clear();
        request_.penalties.clear();
        r.sampler.add_row(r.history, request_);
        token = model.sample_sequence(r.slot, chunk, *cache_, request_);
      }
      r.prompt_fed += count;
      if (r.spec.params.max_tokens == 0)
        finish(r.slot, FinishReason::kLength);
      else
        accept(r, token, r.host_logits ? std::span<const float>(logits_.data(), size_t(vocab)) : std::span<const float>());
    } catch (const std::exception& e) {
      fail(r.slot, e.what());
    }
  }
}

void BatchingScheduler::decode() {
  Model& model = engine_.model();
  const size_t vocab = size_t(model.config().vocab_size);
  std::vector<Running*> rows;
  seqs_.clear();
  tokens_.clear();
  bool host = false;
  for (auto& slot : slots_) {
    if (!slot || !slot->prefilled()) continue;
    rows.push_back(slot.get());
    slot->history.push_back(slot->next);
    seqs_.push_back(slot->slot);
    tokens_.push_back(slot->next);
    host = host || slot->host_logits;
  }
  if (rows.empty()) return;
  int64_t needed = 0;
  for (const int seq : seqs_) needed += cache_->blocks().blocks_needed(seq, cache_->length(seq), cache_->length(seq) + 1);
  make_room(needed);
  try {
    if (host) {
      // One row needs the logits here: they all come, and every row is sampled here (the same
      // token as where the model runs).
      model.decode_sequences(seqs_, tokens_, *cache_, logits_.data());
      for (size_t i = 0; i < rows.size(); ++i) {
        const float* row = logits_.data() + i * vocab;
        accept(*rows[i], sample_on_host(*rows[i], row), std::span<const float>(row, vocab));
      }
    } else {
      request_.rows.clear();
      request_.penalties.clear();
      for (Running* r : rows) r->sampler.add_row(r->history, request_);
      model.decode_sequences_sample(seqs_, tokens_, *cache_, request_, next_.data());
      for (size_t i = 0; i < rows.size(); ++i) accept(*rows[i], next_[i], {});
    }
  } catch (const std::exception& e) {
    for (int seq : seqs_)
      if (slots_[size_t(seq)]) fail(seq, e.what());
  }
}

bool BatchingScheduler::accept(Running& r, int32_t token, std::span<const float> logits) {
  const auto now = Clock::now();
  if (r.last_token)
    metrics_.observe_inter_token_latency(seconds_between(*r.last_token, now));
  else if (r.first_of_task)
    metrics_.observe_time_to_first_token(seconds_between(r.task->arrival(), now));
  r.last_token = now;
  r.generated++;
  const GenerationParams& params = r.spec.params;
  const bool ends_turn = params.stop_at_end_of_turn && engine_.tokenizer().is_end_of_turn(token);
  if (r.spec.top_logprobs >= 0 && !ends_turn) r.pending.push_back(token_logprob(logits, token, r.spec.top_logprobs));
  std::optional<FinishReason> reason;
  if (r.task->cancelled()) {
    reason = FinishReason::kCancelled;
  } else if (ends_turn) {
    reason = FinishReason::kEndOfTurn;
  } else {
    std::string text = r.stops.push(r.stream.push(token));
    if (!text.empty()) {
      r.task->publish({.kind = TaskEvent::Kind::kDelta, .index = r.spec.index, .text = std::move(text), .logprobs = std::move(r.pending)});
      r.pending.clear();
    }
    if (r.stops.stopped())
      reason = FinishReason::kStopString;
    else if (r.generated == params.max_tokens)
      reason = FinishReason::kLength;
    else if (cache_->length(r.slot) + 1 > cache_->capacity())
      reason = FinishReason::kContextFull;
  }
  if (reason) {
    finish(r.slot, *reason);
    return false;
  }
  r.next = token;
  return true;
}

void BatchingScheduler::finish(int slot, FinishReason reason) {
  Running& r = *slots_[size_t(slot)];
  if (reason != FinishReason::kStopString && reason != FinishReason::kCancelled) {
    std::string text = r.stops.push(r.stream.flush()) + r.stops.flush();
    if (!text.empty()) {
      r.task->publish({.kind = TaskEvent::Kind::kDelta, .index = r.spec.index, .text = std::move(text), .logprobs = std::move(r.pending)});
      r.pending.clear();
    }
  }
  if (!r.pending.empty()) r.task->publish({.kind = TaskEvent::Kind::kDelta, .index = r.spec.index, .logprobs = std::move(r.pending)});
  metrics_.count_tokens(int64_t(r.spec.prompt.size()), r.generated);
  TaskEvent done{.kind = TaskEvent::Kind::kFinished, .index = r.spec.index};
  done.finish = reason;
  done.prompt_tokens = int(r.spec.prompt.size());
  done.completion_tokens = r.generated;
  done.cached_tokens = int(r.cached);
  r.task->publish(std::move(done));
  if (reason == FinishReason::kCancelled) {
    cache_->truncate(0, slot);
  } else {
    cached_[size_t(slot)] = std::move(r.history);  // a later prompt with the same prefix reuses it
    finished_at_[size_t(slot)] = ++finishes_;
  }
  slots_[size_t(slot)].reset();
}

void BatchingScheduler::fail(int slot, const std::string& message) {
  Running& r = *slots_[size_t(slot)];
  r.task->publish({.kind = TaskEvent::Kind::kFailed, .index = r.spec.index, .error = message});
  cache_->truncate(0, slot);
  slots_[size_t(slot)].reset();
}

void BatchingScheduler::publish_gauges() {
  int running = 0;
  std::vector<bool> in_batch(slots_.size());
  for (size_t slot = 0; slot < slots_.size(); ++slot) {
    in_batch[slot] = bool(slots_[slot]);
    running += in_batch[slot];
  }
  const KvBlockTable& blocks = cache_->blocks();
  KvBlockGauges kv;
  kv.total = blocks.total_blocks();
  kv.free = blocks.free_blocks();
  kv.used = blocks.blocks_mapped_by(in_batch);
  kv.cached = kv.total - kv.free - kv.used;
  std::lock_guard lock(mutex_);
  running_sequences_ = running;
  kv_ = kv;
}

}  // namespace marlin::server
