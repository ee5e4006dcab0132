// The baseline KV policies (kv/streaming, snapkv, pyramidkv, h2o, kivi, typed
// full) inside the real forward pass of stories260K: with a budget that covers
// the whole sequence each reproduces full's greedy tokens; with small budgets
// the first generated token (exact prefill, chunked or not) still equals full's.
#include <gtest/gtest.h>

#include <algorithm>
#include <fstream>
#include <nlohmann/json.hpp>

#include "common/error.h"
#include "common/testing.h"
#include "kv/policy.h"
#include "model/forward.h"
#include "model/model.h"

namespace harmonia {
namespace {

constexpr const char* kModel = "models/stories260K/stories260K.gguf";
constexpr int kNew = 32;

// Greedy decoding: plan(), the prompt in steps of `chunk` tokens, then kNew - 1 decode steps.
std::vector<int32_t> greedy(const Model& m, kv::Policy& kv, const std::vector<int32_t>& prompt, int64_t chunk) {
  Forward fw(m);
  const int64_t P = static_cast<int64_t>(prompt.size());
  kv.plan(P, kNew);
  std::vector<float> logits(m.config.vocab_size);
  for (int64_t i = 0; i < P; i += chunk) fw.run(prompt.data() + i, std::min(chunk, P - i), kv, logits.data());
  EXPECT_EQ(kv.bytes(), kv.bytes_at(P)) << kv.name();
  std::vector<int32_t> out;
  for (int i = 0; i < kNew; ++i) {
    const int32_t t = static_cast<int32_t>(std::max_element(logits.begin(), logits.end()) - logits.begin());
    out.push_back(t);
    if (i + 1 < kNew) fw.run(&t, 1, kv, logits.data());
  }
  return out;
}

// BOS + 47 tokens of the model's own greedy story: a natural 48-token prompt.
std::vector<int32_t> prompt() {
  std::ifstream f(shared_path("models/stories260K/reference_greedy.json"));
  const auto ids = nlohmann::json::parse(f)["generated_token_ids"].get<std::vector<int32_t>>();
  std::vector<int32_t> p{1};
  p.insert(p.end(), ids.begin(), ids.begin() + 47);
  return p;
}

struct Config {
  const char* name;
  kv::Options opts;
};

TEST(KvPoliciesModel, CoveringBudgetsReproduceFullGreedyTokens) {
  HARMONIA_REQUIRE_SHARED(kModel);
  auto m = load_model(shared_path(kModel));
  const kv::Shape shape = kv_shape(m->config, 256);
  const auto p = prompt();  // 48 + 32 = 80 tokens in all
  auto full = kv::make_policy("full", shape);
  const auto want = greedy(*m, *full, p, 48);
  const Config configs[] = {
      {"streaming", {{"sink", "4"}, {"window", "100"}}},
      {"snapkv", {{"budget", "100"}, {"window", "8"}}},
      {"pyramidkv", {{"budget", "100"}, {"window", "8"}}},
      {"h2o", {{"heavy", "50"}, {"recent", "50"}}},
      {"kivi", {{"bits", "2"}, {"residual", "128"}}},
  };
  for (const auto& c : configs)
    for (int64_t chunk : {48, 16}) {
      auto kv = kv::make_policy(c.name, shape, c.opts);
      EXPECT_EQ(greedy(*m, *kv, p, chunk), want) << c.name << " chunk " << chunk;
      EXPECT_EQ(kv->n_tokens(), 48 + kNew - 1);
    }
}

TEST(KvPoliciesModel, SmallBudgetsKeepTheFirstTokenExact) {
  HARMONIA_REQUIRE_SHARED(kModel);
  auto m = load_model(shared_path(kModel));
  const kv::Shape shape = kv_shape(m->config, 256);
  const auto p = prompt();
  auto full = kv::make_policy("full", shape);
  const auto want = greedy(*m, *full, p, 48);
  const Config configs[] = {
      {"streaming", {{"sink", "2"}, {"window", "8"}}},
      {"snapkv", {{"budget", "8"}, {"window", "4"}, {"kernel", "3"}}},
      {"pyramidkv", {{"budget", "8"}, {"window", "4"}, {"kernel", "3"}}},
      {"h2o", {{"heavy", "4"}, {"recent", "4"}}},
      {"kivi", {{"bits", "2"}, {"group", "4"}, {"residual", "8"}}},
      {"kivi", {{"bits", "4"}, {"group", "8"}, {"residual", "16"}}},
  };
  for (const auto& c : configs)
    for (int64_t chunk : {48, 16, 5}) {
      auto kv = kv::make_policy(c.name, shape, c.opts);
      const auto got = greedy(*m, *kv, p, chunk);
      EXPECT_EQ(got[0], want[0]) << c.name << " chunk " << chunk;
      EXPECT_LT(kv->total_bytes(), full->total_bytes()) << c.name;
      if (chunk == 48) {
        int agree = 0;
        for (int i = 0; i < kNew; ++i) agree += got[i] == want[i];
        std::printf("  %-10s %-44s greedy agreement with full %2d/%d, %6zu of %6zu bytes\n", c.name,
                    nlohmann::json(c.opts).dump().c_str(), agree, kNew, kv->total_bytes(), full->total_bytes());
      }
    }
}

TEST(KvPoliciesModel, TypedFullCache) {
  // stories260K's head_dim is 8, so only f16/bf16 apply (q8_0/q4_0 need multiples of 32).
  HARMONIA_REQUIRE_SHARED(kModel);
  auto m = load_model(shared_path(kModel));
  const kv::Shape shape = kv_shape(m->config, 256);
  const auto p = prompt();
  auto full = kv::make_policy("full", shape);
  const auto want = greedy(*m, *full, p, 48);
  for (const char* t : {"f16", "bf16"}) {
    auto kv = kv::make_policy("full", shape, {{"k_type", t}, {"v_type", t}});
    const auto got = greedy(*m, *kv, p, 16);
    int agree = 0;
    for (int i = 0; i < kNew; ++i) agree += got[i] == want[i];
    std::printf("  full %-4s greedy agreement with f32 %2d/%d, %zu of %zu bytes\n", t, agree, kNew, kv->total_bytes(),
                full->total_bytes());
    EXPECT_EQ(kv->total_bytes() * 2, full->total_bytes());
    EXPECT_EQ(got[0], want[0]) << t;
  }
  EXPECT_THROW(kv::make_policy("full", shape, {{"k_type", "q8_0"}}), Error);
}

}  // namespace
}  // namespace harmonia
