#include "engine/engine.h"

#include <gtest/gtest.h>

#include <cmath>
#include <map>

#include "common/testing.h"
#include "engine/generate.h"
#include "kv/policy.h"
#include "model/presets.h"

using namespace harmonia;
using namespace harmonia::engine;

namespace {

const Model& stories() {
  static std::unique_ptr<Model> m = load_model(shared_path("models/stories260K/stories260K.gguf"));
  return *m;
}

std::vector<int32_t> prompt_of(const Model& m, const std::string& text) { return m.tokenizer->encode(text, true); }

struct Collected {
  std::vector<int32_t> tokens;
  std::string text;
  bool done = false;
  std::string error;
  StopReason reason = StopReason::None;
  Usage usage;
};

Callback collect(Collected& c) {
  return [&c](const Event& e) {
    for (const auto& t : e.tokens) c.tokens.push_back(t.token);
    c.text += e.text;
    if (e.done) {
      EXPECT_FALSE(c.done) << "two final events";
      c.done = true;
      c.error = e.error;
      c.reason = e.reason;
      c.usage = e.usage;
    }
  };
}

std::vector<int32_t> plain_greedy(const Model& m, const std::vector<int32_t>& prompt, int n, const std::string& kvp = "full",
                                  const kv::Options& opts = {}) {
  Forward fw(m);
  GenerateOptions o;
  o.max_tokens = n;
  o.sampling.temperature = 0;
  o.ctx = 512;
  o.kv_policy = kvp;
  o.kv_options = opts;
  return generate(fw, prompt, o).tokens;
}

RequestOptions greedy_request(const std::vector<int32_t>& prompt, int n) {
  RequestOptions r;
  r.prompt = prompt;
  r.max_tokens = n;
  r.sampling.temperature = 0;
  return r;
}

}  // namespace

TEST(Engine, GreedyMatchesGenerateAndBatchesRequests) {
  HARMONIA_REQUIRE_SHARED("models/stories260K/stories260K.gguf");
  const Model& m = stories();
  const std::vector<std::string> texts = {"Once upon a time", "The little dog", "Lily and Tom went to the park. They"};
  EngineOptions eo;
  eo.ctx = 512;
  eo.max_seqs = 3;
  eo.prefill_chunk = 4;  // several chunks per prompt: chunked prefill interleaves with decode
  Engine eng(m, nullptr, eo);
  std::vector<Collected> got(texts.size());
  for (size_t i = 0; i < texts.size(); ++i) eng.submit(greedy_request(prompt_of(m, texts[i]), 40), collect(got[i]));
  eng.run_until_idle();
  for (size_t i = 0; i < texts.size(); ++i) {
    ASSERT_TRUE(got[i].done);
    EXPECT_EQ(got[i].error, "");
    EXPECT_EQ(got[i].tokens, plain_greedy(m, prompt_of(m, texts[i]), 40)) << texts[i];
    EXPECT_EQ(got[i].usage.completion_tokens, 40);
  }
  EXPECT_EQ(eng.metrics().kv_bytes_reserved, 0u);
}

