#pragma once
// Helpers of the server tests: the shared model, an in-process server on a free
// loopback port, and small HTTP clients (cpp-httplib, and raw sockets for
// malformed requests and clients that vanish).
#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdlib>
#include <functional>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include <httplib.h>
#include <nlohmann/json.hpp>

#include "common/env.h"
#include "common/testing.h"
#include "model/model.h"
#include "server/server.h"

namespace harmonia::server::testing {

using nlohmann::json;

inline const char* kModel = "models/stories260K/stories260K.gguf";

inline const Model& stories() {
  static std::unique_ptr<Model> m = load_model(shared_path(kModel));
  return *m;
}

// The source tree: $HARMONIA_SOURCE (CTest), else the tree this header was compiled from.
inline std::string source_dir() {
  if (const char* e = std::getenv("HARMONIA_SOURCE")) return e;
  const std::string f = __FILE__;  // CMake compiles with absolute paths: ROOT/src/server/test_util.h
  const auto p = f.rfind("/src/server/");
  return p == std::string::npos ? "" : f.substr(0, p);
}

// The harmonia binary: $HARMONIA_BIN (CTest), else the one beside this test binary.
inline std::string harmonia_bin() {
  if (const char* e = std::getenv("HARMONIA_BIN")) return e;
  char buf[4096];
  const ssize_t n = ::readlink("/proc/self/exe", buf, sizeof buf - 1);
  if (n <= 0) return "";
  std::string self(buf, static_cast<size_t>(n));
  return self.substr(0, self.rfind('/') + 1) + "harmonia";
}

// A server on 127.0.0.1, a free port, with short timeouts; stopped at scope end.
struct TestServer {
  std::unique_ptr<Server> srv;
  int port = 0;
  explicit TestServer(ServerOptions o = {}) {
    o.host = "127.0.0.1";
    o.port = 0;
    if (o.engine.ctx == 0) o.engine.ctx = 256;
    if (o.engine.threads == 0) o.engine.threads = 1;
    o.keep_alive_timeout_s = 1;
    o.read_timeout_s = std::min(o.read_timeout_s, 3);
    o.write_timeout_s = std::min(o.write_timeout_s, 3);
    o.http_threads = std::min(o.http_threads, 16);
    srv = std::make_unique<Server>(stories(), nullptr, o);
    port = srv->start();
  }
  ~TestServer() { srv->shutdown(0); }
  engine::Metrics engine_metrics() { return srv->engine().metrics(); }
};

struct HttpResult {
  int status = 0;  // 0: no response (connection failed)
  std::string body;
  httplib::Headers headers;
  json j() const { return json::parse(body, nullptr, false); }
  std::string header(const std::string& k) const {
    auto it = headers.find(k);
    return it == headers.end() ? "" : it->second;
  }
};

inline HttpResult to_result(const httplib::Result& r) {
  HttpResult h;
  if (!r) return h;
  h.status = r->status;
  h.body = r->body;
  h.headers = r->headers;
  return h;
}

inline httplib::Client client(int port) {
  httplib::Client c("127.0.0.1", port);
  c.set_connection_timeout(5, 0);
  c.set_read_timeout(30, 0);
  c.set_write_timeout(30, 0);
  return c;
}

inline HttpResult post(int port, const std::string& path, const std::string& body, httplib::Headers h = {}) {
  auto c = client(port);
  return to_result(c.Post(path.c_str(), h, body, "application/json"));
}
inline HttpResult post(int port, const std::string& path, const json& body, httplib::Headers h = {}) {
  return post(port, path, body.dump(), std::move(h));
}
inline HttpResult get(int port, const std::string& path, httplib::Headers h = {}) {
  auto c = client(port);
  return to_result(c.Get(path.c_str(), h));
}

// The JSON payloads of a server-sent-event body; "[DONE]" is kept as a string.
inline std::vector<json> sse_events(const std::string& body, bool* saw_done = nullptr, std::string* error = nullptr) {
  std::vector<json> out;
  if (saw_done) *saw_done = false;
  size_t pos = 0;
  while (pos < body.size()) {
    size_t end = body.find("\n\n", pos);
    if (end == std::string::npos) {
      if (error) *error = "unterminated event: " + body.substr(pos);
      break;
    }
    const std::string ev = body.substr(pos, end - pos);
    pos = end + 2;
    if (ev.rfind("data: ", 0) != 0) {
      if (error) *error = "event without data: " + ev;
      continue;
    }
    const std::string payload = ev.substr(6);
    if (payload == "[DONE]") {
      if (saw_done) *saw_done = true;
      continue;
    }
    json j = json::parse(payload, nullptr, false);
    if (j.is_discarded() && error) *error = "bad JSON in event: " + payload;
    out.push_back(std::move(j));
  }
  return out;
}

// ---- raw sockets (malformed HTTP, vanishing clients) -----------------------------------

inline int connect_loopback(int port, int timeout_ms = 5000) {
  const int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  if (fd < 0) return -1;
  timeval tv{timeout_ms / 1000, (timeout_ms % 1000) * 1000};
  ::setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
  ::setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
  int one = 1;
  ::setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_port = htons(static_cast<uint16_t>(port));
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (::connect(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0) {
    ::close(fd);
    return -1;
  }
  return fd;
}

inline bool send_all(int fd, const std::string& s) {
  size_t off = 0;
  while (off < s.size()) {
    const ssize_t n = ::send(fd, s.data() + off, s.size() - off, MSG_NOSIGNAL);
    if (n <= 0) return false;
    off += static_cast<size_t>(n);
  }
  return true;
}

// Reads until the peer closes, `max` bytes, or the socket's timeout.
inline std::string recv_all(int fd, size_t max = 1 << 20) {
  std::string out;
  char buf[4096];
  while (out.size() < max) {
    const ssize_t n = ::recv(fd, buf, sizeof buf, 0);
    if (n <= 0) break;
    out.append(buf, static_cast<size_t>(n));
  }
  return out;
}

// Sends raw bytes on a fresh connection and returns everything the server says.
inline std::string raw_exchange(int port, const std::string& bytes, int timeout_ms = 10000) {
  const int fd = connect_loopback(port, timeout_ms);
  if (fd < 0) return "";
  send_all(fd, bytes);
  std::string r = recv_all(fd);
  ::close(fd);
  return r;
}

// Status code of a raw HTTP response ("HTTP/1.1 400 Bad Request" -> 400; 0 if none).
inline int raw_status(const std::string& r) {
  if (r.rfind("HTTP/1.", 0) != 0 || r.size() < 12) return 0;
  return std::atoi(r.c_str() + 9);
}
inline std::string raw_body(const std::string& r) {
  const auto p = r.find("\r\n\r\n");
  return p == std::string::npos ? "" : r.substr(p + 4);
}

inline std::string http_request(const std::string& method, const std::string& path, const std::string& body,
                                const std::string& extra_headers = "") {
  return method + " " + path + " HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\nContent-Type: application/json\r\n" +
         extra_headers + "Content-Length: " + std::to_string(body.size()) + "\r\n\r\n" + body;
}

// Polls `pred` every 10 ms for up to `timeout_ms`.
inline bool eventually(const std::function<bool()>& pred, int timeout_ms = 5000) {
  for (int waited = 0; waited < timeout_ms; waited += 10) {
    if (pred()) return true;
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  return pred();
}

}  // namespace harmonia::server::testing
