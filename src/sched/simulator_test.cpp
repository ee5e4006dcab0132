// The simulator's step costing for workloads recorded from the engine: a
// prefill-only first step (header first_step "prefill") and per-step drafted
// counts, against hand-computed times on a flat profile.
#include <gtest/gtest.h>

#include <cmath>

#include "sched/policy.h"
#include "sched/profile.h"
#include "sched/simulator.h"
#include "sched/workload.h"

using namespace harmonia::sched;

namespace {

// draft 1 ms/token, verify 10 ms per pass (any n, batch, context), prefill 2 ms/token.
const CostProfile& flat() {
  static const CostProfile p = CostProfile::constant(1.0, 10.0, 2.0);
  return p;
}

SimResult run(const Workload& w, int batch = 1) {
  auto pol = make_policy("fcfs", flat().policy_context(4));
  SimOptions o;
  o.max_seqs = batch;
  o.draft_len = 4;
  return simulate(w, *pol, flat(), o);
}

Workload one(bool prefill_step, bool drafted) {
  const std::string head = std::string(R"({"format": "harmonia.workload", "version": 1, "draft_len": 4)") +
                           (prefill_step ? R"(, "first_step": "prefill"})" : "}");
  const std::string req = std::string(R"({"id": 0, "arrival_s": 0, "prompt_tokens": 5, "output_tokens": 4, "accepted": [0, 1, 1])") +
                          (drafted ? R"(, "drafted": [0, 2, 1]})" : "}");
  return parse_workload(head + "\n" + req + "\n", "one.jsonl");
}

}  // namespace

TEST(SchedSimulator, SpeculativeFirstStepIsTheDefault) {
  // prefill 5·2 = 10 ms with a full step 4·1 + 10; then two more steps of 14 ms.
  const SimResult r = run(one(false, false));
  ASSERT_EQ(r.requests.size(), 1u);
  EXPECT_NEAR(r.requests[0].finish_s, 0.052, 1e-12);
  EXPECT_NEAR(r.requests[0].first_token_s, 0.024, 1e-12);
  EXPECT_EQ(r.requests[0].drafted, 12);
}

TEST(SchedSimulator, PrefillOnlyFirstStep) {
  // 10 ms prefill emitting one token, then two steps of 4·1 + 10 ms.
  const SimResult r = run(one(true, false));
  EXPECT_NEAR(r.requests[0].first_token_s, 0.010, 1e-12);
  EXPECT_NEAR(r.requests[0].finish_s, 0.038, 1e-12);
  EXPECT_EQ(r.requests[0].drafted, 8);
  EXPECT_EQ(r.requests[0].output_tokens, 4);
}

TEST(SchedSimulator, DraftedTraceSetsCostAndAcceptance) {
  // 10 ms prefill; 2·1 + 10 ms; 1·1 + 10 ms.
  const Workload w = one(true, true);
  const SimResult r = run(w);
  EXPECT_NEAR(r.requests[0].finish_s, 0.033, 1e-12);
  EXPECT_EQ(r.requests[0].drafted, 3);
  EXPECT_EQ(r.requests[0].accepted, 2);
  EXPECT_NEAR(r.metrics.mean_acceptance, 2.0 / 3.0, 1e-12);
  EXPECT_NEAR(mean_service_s(w, flat(), 4), 0.033, 1e-12);
}

TEST(SchedSimulator, BatchMixesPrefillAndMeanDraftLength) {
  const Workload w = parse_workload(
      R"({"format": "harmonia.workload", "version": 1, "draft_len": 4, "first_step": "prefill"})"
      "\n"
      R"({"id": 0, "arrival_s": 0, "prompt_tokens": 5, "output_tokens": 3, "accepted": [0, 1], "drafted": [0, 2]})"
      "\n"
      R"({"id": 1, "arrival_s": 0, "prompt_tokens": 3, "output_tokens": 2, "accepted": [0, 0], "drafted": [0, 1]})"
      "\n",
      "two.jsonl");
  const SimResult r = run(w, 2);
  // Step 1: both only prefill (10 + 6 ms). Step 2: both decode, mean d = 1.5: 1.5·1 + 10 ms.
  ASSERT_EQ(r.requests.size(), 2u);
  for (const auto& q : r.requests) {
    EXPECT_NEAR(q.first_token_s, 0.016, 1e-12);
    EXPECT_NEAR(q.finish_s, 0.0275, 1e-12);
  }
}