TEST(Engine, SpeculativeGreedyEqualsPlainGreedyForEveryDrafterAndPolicy) {
  HARMONIA_REQUIRE_SHARED("models/stories260K/stories260K.gguf");
  const Model& m = stories();
  // A second copy of the same weights (llama2.c file) as the draft model.
  auto draft = load_model(shared_path("models/stories260K/stories260K.bin"));
  const auto prompt = prompt_of(m, "Once upon a time, there was a");
  // Policies at their defaults, plus settings small enough to evict, quantise or compress
  // within the 60 tokens: streaming (its rollback margin and per-query window at work), and
  // h2o / kivi / fourier, which the engine verifies one token at a time (no exact multi-token
  // step, or no rollback).
  std::vector<std::pair<std::string, kv::Options>> policies;
  for (const std::string& pol : kv::policy_names()) policies.push_back({pol, {}});
  policies.push_back({"streaming", {{"sink", "2"}, {"window", "6"}}});
  policies.push_back({"h2o", {{"heavy", "3"}, {"recent", "3"}}});
  policies.push_back({"kivi", {{"group", "4"}, {"residual", "4"}}});
  policies.push_back({"fourier", {{"sink", "1"}, {"window", "2"}, {"coeffs", "4"}}});
  for (const auto& [pol, opts] : policies) {
    const auto want = plain_greedy(m, prompt, 60, pol, opts);
    for (const std::string drafter : {"ngram", "layerskip", "draft"}) {
      SCOPED_TRACE(pol + " / " + drafter);
      EngineOptions eo;
      eo.ctx = 512;
      // The step log's decode members: fed - 1 = the drafts the target's cache saw.
      int64_t log_drafted = 0, log_fed_drafts = 0;
      eo.on_step = [&](const StepRecord& rec) {
        for (const auto& mb : rec.members) {
          if (mb.prefill_tokens != 0) continue;
          EXPECT_GE(mb.fed, 1);
          EXPECT_LE(mb.fed, 1 + mb.drafted);
          log_drafted += mb.drafted;
          log_fed_drafts += mb.fed - 1;
        }
      };
      Engine eng(m, draft.get(), eo);
      RequestOptions r = greedy_request(prompt, 60);
      r.kv.name = pol;
      r.kv.options = opts;
      r.speculative.drafter = drafter;
      r.speculative.n = 4;
      Collected c;
      try {
        eng.submit(r, collect(c));
      } catch (const Error& e) {
        ADD_FAILURE() << e.what();
        continue;
      }
      eng.run_until_idle();
      ASSERT_TRUE(c.done);
      EXPECT_EQ(c.error, "");
      EXPECT_EQ(c.tokens, want);
      EXPECT_GT(c.usage.drafted, 0);
      EXPECT_EQ(log_drafted, c.usage.drafted);
      // A policy verified one token at a time feeds 1 + accepted; the others feed every draft
      // (then roll back the rejected ones).
      if (pol == "h2o" || pol == "kivi") {
        EXPECT_EQ(log_fed_drafts, c.usage.accepted);
      } else if (pol != "fourier") {
        EXPECT_EQ(log_fed_drafts, c.usage.drafted);
      } else {
        EXPECT_GE(log_fed_drafts, c.usage.accepted);
        EXPECT_LE(log_fed_drafts, c.usage.drafted);
      }
      // Same weights: all accepted, unless the target's cache evicts (the draft
      // model keeps a full cache, so its proposals then differ): h2o's default
      // budgets (10 % of the prompt each) evict from the first decode step.
      if (drafter == "draft" && opts.empty() && pol != "h2o") {
        EXPECT_EQ(c.usage.accepted, c.usage.drafted);
      }
    }
  }
}

TEST(Engine, CancelFreesKv) {
  HARMONIA_REQUIRE_SHARED("models/stories260K/stories260K.gguf");
  const Model& m = stories();
  EngineOptions eo;
  eo.ctx = 512;
  eo.kv_budget_bytes = 10u << 20;
  Engine eng(m, nullptr, eo);
  Collected a, b;
  const int64_t ida = eng.submit(greedy_request(prompt_of(m, "Once upon a time"), 200), collect(a));
  eng.submit(greedy_request(prompt_of(m, "The cat"), 20), collect(b));
  for (int i = 0; i < 5; ++i) eng.step();
  EXPECT_GT(eng.metrics().kv_bytes_in_use, 0u);
  eng.cancel(ida);
  eng.run_until_idle();
  EXPECT_TRUE(a.done);
  EXPECT_EQ(a.error, "cancelled");
  EXPECT_LT(a.tokens.size(), 200u);
  EXPECT_TRUE(b.done);
  EXPECT_EQ(b.error, "");
  const Metrics mt = eng.metrics();
  EXPECT_EQ(mt.kv_bytes_in_use, 0u);
  EXPECT_EQ(mt.kv_bytes_reserved, 0u);
  EXPECT_EQ(mt.cancelled, 1);
}

TEST(Engine, RejectsRequestsThatCannotFit) {
  HARMONIA_REQUIRE_SHARED("models/stories260K/stories260K.gguf");
  const Model& m = stories();
  EngineOptions eo;
  eo.ctx = 64;
  Engine eng(m, nullptr, eo);
  RequestOptions r = greedy_request(std::vector<int32_t>(70, 5), 4);
  try {
    eng.submit(r, nullptr);
    ADD_FAILURE();
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("prompt has 70 tokens but the context is 64"), std::string::npos) << e.what();
  }
  r.prompt.resize(60);
  r.max_tokens = 10;
  EXPECT_THROW(eng.submit(r, nullptr), Error);
  r.max_tokens = 4;
  r.kv.name = "no-such-policy";
  EXPECT_THROW(eng.submit(r, nullptr), Error);
}

TEST(Engine, KvBudgetAdmitsWhatFitsAndQueuesTheRest) {
  HARMONIA_REQUIRE_SHARED("models/stories260K/stories260K.gguf");
  const Model& m = stories();
  EngineOptions eo;
  eo.ctx = 512;
  Engine probe(m, nullptr, eo);
  const auto prompt = prompt_of(m, "Once upon a time");
  const size_t one = probe.kv_bytes_for({"full", {}}, static_cast<int64_t>(prompt.size()) + 30);
  eo.kv_budget_bytes = one * 2 + one / 2;  // two at a time
  Engine eng(m, nullptr, eo);
  std::vector<Collected> got(5);
  for (auto& c : got) eng.submit(greedy_request(prompt, 30), collect(c));
  int64_t max_admitted = 0;
  while (eng.step()) max_admitted = std::max(max_admitted, eng.metrics().admitted);
  EXPECT_EQ(max_admitted, 2);
  for (auto& c : got) EXPECT_EQ(c.tokens, got[0].tokens);
}

