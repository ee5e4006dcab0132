// Cost profile measurement, trace replay through the real engine, and the
// engine's use of the scheduler's PolicyContext. No assertion depends on how
// fast this machine is.
#include <gtest/gtest.h>

#include <cstdio>
#include <filesystem>

#include "common/testing.h"
#include "engine/engine.h"
#include "engine/profile.h"
#include "engine/replay.h"
#include "sched/simulator.h"

using namespace harmonia;
using namespace harmonia::engine;

namespace {

const Model& stories() {
  static std::unique_ptr<Model> m = load_model(shared_path("models/stories260K/stories260K.gguf"));
  return *m;
}

std::vector<int32_t> story_tokens(const Model& m) {
  return m.tokenizer->encode(
      "Once upon a time, there was a little girl named Lily. She loved to play in the garden with her dog. "
      "One day, the dog found a big red ball. Lily and the dog played with the ball all day. They were very happy.",
      false);
}

ProfileOptions small_profile(const std::string& drafter) {
  ProfileOptions o;
  o.batch = {1, 2, 4};
  o.draft_len = {0, 2, 4};
  o.context = {32, 128};
  o.prefill_tokens = {1, 32};
  o.ctx = 256;
  o.reps = 5;
  o.spec.drafter = drafter;
  o.text = story_tokens(stories());
  return o;
}

// A small workload: mixed prompt and output lengths, arrivals over 30 ms.
sched::Workload tiny_workload() {
  return sched::parse_workload(
      R"({"format": "harmonia.workload", "version": 1})" "\n"
      R"({"id": 0, "arrival_s": 0.000, "prompt_tokens": 12, "output_tokens": 30, "class": "a"})" "\n"
      R"({"id": 1, "arrival_s": 0.002, "prompt_tokens": 40, "output_tokens": 5, "class": "b"})" "\n"
      R"({"id": 2, "arrival_s": 0.010, "prompt_tokens": 8, "output_tokens": 17})" "\n"
      R"({"id": 3, "arrival_s": 0.012, "prompt": "The little dog ran to the park", "output_tokens": 1})" "\n"
      R"({"id": 4, "arrival_s": 0.030, "prompt_tokens": 25, "output_tokens": 22})" "\n",
      "tiny.jsonl");
}

}  // namespace

TEST(EngineProfile, MeasuresPositiveTablesThatRoundTrip) {
  HARMONIA_REQUIRE_SHARED("models/stories260K/stories260K.gguf");
  const sched::CostProfile p = measure_profile(stories(), nullptr, small_profile("layerskip"));
  for (int b : {1, 2, 4})
    for (double c : {32.0, 128.0}) {
      EXPECT_GT(p.draft_ms(b, c), 0) << b << " " << c;
      for (int n : {0, 2, 4}) EXPECT_GT(p.verify_ms(b, n, c), 0) << b << " " << n << " " << c;
    }
  EXPECT_GT(p.prefill_ms(1), 0);
  EXPECT_GT(p.prefill_ms(32), 0);
  // (No comparison of measured times here: tests make no wall-clock assertions; the
  // tables' shapes and signs are what is checked.)
  EXPECT_EQ(p.draft, "layerskip");
  // Measured through real Engine steps: a step overhead per batch size and a switch cost, both >= 0.
  EXPECT_TRUE(p.has_step_overhead());
  EXPECT_GE(p.step_overhead_ms(1), 0);
  EXPECT_GE(p.preempt_ms(), 0);
  EXPECT_EQ(p.to_json()["step_overhead_ms"].size(), 3u);
  EXPECT_NE(p.device.find("CPU"), std::string::npos);
  // save() / load() keep every number.
  const std::string path = (std::filesystem::temp_directory_path() / "harmonia_profile_test.json").string();
  p.save(path);
  const sched::CostProfile q = sched::CostProfile::load(path);
  EXPECT_EQ(q.to_json(), p.to_json());
  std::remove(path.c_str());
}