TEST(SchedSimulator, WorkloadPolicyContextUsesProfileAndLengths) {
  const Workload w = one(false, false);
  const PolicyContext c = workload_policy_context(w, flat(), 4, 1);
  EXPECT_EQ(c.draft_len, 4);
  EXPECT_NEAR(c.step_s, 0.014, 1e-12);
  ASSERT_TRUE(c.prefill_s);
  EXPECT_NEAR(c.prefill_s(5), 0.010, 1e-12);
  EXPECT_EQ(c.length_samples, (std::vector<int64_t>{4}));
}

// The profile's step overhead (per step, by batch size), switch cost
// (preempt_ms, per resumed request) and drafter catch-up (draft_prefill_ms, in
// a request's first decode step) enter the simulated steps where the engine pays them.
TEST(SchedSimulator, StepOverheadSwitchAndCatchUpCostsAreCharged) {
  nlohmann::json j = flat().to_json();
  j["step_overhead_ms"] = {0.5};
  j["preempt_ms"] = 3.0;
  j["draft_prefill_ms"] = {0.0, 0.2};  // 0.2 ms per prompt token: 1 ms for the 5-token prompt
  const CostProfile p = CostProfile::from_json(j, "overhead profile");
  EXPECT_NEAR(p.step_ms(1, 4, 10), 14.5, 1e-12);
  // One request: 10 ms prefill + 0.5, then two steps of 4·1 + 10 + 0.5 ms, the first with the 1 ms catch-up.
  auto pol = make_policy("fcfs", p.policy_context(4));
  SimOptions o;
  o.draft_len = 4;
  const SimResult one_run = simulate(one(true, false), *pol, p, o);
  EXPECT_NEAR(one_run.requests[0].finish_s, 0.0405, 1e-12);
  EXPECT_NEAR(mean_service_s(one(true, false), p, 4), 0.0405, 1e-12);
  // Two identical requests served round-robin (las in iterations) at B = 1:
  // A prefill, B prefill, A, B, A, B — the last four steps resume the other request.
  Workload w = one(true, false);
  WorkloadRequest second = w.requests[0];
  second.id = 1;
  w.requests.push_back(second);
  auto las = make_policy("las:service_unit=iterations", p.policy_context(4));
  o.record_events = true;
  const SimResult r = simulate(w, *las, p, o);
  ASSERT_EQ(r.events.size(), 6u);
  const double expect_ms[] = {10.5, 10.5, 14.5 + 3 + 1, 14.5 + 3 + 1, 14.5 + 3, 14.5 + 3};
  for (size_t k = 0; k < 6; ++k) {
    EXPECT_EQ(r.events[k].ran, (std::vector<RequestId>{static_cast<RequestId>(k % 2)})) << k;
    EXPECT_NEAR(1000 * (r.events[k].end_s - r.events[k].start_s), expect_ms[k], 1e-9) << k;
  }
  // step_cost_ms: a batch of a prefill member and two decoders, one resumed.
  const StepMember ms[] = {{5, false, 0, 0, false}, {0, true, 10, 2, true}, {0, true, 20, 4, false}};
  EXPECT_NEAR(step_cost_ms(p, ms, p.preempt_ms()), 10 + 3 * 1 + 10 + 0.5 + 3, 1e-12);
  StepMember catching_up{0, true, 10, 4, false, 5};
  EXPECT_NEAR(step_cost_ms(p, std::span<const StepMember>(&catching_up, 1), 0), 4 + 10 + 0.5 + 1, 1e-12);
}