TEST(Engine, RecomputePreemptionGivesTheSameTokens) {
  HARMONIA_REQUIRE_SHARED("models/stories260K/stories260K.gguf");
  const Model& m = stories();
  EngineOptions eo;
  eo.ctx = 512;
  eo.max_seqs = 1;  // LAS with one slot preempts constantly
  eo.sched = "las";
  eo.preempt = "recompute";
  Engine eng(m, nullptr, eo);
  const std::vector<std::string> texts = {"Once upon a time", "The little dog"};
  std::vector<Collected> got(2);
  for (size_t i = 0; i < 2; ++i) eng.submit(greedy_request(prompt_of(m, texts[i]), 25), collect(got[i]));
  eng.run_until_idle();
  for (size_t i = 0; i < 2; ++i) EXPECT_EQ(got[i].tokens, plain_greedy(m, prompt_of(m, texts[i]), 25));
  EXPECT_GT(eng.metrics().preemptions, 0);
}

// Speculative sampling keeps the target distribution: the first emitted token
// of verify_stochastic is distributed as p, whatever q proposes.
TEST(Speculative, StochasticVerificationKeepsTargetDistribution) {
  const std::vector<float> p = {0.5f, 0.2f, 0.2f, 0.1f};
  const std::vector<float> q = {0.1f, 0.6f, 0.1f, 0.2f};
  SamplingOptions so;
  so.seed = 1234;
  Sampler s(so, 4);
  std::vector<int> count(4, 0);
  const int N = 40000;
  for (int i = 0; i < N; ++i) {
    const int32_t d = s.sample_from(q);  // the drafter's own draw from q
    spec::Verdict v = spec::verify_stochastic({d}, {p, p}, {q}, s);
    count[v.tokens[0]]++;
  }
  double chi2 = 0;
  for (int t = 0; t < 4; ++t) chi2 += std::pow(count[t] - N * p[t], 2) / (N * p[t]);
  EXPECT_LT(chi2, 16.27) << "chi-square with 3 degrees of freedom, p = 0.001";
}

TEST(Speculative, GreedyVerification) {
  // vocab 3; target argmax per row: 2, 0, 1
  const float logits[] = {0, 0, 1, 1, 0, 0, 0, 1, 0};
  auto v = spec::verify_greedy({2, 1}, logits, 3);
  EXPECT_EQ(v.accepted, 1);
  EXPECT_EQ(v.tokens, (std::vector<int32_t>{2, 0}));
  v = spec::verify_greedy({2, 0}, logits, 3);
  EXPECT_EQ(v.accepted, 2);
  EXPECT_EQ(v.tokens, (std::vector<int32_t>{2, 0, 1}));
}

// Rolling back drafted tokens leaves each KV policy as if it never saw them.
TEST(Speculative, RollbackEqualsNeverSeen) {
  HARMONIA_REQUIRE_SHARED("models/stories260K/stories260K.gguf");
  const Model& m = stories();
  const auto prompt = prompt_of(m, "Once upon a time, there was a little girl named Lily.");
  for (const std::string& pol : kv::policy_names()) {
    SCOPED_TRACE(pol);
    Forward fw(m);
    auto a = kv::make_policy(pol, kv_shape(m.config, 128));
    auto b = kv::make_policy(pol, kv_shape(m.config, 128));
    a->plan(static_cast<int64_t>(prompt.size()), 20);
    b->plan(static_cast<int64_t>(prompt.size()), 20);
    const int V = m.config.vocab_size;
    std::vector<float> la(V * 8), lb(V * 8);
    fw.run(prompt.data(), static_cast<int64_t>(prompt.size()), *a, la.data());
    fw.run(prompt.data(), static_cast<int64_t>(prompt.size()), *b, lb.data());
    const std::vector<int32_t> junk = {5, 6, 7, 8};
    fw.run(junk.data(), 4, *a, la.data(), true);
    if (pol == "h2o") {  // evicts at every step: rollback is refused with a clear error
      EXPECT_THROW(a->truncate(static_cast<int64_t>(prompt.size())), Error);
      continue;
    }
    try {
      a->truncate(static_cast<int64_t>(prompt.size()));
    } catch (const Error& e) {
      ADD_FAILURE() << e.what();
      continue;
    }
    const int32_t t = 42;
    fw.run(&t, 1, *a, la.data());
    fw.run(&t, 1, *b, lb.data());
    double worst = 0;
    for (int i = 0; i < V; ++i) worst = std::max(worst, std::abs(static_cast<double>(la[i]) - lb[i]));
    EXPECT_LE(worst, 1e-5);
    EXPECT_EQ(a->n_tokens(), b->n_tokens());
    EXPECT_EQ(a->total_bytes(), b->total_bytes());
  }
}
