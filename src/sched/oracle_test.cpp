// The scheduler oracles of LAPS-SD spec §6, through the simulator and the
// same Policy classes the engine uses. τ = 1 s per step, no prefill.
#include <gtest/gtest.h>

#include <algorithm>
#include <map>
#include <numeric>
#include <set>

#include <fmt/format.h>

#include "sched/test_util.h"

using namespace harmonia::sched;
using namespace harmonia::sched::testing;

namespace {

const std::vector<std::string> kAll = {"fcfs", "sjf", "sjf:preemptive=true", "srpt-oracle", "las", "mlfq",
                                       "laps-sd", "laps-sd:predictor=noisy-oracle:sigma=0.5"};

double mean_latency(const SimResult& r) { return r.metrics.mean_latency_s; }

// Busy periods [start, end) of the server from the event log.
std::vector<std::pair<double, double>> busy_periods(const SimResult& r) {
  std::vector<std::pair<double, double>> out;
  for (const auto& e : r.events) {
    if (!out.empty() && std::abs(out.back().second - e.start_s) < 1e-9) out.back().second = e.end_s;
    else out.push_back({e.start_s, e.end_s});
  }
  return out;
}

// An independent preemptive SRPT at step granularity (B = 1, τ = 1): each
// step runs the arrived request with the fewest remaining steps (ties: arrival, id).
struct SrptLog {
  std::vector<std::pair<double, RequestId>> steps;  // (start, id)
  std::map<RequestId, double> finish;
};
SrptLog reference_srpt(const Workload& w) {
  struct J {
    RequestId id;
    double arr;
    int64_t rem;
  };
  std::vector<J> js;
  for (const auto& r : w.requests) {
    int64_t left = r.output_tokens, s = 0;
    for (size_t i = 0; left > 0; ++i, ++s) left -= r.accepted[i] + 1;
    js.push_back({r.id, r.arrival_s, s});
  }
  SrptLog log;
  double t = 0;
  size_t done = 0;
  while (done < js.size()) {
    J* best = nullptr;
    double next_arrival = INFINITY;
    for (auto& j : js) {
      if (j.rem == 0) continue;
      if (j.arr > t) {
        next_arrival = std::min(next_arrival, j.arr);
        continue;
      }
      if (!best || j.rem < best->rem || (j.rem == best->rem && (j.arr < best->arr || (j.arr == best->arr && j.id < best->id))))
        best = &j;
    }
    if (!best) {
      t = next_arrival;
      continue;
    }
    log.steps.push_back({t, best->id});
    t += 1;
    if (--best->rem == 0) {
      log.finish[best->id] = t;
      ++done;
    }
  }
  return log;
}

std::vector<std::pair<double, RequestId>> step_log(const SimResult& r) {
  std::vector<std::pair<double, RequestId>> out;
  for (const auto& e : r.events) {
    EXPECT_EQ(e.ran.size(), 1u);
    out.push_back({e.start_s, e.ran.at(0)});
  }
  return out;
}

}  // namespace

// §6.1: one request alone takes ceil(L / (a + 1)) steps under every policy.
TEST(SchedOracle, SingleRequestSameUnderEveryPolicy) {
  for (int a = 0; a <= kN; ++a)
    for (int64_t L : {1, 7, 40, 101}) {
      const Workload w = make_workload({fixed_request(0, 2.0, L, a)});
      for (const auto& spec : kAll) {
        const SimResult r = run(w, spec);
        ASSERT_EQ(r.requests.size(), 1u);
        EXPECT_DOUBLE_EQ(r.requests[0].latency_s(), static_cast<double>((L + a) / (a + 1))) << spec << " L=" << L << " a=" << a;
      }
    }
}

