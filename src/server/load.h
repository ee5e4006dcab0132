#pragma once
// `harmonia load`: a bounded load generator for a running `harmonia serve`
// (loopback addresses only). Requests arrive open-loop — from a workload file
// (sched/workload.h: arrival times, prompt and output lengths) or as a Poisson
// process at a fixed rate for a fixed time — and at most `concurrency` are in
// flight; a request that waits for a free slot counts that wait in its latency.
// Each request streams from /v1/completions, so TTFT is measured at the client.
// The report has the metrics of the simulator's and replay's reports.
#include <cstdint>
#include <map>
#include <string>

#include <nlohmann/json.hpp>

namespace harmonia::server {

struct LoadGenOptions {
  std::string url = "http://127.0.0.1:8080";  // the server (http, loopback only)
  std::string workload;                        // JSONL workload file; empty = rate mode
  double rate = 0;                             // rate mode: requests per second (Poisson arrivals)
  double duration_s = 0;                       // rate mode: seconds of arrivals
  int concurrency = 16;                        // requests in flight at most (1..1024)
  std::string prompt = "Once upon a time";     // rate mode: prompt text
  int max_tokens = 64;                         // rate mode: max_tokens of each request
  bool ignore_eos = false;                     // rate mode: generate max_tokens every time (workloads always do)
  std::string api_key;
  uint64_t seed = 1;                           // arrival times and request seeds
  double timeout_s = 300;                      // per request
  int64_t max_requests = 100000;               // refuse larger runs (the generator is bounded)
};

struct LoadReport {
  std::string url;
  int64_t requests = 0, ok = 0, errors = 0;
  std::map<std::string, int64_t> error_kinds;  // "http 429", "connection", "stream error", ...
  int64_t prompt_tokens = 0, output_tokens = 0;
  int64_t clamped = 0;                         // workload requests shortened to fit the context
  double duration_s = 0;                       // first arrival to last finish
  double requests_per_s = 0, output_tok_per_s = 0;
  double mean_latency_s = 0, p50_latency_s = 0, p90_latency_s = 0, p99_latency_s = 0;
  double mean_ttft_s = 0, p50_ttft_s = 0, p90_ttft_s = 0, p99_ttft_s = 0;
  double mean_tpot_s = 0, p50_tpot_s = 0, p90_tpot_s = 0, p99_tpot_s = 0;  // over requests with > 1 token
  size_t server_rss_before = 0, server_rss_after = 0;  // /health rss_bytes (0 if not reported)

  std::string text() const;
  nlohmann::json to_json() const;
};

// Runs the load. Throws Error(InvalidInput) for bad options or a non-loopback
// URL, Error(Io) when the server cannot be reached before the run.
LoadReport run_load(const LoadGenOptions& o);

// "http://HOST:PORT[/]" -> host, port. Throws Error(InvalidInput) unless HOST is
// a loopback address (127.0.0.0/8, localhost, ::1).
void parse_loopback_url(const std::string& url, std::string& host, int& port);

}  // namespace harmonia::server
