#include "server/guarded_server.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <cerrno>
#include <cstring>

#include <fmt/format.h>

namespace marlin::server {
namespace {

using Clock = std::chrono::steady_clock;
using std::chrono::milliseconds;

// Waits up to `timeout` for the socket to be ready for `events`; true when it is (or has an error
// or hang-up pending, which the next read or write reports).
bool wait_for(int sock, short events, milliseconds timeout) {
  pollfd p{sock, events, 0};
  for (;;) {
    const int n = ::poll(&p, 1, int(std::max<int64_t>(timeout.count(), 0)));
    if (n >= 0) return n > 0;
    if (errno != EINTR) return false;
  }
}

void address_of(int sock, bool peer, std::string& ip, int& port) {
  sockaddr_storage addr{};
  socklen_t len = sizeof(addr);
  const int rc = peer ? ::getpeername(sock, reinterpret_cast<sockaddr*>(&addr), &len)
                      : ::getsockname(sock, reinterpret_cast<sockaddr*>(&addr), &len);
  ip.clear();
  port = 0;
  if (rc != 0) return;
  char text[INET6_ADDRSTRLEN] = {};
  if (addr.ss_family == AF_INET) {
    const auto* a = reinterpret_cast<const sockaddr_in*>(&addr);
    ::inet_ntop(AF_INET, &a->sin_addr, text, sizeof(text));
    port = ntohs(a->sin_port);
  } else if (addr.ss_family == AF_INET6) {
    const auto* a = reinterpret_cast<const sockaddr_in6*>(&addr);
    ::inet_ntop(AF_INET6, &a->sin6_addr, text, sizeof(text));
    port = ntohs(a->sin6_port);
  }
  ip = text;
}

const char* reason_phrase(int status) {
  switch (status) {
    case 408: return "Request Timeout";
    case 413: return "Payload Too Large";
    case 431: return "Request Header Fields Too Large";
    default: return "Bad Request";
  }
}

// A socket stream that counts what each request reads. httplib reads the request line and headers
// one byte at a time (so the stream buffers), and the body in larger reads.
class GuardedStream final : public httplib::Stream {
 public:
  // `stopping`: true once the server stops accepting connections.
  GuardedStream(int sock, const ConnectionLimits& limits, ConnectionState& state, std::function<bool()> stopping)
      : sock_(sock), limits_(limits), state_(state), stopping_(std::move(stopping)) {}

  // Waits for the next request's first byte; false when the connection stays idle past the
  // keep-alive time, closes, or the server stops.
  bool wait_for_request() {
    in_headers_ = true;
    header_bytes_ = 0;
    deadline_ = Clock::time_point::max();
    return begin_ != end_ || fill(Clock::now() + limits_.keep_alive) > 0;
  }

  void start_request() {
    in_headers_ = true;
    header_bytes_ = body_bytes_ = written_ = 0;
    tail_ = 0;
    deadline_ = Clock::now() + limits_.header_deadline;
  }
  size_t written() const { return written_; }

  bool is_readable() const override { return begin_ != end_ || wait_for(sock_, POLLIN, limits_.io_timeout); }
  bool is_writable() const override { return wait_for(sock_, POLLOUT, limits_.io_timeout); }

  ssize_t read(char* ptr, size_t size) override {
    if (size == 0) return 0;
    if (begin_ == end_) {
      const ssize_t n = fill(std::min(deadline_, Clock::now() + limits_.io_timeout));
      if (n <= 0) return n;
    }
    size_t n = std::min(size, end_ - begin_);
    if (in_headers_) {
      for (size_t i = 0; i < n; ++i) {
        if (++header_bytes_ > limits_.max_header_bytes) return trip(ReadLimit::kHeadersTooLarge);
        tail_ = tail_ << 8 | uint8_t(buffer_[begin_ + i]);
        if (tail_ == 0x0d0a0d0a) {  // the blank line that ends the headers: the body starts after it
          n = i + 1;
          in_headers_ = false;
          deadline_ = Clock::now() + limits_.body_deadline;
          break;
        }
      }
    } else {
      if (body_bytes_ >= limits_.max_body_bytes) return trip(ReadLimit::kBodyTooLarge);
      n = std::min(n, limits_.max_body_bytes - body_bytes_);
      body_bytes_ += n;
    }
    std::memcpy(ptr, buffer_.data() + begin_, n);
    begin_ += n;
    return ssize_t(n);
  }

  ssize_t write(const char* ptr, size_t size) override {
    if (!is_writable()) return -1;
    for (;;) {
      const ssize_t n = ::send(sock_, ptr, size, MSG_NOSIGNAL);
      if (n >= 0 || errno != EINTR) {
        if (n > 0) written_ += size_t(n);
        return n;
      }
    }
  }

