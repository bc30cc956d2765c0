// cpp-httplib 0.11 (Debian 12) bounds each header line but not the number of header bytes, nor
// a chunked body or a body without Content-Length, nor how long a client may take to send them.
// GuardedServer serves every connection through its own socket stream that does: the request line
// and headers get a byte budget and a deadline, the body (chunk framing included) another, and
// a peer that closes mid-request is told apart from one that sent garbage. The routes' error
// handler reads what tripped (current_connection()) to answer 431, 413, 408 or 400.
#pragma once

#include <httplib.h>

#include <chrono>
#include <cstddef>
#include <functional>
#include <string>

namespace marlin::server {

struct ConnectionLimits {
  size_t max_header_bytes = 32 << 10;  // request line and headers
  size_t max_body_bytes = 8 << 20;     // raw bytes after the headers, chunk framing included
  std::chrono::milliseconds header_deadline{10'000};  // from a request's first byte to its blank line
  std::chrono::milliseconds body_deadline{60'000};    // from the blank line to the body's last byte
  std::chrono::milliseconds io_timeout{5'000};        // one read or write waiting for the socket
  std::chrono::milliseconds keep_alive{5'000};        // an idle connection waiting for its next request
  size_t max_requests_per_connection = 100;
};

enum class ReadLimit {
  kNone,
  kHeadersTooLarge,
  kHeadersTooSlow,
  kBodyTooLarge,
  kBodyTooSlow,
  kEndedEarly,  // the peer closed the connection in the middle of a request
};

// What the connection served by the calling thread has seen (httplib runs a request's handlers
// on the thread that reads it).
struct ConnectionState {
  ReadLimit limit = ReadLimit::kNone;
  bool close_after_response = false;  // a handler answered without reading the body
};
ConnectionState& current_connection();

class GuardedServer : public httplib::Server {
 public:
  // The status and JSON body answered when a limit trips before httplib could answer at all.
  using LimitReply = std::function<std::pair<int, std::string>(ReadLimit)>;

  GuardedServer(ConnectionLimits limits, LimitReply limit_reply);

 private:
  bool process_and_close_socket(socket_t sock) override;

  const ConnectionLimits limits_;
  const LimitReply limit_reply_;
};

}  // namespace marlin::server
