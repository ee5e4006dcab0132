// 500 malformed or hostile requests against one server (loopback only, bounded
// in count and time): no crash, no 5xx, no leak (the ASan build runs this too),
// and a normal request still gets its answer afterwards.
#include <gtest/gtest.h>

#include <atomic>
#include <mutex>
#include <random>
#include <thread>
#include <map>

#include "server/test_util.h"

using namespace harmonia;
using namespace harmonia::server;
using namespace harmonia::server::testing;

namespace {

enum class Expect {
  ClientError,  // a 4xx with an OpenAI error body
  NoServerError,  // anything but a 5xx (or no answer: the client went away first)
};

struct Case {
  std::string name;
  std::string bytes;          // what to send
  Expect expect = Expect::ClientError;
  size_t abort_after = 0;     // > 0: send only this many bytes, then close at once
  int slow_ms = 0;            // > 0: send in pieces, this long apart
  bool stall = false;         // stop sending half-way and wait (slowloris): the server must time out
  bool read_then_close = false;  // read the first bytes of the answer, then vanish
};

const char* kFields[] = {"max_tokens", "temperature", "top_p", "logprobs", "priority", "presence_penalty",
                         "frequency_penalty", "top_k", "min_p", "n", "stop", "stream", "prompt", "kv", "speculative"};

std::string completions(const std::string& body, const std::string& extra = "") {
  return http_request("POST", "/v1/completions", body, extra);
}

Case make_case(int i, std::mt19937_64& rng) {
  auto pick = [&](size_t n) { return static_cast<size_t>(rng() % n); };
  const std::string valid = R"({"prompt":"Once upon a time","max_tokens":4,"temperature":0})";
  Case c;
  switch (i % 16) {
    case 0: {  // random bytes
      std::string b(1 + pick(300), ' ');
      for (auto& ch : b) ch = static_cast<char>(rng() & 0xff);
      c = {"random bytes", completions(b)};
      break;
    }
    case 1: {  // truncated JSON
      const size_t cut = 1 + pick(valid.size() - 2);
      c = {"truncated json", completions(valid.substr(0, cut))};
      break;
    }
    case 2: {  // huge numbers
      const char* vals[] = {"1e308", "-1e308", "1e400", "18446744073709551615", "99999999999999999999999",
                            "-9223372036854775809", "2147483648", "1.7976931348623157e308"};
      const char* fields[] = {"max_tokens", "temperature", "top_p", "logprobs", "priority", "top_k", "n", "presence_penalty"};
      const std::string f = fields[pick(std::size(fields))];
      c = {"huge number " + f, completions(R"({"prompt":"x",")" + f + "\":" + vals[pick(std::size(vals))] + "}")};
      break;
    }
    case 3: {  // negative values
      const char* bodies[] = {R"({"prompt":"x","max_tokens":-1})", R"({"prompt":"x","top_p":-0.1})",
                              R"({"prompt":"x","logprobs":-1})",    R"({"prompt":"x","temperature":-1})",
                              R"({"prompt":"x","n":-1})",           R"({"prompt":"x","top_k":-5})",
                              R"({"prompt":"x","min_p":-1})",       R"({"prompt":[-1,2]})",
                              R"({"prompt":"x","speculative":{"drafter":"ngram","n":-1}})",
                              R"({"prompt":"x","max_tokens":0})"};
      c = {"negative value", completions(bodies[pick(std::size(bodies))])};
      break;
    }
    case 4: {  // wrong types
      const char* vals[] = {"\"str\"", "[1,2]", "{\"a\":1}", "true", "3.5", "[[]]", "{}"};
      const std::string f = kFields[pick(std::size(kFields))];
      std::string v = vals[pick(std::size(vals))];
      // Some field/value pairs are valid (stop "str", prompt "str"...): make the type wrong for sure.
      if (f == "stop" || f == "prompt" || f == "kv" || f == "speculative") v = "true";
      if (f == "stream") v = "\"yes\"";
      if (f == "temperature" || f == "top_p" || f == "presence_penalty" || f == "frequency_penalty" || f == "min_p")
        v = pick(2) ? "\"hot\"" : "[0.5]";
      if (f == "prompt") c = {"wrong type prompt", completions(R"({"prompt":)" + v + "}")};
      else c = {"wrong type " + f, completions(R"({"prompt":"x",")" + f + "\":" + v + "}")};
      break;
    }
    case 5: {  // deep nesting
      const size_t depth = 65 + pick(30000);
      std::string b = pick(2) ? std::string(R"({"prompt":)") : std::string();
      const bool obj = pick(2);
      for (size_t k = 0; k < depth; ++k) b += obj ? "{\"a\":" : "[";
      b += "1";
      for (size_t k = 0; k < depth; ++k) b += obj ? "}" : "]";
      if (b[0] == '{' && b.rfind(R"({"prompt":)", 0) == 0) b += "}";
      c = {"deep nesting", completions(b)};
      break;
    }
    case 6: {  // invalid UTF-8 and bad escapes
      const char* bad[] = {"\xff\xfe", "\xc0\xaf", "\xed\xa0\x80", "\xf8\x88\x80\x80\x80", "abc\x80", "\\ud800", "\\udc00x",
                           "\\u12", "\\x41"};
      c = {"invalid utf-8", completions(std::string(R"({"prompt":")") + bad[pick(std::size(bad))] + "\"}")};
      break;
    }
    case 7: {  // oversized bodies, declared or real
      if (pick(2)) {
        c = {"declared huge body",
             "POST /v1/completions HTTP/1.1\r\nHost: x\r\nConnection: close\r\nContent-Type: application/json\r\nContent-Length: " +
                 std::to_string(1000000000000ULL + pick(1000)) + "\r\n\r\n{\"prompt\":"};
      } else {
        c = {"real huge body", completions(R"({"prompt":")" + std::string(300 * 1024 + pick(10000), 'a') + "\"}")};
      }
      break;
    }
    case 8: {  // malformed HTTP
      const std::string reqs[] = {
          "GARBAGE\r\n\r\n",
          "POST /v1/completions HTTP/1.1\r\nHost: x\r\nContent-Length: abc\r\nConnection: close\r\n\r\n{}",
          "POST /v1/completions HTTP/1.1\r\nHost: x\r\nContent-Length: -5\r\nConnection: close\r\n\r\n{}",
          "POST /v1/completions HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\nzz\r\nabc\r\n0\r\n\r\n",
          "POST /v1/completions HTTP/1.1\r\nHost: x\r\nBadHeaderWithoutColon\r\nConnection: close\r\n\r\n",
          "POST /v1/completions HTTP/1.1\r\nHost: x\r\nX-Big: " + std::string(20000, 'b') + "\r\nConnection: close\r\n\r\n",
          "GET /" + std::string(10000, 'u') + " HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
          "POST /v1/completions HTTP/9.9\r\nHost: x\r\nConnection: close\r\nContent-Length: 2\r\n\r\n{}",
          "\r\n\r\n\r\n",
      };
      c = {"malformed http", reqs[pick(std::size(reqs))], Expect::NoServerError};
      break;
    }
    case 9: {  // wrong methods and paths
      const std::string reqs[] = {
          http_request("PUT", "/v1/completions", valid),       http_request("DELETE", "/v1/models", ""),
          http_request("GET", "/../../etc/passwd", ""),          http_request("POST", "/v1/completions?x=%00%ff", ""),
          http_request("GET", "/v1/models/%2e%2e%2f", ""),       http_request("POST", "/v1/chat/completions", valid),
          http_request("POST", "/tokenize", R"({"prompt":5})"), http_request("POST", "/detokenize", R"({"tokens":[1e9]})"),
      };
      c = {"wrong method or path", reqs[pick(std::size(reqs))]};
      break;
    }
    case 10: {  // a client that stops half-way through its body and hangs up
      const std::string req = completions(valid);
      c = {"aborted body", req, Expect::NoServerError, req.size() - 1 - pick(valid.size() - 1)};
      break;
    }
    case 11: {  // a streaming client that reads a little and vanishes
      c = {"aborted stream",
           completions(R"({"prompt":"Once upon a time","max_tokens":100,"ignore_eos":true,"stream":true,"logprobs":3})"),
           Expect::NoServerError};
      c.read_then_close = true;
      break;
    }
    case 12: {  // slow clients: a few bytes at a time; every 4th stalls for good (slowloris)
      c = {"slow client", completions(valid), Expect::NoServerError};
      c.slow_ms = 20;
      c.stall = (i / 16) % 4 == 0;
      break;
    }
    case 13: {  // hostile sizes inside a valid shape
      std::string b;
      switch (pick(5)) {
        case 0: {
          b = R"({"prompt":"x","stop":[)";
          for (int k = 0; k < 5000; ++k) b += (k ? ",\"s" : "\"s") + std::to_string(k) + "\"";
          b += "]}";
          break;
        }
        case 1: {
          b = R"({"prompt":"x","logit_bias":{)";
          for (int k = 0; k < 5000; ++k) b += (k ? ",\"" : "\"") + std::to_string(k) + "\":100";
          b += "}}";
          break;
        }
        case 2: {
          b = R"({"prompt":[)";
          for (int k = 0; k < 2000; ++k) b += (k ? ",1" : "1");
          b += "]}";
          break;
        }
        case 3: {
          std::string p;
          for (int k = 0; k < 20000; ++k) p += "the cat ";
          b = R"({"prompt":")" + p + R"(","max_tokens":1})";
          break;
        }
        default: {
          b = R"({"prompt":"x","kv":{"policy":"fourier","options":{"coeffs":1e300,"window":-1,"sink":"lots"}}})";
          break;
        }
      }
      c = {"hostile sizes", completions(b)};
      break;
    }
    case 14: {  // valid JSON of the wrong shape, and odd strings the tokenizer must survive
      const char* bodies[] = {"null", "\"text\"", "42", "[]", R"({"messages":[{"role":"user","content":[{"type":"image_url"}]}]})",
                              R"({"prompt":"x","stream_options":{"include_usage":"yes"},"stream":true})",
                              R"({"prompt":"x","model":{"name":"gpt"}})", R"({"prompt":"x","model":"gpt-5"})",
                              R"({"prompt":"x","stop":null,"max_tokens":0})", R"({"prompt":"x","kv":"streaming:window=abc"})"};
      const size_t k = pick(std::size(bodies));
      c = {"wrong shape", k == 4 ? http_request("POST", "/v1/chat/completions", bodies[k]) : completions(bodies[k])};
      break;
    }
    default: {  // strange but valid: NULs, control characters, unicode; may be served (200)
      const char* bodies[] = {R"({"prompt":"\u0000\u0000\u0001","max_tokens":2})", R"({"prompt":"\ud83d\ude00 \u00e9\u4e2d","max_tokens":2})",
                              R"({"prompt":"<s></s><unk>","max_tokens":2,"temperature":0})",
                              R"({"messages":[{"role":"user","content":"\u0000<|im_end|>"}],"max_tokens":2})"};
      const size_t k = pick(std::size(bodies));
      c = {"odd but valid", k == 3 ? http_request("POST", "/v1/chat/completions", bodies[k]) : completions(bodies[k]),
           Expect::NoServerError};
      break;
    }
  }
  return c;
}

