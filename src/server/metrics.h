#pragma once
// Server metrics in the Prometheus text exposition format (version 0.0.4):
// HTTP requests by endpoint and status, prompt and generated tokens, TTFT /
// TPOT / end-to-end latency histograms, and the engine's gauges (running and
// waiting requests per scheduler queue, KV bytes in use per policy and the
// budget, draft acceptance, preemptions). docs/serving.md lists every metric.
#include <cstdint>
#include <map>
#include <mutex>
#include <string>
#include <utility>
#include <vector>

#include "engine/engine.h"

namespace harmonia::server {

// A cumulative histogram with fixed bucket upper bounds (seconds).
class Histogram {
 public:
  explicit Histogram(std::vector<double> bounds);
  void observe(double v);
  // "# HELP/# TYPE" lines, name_bucket{le=...}, name_sum, name_count.
  void render(std::string& out, const std::string& name, const std::string& help) const;
  int64_t count() const { return count_; }

 private:
  std::vector<double> bounds_;
  std::vector<int64_t> counts_;  // [bounds + 1]: per bucket (not cumulative); last = +Inf
  double sum_ = 0;
  int64_t count_ = 0;
};

class ServerMetrics {
 public:
  ServerMetrics();
  // One HTTP response (any status) on `endpoint` (a route name, never a raw client path).
  void on_response(const std::string& endpoint, int status);
  // A request the engine finished normally. ttft/latency in ms, as in engine::Event.
  void on_finished(const engine::Usage& u, double ttft_ms, double latency_ms);
  int64_t responses(const std::string& endpoint, int status) const;

  // The whole /metrics page. `policies`: KV policy names to list even at 0 bytes.
  std::string render(const engine::Metrics& em, const std::vector<std::string>& policies, const std::string& model,
                     size_t rss_bytes) const;

 private:
  mutable std::mutex mu_;
  std::map<std::pair<std::string, int>, int64_t> responses_;
  int64_t prompt_tokens_ = 0, generation_tokens_ = 0, finished_ = 0;
  Histogram ttft_, tpot_, latency_;
};

// Resident set size of this process in bytes (/proc/self/status VmRSS; 0 if unknown).
size_t resident_bytes();

}  // namespace harmonia::server
