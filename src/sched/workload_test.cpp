#include <gtest/gtest.h>

#include <cmath>

#include "common/error.h"
#include "sched/random.h"
#include "sched/workload.h"

using namespace harmonia;
using namespace harmonia::sched;

namespace {

std::string error_of(const std::string& text) {
  try {
    parse_workload(text, "w.jsonl");
  } catch (const Error& e) {
    return e.what();
  }
  return "";
}

const char* kHeader = R"({"format": "harmonia.workload", "version": 1, "draft_len": 4})";

}  // namespace

TEST(SchedWorkload, ParseAndRoundTrip) {
  const std::string text = std::string(kHeader) + "\n" +
                           R"({"id": 5, "arrival_s": 1.5, "prompt_tokens": 10, "output_tokens": 6, "accepted": [4, 0, 3], "class": "code"})"
                           "\n\n"
                           R"({"arrival_s": 0.5, "prompt": "Hello there, world", "output_tokens": 2})"
                           "\n";
  const Workload w = parse_workload(text, "w.jsonl");
  ASSERT_EQ(w.requests.size(), 2u);
  EXPECT_EQ(w.draft_len, 4);
  EXPECT_EQ(w.requests[0].id, 1);  // default id: position among requests; sorted by arrival
  EXPECT_EQ(w.requests[0].prompt_tokens, 5);  // ceil(18 bytes / 4)
  EXPECT_EQ(w.requests[1].id, 5);
  EXPECT_EQ(w.requests[1].accepted, (std::vector<int32_t>{4, 0, 3}));
  EXPECT_EQ(w.requests[1].cls, "code");
  const Workload again = parse_workload(workload_to_jsonl(w), "again");
  EXPECT_EQ(workload_to_jsonl(again), workload_to_jsonl(w));
  const Request r = to_request(w.requests[1]);
  EXPECT_EQ(r.true_output_tokens, 6);
  EXPECT_EQ(r.true_accepted.size(), 3u);
}

TEST(SchedWorkload, ClearErrors) {
  const std::string h = std::string(kHeader) + "\n";
  EXPECT_NE(error_of(h + R"({"prompt_tokens": 3, "output_tokens": 2})").find("w.jsonl:2: missing arrival_s"),
            std::string::npos);
  EXPECT_NE(error_of(h + R"({"arrival_s": 0, "prompt_tokens": 3, "output_tokens": 2, "outptu": 1})")
                .find("w.jsonl:2: unknown key 'outptu'"),
            std::string::npos);
  EXPECT_NE(error_of(h + R"({"arrival_s": 0, "prompt_tokens": 3, "output_tokens": 20, "accepted": [1, 1]})")
                .find("gives 4 tokens in 2 steps but output_tokens is 20"),
            std::string::npos);
  EXPECT_NE(error_of(h + R"({"arrival_s": 0, "prompt_tokens": 3, "output_tokens": 2, "accepted": [5]})")
                .find("accepted[0] = 5 is outside 0..draft_len (4)"),
            std::string::npos);
  EXPECT_NE(error_of(R"({"arrival_s": 0, "prompt_tokens": 3, "output_tokens": 1, "accepted": [0]})")
                .find("need the header's draft_len"),
            std::string::npos);
  EXPECT_NE(error_of(h + R"({"arrival_s": -1, "prompt_tokens": 3, "output_tokens": 2})").find("must be finite and >= 0"),
            std::string::npos);
  EXPECT_NE(error_of(h + R"({"arrival_s": 0, "output_tokens": 2})").find("give prompt_tokens or prompt"), std::string::npos);
  EXPECT_NE(error_of(h + R"({"arrival_s": 0, "prompt_tokens": 3, "output_tokens": 0})").find("output_tokens = 0 must be >= 1"),
            std::string::npos);
  EXPECT_NE(error_of(h + "{\"id\": 1, \"arrival_s\": 0, \"prompt_tokens\": 3, \"output_tokens\": 2}\n"
                         "{\"id\": 1, \"arrival_s\": 0, \"prompt_tokens\": 3, \"output_tokens\": 2}")
                .find("w.jsonl:3: request id 1 appears twice"),
            std::string::npos);
  EXPECT_NE(error_of(h + "{not json").find("w.jsonl:2: not valid JSON"), std::string::npos);
  EXPECT_NE(error_of(h).find("no requests"), std::string::npos);
  EXPECT_NE(error_of(R"({"arrival_s": 0, "prompt_tokens": 3, "output_tokens": 2})" "\n" + h).find("header line must come first"),
            std::string::npos);
}