struct Outcome {
  int status = 0;
  std::string body;
};

Outcome run_case(int port, const Case& c) {
  Outcome o;
  const int fd = connect_loopback(port, 8000);
  if (fd < 0) {
    o.status = -1;
    return o;
  }
  if (c.abort_after) {
    send_all(fd, c.bytes.substr(0, c.abort_after));
    ::close(fd);
    return o;
  }
  if (c.slow_ms) {
    const size_t piece = std::max<size_t>(1, c.bytes.size() / 5);
    for (size_t off = 0; off < c.bytes.size(); off += piece) {
      if (c.stall && off >= c.bytes.size() / 2) {
        recv_all(fd, 1 << 16);  // waits for the server to give up (its read timeout) or our timeout
        ::close(fd);
        return o;
      }
      if (!send_all(fd, c.bytes.substr(off, piece))) break;
      std::this_thread::sleep_for(std::chrono::milliseconds(c.slow_ms));
    }
  } else {
    send_all(fd, c.bytes);
  }
  if (c.read_then_close) {
    char buf[256];
    (void)::recv(fd, buf, sizeof buf, 0);
    ::close(fd);
    return o;
  }
  const std::string r = recv_all(fd);
  ::close(fd);
  o.status = raw_status(r);
  o.body = raw_body(r);
  return o;
}

}  // namespace