// §6.2: Σ emitted = L exactly; the last step is cut; a <= n; each step gives >= 1 token.
TEST(SchedOracle, TokenAccounting) {
  SyntheticSpec s = parse_synthetic("reference:requests=200:seed=3:rate=2");
  const Workload w = generate_workload(s);
  for (const auto& spec : {"fcfs", "laps-sd", "mlfq"}) {
    auto p = make_policy(spec, unit_context());
    SimOptions o = unit_options(false);
    const SimResult r = simulate(w, *p, unit_profile(), o);
    ASSERT_EQ(r.requests.size(), w.requests.size());
    std::map<RequestId, const WorkloadRequest*> byid;
    for (const auto& q : w.requests) byid[q.id] = &q;
    for (const auto& out : r.requests) {
      const WorkloadRequest& q = *byid.at(out.id);
      int64_t tokens = 0, steps = 0, acc = 0;
      for (size_t i = 0; tokens < q.output_tokens; ++i, ++steps) {
        ASSERT_LE(q.accepted[i], kN);
        tokens += q.accepted[i] + 1;
        acc += q.accepted[i];
      }
      EXPECT_EQ(out.steps, steps);
      EXPECT_EQ(out.accepted, acc);
      EXPECT_EQ(out.drafted, kN * steps);
      EXPECT_GE(out.output_tokens, 1);
      EXPECT_EQ(out.output_tokens, q.output_tokens);
    }
  }
}

// §6.3 worked example: never perceptible => MLFQ. Completions 80, 88, 96 vs FCFS 32, 64, 96.
TEST(SchedOracle, NeverPerceptibleIsMlfqWorkedExample) {
  const Workload w = make_workload({fixed_request(0, 0, 64, 1), fixed_request(1, 0, 64, 1), fixed_request(2, 0, 64, 1)});
  const SimResult laps = run(w, "laps-sd:perceptible_enabled=false:thresholds=8/24");
  const SimResult mlfq = run(w, "mlfq:queues=3:quantum1=8:ratio=2:skip_join=false");
  const SimResult fcfs = run(w, "fcfs");
  EXPECT_EQ(finish_times(laps), (std::map<RequestId, double>{{0, 80}, {1, 88}, {2, 96}}));
  EXPECT_DOUBLE_EQ(mean_latency(laps), 88);
  EXPECT_EQ(finish_times(fcfs), (std::map<RequestId, double>{{0, 32}, {1, 64}, {2, 96}}));
  EXPECT_DOUBLE_EQ(mean_latency(fcfs), 64);
  EXPECT_EQ(format_events(laps.events), format_events(mlfq.events));
}

// §6.3 on random instances: LAPS-SD without the perceptible mode and an
// independently written MLFQ (per-queue quanta 8, 16, 32, 64 => cumulative
// thresholds 8, 24, 56, 120) give identical event logs.
TEST(SchedOracle, NeverPerceptibleEqualsMlfqRandom) {
  for (uint64_t seed = 1; seed <= 25; ++seed) {
    const Workload w = random_instance(seed, 12, 60, false, 60);
    const SimResult laps = run(w, "laps-sd:perceptible_enabled=false:thresholds=8/24/56/120");
    const SimResult mlfq = run(w, "mlfq:queues=5:quantum1=8:ratio=2:skip_join=false");
    ASSERT_EQ(format_events(laps.events), format_events(mlfq.events)) << "seed " << seed;
  }
}

// §6.4: perceptible from arrival with the true A and ORACLE lengths, K = 1,
// key = remaining, B = 1 equals an independent preemptive SRPT, event for event.
// srpt-oracle must match it too.
TEST(SchedOracle, PerceptibleAtArrivalIsSrpt) {
  for (uint64_t seed = 1; seed <= 40; ++seed) {
    const Workload w = random_instance(seed, 9, 40, true);
    const SrptLog ref = reference_srpt(w);
    const SimResult laps = run(w, "laps-sd:perceptible_at_arrival=true:queues=1:predictor=oracle:key=remaining");
    const SimResult srpt = run(w, "srpt-oracle");
    EXPECT_EQ(step_log(laps), ref.steps) << "seed " << seed;
    EXPECT_EQ(finish_times(laps), ref.finish) << "seed " << seed;
    EXPECT_EQ(step_log(srpt), ref.steps) << "seed " << seed;
  }
}

