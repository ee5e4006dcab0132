// The Policy interface as the engine drives it, option parsing, predictors,
// and behaviours of the individual policies.
#include <gtest/gtest.h>

#include <cmath>

#include "common/error.h"
#include "sched/test_util.h"

using namespace harmonia;
using namespace harmonia::sched;
using namespace harmonia::sched::testing;

namespace {

Request req(RequestId id, double t, int64_t prompt = 10, int64_t L = -1) {
  Request r;
  r.id = id;
  r.arrival_s = t;
  r.prompt_tokens = prompt;
  r.true_output_tokens = L;
  return r;
}

PredictorOptions pred(const std::string& kind, double sigma = 0.3, uint64_t seed = 1, std::vector<int64_t> samples = {}) {
  PredictorOptions o;
  o.kind = kind;
  o.sigma = sigma;
  o.seed = seed;
  o.samples = std::move(samples);
  return o;
}

StepOutcome out(RequestId id, int a, bool finished = false) { return StepOutcome{id, kN, a, a + 1, 0, finished}; }

std::string error_of(const std::function<void()>& f) {
  try {
    f();
  } catch (const Error& e) {
    return e.what();
  }
  return "";
}

}  // namespace

TEST(SchedPolicy, NamesAndFactory) {
  for (const auto& n : policy_names()) {
    auto p = make_policy(n, unit_context({10, 20}));
    EXPECT_EQ(p->name(), n);
    EXPECT_EQ(p->label(), n);
  }
  EXPECT_EQ(make_policy("laps-sd:sigma=0.5:predictor=noisy-oracle", unit_context())->label(),
            "laps-sd(predictor=noisy-oracle,sigma=0.5)");
}

TEST(SchedPolicy, ErrorsNameTheProblem) {
  const PolicyContext c = unit_context();
  EXPECT_NE(error_of([&] { make_policy("lifo", c); }).find("unknown scheduling policy 'lifo'"), std::string::npos);
  EXPECT_NE(error_of([&] { make_policy("laps-sd:windw=3", c); }).find("has no option 'windw'"), std::string::npos);
  EXPECT_NE(error_of([&] { make_policy("laps-sd:eps=-1", c); }).find("eps=-1"), std::string::npos);
  EXPECT_NE(error_of([&] { make_policy("laps-sd:perceptible_policy=P4", c); }).find("P1, P2, P3"), std::string::npos);
  EXPECT_NE(error_of([&] { make_policy("laps-sd:thresholds=8/4", c); }).find("increasing"), std::string::npos);
  EXPECT_NE(error_of([&] { make_policy("sjf:predictor=cond-mean", c); }).find("empirical length"), std::string::npos);
  EXPECT_NE(error_of([&] { parse_policy_list("fcfs,laps-sd:window"); }).find("not key=value"), std::string::npos);
  auto srpt = make_policy("srpt-oracle", c);
  EXPECT_NE(error_of([&] { srpt->on_arrival(req(1, 0), 0); }).find("true output length"), std::string::npos);
  EXPECT_EQ(srpt->size(), 0u);  // a rejected arrival is not kept
  auto fcfs = make_policy("fcfs", c);
  fcfs->on_arrival(req(1, 0), 0);
  EXPECT_NE(error_of([&] { fcfs->on_arrival(req(1, 0), 0); }).find("arrived twice"), std::string::npos);
  const StepOutcome bad[] = {StepOutcome{1, 4, 5, 6, 0, false}};
  EXPECT_NE(error_of([&] { fcfs->on_step_done(bad, 1.0, 1.0); }).find("inconsistent"), std::string::npos);
  const StepOutcome unknown[] = {out(9, 1)};
  EXPECT_NE(error_of([&] { fcfs->on_step_done(unknown, 1.0, 1.0); }).find("unknown request 9"), std::string::npos);
}

