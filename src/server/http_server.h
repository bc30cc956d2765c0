// The HTTP layer of `marlin serve`: routes of the OpenAI-compatible API over cpp-httplib. It parses
// and validates requests, tokenizes prompts (the tokenizer and chat template are read-only and
// thread-safe), hands tasks to the Scheduler and turns their events into responses; it never
// touches the model or its caches.
#pragma once

#include <cstdint>
#include <memory>
#include <string>

#include "server/request.h"

namespace marlin {
class Engine;
}

namespace marlin::server {

class Scheduler;
class Metrics;

struct ServerOptions {
  std::string host = "127.0.0.1";
  int port = 8080;          // 0: any free port (see HttpServer::port)
  std::string api_key;      // empty: no authentication
  std::string model_id;     // what /v1/models lists and requests may name
  int64_t context = 0;      // tokens per sequence (prompt + answer)
  size_t max_body_bytes = 4 << 20;
  int http_threads = 16;    // connections served at once (each waiting client holds one)
  RequestLimits limits;
};

class HttpServer {
 public:
  // `engine` is only read (tokenizer, chat template); the scheduler owns the model.
  HttpServer(ServerOptions options, const Engine& engine, Scheduler& scheduler, Metrics& metrics);
  ~HttpServer();

  // Binds the address; marlin::Error naming it when that fails. Returns the port.
  int bind();
  // Serves until stop(); responses in flight are finished first.
  void serve();
  // Stops accepting connections (thread-safe).
  void stop();

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace marlin::server
