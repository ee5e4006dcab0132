// `streaming` (StreamingLLM): sinks + recent window kept with their original
// positions, exact prompt, full's outputs when the budget covers everything,
// byte accounting, rollback rules.
#include "kv/streaming.h"

#include <gtest/gtest.h>

#include "kv/baseline_test_util.h"

namespace harmonia::kv {
namespace {

using namespace testing;

const Shape kShapes[] = {shape(2, 4, 4, 16), shape(2, 4, 2, 32), shape(3, 8, 2, 8)};  // groups 1, 2, 4

TEST(Streaming, CoveringBudgetIsFullBitForBit) {
  for (const Shape& s : kShapes) {
    const Seq x = random_seq(s, 50, 11);
    FullCache full(s);
    const Outputs want = run(full, x, 30, 8);
    for (bool plan : {true, false}) {
      auto p = make_policy("streaming", s, {{"sink", "4"}, {"window", "46"}});
      EXPECT_EQ(run(*p, x, 30, plan ? 8 : 30, plan), want);
      EXPECT_EQ(p->total_bytes(), full.total_bytes());  // same bytes, split into sinks + local
      EXPECT_EQ(p->n_stored(), 50);
    }
  }
}

TEST(Streaming, KeepsSinksAndWindowAtOriginalPositions) {
  for (const Shape& s : kShapes) {
    const int64_t S = 3, W = 6, P = 20;
    const Seq x = random_seq(s, 35, 12, 2.0f);
    StreamingCache c(s, {S, W});
    FullCache full(s);
    const Outputs ref = run(full, x, P, 7);
    const Outputs out = run(c, x, P, 7, true, [&](int64_t n) {
      // After every commit from the prompt's end on: sinks 0..S-1 and the last W positions,
      // each stored key/value exactly the one appended (post-RoPE, never re-rotated).
      if (n < P) {
        EXPECT_EQ(c.n_stored(), n);
        return;
      }
      ASSERT_EQ(c.n_stored(), S + W);
      for (int l = 0; l < s.n_layers; ++l)
        for (int h = 0; h < s.n_kv_heads; ++h)
          for (int64_t r = 0; r < S + W; ++r) {
            const int64_t want = r < S ? r : n - (S + W) + r;
            EXPECT_EQ(find_key(x, l, h, c.store().key(l, h, r)), want) << "row " << r << " at length " << n;
            EXPECT_EQ(std::memcmp(c.store().value(l, h, r), x.V(l, want, h), s.head_dim * 4), 0);
          }
      EXPECT_EQ(c.bytes(), c.bytes_at(P));
    });
    const size_t qd = x.q_dim();
    // The prompt (chunked) attends exactly: identical to full.
    for (int l = 0; l < s.n_layers; ++l)
      EXPECT_EQ(std::memcmp(out.data() + l * x.n * qd, ref.data() + l * x.n * qd, P * qd * 4), 0);
    // Each decode token t sees sinks, the window retained after step t-1, and itself.
    for (int l = 0; l < s.n_layers; ++l)
      for (int64_t t = P; t < x.n; ++t) {
        std::vector<std::vector<const float*>> kr(s.n_kv_heads), vr(s.n_kv_heads);
        for (int h = 0; h < s.n_kv_heads; ++h)
          for (int64_t u = 0; u <= t; ++u)
            if (u < S || u >= t - W) {
              kr[h].push_back(x.K(l, u, h));
              vr[h].push_back(x.V(l, u, h));
            }
        const auto want = naive_attention(s, x.Q(l, t), kr, vr);
        EXPECT_LT(rel_err(out.data() + (l * x.n + t) * qd, want.data(), want.size()), 1e-5) << t;
      }
  }
}

TEST(Streaming, LongDecodeSqueezesTheHoleAndStaysExact) {
  // Many evictions: the lazy hole is squeezed repeatedly; outputs keep matching.
  const Shape s = shape(1, 4, 2, 8, 1024);
  const int64_t S = 2, W = 5;
  const Seq x = random_seq(s, 400, 13);
  StreamingCache c(s, {S, W});
  const Outputs out = run(c, x, 9, 9);
  for (int64_t t : {9, 10, 50, 200, 399}) {
    std::vector<std::vector<const float*>> kr(s.n_kv_heads), vr(s.n_kv_heads);
    for (int h = 0; h < s.n_kv_heads; ++h)
      for (int64_t u = 0; u <= t; ++u)
        if (u < S || u >= t - W) {
          kr[h].push_back(x.K(0, u, h));
          vr[h].push_back(x.V(0, u, h));
        }
    const auto want = naive_attention(s, x.Q(0, t), kr, vr);
    EXPECT_LT(rel_err(out.data() + t * x.q_dim(), want.data(), want.size()), 1e-5) << t;
  }
  const size_t per_token = 1 * 2 * 8 * 4 * 2;
  EXPECT_EQ(c.bytes(), (ByteLedger{{"sinks", S * per_token}, {"local", W * per_token}}));
}

TEST(Streaming, WithoutPlanEveryMultiTokenStepIsAPrompt) {
  const Shape s = shape(1, 2, 2, 8);
  const Seq x = random_seq(s, 20, 14);
  StreamingCache c(s, {2, 4});
  run(c, x, 12, 12, /*plan=*/false);
  EXPECT_EQ(c.n_stored(), 6);
  EXPECT_EQ(c.n_tokens(), 20);
}

TEST(Streaming, TruncateBackToTheLastEviction) {
  const Shape s = shape(2, 4, 2, 8);
  const Seq x = random_seq(s, 30, 15);
  StreamingCache c(s, {2, 4});
  run(c, x, 10, 10);
  EXPECT_EQ(error_kind([&] { c.truncate(28); }), ErrorKind::Unsupported);  // evicted at 30
  c.truncate(30);
  // Before anything is evicted, rollback is exact.
  StreamingCache d(s, {4, 100});
  run(d, x, 10, 10);
  d.truncate(12);
  EXPECT_EQ(d.n_stored(), 12);
  EXPECT_EQ(d.bytes(), d.bytes_at(12));
  EXPECT_EQ(find_key(x, 1, 1, d.store().key(1, 1, 11)), 11);
}

// Speculative decoding: steps of 1 + k tokens (k drafts, the rejected ones junk),
// each followed by a rollback to the accepted length. With reserve_rollback(4)
// every accepted query attends exactly as in one-token decoding (older retained
// rows masked), and rollbacks past the margin are refused.
TEST(Streaming, SpeculativeStepsWithRollbackAttendAsOneTokenSteps) {
  for (const Shape& s : kShapes) {
    const int64_t S = 2, W = 5, P = 9, N = 70, margin = 4;
    const Seq x = random_seq(s, N, 21, 2.0f), junk = random_seq(s, N, 22, 2.0f);
    StreamingCache ref(s, {S, W});
    const Outputs want = run(ref, x, P, P);
    StreamingCache c(s, {S, W});
    ASSERT_TRUE(c.reserve_rollback(margin));
    c.plan(P, N - P);
    const size_t qd = x.q_dim(), kvd = x.kv_dim();
    std::vector<float> got(qd * (margin + 1)), K(kvd * (margin + 1)), V(K.size()), Q(got.size());
    std::vector<float> prompt_out(qd * P);
    for (int l = 0; l < s.n_layers; ++l) {
      c.append(l, P, x.K(l, 0), x.V(l, 0));
      c.attend(l, P, x.Q(l, 0), prompt_out.data());
    }
    c.commit(P);
    std::mt19937 rng(5);
    int64_t t = P, steps_with_rejects = 0;
    while (t < N) {
      const int64_t n = std::min<int64_t>(1 + rng() % (margin + 1), N - t);  // 1 + k tokens
      const int64_t ok = 1 + rng() % n;  // positions t .. t + ok - 1 are the true tokens
      steps_with_rejects += ok < n;
      for (int l = 0; l < s.n_layers; ++l) {
        for (int64_t j = 0; j < n; ++j) {
          const Seq& src = j < ok ? x : junk;
          std::copy_n(src.K(l, t + j), kvd, K.data() + j * kvd);
          std::copy_n(src.V(l, t + j), kvd, V.data() + j * kvd);
          std::copy_n(src.Q(l, t + j), qd, Q.data() + j * qd);
        }
        c.append(l, n, K.data(), V.data());
        c.attend(l, n, Q.data(), got.data());
        for (int64_t j = 0; j < ok; ++j)
          EXPECT_LT(rel_err(got.data() + j * qd, want.data() + (l * x.n + t + j) * qd, qd), 1e-6)
              << "layer " << l << " position " << t + j << " in a step of " << n;
      }
      c.commit(n);
      c.truncate(t + ok);
      t += ok;
      EXPECT_LE(c.n_stored(), S + W + margin);
    }
    EXPECT_GT(steps_with_rejects, 5);
    // Admission control counts the margin: sinks + window + margin rows.
    EXPECT_EQ(ledger_total(c.bytes_at(N)), static_cast<size_t>(S + W + margin) * s.n_layers * kvd * 4 * 2);
    EXPECT_EQ(error_kind([&] { c.truncate(c.n_tokens() - margin - 1); }), ErrorKind::Unsupported);
  }
}

TEST(Streaming, OptionErrors) {
  const Shape s = shape(1, 2, 2, 8);
  EXPECT_EQ(error_kind([&] { make_policy("streaming", s, {{"window", "-1"}}); }), ErrorKind::InvalidInput);
  EXPECT_EQ(error_kind([&] { make_policy("streaming", s, {{"sink", "0"}, {"window", "0"}}); }),
            ErrorKind::InvalidInput);
  EXPECT_NE(error_message([&] { make_policy("streaming", s, {{"recent", "8"}}); }).find("no option 'recent'"),
            std::string::npos);
  auto p = make_policy("streaming", s);
  EXPECT_EQ(p->name(), "streaming");
  EXPECT_EQ(p->bytes_at(2000), (ByteLedger{{"sinks", 4 * 2 * 8 * 8u}, {"local", 1024 * 2 * 8 * 8u}}));
}

}  // namespace
}  // namespace harmonia::kv
