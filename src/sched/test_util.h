#pragma once
// Deterministic instances for the scheduler oracles (LAPS-SD spec §6): τ = 1 s
// per step, no prefill, fixed accepted count per step unless stated.
#include <algorithm>
#include <cmath>
#include <map>
#include <string>
#include <vector>

#include "sched/policies.h"
#include "sched/random.h"
#include "sched/simulator.h"

namespace harmonia::sched::testing {

constexpr int kN = 4;  // draft length n of the oracles

// One step = 1 s (draft 0 ms/token + verify 1000 ms), no prefill, free preemption.
inline CostProfile unit_profile() { return CostProfile::constant(0.0, 1000.0, 0.0, 0.0); }
inline PolicyContext unit_context(std::vector<int64_t> lengths = {}) {
  PolicyContext c = unit_profile().policy_context(kN);
  c.length_samples = std::move(lengths);
  return c;
}

// A request whose every step accepts `a` drafts: ceil(L / (a + 1)) steps.
inline WorkloadRequest fixed_request(int64_t id, double arrival_s, int64_t L, int a, int64_t prompt = 16) {
  WorkloadRequest r;
  r.id = id;
  r.arrival_s = arrival_s;
  r.prompt_tokens = prompt;
  r.output_tokens = L;
  r.accepted.assign(static_cast<size_t>((L + a) / (a + 1)), a);
  return r;
}

inline Workload make_workload(std::vector<WorkloadRequest> rs) {
  Workload w;
  w.requests = std::move(rs);
  std::stable_sort(w.requests.begin(), w.requests.end(), [](const auto& x, const auto& y) {
    return x.arrival_s != y.arrival_s ? x.arrival_s < y.arrival_s : x.id < y.id;
  });
  w.draft_len = kN;
  w.source = "test";
  return w;
}

inline SimOptions unit_options(bool events = true) {
  SimOptions o;
  o.draft_len = kN;
  o.charge_prefill = false;
  o.record_events = events;
  return o;
}

inline SimResult run(const Workload& w, const std::string& spec, SimOptions o = unit_options()) {
  std::vector<int64_t> lengths;
  for (const auto& r : w.requests) lengths.push_back(r.output_tokens);
  auto p = make_policy(spec, unit_context(lengths));
  return simulate(w, *p, unit_profile(), o);
}

// Finish time by request id.
inline std::map<RequestId, double> finish_times(const SimResult& r) {
  std::map<RequestId, double> m;
  for (const auto& o : r.requests) m[o.id] = o.finish_s;
  return m;
}

// Random instance: n requests, integer arrivals in [0, span), fixed a per request,
// L a multiple of (a + 1) when `exact` (so remaining work is an exact number of steps).
inline Workload random_instance(uint64_t seed, int n, double span, bool exact, int64_t max_steps = 30) {
  Rng rng(seed);
  std::vector<WorkloadRequest> rs;
  for (int i = 0; i < n; ++i) {
    const int a = static_cast<int>(rng.next() % (kN + 1));
    const int64_t steps = 1 + static_cast<int64_t>(rng.next() % static_cast<uint64_t>(max_steps));
    int64_t L = steps * (a + 1);
    if (!exact) L = std::max<int64_t>(1, L - static_cast<int64_t>(rng.next() % static_cast<uint64_t>(a + 1)));
    const double t = span > 0 ? std::floor(rng.uniform() * span) : 0.0;
    rs.push_back(fixed_request(i, t, L, a));
  }
  return make_workload(std::move(rs));
}

}  // namespace harmonia::sched::testing
