// GuardedServer over loopback: what each connection limit answers, with short deadlines.
#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <chrono>
#include <string>
#include <thread>

#include "server/guarded_server.h"

namespace marlin::server {
namespace {

using namespace std::chrono_literals;

const char* limit_name(ReadLimit limit) {
  switch (limit) {
    case ReadLimit::kNone: return "none";
    case ReadLimit::kHeadersTooLarge: return "headers-too-large";
    case ReadLimit::kHeadersTooSlow: return "headers-too-slow";
    case ReadLimit::kBodyTooLarge: return "body-too-large";
    case ReadLimit::kBodyTooSlow: return "body-too-slow";
    case ReadLimit::kEndedEarly: return "ended-early";
  }
  return "?";
}

class GuardedServerTest : public ::testing::Test {
 protected:
  void SetUp() override {
    ConnectionLimits limits;
    limits.max_header_bytes = 1024;
    limits.max_body_bytes = 4096;
    limits.header_deadline = 400ms;
    limits.body_deadline = 400ms;
    limits.io_timeout = 1000ms;
    start(limits);
  }
  void start(const ConnectionLimits& limits) {
    if (server_) TearDown();
    server_ = std::make_unique<GuardedServer>(limits, [](ReadLimit limit) {
      return std::pair{431, std::string(limit_name(limit))};
    });
    server_->Post("/echo", [](const httplib::Request& req, httplib::Response& res) { res.set_content(req.body, "text/plain"); });
    // Each answer that failed names the limit that tripped (or none).
    server_->set_error_handler([](const httplib::Request&, httplib::Response& res) {
      res.set_content(limit_name(current_connection().limit), "text/plain");
    });
    port_ = server_->bind_to_any_port("127.0.0.1");
    ASSERT_GT(port_, 0);
    thread_ = std::thread([this] { server_->listen_after_bind(); });
    while (!server_->is_running()) std::this_thread::sleep_for(1ms);  // stop() before that is lost
  }
  void TearDown() override {
    if (!server_) return;
    server_->stop();
    thread_.join();
    server_.reset();
  }

  // Sends `data` (its bytes after the first `at_once` one by one with `gap` between them, until the
  // server answers; half-closing after it when asked), returns everything the server answers.
  std::string exchange(const std::string& data, bool half_close = true, std::chrono::milliseconds gap = 0ms,
                       size_t at_once = 0) {
    const int sock = ::socket(AF_INET, SOCK_STREAM, 0);
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_port = htons(uint16_t(port_));
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    EXPECT_EQ(::connect(sock, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)), 0);
    if (gap == 0ms) at_once = data.size();
    ::send(sock, data.data(), at_once, MSG_NOSIGNAL);
    for (size_t i = at_once; i < data.size(); ++i) {
      if (::send(sock, &data[i], 1, MSG_NOSIGNAL) != 1) break;
      pollfd p{sock, POLLIN, 0};
      if (::poll(&p, 1, int(gap.count())) > 0) break;  // answered
    }
    if (half_close) ::shutdown(sock, SHUT_WR);
    timeval timeout{5, 0};
    ::setsockopt(sock, SOL_SOCKET, SO_RCVTIMEO, &timeout, sizeof(timeout));
    std::string answer;
    char buf[4096];
    for (ssize_t n; (n = ::recv(sock, buf, sizeof(buf), 0)) > 0;) answer.append(buf, size_t(n));
    ::close(sock);
    return answer;
  }

  static std::string post(const std::string& body) {
    return "POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: " + std::to_string(body.size()) + "\r\n\r\n" + body;
  }

  std::unique_ptr<GuardedServer> server_;
  int port_ = 0;
  std::thread thread_;
};

bool ends_with(const std::string& s, const std::string& suffix) {
  return s.size() >= suffix.size() && s.compare(s.size() - suffix.size(), suffix.size(), suffix) == 0;
}

TEST_F(GuardedServerTest, KeptAliveAndPipelinedRequestsAreServed) {
  const std::string answer = exchange(post("one") + post("two"));
  EXPECT_EQ(answer.rfind("HTTP/1.1 200", 0), 0u) << answer;
  EXPECT_NE(answer.find("\r\n\r\none"), std::string::npos) << answer;
  EXPECT_TRUE(ends_with(answer, "\r\n\r\ntwo")) << answer;
}

TEST_F(GuardedServerTest, HeadersOverTheBudget) {
  std::string request = "POST /echo HTTP/1.1\r\n";
  for (int i = 0; i < 20; ++i) request += "X-" + std::to_string(i) + ": " + std::string(60, 'v') + "\r\n";
  const std::string answer = exchange(request + "Content-Length: 0\r\n\r\n");
  EXPECT_EQ(answer.rfind("HTTP/1.1 400", 0), 0u) << answer;
  EXPECT_TRUE(ends_with(answer, "headers-too-large")) << answer;
  // A request line that never ends: httplib cannot answer, the server does.
  const std::string line = exchange("GET /" + std::string(5000, 'a'), false);
  EXPECT_EQ(line.rfind("HTTP/1.1 431", 0), 0u) << line;
  EXPECT_TRUE(ends_with(line, "headers-too-large")) << line;
}

TEST_F(GuardedServerTest, ChunkedBodyOverTheBudget) {
  std::string request = "POST /echo HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n";
  for (int i = 0; i < 10; ++i) request += "200\r\n" + std::string(512, 'a') + "\r\n";
  const std::string answer = exchange(request + "0\r\n\r\n");
  EXPECT_TRUE(ends_with(answer, "body-too-large")) << answer;
  // Under the budget it is read whole.
  EXPECT_TRUE(ends_with(exchange("POST /echo HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n"), "abc"));
}

TEST_F(GuardedServerTest, TruncatedBodyIsToldApartFromGarbage) {
  const std::string answer = exchange("POST /echo HTTP/1.1\r\nContent-Length: 100\r\n\r\nshort");
  EXPECT_EQ(answer.rfind("HTTP/1.1 400", 0), 0u) << answer;
  EXPECT_TRUE(ends_with(answer, "ended-early")) << answer;
  EXPECT_TRUE(ends_with(exchange("NOT HTTP AT ALL\r\n\r\n"), "none"));
}

TEST_F(GuardedServerTest, SlowClientsRunOutOfTime) {
  const auto start = std::chrono::steady_clock::now();
  const std::string headers = exchange(post("x"), false, 100ms);  // 10 bytes a second
  EXPECT_EQ(headers.rfind("HTTP/1.1 431", 0), 0u) << headers;  // the test's reply for any limit
  EXPECT_TRUE(ends_with(headers, "headers-too-slow")) << headers;
  EXPECT_LT(std::chrono::steady_clock::now() - start, 3s);
  const std::string head = "POST /echo HTTP/1.1\r\nContent-Length: 50\r\n\r\n";
  const std::string body = exchange(head + std::string(50, 'b'), false, 20ms, head.size());
  EXPECT_TRUE(ends_with(body, "body-too-slow")) << body;
}

TEST_F(GuardedServerTest, StoppingDropsRequestsStillArriving) {
  ConnectionLimits patient;
  patient.header_deadline = patient.io_timeout = 20s;
  start(patient);
  std::thread slow([this] { exchange(post("x"), false, 50ms); });
  std::this_thread::sleep_for(300ms);
  const auto start = std::chrono::steady_clock::now();
  TearDown();  // stops the server, and waits for its connections
  EXPECT_LT(std::chrono::steady_clock::now() - start, 2s);
  slow.join();
}

}  // namespace
}  // namespace marlin::server