// §6.4 with every arrival at t = 0: SPT; brute force all orders for N <= 7.
TEST(SchedOracle, PerceptibleAtArrivalHitsBruteForceOptimum) {
  for (uint64_t seed = 100; seed < 130; ++seed) {
    const int n = 2 + static_cast<int>(seed % 6);  // 2..7
    const Workload w = random_instance(seed, n, 0, false);
    std::vector<int64_t> p;  // processing steps
    for (const auto& r : w.requests) p.push_back(static_cast<int64_t>(r.accepted.size()));
    std::vector<int> perm(p.size());
    std::iota(perm.begin(), perm.end(), 0);
    int64_t best = INT64_MAX;
    do {
      int64_t t = 0, sum = 0;
      for (int i : perm) sum += (t += p[i]);
      best = std::min(best, sum);
    } while (std::next_permutation(perm.begin(), perm.end()));
    for (const auto& spec : {"laps-sd:perceptible_at_arrival=true:queues=1", "srpt-oracle"}) {
      const SimResult r = run(w, spec);
      double sum = 0;
      for (const auto& o : r.requests) sum += o.finish_s;
      EXPECT_DOUBLE_EQ(sum, static_cast<double>(best)) << spec << " seed " << seed;
    }
  }
}

// §6.5: the acceptance rate matters. Equal L = 40; r1 accepts 4 per step (8
// steps), r2 accepts 0 (40 steps). Length-only SJF ties (and the tie goes to
// r2, the lower id): 40, 48. LAPS-SD in mode 4 runs r1 first: 8, 48, mean 28.
TEST(SchedOracle, AcceptanceRateMatters) {
  const Workload w = make_workload({fixed_request(2, 0, 40, 4), fixed_request(1, 0, 40, 0)});
  const SimResult sjf = run(w, "sjf");
  EXPECT_EQ(finish_times(sjf), (std::map<RequestId, double>{{1, 40}, {2, 48}}));
  EXPECT_DOUBLE_EQ(mean_latency(sjf), 44);
  const SimResult laps = run(w, "laps-sd:perceptible_at_arrival=true:queues=1");
  EXPECT_EQ(finish_times(laps), (std::map<RequestId, double>{{2, 8}, {1, 48}}));
  EXPECT_DOUBLE_EQ(mean_latency(laps), 28);
  // Default LAPS-SD learns it online: both start in queue 0, r2 (lower id) first
  // until stable; still beats length-only SJF.
  EXPECT_LT(mean_latency(run(w, "laps-sd")), 44);
}

// §6.5 regression guard: in mode 4 LAPS-SD is never worse than length-only SRPT
// with the same oracle lengths.
TEST(SchedOracle, ModeFourNeverWorseThanLengthOnlySrpt) {
  for (uint64_t seed = 1; seed <= 30; ++seed) {
    const Workload w = random_instance(seed, 15, 50, true);
    const double laps = mean_latency(run(w, "laps-sd:perceptible_at_arrival=true:queues=1"));
    const double srpt_len = mean_latency(run(w, "sjf:preemptive=true"));
    EXPECT_LE(laps, srpt_len + 1e-9) << "seed " << seed;
  }
}

// §6.6: with c_p = 0 and B = 1, work-conserving policies share makespan and busy periods.
TEST(SchedOracle, WorkConservationSameBusyPeriods) {
  for (uint64_t seed = 1; seed <= 20; ++seed) {
    const Workload w = random_instance(seed, 20, 150, false);
    const auto ref = busy_periods(run(w, "fcfs"));
    for (const auto& spec : kAll) {
      const SimResult r = run(w, spec);
      const auto bp = busy_periods(r);
      ASSERT_EQ(bp.size(), ref.size()) << spec << " seed " << seed;
      for (size_t i = 0; i < bp.size(); ++i) {
        EXPECT_NEAR(bp[i].first, ref[i].first, 1e-9) << spec;
        EXPECT_NEAR(bp[i].second, ref[i].second, 1e-9) << spec;
      }
    }
  }
}

// §6.6 with prefill costs and a batch-independent profile: makespans still agree.
TEST(SchedOracle, WorkConservationWithPrefill) {
  const CostProfile prof = CostProfile::constant(100.0, 600.0, 2.0, 0.0);  // τ = 1 s, prefill 2 ms/token
  const Workload w = random_instance(77, 25, 100, false);
  SimOptions o = unit_options(false);
  o.charge_prefill = true;
  double ref = -1;
  for (const auto& spec : kAll) {
    auto p = make_policy(spec, prof.policy_context(kN));
    const SimResult r = simulate(w, *p, prof, o);
    if (ref < 0) ref = r.metrics.makespan_s;
    EXPECT_NEAR(r.metrics.makespan_s, ref, 1e-6) << spec;
  }
}