// The engine's loop: arrivals, select, outcomes; preemption reported at step boundaries.
TEST(SchedPolicy, EngineLoopAndPreemption) {
  auto p = make_policy("las", unit_context());
  p->on_arrival(req(1, 0), 0);
  Selection s = p->select(0, {1, 0});
  EXPECT_EQ(s.run, std::vector<RequestId>{1});
  EXPECT_TRUE(s.preempted.empty());
  const StepOutcome o1[] = {out(1, 2)};
  p->on_step_done(o1, 1.0, 1.0);
  const RequestState* st = p->find(1);
  ASSERT_TRUE(st);
  EXPECT_EQ(st->generated, 3);
  EXPECT_EQ(st->acc.drafted, 4);
  EXPECT_EQ(st->acc.accepted, 2);
  EXPECT_DOUBLE_EQ(st->attained, 1.0);
  EXPECT_DOUBLE_EQ(st->first_run_s, 0.0);
  p->on_arrival(req(2, 0.5), 0.5);
  s = p->select(1.0, {1, 0});  // LAS: the newcomer has less attained service
  EXPECT_EQ(s.run, std::vector<RequestId>{2});
  EXPECT_EQ(s.preempted, std::vector<RequestId>{1});
  EXPECT_EQ(p->find(1)->preemptions, 1);
  const StepOutcome o2[] = {out(2, 0, true)};
  p->on_step_done(o2, 1.0, 2.0);
  EXPECT_EQ(p->find(2), nullptr);
  EXPECT_EQ(p->size(), 1u);
  p->remove(1);
  EXPECT_EQ(p->size(), 0u);
  EXPECT_TRUE(p->select(2.0, {4, 0}).run.empty());
}

TEST(SchedPolicy, BatchAndKvBudget) {
  auto p = make_policy("fcfs", unit_context());
  p->on_arrival(req(1, 0, 100), 0);
  p->on_arrival(req(2, 1, 500), 1);
  p->on_arrival(req(3, 2, 50), 2);
  EXPECT_EQ(p->select(3, {2, 0}).run, (std::vector<RequestId>{1, 2}));
  // Budget 200 tokens: request 2 (500 + n + 1) does not fit and is skipped, 3 fits.
  EXPECT_EQ(p->select(3, {3, 200}).run, (std::vector<RequestId>{1, 3}));
}

TEST(SchedPolicy, SjfNonPreemptiveVersusPreemptive) {
  for (bool pre : {false, true}) {
    auto p = make_policy(std::string("sjf:preemptive=") + (pre ? "true" : "false"), unit_context());
    p->on_arrival(req(1, 0, 10, 100), 0);
    EXPECT_EQ(p->select(0, {1, 0}).run, std::vector<RequestId>{1});
    const StepOutcome o[] = {out(1, 0)};
    p->on_step_done(o, 1.0, 1.0);
    p->on_arrival(req(2, 0.5, 10, 5), 0.5);
    EXPECT_EQ(p->select(1.0, {1, 0}).run, std::vector<RequestId>{pre ? 2 : 1}) << pre;
  }
}

TEST(SchedPolicy, MlfqSkipJoinByPrefillTime) {
  // τ = 1 s; prefill 10 ms/token. Quanta 8, 16, 32, 64 s: a 2000-token prompt
  // (20 s prefill + 1 s step) skips to the third queue (quantum 32 s).
  const CostProfile prof = CostProfile::constant(0, 1000, 10);
  auto p = make_policy("mlfq", prof.policy_context(kN));
  p->on_arrival(req(1, 0, 100), 0);
  p->on_arrival(req(2, 0, 2000), 0);
  EXPECT_EQ(p->find(1)->queue, 0);
  EXPECT_EQ(p->find(2)->queue, 2);
  auto q = make_policy("mlfq:skip_join=false", prof.policy_context(kN));
  q->on_arrival(req(2, 0, 2000), 0);
  EXPECT_EQ(q->find(2)->queue, 0);
}

