// marlin serve: the OpenAI-compatible HTTP server (see docs/server.md).
#include <pthread.h>
#include <signal.h>

#include <algorithm>
#include <atomic>
#include <filesystem>
#include <memory>
#include <thread>

#include <fmt/format.h>

#include "cli/commands.h"
#include "cli/common.h"
#include "core/error.h"
#include "runtime/engine.h"
#include "server/http_server.h"
#include "server/metrics.h"
#include "server/batching_scheduler.h"
#include "tokenizer/tokenizer.h"

namespace marlin::cli {
namespace {

struct ServeOptions {
  std::string model;
  std::string host = "127.0.0.1";
  int port = 8080;
  std::string api_key;
  std::string api_key_file;
  int max_queue = 64;
  int context = 4096;
  int max_batch = 8;
  int prefill_chunk = 256;
  int64_t kv_blocks = 0;  // 0: max_batch × ctx positions' worth
  int block_size = 16;
  std::string device = "cpu";
  int threads = 0;
  size_t max_body = 4 << 20;
  int max_n = 16;
  double shutdown_timeout = 10;
  bool warm_up = true;
};

std::string trimmed(std::string s) {
  const auto not_space = [](unsigned char c) { return !std::isspace(c); };
  s.erase(s.begin(), std::find_if(s.begin(), s.end(), not_space));
  s.erase(std::find_if(s.rbegin(), s.rend(), not_space).base(), s.end());
  return s;
}

// The file's name without its extension, as /v1/models lists it.
std::string model_id(const std::string& path) { return std::filesystem::path(path).stem().string(); }

void serve(const ServeOptions& o) {
  // SIGINT and SIGTERM are blocked in every thread (threads inherit the mask) and taken by one
  // waiting thread, which shuts the server down in order.
  sigset_t stop_signals;
  sigemptyset(&stop_signals);
  sigaddset(&stop_signals, SIGINT);
  sigaddset(&stop_signals, SIGTERM);
  pthread_sigmask(SIG_BLOCK, &stop_signals, nullptr);
  signal(SIGPIPE, SIG_IGN);  // a client that left is a failed write, not a dead server

  std::string api_key = o.api_key;
  if (!o.api_key_file.empty()) {
    api_key = trimmed(read_text_file(o.api_key_file));
    MARLIN_CHECK(!api_key.empty(), "the API key file '{}' is empty", o.api_key_file);
  }
  const std::string model_path = resolve_model_path(o.model);
  Engine engine({model_path, o.threads, parse_device(o.device)});
  const ModelConfig& config = engine.model().config();
  const int64_t context = std::min<int64_t>(o.context, config.context_length);
  if (o.warm_up) fmt::print(stderr, "marlin serve: warmed up in {:.2f} s\n", engine.warm_up());

  server::Metrics metrics;
  server::BatchingOptions batching;
  batching.context = context;
  batching.max_batch = o.max_batch;
  batching.max_queue = size_t(o.max_queue);
  batching.prefill_chunk = o.prefill_chunk;
  batching.block_size = o.block_size;
  batching.kv_blocks = o.kv_blocks;
  server::BatchingScheduler scheduler(engine, batching, metrics);
  server::ServerOptions options;
  options.host = o.host;
  options.port = o.port;
  options.api_key = api_key;
  options.model_id = model_id(model_path);
  // One sequence may hold at most the whole pool: longer requests are refused as over the context.
  options.context = std::min<int64_t>(context, scheduler.gauges().kv_blocks.total * o.block_size);
  options.max_body_bytes = o.max_body;
  // Every queued or running request holds an HTTP thread while it waits; a few more serve
  // /health, /metrics and tokenization meanwhile.
  options.http_threads = o.max_queue + o.max_batch + 8;
  options.limits.vocab_size = std::min<int>(engine.tokenizer().vocab_size(), int(config.vocab_size));
  options.limits.max_n = o.max_n;
  server::HttpServer http(options, engine, scheduler, metrics);
  const int port = http.bind();
  fmt::print(stderr, "marlin serve: {} ({}, context {}, {} sequences at once, {} KV blocks of {}) on http://{}:{}{}\n",
             options.model_id, engine.model().device_description(), options.context, o.max_batch,
             scheduler.gauges().kv_blocks.total, o.block_size, o.host, port, api_key.empty() ? "" : " (API key required)");

  std::atomic<bool> finished{false};
  std::thread signal_waiter([&] {
    int signal_number = 0;
    sigwait(&stop_signals, &signal_number);
    if (finished) return;
    fmt::print(stderr, "marlin serve: shutting down (finishing requests in flight, at most {}s)\n", o.shutdown_timeout);
    http.stop();
    scheduler.drain(server::Clock::now() + std::chrono::milliseconds(int64_t(o.shutdown_timeout * 1000)));
  });
  http.serve();
  finished = true;
  pthread_kill(signal_waiter.native_handle(), SIGTERM);  // wakes the waiter when serve() ended on its own
  signal_waiter.join();
  scheduler.drain(server::Clock::now());
  fmt::print(stderr, "marlin serve: stopped\n");
}

}  // namespace

void register_serve(CLI::App& app) {
  auto o = std::make_shared<ServeOptions>();
  auto* c = app.add_subcommand("serve", "Serve the model over an OpenAI-compatible HTTP API (see docs/server.md)");
  c->add_option("-m,--model", o->model, "GGUF model file (default: the model scripts/setup.sh fetches)");
  c->add_option("--host", o->host, "Address to listen on (0.0.0.0: every interface)")->capture_default_str();
  c->add_option("--port", o->port, "TCP port (0: any free port, printed at start)")->capture_default_str()->check(CLI::Range(0, 65535));
  auto* key = c->add_option("--api-key", o->api_key, "Require 'Authorization: Bearer KEY' on every route but /health");
  c->add_option("--api-key-file", o->api_key_file, "Read the API key from this file (keeps it out of the process list)")
      ->check(CLI::ExistingFile)
      ->excludes(key);
  c->add_option("--max-queue", o->max_queue, "Requests that may wait for the model; more are answered 503 with Retry-After")
      ->capture_default_str()
      ->check(CLI::Range(1, 1024));
  c->add_option("-c,--ctx", o->context, "Context size in tokens per sequence (prompt + answer; capped at the model's)")
      ->capture_default_str()
      ->check(CLI::Range(16, 1 << 20));
  c->add_option("--max-batch", o->max_batch,
                "Most sequences decoding together (each up to --ctx positions, in blocks of the shared KV pool)")
      ->capture_default_str()
      ->check(CLI::Range(1, 1024));
  c->add_option("--kv-blocks", o->kv_blocks,
                "KV cache blocks shared by all sequences, allocated at start (default: --max-batch x --ctx positions' "
                "worth). Fewer: a request waits until blocks for its prompt + max_tokens can be reserved; the context of one "
                "request is at most all blocks")
      ->check(CLI::Range(int64_t(1), int64_t(1) << 30));
  c->add_option("--block-size", o->block_size,
                "Positions per KV cache block (the unit of allocation and of prompt-prefix sharing)")
      ->capture_default_str()
      ->check(CLI::IsMember({16, 32, 64}));
  c->add_option("--prefill-chunk", o->prefill_chunk,
                "Most prompt tokens fed per step, so a long prompt never stalls the running streams")
      ->capture_default_str()
      ->check(CLI::Range(1, 1 << 20));
  add_device_option(c, o->device);
  c->add_option("-t,--threads", o->threads, "Worker threads for the model (default: one per core)")->check(CLI::Range(0, 1024));
  c->add_option("--max-body", o->max_body, "Largest request body in bytes (larger: 413)")
      ->capture_default_str()
      ->check(CLI::Range(size_t(1024), size_t(1) << 30));
  c->add_option("--max-n", o->max_n, "Most choices ('n') per prompt")->capture_default_str()->check(CLI::Range(1, 128));
  c->add_option("--shutdown-timeout", o->shutdown_timeout,
                "On SIGTERM/SIGINT, seconds to let requests in flight finish before cancelling them")
      ->capture_default_str()
      ->check(CLI::Range(0.0, 3600.0));
  c->add_flag("!--no-warmup", o->warm_up,
              "Skip the short prompt and decode step run before listening (they take the GPU's one-time start-up "
              "costs off the first request)");
  c->callback([o] { serve(*o); });
}

}  // namespace marlin::cli