TEST(EngineProfile, NoDrafterMeansZeroDraftCost) {
  HARMONIA_REQUIRE_SHARED("models/stories260K/stories260K.gguf");
  ProfileOptions o = small_profile("none");
  o.batch = {1, 2};
  const sched::CostProfile p = measure_profile(stories(), nullptr, o);
  EXPECT_EQ(p.draft_ms(1, 64), 0);
  EXPECT_GT(p.verify_ms(2, 0, 64), 0);
}

TEST(EngineProfile, RejectsAxesThatDoNotFit) {
  HARMONIA_REQUIRE_SHARED("models/stories260K/stories260K.gguf");
  ProfileOptions o = small_profile("ngram");
  o.context = {32, 300};  // beyond ctx 256 − n − 1
  EXPECT_THROW(measure_profile(stories(), nullptr, o), Error);
  o = small_profile("ngram");
  o.batch = {2, 1};
  EXPECT_THROW(measure_profile(stories(), nullptr, o), Error);
  o = small_profile("draft");  // no draft model
  EXPECT_THROW(measure_profile(stories(), nullptr, o), Error);
  EXPECT_EQ(default_contexts(512, 8), (std::vector<int64_t>{64, 256, 502}));
  EXPECT_EQ(default_prefill_tokens(512), (std::vector<int64_t>{1, 8, 16, 32, 64, 96, 128, 192, 256, 384}));
}

TEST(EngineReplay, EveryRequestFinishesWithItsTokenCountAndTracesReload) {
  HARMONIA_REQUIRE_SHARED("models/stories260K/stories260K.gguf");
  const Model& m = stories();
  const sched::Workload w = tiny_workload();
  const std::vector<int32_t> filler = story_tokens(m);
  std::vector<std::vector<int32_t>> prompts;
  for (const auto& r : w.requests) prompts.push_back(make_prompt(m, r, filler));
  EXPECT_EQ(prompts[1].size(), 40u);  // BOS + 39 filler tokens
  EXPECT_EQ(prompts[1][0], m.tokenizer->bos_id());
  EXPECT_EQ(prompts[3], m.tokenizer->encode("The little dog ran to the park", true));

  ReplayOptions o;
  o.engine.ctx = 256;
  o.engine.max_seqs = 2;
  o.engine.threads = 1;
  o.spec.drafter = "layerskip";
  o.spec.n = 3;
  const sched::CostProfile prof = sched::CostProfile::constant(0.05, 0.3, 0.01);
  o.engine.sched_context = sched::workload_policy_context(w, prof, 3, 2);
  for (const std::string pol : {"fcfs", "laps-sd", "mlfq", "sjf:preemptive=true"}) {
    SCOPED_TRACE(pol);
    const ReplayRun r = replay(m, nullptr, w, prompts, pol, o);
    ASSERT_EQ(r.requests.size(), w.requests.size());
    EXPECT_EQ(r.metrics.requests, 5);
    for (const auto& q : r.requests) {
      const auto& wr = *std::find_if(w.requests.begin(), w.requests.end(), [&](const auto& x) { return x.id == q.id; });
      EXPECT_EQ(q.output_tokens, wr.output_tokens) << q.id;
      EXPECT_GE(q.first_token_s, q.arrival_s) << q.id;  // arrivals honoured: nothing starts early
      EXPECT_GE(q.finish_s, q.first_token_s) << q.id;
      EXPECT_LE(q.accepted, q.drafted);
    }
    // The recorded workload: one step per emitted batch of tokens, the first a prefill step.
    const sched::Workload& rec = r.recorded;
    EXPECT_TRUE(rec.first_step_prefill);
    EXPECT_EQ(rec.draft_len, 3);
    int64_t drafted = 0;
    for (size_t i = 0; i < rec.requests.size(); ++i) {
      const auto& q = rec.requests[i];
      ASSERT_EQ(q.accepted.size(), q.drafted.size());
      ASSERT_FALSE(q.accepted.empty());
      EXPECT_EQ(q.accepted[0], 0);
      EXPECT_EQ(q.drafted[0], 0);
      int64_t tokens = 0;
      for (size_t s = 0; s < q.accepted.size(); ++s) {
        EXPECT_LE(q.accepted[s], q.drafted[s]);
        EXPECT_LE(q.drafted[s], 3);
        tokens += q.accepted[s] + 1;
        drafted += q.drafted[s];
      }
      EXPECT_EQ(tokens, q.output_tokens) << q.id;
      EXPECT_EQ(q.prompt_tokens, static_cast<int64_t>(prompts[i].size()));
    }
    EXPECT_GT(drafted, 0);
    // The traces reload through the workload parser and the simulator runs them to the same token counts.
    const sched::Workload back = sched::parse_workload(sched::workload_to_jsonl(rec), "recorded.jsonl");
    for (size_t i = 0; i < back.requests.size(); ++i) {
      EXPECT_EQ(back.requests[i].accepted, rec.requests[i].accepted);
      EXPECT_EQ(back.requests[i].drafted, rec.requests[i].drafted);
    }
    auto policy = sched::make_policy(pol, o.engine.sched_context);
    sched::SimOptions so;
    so.max_seqs = 2;
    so.draft_len = 3;
    const sched::SimResult sim = sched::simulate(back, *policy, prof, so);
    ASSERT_EQ(sim.requests.size(), 5u);
    int64_t sim_drafted = 0, real_drafted = 0;
    for (const auto& q : sim.requests) sim_drafted += q.drafted;
    for (const auto& q : r.requests) real_drafted += q.drafted;
    EXPECT_EQ(sim_drafted, real_drafted);
  }
}

