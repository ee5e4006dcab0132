#pragma once
// The per-policy metrics table and JSON rows shared by `harmonia simulate` and
// `harmonia replay`, so simulated and measured results print alike.
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "sched/simulator.h"

namespace harmonia::cli {

nlohmann::json sim_metrics_json(const sched::SimMetrics& m);
// Markdown table: policy, mean/p50/p90/p99 latency, TTFT (in ms when every
// p99 is under 1 s, else in s), TPOT, tok/s, acceptance, preemptions, and mean
// latency over that of labels[base_i].
void print_sim_table(const std::vector<std::string>& labels, const std::vector<sched::SimMetrics>& metrics, size_t base_i);

}  // namespace harmonia::cli
