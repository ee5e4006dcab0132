#include "cli/sched_table.h"

#include <cstdio>

#include <fmt/format.h>

namespace harmonia::cli {

using nlohmann::json;

json sim_metrics_json(const sched::SimMetrics& m) {
  return {{"requests", m.requests},
          {"mean_latency_s", m.mean_latency_s},
          {"p50_latency_s", m.p50_latency_s},
          {"p90_latency_s", m.p90_latency_s},
          {"p99_latency_s", m.p99_latency_s},
          {"mean_ttft_s", m.mean_ttft_s},
          {"p99_ttft_s", m.p99_ttft_s},
          {"mean_tpot_s", m.mean_tpot_s},
          {"mean_norm_latency_s", m.mean_norm_latency_s},
          {"throughput_tok_s", m.throughput_tok_s},
          {"mean_acceptance", m.mean_acceptance},
          {"preemptions", m.preemptions},
          {"makespan_s", m.makespan_s},
          {"estimation_error_mean", m.est_error_mean < 0 ? json(nullptr) : json(m.est_error_mean)},
          {"estimation_count", m.est_count}};
}

void print_sim_table(const std::vector<std::string>& labels, const std::vector<sched::SimMetrics>& metrics, size_t base_i) {
  // Latencies in ms when every p99 is under a second (the tiny models of a replay), else in s.
  bool ms = true;
  for (const auto& m : metrics) ms = ms && m.p99_latency_s < 1.0;
  const double k = ms ? 1000.0 : 1.0;
  const char* u = ms ? "ms" : "s";
  auto h = [&](const char* what) { return fmt::format("{} {}", what, u); };
  std::printf("| %-34s | %8s | %8s | %8s | %8s | %8s | %8s | %9s | %6s | %7s | %6s |\n", "policy", h("mean").c_str(),
              h("p50").c_str(), h("p90").c_str(), h("p99").c_str(), h("TTFT").c_str(), "TPOT ms", "tok/s", "accept",
              "preempt", "x base");
  std::printf("|%s|%s|%s|%s|%s|%s|%s|%s|%s|%s|%s|\n", std::string(36, '-').c_str(), std::string(10, '-').c_str(),
              std::string(10, '-').c_str(), std::string(10, '-').c_str(), std::string(10, '-').c_str(),
              std::string(10, '-').c_str(), std::string(10, '-').c_str(), std::string(11, '-').c_str(),
              std::string(8, '-').c_str(), std::string(9, '-').c_str(), std::string(8, '-').c_str());
  const double ref = metrics[base_i].mean_latency_s;
  for (size_t s = 0; s < metrics.size(); ++s) {
    const auto& m = metrics[s];
    std::printf("| %-34s | %8.3f | %8.3f | %8.3f | %8.3f | %8.3f | %8.2f | %9.1f | %6.3f | %7lld | %6.3f |\n",
                labels[s].c_str(), k * m.mean_latency_s, k * m.p50_latency_s, k * m.p90_latency_s, k * m.p99_latency_s,
                k * m.mean_ttft_s, m.mean_tpot_s * 1000, m.throughput_tok_s, m.mean_acceptance,
                static_cast<long long>(m.preemptions), ref > 0 ? m.mean_latency_s / ref : 0.0);
  }
}

}  // namespace harmonia::cli