// The simulator, run on a replay's recorded traces, runs the engine's step
// sequence: the same requests in every step, and — priced by one cost model —
// the same step costs, so the prefill, decode, overhead and switch terms are
// charged where the engine paid them. All arrivals at t = 0 and policies that
// count service in iterations make the sequence independent of timing.
TEST(EngineReplay, SimulatorReproducesTheRecordedStepSequence) {
  HARMONIA_REQUIRE_SHARED("models/stories260K/stories260K.gguf");
  const Model& m = stories();
  sched::Workload w = tiny_workload();
  for (auto& r : w.requests) r.arrival_s = 0;
  std::vector<std::vector<int32_t>> prompts;
  for (const auto& r : w.requests) prompts.push_back(make_prompt(m, r, story_tokens(m)));
  // draft 0.01 ms/token, verify 0.3 ms, prefill 0.002 ms/token, switch 0.05 ms, step overhead 0.02 + 0.01·b ms.
  nlohmann::json pj = sched::CostProfile::constant(0.01, 0.3, 0.002, 0.05).to_json();
  pj["batch"] = {1, 2};
  pj["draft_ms_per_token"] = {{0.01}, {0.01}};
  pj["verify_ms"] = {{{0.3}}, {{0.3}}};
  pj["step_overhead_ms"] = {0.03, 0.04};
  pj["draft_prefill_ms"] = {0.0, 0.004};  // drafter catch-up: 0.004 ms per prompt token
  const sched::CostProfile prof = sched::CostProfile::from_json(pj, "test profile");
  for (const int B : {1, 2})
    for (const std::string pol : {"fcfs", "las:service_unit=iterations", "laps-sd:service_unit=iterations"}) {
      SCOPED_TRACE(fmt::format("B={} {}", B, pol));
      ReplayOptions o;
      o.engine.ctx = 256;
      o.engine.max_seqs = B;
      o.engine.threads = 1;
      o.spec.drafter = "ngram";
      o.spec.n = 3;
      o.record_steps = true;
      o.engine.sched_context = sched::workload_policy_context(w, prof, 3, B);
      const ReplayRun r = replay(m, nullptr, w, prompts, pol, o);
      auto policy = sched::make_policy(pol, o.engine.sched_context);
      sched::SimOptions so;
      so.max_seqs = B;
      so.draft_len = 3;
      so.record_events = true;
      const sched::SimResult sim = sched::simulate(r.recorded, *policy, prof, so);
      ASSERT_EQ(sim.events.size(), r.step_log.size());
      ASSERT_EQ(static_cast<int64_t>(r.step_log.size()), r.steps);
      int64_t resumed = 0, catchups = 0;
      for (size_t k = 0; k < sim.events.size(); ++k) {
        std::vector<int64_t> ran;
        for (const auto& mb : r.step_log[k].members) {
          ran.push_back(mb.id);
          resumed += mb.resumed;
          catchups += mb.catchup_tokens > 0;
        }
        ASSERT_EQ(sim.events[k].ran, ran) << "step " << k;
        const double model_ms = sched::step_cost_ms(prof, step_members(r.step_log[k]), prof.preempt_ms());
        EXPECT_NEAR(1000 * (sim.events[k].end_s - sim.events[k].start_s), model_ms, 1e-9) << "step " << k;
        EXPECT_GT(model_ms, 0.03);
      }
      // Every request with more than one output token has one first decode step (request 3 has one token).
      EXPECT_EQ(catchups, 4);
      // las alternates the requests at B = 1: the switch cost is actually exercised.
      if (B == 1 && pol.rfind("las", 0) == 0) {
        EXPECT_GT(resumed, 0);
      }
      if (pol == "fcfs") {
        EXPECT_EQ(resumed, 0);
      }
    }
}

