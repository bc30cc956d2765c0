// POST /v1/chat/completions and /v1/completions: validate, tokenize, queue a Task, and answer from
// its events (as one JSON object, or as server-sent events when streaming).
#include <random>

#include <fmt/format.h>

#include "core/error.h"
#include "server/http_context.h"
#include "server/responses.h"
#include "tokenizer/tokenizer.h"

namespace marlin::server {
namespace {

using nlohmann::json;
using std::chrono::milliseconds;

// How often a waiting HTTP thread wakes up, and after how long without output it writes a
// heartbeat (an SSE comment, or a JSON space) so that a client that left is noticed.
constexpr milliseconds kPollInterval{100};
constexpr milliseconds kHeartbeatAfter{500};
// A non-streaming request that finishes within this is answered with a plain body (and a real
// status on failure); a longer one switches to a chunked body with heartbeats.
constexpr milliseconds kPlainAnswerWait{2000};
// /v1/completions' default max_tokens, as OpenAI's.
constexpr int kLegacyDefaultMaxTokens = 16;

struct Prepared {
  ResponseMeta meta;
  std::vector<SequenceSpec> sequences;
  int n = 1;
  bool stream = false;
  bool include_usage = false;
};

std::vector<int32_t> prompt_tokens(const ServerContext& ctx, const CompletionRequest& r, const PromptInput* p) {
  try {
    if (r.endpoint == Endpoint::kChat) return ctx.engine.chat_prompt(r.messages, true);
    return p->is_tokens ? p->tokens : ctx.engine.raw_prompt(p->text);
  } catch (const Error& e) {
    throw invalid_request(fmt::format("cannot build the prompt: {}", e.what()), r.endpoint == Endpoint::kChat ? "messages" : "prompt");
  }
}

Prepared prepare(ServerContext& ctx, Endpoint endpoint, const std::string& body) {
  const auto& o = ctx.options;
  const json j = parse_json_object(body);
  CompletionRequest r = endpoint == Endpoint::kChat ? parse_chat_request(j, o.limits) : parse_completion_request(j, o.limits);
  if (!r.model.empty() && r.model != o.model_id)
    throw ApiError(404, fmt::format("the model '{}' does not exist (this server has '{}')", r.model, o.model_id),
                   "invalid_request_error", "model", "model_not_found");

  Prepared p;
  const bool chat = endpoint == Endpoint::kChat;
  const uint64_t seed = r.seed ? *r.seed : (uint64_t(std::random_device{}()) << 32 | std::random_device{}());
  const size_t groups = chat ? 1 : r.prompts.size();
  for (size_t g = 0; g < groups; ++g) {
    std::vector<int32_t> prompt = prompt_tokens(ctx, r, chat ? nullptr : &r.prompts[g]);
    const int max_tokens = plan_max_tokens(int64_t(prompt.size()), r.max_tokens, chat ? 0 : kLegacyDefaultMaxTokens,
                                           o.context, chat ? "messages" : "prompt");
    for (int i = 0; i < r.n; ++i) {
      SequenceSpec s;
      s.index = int(g) * r.n + i;
      s.prompt = prompt;
      s.params.sampling = r.sampling;
      s.params.sampling.seed = seed + uint64_t(s.index);
      s.params.max_tokens = max_tokens;
      s.params.stop = r.stop;
      s.params.logit_bias = r.logit_bias;
      s.top_logprobs = r.logprobs ? r.top_logprobs : -1;
      p.sequences.push_back(std::move(s));
    }
  }
  p.n = r.n;
  p.stream = r.stream;
  p.include_usage = r.include_usage;
  const uint64_t number = ctx.next_request++;
  p.meta = {fmt::format("{}-{:x}{:08x}", chat ? "chatcmpl" : "cmpl", number, uint32_t(std::random_device{}())),
            int64_t(std::time(nullptr)), o.model_id, endpoint, r.logprobs};
  return p;
}

// Folds a task's events into the choices and usage of its response.
class Results {
 public:
  Results(size_t choices, int n) : choices_(choices), n_(n) {
    for (size_t i = 0; i < choices; ++i) choices_[i].index = int(i);
  }
  void add(TaskEvent& e) {
    ChoiceResult& c = choices_.at(size_t(e.index));
    switch (e.kind) {
      case TaskEvent::Kind::kDelta:
        c.text += e.text;
        c.logprobs.insert(c.logprobs.end(), e.logprobs.begin(), e.logprobs.end());
        return;
      case TaskEvent::Kind::kFinished:
        c.finish = e.finish;
        if (e.index % n_ == 0) {  // the n choices of a prompt share its tokens: count them once
          usage_.prompt_tokens += e.prompt_tokens;
          usage_.cached_tokens += e.cached_tokens;
        }
        usage_.completion_tokens += e.completion_tokens;
        break;
      case TaskEvent::Kind::kFailed:
        if (error_.empty()) error_ = e.error;
        break;
    }
    ++finished_;
  }
  bool done() const { return finished_ == choices_.size(); }
  const std::vector<ChoiceResult>& choices() const { return choices_; }
  size_t text_size(int index) const { return choices_.at(size_t(index)).text.size(); }
  const Usage& usage() const { return usage_; }
  const std::string& error() const { return error_; }

