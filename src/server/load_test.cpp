// `harmonia load` against an in-process server (loopback only, a second or two of load).
#include <gtest/gtest.h>

#include <fstream>

#include "common/error.h"
#include "server/load.h"
#include "server/test_util.h"

using namespace harmonia;
using namespace harmonia::server;
using namespace harmonia::server::testing;

TEST(ServerLoad, RateModeReportsLatencyPercentilesAndNoErrors) {
  HARMONIA_REQUIRE_SHARED(kModel);
  TestServer ts;
  LoadGenOptions o;
  o.url = "http://127.0.0.1:" + std::to_string(ts.port);
  o.rate = 40;
  o.duration_s = 1.0;
  o.concurrency = 8;
  o.max_tokens = 16;
  o.ignore_eos = true;
  const LoadReport r = run_load(o);
  EXPECT_GT(r.requests, 15);
  EXPECT_EQ(r.errors, 0) << r.text();
  EXPECT_EQ(r.ok, r.requests);
  EXPECT_EQ(r.output_tokens, 16 * r.ok);
  EXPECT_GT(r.p50_latency_s, 0);
  EXPECT_LE(r.p50_latency_s, r.p90_latency_s);
  EXPECT_LE(r.p90_latency_s, r.p99_latency_s);
  EXPECT_GT(r.mean_ttft_s, 0);
  EXPECT_LE(r.mean_ttft_s, r.mean_latency_s);
  EXPECT_GT(r.mean_tpot_s, 0);
  EXPECT_GT(r.requests_per_s, 0);
  EXPECT_GT(r.server_rss_before, 0u);
  EXPECT_GT(r.server_rss_after, 0u);
  EXPECT_NE(r.text().find("p99"), std::string::npos);
  EXPECT_EQ(r.to_json()["errors"], 0);
  // The server saw the same requests.
  EXPECT_EQ(ts.srv->metrics().responses("/v1/completions", 200), r.ok);
}

TEST(ServerLoad, WorkloadFileSetsArrivalsAndLengths) {
  HARMONIA_REQUIRE_SHARED(kModel);
  TestServer ts;
  const std::string path = ::testing::TempDir() + "/harmonia_load_workload.jsonl";
  {
    std::ofstream f(path);
    f << R"({"format": "harmonia.workload", "version": 1})" << "\n";
    f << R"({"arrival_s": 0.0, "prompt_tokens": 20, "output_tokens": 8})" << "\n";
    f << R"({"arrival_s": 0.05, "prompt_tokens": 100, "output_tokens": 30})" << "\n";
    f << R"({"arrival_s": 0.1, "prompt": "Once upon a time", "output_tokens": 12})" << "\n";
    f << R"({"arrival_s": 0.1, "prompt_tokens": 250, "output_tokens": 50})" << "\n";  // clamped to the context (256)
  }
  LoadGenOptions o;
  o.url = "http://127.0.0.1:" + std::to_string(ts.port);
  o.workload = path;
  o.concurrency = 2;
  const LoadReport r = run_load(o);
  EXPECT_EQ(r.requests, 4);
  EXPECT_EQ(r.errors, 0) << r.text();
  EXPECT_EQ(r.clamped, 1);
  EXPECT_EQ(r.output_tokens, 8 + 30 + 12 + 50);
  EXPECT_EQ(r.prompt_tokens - stories().tokenizer->encode("Once upon a time", true).size(), 20 + 100 + 206u);
}

TEST(ServerLoad, OnlyLoopbackServersMayBeLoaded) {
  std::string host;
  int port = 0;
  parse_loopback_url("http://127.0.0.1:8080", host, port);
  EXPECT_EQ(host, "127.0.0.1");
  EXPECT_EQ(port, 8080);
  parse_loopback_url("http://localhost:9", host, port);
  parse_loopback_url("http://[::1]:80/", host, port);
  EXPECT_EQ(host, "::1");
  parse_loopback_url("http://127.1.2.3:80/v1", host, port);
  for (const char* bad : {"http://10.0.0.1:8080", "http://192.168.1.2:80", "http://example.com:80", "http://127.0.0.1.nip.io:80",
                          "https://127.0.0.1:443", "http://127.0.0.1:0", "http://127.0.0.1:99999", "127.0.0.1:8080",
                          "http://0.0.0.0:8080", "http://127.0.0.1:80/other"})
    EXPECT_THROW(parse_loopback_url(bad, host, port), Error) << bad;
  LoadGenOptions o;
  o.url = "http://10.1.2.3:8080";  // refused before any traffic
  o.rate = 1;
  o.duration_s = 1;
  EXPECT_THROW(run_load(o), Error);
  o.url = "http://127.0.0.1:1";
  o.rate = 1e6;
  o.duration_s = 1e6;  // unbounded runs are refused
  EXPECT_THROW(run_load(o), Error);
}