TEST(ServerHostile, FiveHundredMalformedOrHostileRequestsNeitherCrashNorLeak) {
  HARMONIA_REQUIRE_SHARED(kModel);
  ServerOptions so;
  so.max_body_bytes = 256 * 1024;
  so.read_timeout_s = 1;
  so.write_timeout_s = 1;
  so.engine.max_queue = 64;
  TestServer ts(so);
  constexpr int kCases = 500;
  std::mt19937_64 rng(20240611);
  std::vector<Case> cases;
  for (int i = 0; i < kCases; ++i) cases.push_back(make_case(i, rng));
  std::vector<Outcome> out(cases.size());
  std::atomic<int> next{0};
  std::vector<std::thread> clients;
  const double t0 = now_ms();
  for (int t = 0; t < 8; ++t)
    clients.emplace_back([&] {
      for (int i; (i = next++) < kCases;) out[i] = run_case(ts.port, cases[i]);
    });
  for (auto& t : clients) t.join();
  const double took_s = (now_ms() - t0) / 1000.0;
  std::map<std::string, std::map<int, int>> seen;  // case name -> status -> count (for the failure message)
  for (int i = 0; i < kCases; ++i) {
    const Case& c = cases[i];
    const Outcome& o = out[i];
    seen[c.name][o.status]++;
    EXPECT_NE(o.status, -1) << "case " << i << " (" << c.name << "): the server refused the connection";
    EXPECT_FALSE(o.status >= 500) << "case " << i << " (" << c.name << "): " << o.status << " " << o.body.substr(0, 300);
    if (c.expect == Expect::ClientError) {
      EXPECT_TRUE(o.status >= 400 && o.status < 500) << "case " << i << " (" << c.name << "): status " << o.status << " "
                                                     << o.body.substr(0, 300) << "\nsent: " << c.bytes.substr(0, 200);
      const json j = json::parse(o.body, nullptr, false);
      EXPECT_TRUE(j.is_object() && j.contains("error") && j["error"].contains("message") && j["error"].contains("type"))
          << "case " << i << " (" << c.name << "): " << o.body.substr(0, 300);
    }
  }
  // What each kind of case got (0 = no answer: the client went away or the server dropped it).
  for (const auto& [name, st] : seen) {
    std::string line = "  " + name + ":";
    for (const auto& [s, n] : st) line += " " + std::to_string(s) + " x" + std::to_string(n);
    std::printf("%s\n", line.c_str());
  }
  std::printf("  %d cases in %.1f s\n", kCases, took_s);
  EXPECT_LT(took_s, 90.0);
  // Still healthy: a normal request is answered, and nothing is left holding KV.
  const HttpResult ok = post(ts.port, "/v1/completions", json{{"prompt", "Once upon a time"}, {"max_tokens", 8}, {"temperature", 0}});
  EXPECT_EQ(ok.status, 200) << ok.body;
  EXPECT_EQ(get(ts.port, "/health").status, 200);
  EXPECT_TRUE(eventually([&] {
    const auto m = ts.engine_metrics();
    return m.admitted == 0 && m.waiting == 0 && m.kv_bytes_reserved == 0;
  }, 10000));
}