// §6.7: no policy's mean latency is below srpt-oracle's (B = 1, c_p = 0, integer arrivals).
TEST(SchedOracle, SrptOracleIsLowerBound) {
  for (uint64_t seed = 1; seed <= 30; ++seed) {
    const Workload w = random_instance(seed, 15, 60, seed % 2 == 0);
    const double bound = mean_latency(run(w, "srpt-oracle"));
    for (const auto& spec : kAll) EXPECT_GE(mean_latency(run(w, spec)), bound - 1e-9) << spec << " seed " << seed;
  }
}

// §6.8: queue invariants of LAPS-SD on random instances, checked between steps.
TEST(SchedOracle, LapsQueueInvariants) {
  const std::vector<double> theta = {8, 16, 32, 64, INFINITY};  // defaults: θ1 = 8 steps, ratio 2, K = 5
  const int W = 5, t_min = 5;
  const double eps = 0.05;
  const int64_t switch_bound = std::max<int64_t>(t_min, static_cast<int64_t>(std::ceil((W - 1) / eps)) + W);
  for (uint64_t seed = 1; seed <= 10; ++seed) {
    Workload w = generate_workload(parse_synthetic(fmt::format("reference:requests=60:seed={}:rate=0.05", seed)));
    auto p = make_policy("laps-sd", unit_context());
    std::map<RequestId, int> last_queue;
    std::set<RequestId> perceptible;
    std::map<RequestId, size_t> step_of;
    size_t next = 0;
    double now = 0;
    size_t done = 0;
    while (done < w.requests.size()) {
      while (next < w.requests.size() && w.requests[next].arrival_s <= now) {
        p->on_arrival(to_request(w.requests[next]), w.requests[next].arrival_s);
        ++next;
      }
      if (p->size() == 0) {
        now = w.requests[next].arrival_s;
        continue;
      }
      const Selection sel = p->select(now, Capacity{1, 0});
      ASSERT_EQ(sel.run.size(), 1u);
      // Strict priority: nothing runs while a higher queue is non-empty.
      int min_q = 1 << 30;
      for (RequestId id : p->order(now)) min_q = std::min(min_q, p->find(id)->queue);
      ASSERT_EQ(p->find(sel.run[0])->queue, min_q);
      const RequestId id = sel.run[0];
      const WorkloadRequest* q = nullptr;
      for (const auto& r : w.requests)
        if (r.id == id) q = &r;
      const RequestState* st = p->find(id);
      const int32_t a = q->accepted[step_of[id]++];
      StepOutcome o{id, kN, a, std::min<int64_t>(a + 1, q->output_tokens - st->generated), 0, false};
      o.finished = st->generated + o.emitted >= q->output_tokens;
      now += 1;
      const StepOutcome outs[] = {o};
      p->on_step_done(outs, 1.0, now);
      if (o.finished) ++done;
      for (RequestId rid : p->order(now)) {
        const RequestState& r = *p->find(rid);
        if (perceptible.count(rid)) {
          ASSERT_TRUE(r.perceptible) << "perceptible is absorbing";
        }
        if (r.perceptible) {
          perceptible.insert(rid);
          continue;
        }
        const int j = r.queue;
        EXPECT_GE(r.attained, j == 0 ? 0.0 : theta[j - 1]);
        EXPECT_LT(r.attained, theta[j]);
        if (last_queue.count(rid)) {
          EXPECT_GE(j, last_queue[rid]) << "queue index never decreases";
        }
        last_queue[rid] = j;
        EXPECT_LT(r.acc.steps, switch_bound) << "the stability test passes by max(t_min, ceil((W-1)/eps) + W)";
      }
    }
    EXPECT_GT(perceptible.size(), 20u);
  }
}

// §6.9: identical requests, each finishing before the next arrives: same latencies everywhere.
TEST(SchedOracle, StaggeredIdenticalRequests) {
  std::vector<WorkloadRequest> rs;
  for (int i = 0; i < 10; ++i) rs.push_back(fixed_request(i, 20.0 * i, 30, 2));
  const Workload w = make_workload(rs);
  for (const auto& spec : kAll) {
    const SimResult r = run(w, spec);
    for (const auto& o : r.requests) EXPECT_DOUBLE_EQ(o.latency_s(), 10.0) << spec;
  }
}

