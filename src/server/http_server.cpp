#include "server/http_server.h"

#include <cstdio>
#include <ctime>
#include <exception>

#include <fmt/format.h>

#include "core/error.h"
#include "server/auth.h"
#include "server/chat_page.h"
#include "server/guarded_server.h"
#include "server/http_context.h"
#include "server/responses.h"
#include "tokenizer/tokenizer.h"

namespace marlin::server {
namespace {

using nlohmann::json;

// What a request's head may hold: bytes of request line and headers, and header lines.
constexpr size_t kMaxHeaderBytes = 32 << 10;
constexpr size_t kMaxHeaderLines = 100;
// httplib adds REMOTE_ADDR, REMOTE_PORT, LOCAL_ADDR and LOCAL_PORT to every request's headers.
constexpr size_t kHeadersHttplibAdds = 4;

ConnectionLimits connection_limits(const ServerOptions& o) {
  ConnectionLimits limits;
  limits.max_header_bytes = kMaxHeaderBytes;
  // A chunked body's framing may take as much room as its data (httplib bounds only a body with
  // Content-Length by the payload limit; the routes check a chunked one's size).
  limits.max_body_bytes = 2 * o.max_body_bytes + (64 << 10);
  return limits;
}

ApiError error_for_limit(ReadLimit limit, size_t max_body_bytes) {
  switch (limit) {
    case ReadLimit::kHeadersTooLarge:
      return ApiError(431, fmt::format("the request line and headers exceed {} bytes", kMaxHeaderBytes),
                      "invalid_request_error", {}, "headers_too_large");
    case ReadLimit::kHeadersTooSlow:
      return ApiError(408, "the request headers did not arrive in time", "invalid_request_error", {}, "request_timeout");
    case ReadLimit::kBodyTooLarge:
      return ApiError(413, fmt::format("the request body is larger than {} bytes", max_body_bytes), "invalid_request_error",
                      {}, "request_too_large");
    case ReadLimit::kBodyTooSlow:
      return ApiError(408, "the request body did not arrive in time", "invalid_request_error", {}, "request_timeout");
    case ReadLimit::kEndedEarly:
      return ApiError(400, "the request ended before its body was complete", "invalid_request_error", {}, "truncated_body");
    case ReadLimit::kNone: break;
  }
  return ApiError(400, "malformed HTTP request", "invalid_request_error");
}

// The metrics label of a path: known routes by name, anything else as "other" (so unknown paths
// cannot grow the metrics without bound).
std::string endpoint_label(const std::string& path) {
  for (const char* known : {"/", "/health", "/metrics", "/v1/models", "/v1/chat/completions", "/v1/completions",
                            "/tokenize", "/detokenize"})
    if (path == known) return known;
  if (path.rfind("/v1/models/", 0) == 0) return "/v1/models/{id}";
  return "other";
}

ApiError error_for_status(int status) {
  switch (status) {
    case 404: return ApiError(404, "no such route", "not_found_error", {}, "unknown_route");
    case 413: return ApiError(413, "the request body is too large", "invalid_request_error", {}, "request_too_large");
    case 414: return ApiError(414, "the request URI is too long", "invalid_request_error");
    case 400: return ApiError(400, "malformed HTTP request", "invalid_request_error");
    default:
      if (status >= 500) return ApiError(status, "internal server error", "server_error");
      return ApiError(status, fmt::format("HTTP error {}", status), "invalid_request_error");
  }
}

void log_request(const httplib::Request& req, const httplib::Response& res) {
  const RequestRecord& r = current_request();
  const double seconds = std::chrono::duration<double>(Clock::now() - r.start).count();
  std::string tokens;
  if (r.prompt_tokens >= 0) tokens = fmt::format(" in={} out={}", r.prompt_tokens, std::max<int64_t>(r.completion_tokens, 0));
  const std::string path = req.path.size() > 200 ? req.path.substr(0, 200) + "..." : req.path;
  fmt::print(stderr, "{} {} {} {}{}{} {:.3f}s\n", r.id.empty() ? "-" : r.id, req.method.empty() ? "-" : req.method,
             path.empty() ? "-" : path, res.status, tokens, r.client_left ? " client-left" : "", seconds);
  std::fflush(stderr);
}

std::vector<int32_t> tokenize_for(const ServerContext& ctx, const TokenizeRequest& t) {
  try {
    if (t.use_messages) return ctx.engine.chat_prompt(t.messages, t.add_generation_prompt);
    return ctx.engine.tokenizer().encode(t.text, t.add_special_tokens, /*parse_special=*/true);
  } catch (const Error& e) {
    throw invalid_request(fmt::format("cannot tokenize: {}", e.what()), t.use_messages ? "messages" : "prompt");
  }
}

}  // namespace

RequestRecord& current_request() {
  thread_local RequestRecord record;
  return record;
}

void send_error(httplib::Response& res, const ApiError& error) {
  res.status = error.status;
  res.set_content(dump(error_json(error)), "application/json");
}

void send_json(httplib::Response& res, const json& value) {
  res.status = 200;
  res.set_content(dump(value), "application/json");
}

struct HttpServer::Impl {
  ServerContext ctx;
  GuardedServer http;