// A stationary truncated-geometric process has mean accepted α(1 − α^n)/(1 − α): A = that / n.
TEST(SchedWorkload, StationaryAcceptanceMean) {
  AcceptanceModel m;
  m.alpha_mean = 0.7;
  m.alpha_conc = 1e6;  // every request gets α ≈ 0.7
  Rng rng(3);
  int64_t acc = 0, steps = 0;
  for (int i = 0; i < 200; ++i) {
    const auto t = draw_trace(m, rng, 500, 4);
    int64_t tokens = 0;
    for (int32_t a : t) {
      ASSERT_GE(a, 0);
      ASSERT_LE(a, 4);
      tokens += a + 1;
      acc += a;
    }
    steps += static_cast<int64_t>(t.size());
    EXPECT_GE(tokens, 500);
    EXPECT_LT(tokens - (t.back() + 1), 500);  // no step beyond the one that completes it
  }
  const double alpha = 0.7, expect = alpha * (1 - std::pow(alpha, 4)) / (1 - alpha);
  EXPECT_NEAR(static_cast<double>(acc) / steps, expect, 0.02);
}

TEST(SchedWorkload, DriftingSettles) {
  AcceptanceModel m;
  m.kind = AcceptanceModel::Kind::Drifting;
  m.alpha_mean = 0.8;
  m.alpha0_mean = 0.2;
  m.alpha_conc = 1e6;
  m.kappa = 10;
  Rng rng(1);
  double early = 0, late = 0;
  int ne = 0, nl = 0;
  for (int i = 0; i < 100; ++i) {
    const auto t = draw_trace(m, rng, 600, 4);
    for (size_t s = 0; s < t.size(); ++s) {
      if (s < 5) early += t[s], ++ne;
      if (s >= 60) late += t[s], ++nl;
    }
  }
  EXPECT_LT(early / ne, 1.0);
  EXPECT_GT(late / nl, 2.0);
}

TEST(SchedWorkload, SyntheticReference) {
  const Workload a = generate_workload(parse_synthetic("reference:requests=300:seed=2:rate=4"));
  const Workload b = generate_workload(parse_synthetic("reference:requests=500:seed=2:rate=4"));
  ASSERT_EQ(a.requests.size(), 300u);
  EXPECT_EQ(a.draft_len, 4);
  std::map<std::string, int> classes;
  for (const auto& r : a.requests) {
    ++classes[r.cls];
    int64_t tokens = 0;
    for (int32_t x : r.accepted) tokens += x + 1;
    EXPECT_GE(tokens, r.output_tokens);
  }
  EXPECT_EQ(classes.size(), 3u);
  EXPECT_GT(classes["chat"], 80);
  // Request i depends only on (seed, i).
  std::map<int64_t, const WorkloadRequest*> bi;
  for (const auto& r : b.requests) bi[r.id] = &r;
  for (const auto& r : a.requests) {
    EXPECT_EQ(r.output_tokens, bi.at(r.id)->output_tokens);
    EXPECT_EQ(r.accepted, bi.at(r.id)->accepted);
  }
  // Poisson arrivals at 4/s.
  const double span = a.requests.back().arrival_s - a.requests.front().arrival_s;
  EXPECT_NEAR(299 / span, 4.0, 0.6);
  Workload c = a;
  scale_arrivals(c, 2.0);
  EXPECT_NEAR(299 / (c.requests.back().arrival_s - c.requests.front().arrival_s), 2.0, 1e-9);
}

TEST(SchedWorkload, SyntheticSpecErrors) {
  auto err = [](const std::string& s) {
    try {
      parse_synthetic(s);
    } catch (const Error& e) {
      return std::string(e.what());
    }
    return std::string();
  };
  EXPECT_NE(err("zipf").find("unknown synthetic workload 'zipf'"), std::string::npos);
  EXPECT_NE(err("reference:reqs=3").find("has no option 'reqs'"), std::string::npos);
  EXPECT_NE(err("single:alpha=2").find("alpha=2"), std::string::npos);
  EXPECT_NO_THROW(parse_acceptance("bimodal:alpha_mean=0.8:p_switch=0.1"));
  EXPECT_THROW(parse_acceptance("gaussian"), Error);
}