// §6.10 and "no request starves when aging is on": a long request under a
// stream of short ones that saturates the server. Without aging it waits for
// the whole stream; with aging, no wait between its steps exceeds
// starve_limit + one step (no other request is promoted here).
TEST(SchedOracle, AgingBoundsWaiting) {
  std::vector<WorkloadRequest> rs{fixed_request(0, 0, 400, 1)};  // 200 steps
  for (int i = 1; i <= 100; ++i) rs.push_back(fixed_request(i, 0.5 + 3.0 * (i - 1), 6, 1));  // 3 steps every 3 s
  const Workload w = make_workload(rs);
  auto max_gap = [](const SimResult& r, RequestId id) {
    double last_end = 0, gap = 0;
    for (const auto& e : r.events)
      if (std::find(e.ran.begin(), e.ran.end(), id) != e.ran.end()) {
        gap = std::max(gap, e.start_s - last_end);
        last_end = e.end_s;
      }
    return gap;
  };
  for (const std::string base : {"laps-sd", "mlfq", "laps-sd:predictor=cond-mean"}) {
    const SimResult starving = run(w, base);
    EXPECT_GT(max_gap(starving, 0), 250.0) << base << ": the instance must starve without aging";
    const double limit = 20;
    const SimResult aged = run(w, base + ":starve_limit_s=20");
    // laps-sd: one step of slack. mlfq promotes to a full top-queue quantum, so
    // shorts that queued meanwhile get promoted too and each goes ahead once.
    const double slack = base == "mlfq" ? 3.0 : 0.0;
    EXPECT_LE(max_gap(aged, 0), limit + 1.0 + slack + 1e-9) << base;
    for (const auto& o : aged.requests) EXPECT_GT(o.finish_s, 0);
  }
}

// Aging on a random overloaded mix: every request keeps making progress.
TEST(SchedOracle, AgingNoStarvationRandom) {
  const Workload w = random_instance(5, 80, 100, false, 40);  // far above capacity
  const SimResult r = run(w, "laps-sd:starve_limit_s=30");
  std::map<RequestId, double> last_end;
  std::map<RequestId, double> arrival;
  for (const auto& q : w.requests) arrival[q.id] = q.arrival_s;
  double worst = 0;
  for (const auto& e : r.events) {
    const RequestId id = e.ran[0];
    const double since = last_end.count(id) ? last_end[id] : arrival[id];
    worst = std::max(worst, e.start_s - since);
    last_end[id] = e.end_s;
  }
  // Bound: limit + one step + one step for each other request promoted ahead of it.
  EXPECT_LE(worst, 30.0 + 1.0 + static_cast<double>(w.requests.size()));
  EXPECT_EQ(r.requests.size(), w.requests.size());
}

// §6.11: stationary acceptance, ORACLE lengths: the estimation error falls as
// the stability window grows; with σ > 0 it grows.
TEST(SchedOracle, EstimationErrorTrends) {
  const Workload w = generate_workload(parse_synthetic("single:requests=300:seed=9:rate=0.02:output=300:alpha=0.7"));
  auto err = [&](const std::string& spec) {
    const SimResult r = run(w, spec, unit_options(false));
    EXPECT_GT(r.metrics.est_count, 100);
    return r.metrics.est_error_mean;
  };
  const double small_w = err("laps-sd:window=2:t_min=2:eps=0.2");
  const double big_w = err("laps-sd:window=30:t_min=30:eps=0.01");
  const double noisy = err("laps-sd:window=30:t_min=30:eps=0.01:predictor=noisy-oracle:sigma=0.5");
  std::printf("estimation error: W=2 %.4f, W=30 %.4f, W=30 sigma=0.5 %.4f\n", small_w, big_w, noisy);
  EXPECT_LT(big_w, small_w);
  EXPECT_LT(big_w, 0.1);
  EXPECT_GT(noisy, big_w + 0.2);
}

// §6.12: the same seed gives a byte-identical event log.
TEST(SchedOracle, Deterministic) {
  auto log = [](uint64_t seed) {
    const Workload w = generate_workload(parse_synthetic(fmt::format("reference:requests=150:seed={}:rate=0.08", seed)));
    return format_events(run(w, "laps-sd:predictor=noisy-oracle").events);
  };
  EXPECT_EQ(log(4), log(4));
  EXPECT_NE(log(4), log(5));
}