  void get_remote_ip_and_port(std::string& ip, int& port) const override { address_of(sock_, true, ip, port); }
  void get_local_ip_and_port(std::string& ip, int& port) const override { address_of(sock_, false, ip, port); }
  socket_t socket() const override { return sock_; }

 private:
  // Reads what the socket has into the empty buffer, waiting until `until`. Returns the count,
  // 0 at the end of the stream, -1 on an error or timeout (noting which limit that is).
  // A server that stops drops a request whose headers are still arriving, and one whose body
  // stalls (requests already read finish as usual).
  ssize_t fill(Clock::time_point until) {
    begin_ = end_ = 0;
    for (;;) {
      if (in_headers_ && header_bytes_ > 0 && stopping_()) return -1;
      const auto now = Clock::now();
      if (now >= until) {
        if (in_headers_) return trip(header_bytes_ > 0 || now >= deadline_ ? ReadLimit::kHeadersTooSlow : ReadLimit::kNone);
        return trip(ReadLimit::kBodyTooSlow);
      }
      if (wait_for(sock_, POLLIN, std::min(std::chrono::duration_cast<milliseconds>(until - now), milliseconds(100)))) break;
      if (stopping_()) return -1;
    }
    ssize_t n;
    do {
      n = ::recv(sock_, buffer_.data(), buffer_.size(), 0);
    } while (n < 0 && errno == EINTR);
    if (n == 0 && (header_bytes_ > 0 || !in_headers_)) trip(ReadLimit::kEndedEarly);
    if (n > 0) end_ = size_t(n);
    return n;
  }

  ssize_t trip(ReadLimit limit) {
    if (state_.limit == ReadLimit::kNone) state_.limit = limit;
    return -1;
  }

  const int sock_;
  const ConnectionLimits& limits_;
  ConnectionState& state_;
  const std::function<bool()> stopping_;
  std::array<char, 4096> buffer_{};
  size_t begin_ = 0, end_ = 0;
  bool in_headers_ = true;
  size_t header_bytes_ = 0, body_bytes_ = 0, written_ = 0;
  uint32_t tail_ = 0;  // the last four header bytes
  Clock::time_point deadline_ = Clock::time_point::max();
};

// Closes a connection whose request was refused unread: the write side first, then what the
// client still sends is read and dropped for a moment, so that closing with unread bytes (which
// sends a reset) does not destroy the answer before the client reads it.
void linger_and_close(int sock) {
  ::shutdown(sock, SHUT_WR);
  const auto until = Clock::now() + milliseconds(1000);
  std::array<char, 4096> sink;
  size_t dropped = 0;
  while (dropped < (4u << 20) && Clock::now() < until) {
    if (!wait_for(sock, POLLIN, std::chrono::duration_cast<milliseconds>(until - Clock::now()))) break;
    const ssize_t n = ::recv(sock, sink.data(), sink.size(), 0);
    if (n <= 0) break;
    dropped += size_t(n);
  }
  ::close(sock);
}

}  // namespace

ConnectionState& current_connection() {
  thread_local ConnectionState state;
  return state;
}

GuardedServer::GuardedServer(ConnectionLimits limits, LimitReply limit_reply)
    : limits_(limits), limit_reply_(std::move(limit_reply)) {
  // What httplib announces in its Keep-Alive header.
  set_keep_alive_max_count(limits.max_requests_per_connection);
  set_keep_alive_timeout(std::chrono::duration_cast<std::chrono::seconds>(limits.keep_alive).count());
}

bool GuardedServer::process_and_close_socket(socket_t sock) {
  ConnectionState& state = current_connection();
  state = {};
  GuardedStream stream(sock, limits_, state, [this] { return svr_sock_ == INVALID_SOCKET; });
  bool ok = false;
  bool refused = false;
  for (size_t served = 0; served < limits_.max_requests_per_connection; ++served) {
    if (!stream.wait_for_request()) break;
    state = {};
    stream.start_request();
    bool connection_closed = false;
    const bool last = served + 1 == limits_.max_requests_per_connection;
    ok = process_request(stream, last, connection_closed, nullptr);
    refused = state.limit != ReadLimit::kNone || state.close_after_response;
    if (!ok && state.limit != ReadLimit::kNone && state.limit != ReadLimit::kEndedEarly && stream.written() == 0) {
      // httplib gave up before it could answer (a request line over the budget or too slow).
      const auto [status, body] = limit_reply_(state.limit);
      const std::string reply = fmt::format(
          "HTTP/1.1 {} {}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{}",
          status, reason_phrase(status), body.size(), body);
      stream.write(reply.data(), reply.size());
    }
    if (!ok || connection_closed || refused) break;
  }
  state = {};
  if (refused) {
    linger_and_close(sock);
  } else {
    ::shutdown(sock, SHUT_RDWR);
    ::close(sock);
  }
  return ok;
}

}  // namespace marlin::server
