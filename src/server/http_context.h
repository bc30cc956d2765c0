// What the HTTP routes share (internal to src/server): options, the read-only engine, the
// scheduler, metrics, and the record of the request each HTTP thread is serving (for its log line).
#pragma once

#include <httplib.h>

#include <atomic>
#include <cstdint>
#include <string>

#include "runtime/engine.h"
#include "server/api_error.h"
#include "server/http_server.h"
#include "server/metrics.h"
#include "server/scheduler.h"

namespace marlin::server {

struct ServerContext {
  ServerOptions options;
  const Engine& engine;
  Scheduler& scheduler;
  Metrics& metrics;
  int64_t started = 0;  // Unix seconds, the models' "created"
  std::atomic<uint64_t> next_request{1};
};

// The request the calling HTTP thread is serving: httplib runs a request's handler, its content
// provider and its logger on one thread.
struct RequestRecord {
  std::string id;  // empty until a handler names it
  int64_t prompt_tokens = -1;  // -1: not a generation request
  int64_t completion_tokens = -1;
  bool client_left = false;  // the client went away before the answer was complete
  Clock::time_point start = Clock::now();
};
RequestRecord& current_request();

// Sends OpenAI's error object with the error's status.
void send_error(httplib::Response& res, const ApiError& error);
// Sends a JSON value with status 200.
void send_json(httplib::Response& res, const nlohmann::json& value);

// POST /v1/chat/completions and /v1/completions.
void handle_completion(ServerContext& ctx, Endpoint endpoint, const httplib::Request& req, httplib::Response& res);

}  // namespace marlin::server