  Impl(ServerOptions options, const Engine& engine, Scheduler& scheduler, Metrics& metrics)
      : ctx{std::move(options), engine, scheduler, metrics, int64_t(std::time(nullptr))},
        http(connection_limits(ctx.options), [max_body = ctx.options.max_body_bytes](ReadLimit limit) {
          const ApiError error = error_for_limit(limit, max_body);
          return std::pair{error.status, dump(error_json(error))};
        }) {}

  // A handler that answers ApiError (and anything unexpected) in OpenAI's error shape.
  template <typename Fn>
  httplib::Server::Handler route(Fn fn) {
    return [this, fn](const httplib::Request& req, httplib::Response& res) {
      try {
        if (req.body.size() > ctx.options.max_body_bytes)  // a chunked body (httplib bounds the others)
          throw error_for_limit(ReadLimit::kBodyTooLarge, ctx.options.max_body_bytes);
        fn(req, res);
      } catch (const ApiError& e) {
        send_error(res, e);
      } catch (const std::exception& e) {
        send_error(res, ApiError(500, e.what(), "server_error"));
      }
    };
  }

  json parse_body(const httplib::Request& req) { return parse_json_object(req.body); }

  void add_routes() {
    const auto& o = ctx.options;
    http.Get("/", route([](const httplib::Request&, httplib::Response& res) {
      const std::string_view page = chat_page_html();
      res.set_content(page.data(), page.size(), "text/html; charset=utf-8");
      res.set_header("Content-Security-Policy", std::string(chat_page_csp()));
      res.set_header("X-Content-Type-Options", "nosniff");
      res.set_header("Referrer-Policy", "no-referrer");
    }));
    http.Get("/health", route([this](const httplib::Request&, httplib::Response& res) {
      send_json(res, {{"status", "ok"}});
    }));
    http.Get("/metrics", route([this](const httplib::Request&, httplib::Response& res) {
      res.set_content(ctx.metrics.render(ctx.scheduler.gauges()), "text/plain; version=0.0.4");
    }));
    http.Get("/v1/models", route([this, &o](const httplib::Request&, httplib::Response& res) {
      send_json(res, model_list_json(o.model_id, ctx.started, o.context));
    }));
    http.Get(R"(/v1/models/(.+))", route([this, &o](const httplib::Request& req, httplib::Response& res) {
      const std::string id = req.matches[1];
      if (id != o.model_id)
        throw ApiError(404, fmt::format("the model '{}' does not exist", id), "invalid_request_error", "model", "model_not_found");
      send_json(res, model_json(o.model_id, ctx.started, o.context));
    }));
    http.Post("/v1/chat/completions", route([this](const httplib::Request& req, httplib::Response& res) {
      handle_completion(ctx, Endpoint::kChat, req, res);
    }));
    http.Post("/v1/completions", route([this](const httplib::Request& req, httplib::Response& res) {
      handle_completion(ctx, Endpoint::kCompletions, req, res);
    }));
    http.Post("/tokenize", route([this, &o](const httplib::Request& req, httplib::Response& res) {
      const auto tokens = tokenize_for(ctx, parse_tokenize_request(parse_body(req), o.limits));
      send_json(res, {{"tokens", tokens}, {"count", tokens.size()}, {"max_model_len", o.context}});
    }));
    http.Post("/detokenize", route([this, &o](const httplib::Request& req, httplib::Response& res) {
      const auto tokens = parse_detokenize_request(parse_body(req), o.limits);
      send_json(res, {{"prompt", ctx.engine.tokenizer().decode(tokens)}});
    }));
  }