TEST(EngineReplay, SrptOracleRunsOnRecordedTraces) {
  HARMONIA_REQUIRE_SHARED("models/stories260K/stories260K.gguf");
  const Model& m = stories();
  const sched::Workload w = tiny_workload();
  std::vector<std::vector<int32_t>> prompts;
  for (const auto& r : w.requests) prompts.push_back(make_prompt(m, r, story_tokens(m)));
  ReplayOptions o;
  o.engine.ctx = 256;
  o.engine.threads = 1;
  o.spec.drafter = "ngram";
  o.spec.n = 4;
  o.engine.sched_context = sched::CostProfile::constant(0.01, 0.3).policy_context(4);
  const ReplayRun first = replay(m, nullptr, w, prompts, "fcfs", o);
  const ReplayRun again = replay(m, nullptr, first.recorded, prompts, "srpt-oracle", o);
  EXPECT_EQ(again.requests.size(), 5u);
  // Greedy decoding at B = 1 is deterministic: the same traces again.
  for (size_t i = 0; i < w.requests.size(); ++i)
    EXPECT_EQ(again.recorded.requests[i].accepted, first.recorded.requests[i].accepted) << i;
}

TEST(EngineReplay, RefusesRequestsBeyondTheContext) {
  HARMONIA_REQUIRE_SHARED("models/stories260K/stories260K.gguf");
  const Model& m = stories();
  sched::Workload w = tiny_workload();
  w.requests[0].output_tokens = 300;
  std::vector<std::vector<int32_t>> prompts;
  for (const auto& r : w.requests) prompts.push_back(make_prompt(m, r, story_tokens(m)));
  ReplayOptions o;
  o.engine.ctx = 256;
  try {
    replay(m, nullptr, w, prompts, "fcfs", o);
    ADD_FAILURE() << "no error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("12 prompt + 300 output = 312 tokens but the context is 256"), std::string::npos)
        << e.what();
  }
}

// The engine gives the scheduler the PolicyContext of its options: mlfq's first
// quantum is 8 steps of τ, so with τ = 1 ns a request is demoted after its first
// step, and with τ = 1000 s never.
TEST(EngineReplay, EngineUsesThePolicyContext) {
  HARMONIA_REQUIRE_SHARED("models/stories260K/stories260K.gguf");
  const Model& m = stories();
  for (const double tau : {1e-9, 1000.0}) {
    EngineOptions eo;
    eo.ctx = 256;
    eo.max_seqs = 1;
    eo.threads = 1;
    eo.sched = "mlfq:skip_join=false";
    eo.sched_context.step_s = tau;
    Engine eng(m, nullptr, eo);
    RequestOptions r;
    r.prompt = m.tokenizer->encode("Once upon a time", true);
    r.max_tokens = 20;
    r.ignore_eos = true;
    r.sampling.temperature = 0;
    eng.submit(r, nullptr);
    eng.submit(r, nullptr);
    int max_queue = 0;
    while (eng.step())
      for (const auto& [q, count] : eng.metrics().waiting_by_queue) max_queue = std::max(max_queue, q);
    if (tau < 1) EXPECT_GT(max_queue, 0);
    else EXPECT_EQ(max_queue, 0);
  }
}
