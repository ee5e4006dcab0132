#include "cli/sched_table.h"

#include <cstdio>

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
  std::printf("| %-34s | %8s | %8s | %8s | %8s | %8s | %8s | %9s | %6s | %7s | %6s |\n", "policy", "mean s", "p50 s",
              "p90 s", "p99 s", "TTFT s", "TPOT ms", "tok/s", "accept", "preempt", "x base");
  std::printf("|%s|%s|%s|%s|%s|%s|%s|%s|%s|%s|%s|\n", std::string(36, '-').c_str(), std::string(10, '-').c_str(),
              std::string(10, '-').c_str(), std::string(10, '-').c_str(), std::string(10, '-').c_str(),
              std::string(10, '-').c_str(), std::string(10, '-').c_str(), std::string(11, '-').c_str(),
              std::string(8, '-').c_str(), std::string(9, '-').c_str(), std::string(8, '-').c_str());
  const double ref = metrics[base_i].mean_latency_s;
  for (size_t s = 0; s < metrics.size(); ++s) {
    const auto& m = metrics[s];
    std::printf("| %-34s | %8.3f | %8.3f | %8.3f | %8.3f | %8.3f | %8.2f | %9.1f | %6.3f | %7lld | %6.3f |\n",
                labels[s].c_str(), m.mean_latency_s, m.p50_latency_s, m.p90_latency_s, m.p99_latency_s, m.mean_ttft_s,
                m.mean_tpot_s * 1000, m.throughput_tok_s, m.mean_acceptance, static_cast<long long>(m.preemptions),
                ref > 0 ? m.mean_latency_s / ref : 0.0);
  }
}

}  // namespace harmonia::cli