  // Before routing (and before httplib reads the body): a request whose head httplib accepted but
  // that we do not serve, and the API key.
  httplib::Server::HandlerResponse screen(const httplib::Request& req, httplib::Response& res) {
    RequestRecord& record = current_request();
    record = RequestRecord{};
    record.id = fmt::format("req-{}", ctx.next_request++);
    const bool reads_body = req.method == "POST" || req.method == "PUT" || req.method == "PATCH" || req.method == "DELETE";
    const std::string transfer_encoding = req.get_header_value("Transfer-Encoding");
    const bool has_body = !transfer_encoding.empty() || req.get_header_value<uint64_t>("Content-Length") > 0;
    // A body httplib will not read would be taken for the next request on the connection.
    if (has_body && !reads_body) current_connection().close_after_response = true;
    auto refuse = [&](const ApiError& error) {
      send_error(res, error);
      if (has_body || reads_body) {  // the body stays unread: the connection cannot carry another request
        current_connection().close_after_response = true;
        res.set_header("Connection", "close");
      }
      return httplib::Server::HandlerResponse::Handled;
    };
    if (req.headers.size() > kMaxHeaderLines + kHeadersHttplibAdds)
      return refuse(ApiError(431, fmt::format("the request has more than {} header lines", kMaxHeaderLines),
                             "invalid_request_error", {}, "headers_too_large"));
    if (reads_body) {
      if (req.get_header_value_count("Content-Length") > 1)
        return refuse(ApiError(400, "the request has more than one Content-Length", "invalid_request_error"));
      if (!transfer_encoding.empty() && transfer_encoding != "chunked")
        return refuse(ApiError(400, fmt::format("Transfer-Encoding '{}' is not supported (only chunked)", transfer_encoding),
                               "invalid_request_error"));
      // httplib would read a body without a length until the client closes the connection.
      if (transfer_encoding.empty() && !req.has_header("Content-Length"))
        return refuse(ApiError(411, "a request body needs Content-Length (or chunked Transfer-Encoding)",
                               "invalid_request_error", {}, "length_required"));
      // httplib would inflate a compressed body without bound.
      const std::string content_encoding = req.get_header_value("Content-Encoding");
      if (!content_encoding.empty() && content_encoding != "identity")
        return refuse(ApiError(415, fmt::format("Content-Encoding '{}' is not supported", content_encoding),
                               "invalid_request_error", {}, "unsupported_content_encoding"));
    }
    // Every route but /health and the chat page needs the API key, when one is set (the page
    // itself holds no data; its requests carry the key).
    if (ctx.options.api_key.empty() || req.path == "/health" || req.path == "/")
      return httplib::Server::HandlerResponse::Unhandled;
    const std::string authorization = req.get_header_value("Authorization");
    auto token = bearer_token(authorization);
    if (token && constant_time_equal(ctx.options.api_key, *token)) return httplib::Server::HandlerResponse::Unhandled;
    res.set_header("WWW-Authenticate", "Bearer");
    return refuse(ApiError(401, "a valid API key is required (Authorization: Bearer KEY)", "authentication_error", {},
                           "invalid_api_key"));
  }

  void configure() {
    const auto& o = ctx.options;
    const size_t threads = size_t(std::max(o.http_threads, 1));
    http.new_task_queue = [threads] { return new httplib::ThreadPool(threads); };
    http.set_payload_max_length(o.max_body_bytes);
    http.set_pre_routing_handler([this](const httplib::Request& req, httplib::Response& res) { return screen(req, res); });
    // Errors without a body of ours (unknown route, a limit of the connection, malformed HTTP) get
    // OpenAI's shape.
    http.set_error_handler(httplib::Server::HandlerWithResponse([&o](const httplib::Request&, httplib::Response& res) {
      const ReadLimit limit = current_connection().limit;
      if (limit != ReadLimit::kNone) {
        send_error(res, error_for_limit(limit, o.max_body_bytes));
        res.set_header("Connection", "close");
        return httplib::Server::HandlerResponse::Handled;
      }
      if (!res.body.empty()) return httplib::Server::HandlerResponse::Unhandled;
      // httplib could not read the request whole: where a next one would start is unknown.
      if (res.status == 400 || res.status == 413 || res.status == 414) {
        current_connection().close_after_response = true;
        res.set_header("Connection", "close");
      }
      send_error(res, error_for_status(res.status));
      return httplib::Server::HandlerResponse::Handled;
    }));
    http.set_exception_handler([](const httplib::Request&, httplib::Response& res, std::exception_ptr) {
      send_error(res, ApiError(500, "internal server error", "server_error"));
    });
    http.set_logger([this](const httplib::Request& req, const httplib::Response& res) {
      ctx.metrics.count_request(endpoint_label(req.path), res.status);
      log_request(req, res);
      current_request() = RequestRecord{};
    });
    add_routes();
  }
};

HttpServer::HttpServer(ServerOptions options, const Engine& engine, Scheduler& scheduler, Metrics& metrics)
    : impl_(std::make_unique<Impl>(std::move(options), engine, scheduler, metrics)) {
  impl_->configure();
}

HttpServer::~HttpServer() = default;

int HttpServer::bind() {
  const auto& o = impl_->ctx.options;
  const int port = o.port == 0 ? impl_->http.bind_to_any_port(o.host) : (impl_->http.bind_to_port(o.host, o.port) ? o.port : -1);
  MARLIN_CHECK(port > 0, "cannot listen on {}:{} (address in use or not available)", o.host, o.port);
  return port;
}

void HttpServer::serve() { impl_->http.listen_after_bind(); }

void HttpServer::stop() { impl_->http.stop(); }

}  // namespace marlin::server