TEST(SchedPolicy, LapsSwitchesToPerceptibleWhenStable) {
  auto p = make_policy("laps-sd", unit_context());
  p->on_arrival(req(1, 0, 10, 1000), 0);
  double now = 0;
  for (int s = 1; s <= 5; ++s) {
    p->select(now, {1, 0});
    const StepOutcome o[] = {out(1, 3)};
    now += 1;
    p->on_step_done(o, 1.0, now);
    EXPECT_EQ(p->find(1)->perceptible, s >= 5) << s;  // constant acceptance: stable at t_min = 5
  }
  const RequestState* st = p->find(1);
  EXPECT_DOUBLE_EQ(st->accept_hat, 0.75);
  EXPECT_DOUBLE_EQ(st->length_hat, 1000);
  EXPECT_DOUBLE_EQ(st->remaining_hat_s, (1000 - 20) / 4.0);  // (L̂ − g)·τ/(n·Â + 1)
  EXPECT_EQ(st->queue, 4);                                   // P1: R̂ = 245 s > θ_4 = 64 s
  auto off = make_policy("laps-sd:perceptible_enabled=false", unit_context());
  off->on_arrival(req(1, 0, 10, 1000), 0);
  for (int s = 0; s < 50; ++s) {
    off->select(s, {1, 0});
    const StepOutcome o[] = {out(1, 3)};
    off->on_step_done(o, 1.0, s + 1);
  }
  EXPECT_FALSE(off->find(1)->perceptible);
  EXPECT_EQ(off->find(1)->queue, 3);  // X = 50 in [32, 64)
}

TEST(SchedPolicy, LapsUnderPredictionGuard) {
  // Noisy predictions far below the truth: L̂ never drops to or below g.
  auto p = make_policy("laps-sd:predictor=noisy-oracle:sigma=3:predictor_seed=2", unit_context());
  p->on_arrival(req(1, 0, 10, 5000), 0);
  double now = 0;
  for (int s = 0; s < 200; ++s) {
    p->select(now, {1, 0});
    const StepOutcome o[] = {out(1, 1)};
    now += 1;
    p->on_step_done(o, 1.0, now);
    const RequestState* st = p->find(1);
    if (st->perceptible) {
      EXPECT_GT(st->length_hat, static_cast<double>(st->generated));
      EXPECT_GT(st->remaining_hat_s, 0);
    }
  }
}

TEST(SchedPolicy, AcceptanceStatsDrift) {
  AcceptanceStats a;
  EXPECT_TRUE(std::isinf(a.drift(2)));
  a.record(4, 4, 3);
  a.record(4, 0, 3);
  EXPECT_DOUBLE_EQ(a.rate(), 0.5);
  EXPECT_DOUBLE_EQ(a.drift(2), 0.5);
  a.record(4, 2, 3);
  a.record(0, 0, 3);  // a step without drafts is not an acceptance sample
  EXPECT_EQ(a.steps, 3);
  EXPECT_EQ(a.history.size(), 3u);
  EXPECT_DOUBLE_EQ(a.drift(3), 0.5);
}

TEST(SchedPredictor, Kinds) {
  RequestState r;
  r.req.id = 7;
  r.req.true_output_tokens = 200;
  EXPECT_DOUBLE_EQ(make_predictor(pred("oracle"))->predict(r), 200);
  const PredictorOptions n = pred("noisy-oracle", 0.3, 5);
  auto noisy = make_predictor(n);
  EXPECT_DOUBLE_EQ(noisy->predict(r), noisy->predict(r));  // fixed per request
  double sum_log = 0, sum_sq = 0;
  const int K = 4000;
  for (int i = 0; i < K; ++i) {
    r.req.id = i;
    const double l = std::log(noisy->predict(r) / 200.0);
    sum_log += l;
    sum_sq += l * l;
  }
  EXPECT_NEAR(sum_log / K, 0.0, 0.02);
  EXPECT_NEAR(std::sqrt(sum_sq / K), 0.3, 0.02);
  ConditionalMean cm({10, 20, 30, 40});
  EXPECT_DOUBLE_EQ(cm.mean_above(0), 25);
  EXPECT_DOUBLE_EQ(cm.mean_above(20), 35);
  EXPECT_DOUBLE_EQ(cm.mean_above(39), 40);
  EXPECT_DOUBLE_EQ(cm.mean_above(40), 41);
  r.generated = 25;
  EXPECT_DOUBLE_EQ(make_predictor(pred("cond-mean", 0, 1, {10, 20, 30, 40}))->predict(r), 35);
  RequestState unknown;
  EXPECT_NE(error_of([&] { make_predictor(pred("oracle"))->predict(unknown); }).find("cond-mean"), std::string::npos);
  EXPECT_NE(error_of([&] { make_predictor(pred("magic")); }).find("unknown length predictor"), std::string::npos);
}