 private:
  std::vector<ChoiceResult> choices_;
  int n_;
  size_t finished_ = 0;
  Usage usage_;
  std::string error_;  // the first failure
};

TokenText token_text_of(const ServerContext& ctx) {
  const Tokenizer& tokenizer = ctx.engine.tokenizer();
  return [&tokenizer](int32_t id) { return tokenizer.piece(id); };
}

// A write failed: the client went away, so its task is cancelled. Returns false (the provider's
// answer that ends the response).
bool client_left(Task& task) {
  task.cancel();
  current_request().client_left = true;
  return false;
}

void record_usage(const Usage& usage) {
  current_request().prompt_tokens = usage.prompt_tokens;
  current_request().completion_tokens = usage.completion_tokens;
}

// Writes the whole SSE stream; false when the client went away.
bool stream_events(const ServerContext& ctx, Task& task, const Prepared& p, httplib::DataSink& sink) {
  auto write = [&](const std::string& s) { return sink.write(s.data(), s.size()); };
  const TokenText text_of = token_text_of(ctx);
  Results results(task.sequences().size(), p.n);
  if (p.meta.endpoint == Endpoint::kChat)
    for (const auto& s : task.sequences())
      if (!write(sse_event(chunk_json(p.meta, {.index = s.index, .role = true}, p.include_usage, text_of)))) return false;
  auto last_write = Clock::now();
  while (!results.done()) {
    auto event = task.next(kPollInterval);
    if (!event) {
      if (Clock::now() - last_write < kHeartbeatAfter) continue;
      if (!write(": keep-alive\n\n")) return false;
      last_write = Clock::now();
      continue;
    }
    std::string out;
    ChunkContent chunk{.index = event->index};
    switch (event->kind) {
      case TaskEvent::Kind::kDelta:
        if (event->text.empty() && event->logprobs.empty()) break;
        chunk.text = event->text;
        chunk.logprobs = event->logprobs;
        chunk.text_offset = results.text_size(event->index);
        out = sse_event(chunk_json(p.meta, chunk, p.include_usage, text_of));
        break;
      case TaskEvent::Kind::kFinished:
        chunk.finish = event->finish;
        out = sse_event(chunk_json(p.meta, chunk, p.include_usage, text_of));
        break;
      case TaskEvent::Kind::kFailed:
        out = sse_event(error_json(ApiError(500, event->error, "server_error")));
        break;
    }
    results.add(*event);
    if (out.empty()) continue;
    if (!write(out)) return false;
    last_write = Clock::now();
  }
  record_usage(results.usage());
  if (p.include_usage && !write(sse_event(usage_chunk_json(p.meta, results.usage())))) return false;
  return write(std::string(kSseDone));
}

json final_body(const ServerContext& ctx, const Prepared& p, const Results& results) {
  record_usage(results.usage());
  if (!results.error().empty()) return error_json(ApiError(500, results.error(), "server_error"));
  return completion_json(p.meta, results.choices(), results.usage(), token_text_of(ctx));
}

void answer_plain_or_chunked(ServerContext& ctx, std::shared_ptr<Task> task, std::shared_ptr<const Prepared> p,
                             httplib::Response& res) {
  auto results = std::make_shared<Results>(task->sequences().size(), p->n);
  const auto deadline = Clock::now() + kPlainAnswerWait;
  while (!results->done() && Clock::now() < deadline)
    if (auto event = task->next(kPollInterval)) results->add(*event);
  if (results->done()) {
    const json body = final_body(ctx, *p, *results);
    res.status = results->error().empty() ? 200 : 500;
    res.set_content(dump(body), "application/json");
    return;
  }
  // JSON may start with whitespace: spaces keep testing the connection while the answer grows.
  // (cpp-httplib compresses exactly "application/json", which would hold the spaces back.)
  res.set_chunked_content_provider(
      "application/json; charset=utf-8",
      [&ctx, task, p, results](size_t, httplib::DataSink& sink) {
        auto last_write = Clock::now();
        while (!results->done()) {
          if (auto event = task->next(kPollInterval)) results->add(*event);
          if (Clock::now() - last_write >= kHeartbeatAfter) {
            if (!sink.write(" ", 1)) return client_left(*task);
            last_write = Clock::now();
          }
        }
        const std::string body = dump(final_body(ctx, *p, *results));
        if (!sink.write(body.data(), body.size())) return client_left(*task);
        sink.done();
        return true;
      },
      [task](bool) { task->cancel(); });
}

}  // namespace

void handle_completion(ServerContext& ctx, Endpoint endpoint, const httplib::Request& req, httplib::Response& res) {
  auto prepared = std::make_shared<const Prepared>(prepare(ctx, endpoint, req.body));
  const Prepared& p = *prepared;
  current_request().id = p.meta.id;
  auto task = std::make_shared<Task>(p.meta.id, p.sequences);
  switch (ctx.scheduler.submit(task)) {
    case SubmitResult::kAccepted: break;
    case SubmitResult::kQueueFull:
      res.set_header("Retry-After", "1");
      throw ApiError(503, "the server is busy (its queue is full); retry later", "server_error", {}, "queue_full");
    case SubmitResult::kShuttingDown:
      res.set_header("Retry-After", "5");
      throw ApiError(503, "the server is shutting down", "server_error", {}, "shutting_down");
  }
  if (!p.stream) return answer_plain_or_chunked(ctx, task, prepared, res);
  res.set_header("Cache-Control", "no-cache");
  res.set_chunked_content_provider(
      "text/event-stream",
      [&ctx, task, prepared](size_t, httplib::DataSink& sink) {
        if (!stream_events(ctx, *task, *prepared, sink)) return client_left(*task);
        sink.done();
        return true;
      },
      [task](bool) { task->cancel(); });
}

}  // namespace marlin::server