// Recorded replays write per-step drafted counts and first_step "prefill"; both round-trip.
TEST(SchedWorkload, DraftedTraceAndFirstStepRoundTrip) {
  const std::string text = R"({"format": "harmonia.workload", "version": 1, "draft_len": 4, "first_step": "prefill"})"
                           "\n"
                           R"({"id": 1, "arrival_s": 0, "prompt_tokens": 10, "output_tokens": 6, "accepted": [0, 2, 1, 0], "drafted": [0, 4, 2, 0]})"
                           "\n";
  const Workload w = parse_workload(text, "w.jsonl");
  EXPECT_TRUE(w.first_step_prefill);
  EXPECT_EQ(w.requests[0].drafted, (std::vector<int32_t>{0, 4, 2, 0}));
  const Workload back = parse_workload(workload_to_jsonl(w), "back.jsonl");
  EXPECT_TRUE(back.first_step_prefill);
  EXPECT_EQ(back.requests[0].accepted, w.requests[0].accepted);
  EXPECT_EQ(back.requests[0].drafted, w.requests[0].drafted);
  // Without the header key the default stays "speculative" and is not written.
  const Workload plain = parse_workload(std::string(kHeader) + "\n" +
                                            R"({"arrival_s": 0, "prompt_tokens": 1, "output_tokens": 2, "accepted": [1]})",
                                        "p.jsonl");
  EXPECT_FALSE(plain.first_step_prefill);
  EXPECT_EQ(workload_to_jsonl(plain).find("first_step"), std::string::npos);
}

TEST(SchedWorkload, DraftedTraceErrors) {
  const std::string h = std::string(kHeader) + "\n";
  EXPECT_NE(error_of(h + R"({"arrival_s": 0, "prompt_tokens": 3, "output_tokens": 3, "accepted": [2], "drafted": [1]})")
                .find("drafted[0] = 1 must be in accepted[0] (2)..draft_len (4)"),
            std::string::npos);
  EXPECT_NE(error_of(h + R"({"arrival_s": 0, "prompt_tokens": 3, "output_tokens": 3, "accepted": [2], "drafted": [5]})")
                .find("drafted[0] = 5"),
            std::string::npos);
  EXPECT_NE(error_of(h + R"({"arrival_s": 0, "prompt_tokens": 3, "output_tokens": 3, "accepted": [2, 0], "drafted": [2]})")
                .find("drafted must be an array of 2 integers"),
            std::string::npos);
  EXPECT_NE(error_of(h + R"({"arrival_s": 0, "prompt_tokens": 3, "output_tokens": 3, "drafted": [2]})")
                .find("drafted needs accepted"),
            std::string::npos);
  const std::string hp = R"({"format": "harmonia.workload", "version": 1, "draft_len": 4, "first_step": "prefill"})" "\n";
  EXPECT_NE(error_of(hp + R"({"arrival_s": 0, "prompt_tokens": 3, "output_tokens": 3, "accepted": [2]})")
                .find("accepted[0] = 2"),
            std::string::npos);
  EXPECT_NE(error_of(R"({"format": "harmonia.workload", "version": 1, "first_step": "both"})" "\n" +
                     std::string(R"({"arrival_s": 0, "prompt_tokens": 3, "output_tokens": 3})"))
                .find("first_step is \"both\""),
            std::string::npos);
}

TEST(SchedWorkload, FillMissingTracesAfterPrefillStep) {
  Workload w = parse_workload(R"({"format": "harmonia.workload", "version": 1, "first_step": "prefill"})"
                              "\n"
                              R"({"arrival_s": 0, "prompt_tokens": 3, "output_tokens": 40})",
                              "f.jsonl");
  fill_missing_traces(w, AcceptanceModel{}, 4, 7);
  const auto& a = w.requests[0].accepted;
  ASSERT_FALSE(a.empty());
  EXPECT_EQ(a[0], 0);
  int64_t tokens = 0;
  for (int32_t x : a) tokens += x + 1;
  EXPECT_GE(tokens, 40);
  // It reloads: the prefill step's 0 is in place.
  EXPECT_NO_THROW(parse_workload(workload_to_jsonl(w), "g.jsonl"));
}
