// `h2o`: against an independent double-precision simulation of H2O's
// accumulated-attention eviction, a hand-built heavy hitter, full's outputs when
// the budget covers the sequence, budgets, bytes and rollback.
#include "kv/h2o.h"

#include <gtest/gtest.h>

#include "kv/baseline_test_util.h"

namespace harmonia::kv {
namespace {

using namespace testing;

const Shape kShapes[] = {shape(2, 4, 4, 16), shape(2, 4, 2, 32), shape(2, 8, 2, 8)};  // groups 1, 2, 4

// H2O in double: per layer and kv head the retained positions and their
// accumulated scores; the prompt in chunks (exact), evictions once it is complete.
struct Simulation {
  const Seq& x;
  int64_t heavy, recent, prompt;
  std::vector<std::vector<std::vector<int64_t>>> pos;   // [layer][head][...]
  std::vector<std::vector<std::vector<double>>> score;  // same
  Outputs out;

  Simulation(const Seq& seq, int64_t h, int64_t r, int64_t p, int64_t chunk) : x(seq), heavy(h), recent(r), prompt(p) {
    const Shape& s = x.s;
    const int hd = s.head_dim, group = s.n_heads / s.n_kv_heads;
    pos.assign(s.n_layers, std::vector<std::vector<int64_t>>(s.n_kv_heads));
    score.assign(s.n_layers, std::vector<std::vector<double>>(s.n_kv_heads));
    out.assign(s.n_layers * x.n * x.q_dim(), 0.0f);
    for (int64_t t0 = 0; t0 < x.n;) {
      const int64_t n = t0 < prompt ? std::min(chunk, prompt - t0) : 1;
      for (int l = 0; l < s.n_layers; ++l)
        for (int h = 0; h < s.n_kv_heads; ++h) {
          auto& P = pos[l][h];
          auto& S = score[l][h];
          for (int64_t t = t0; t < t0 + n; ++t) P.push_back(t), S.push_back(0.0);
          for (int64_t t = t0; t < t0 + n; ++t)
            for (int g = 0; g < group; ++g) {
              const int hq = h * group + g;
              const float* q = x.Q(l, t) + hq * hd;
              std::vector<double> p;
              double mx = -INFINITY, sum = 0;
              for (int64_t u : P) {
                if (u > t) break;
                double d = 0;
                for (int j = 0; j < hd; ++j) d += double(q[j]) * x.K(l, u, h)[j];
                p.push_back(d / std::sqrt(double(hd)));
                mx = std::max(mx, p.back());
              }
              for (auto& e : p) sum += (e = std::exp(e - mx));
              float* o = out.data() + (l * x.n + t) * x.q_dim() + hq * hd;
              for (size_t i = 0; i < p.size(); ++i) {
                S[i] += p[i] / sum;
                for (int j = 0; j < hd; ++j) o[j] += static_cast<float>(p[i] / sum * x.V(l, P[i], h)[j]);
              }
            }
        }
      t0 += n;
      if (t0 < prompt) continue;
      for (int l = 0; l < s.n_layers; ++l)
        for (int h = 0; h < s.n_kv_heads; ++h) {
          auto& P = pos[l][h];
          auto& S = score[l][h];
          while (static_cast<int64_t>(P.size()) > heavy + recent) {  // evict the lowest outside the window
            int64_t worst = 0;
            for (int64_t i = 1; i < static_cast<int64_t>(P.size()) - recent; ++i)
              if (S[i] <= S[worst]) worst = i;
            P.erase(P.begin() + worst);
            S.erase(S.begin() + worst);
          }
        }
      checkpoints.push_back(pos);
    }
  }
  std::vector<std::vector<std::vector<std::vector<int64_t>>>> checkpoints;  // after each commit past the prompt
};

TEST(H2O, MatchesIndependentSimulation) {
  for (const Shape& s : kShapes)
    for (auto [heavy, recent] : {std::pair{3, 4}, std::pair{6, 1}, std::pair{0, 5}}) {
      const int64_t P = 24, chunk = 10;
      const Seq x = random_seq(s, 44, 41, 2.0f);
      const Simulation sim(x, heavy, recent, P, chunk);
      H2OCache c(s, H2OOptions{heavy, recent});
      size_t step = 0;
      const Outputs out = run(c, x, P, chunk, true, [&](int64_t n) {
        if (n < P) return;
        ASSERT_LT(step, sim.checkpoints.size());
        for (int l = 0; l < s.n_layers; ++l)
          for (int h = 0; h < s.n_kv_heads; ++h) {
            std::vector<int64_t> got;
            for (int64_t r = 0; r < c.store().rows(l); ++r) got.push_back(find_key(x, l, h, c.store().key(l, h, r)));
            ASSERT_EQ(got, sim.checkpoints[step][l][h]) << "length " << n << " layer " << l << " head " << h;
          }
        ++step;
      });
      EXPECT_LT(rel_err(out.data(), sim.out.data(), out.size()), 1e-5);
      for (int l = 0; l < s.n_layers; ++l)
        for (int h = 0; h < s.n_kv_heads; ++h)
          for (int64_t r = 0; r < c.store().rows(l); ++r)
            EXPECT_NEAR(c.score(l, h, r), sim.score[l][h][r], 1e-4 * (1 + sim.score[l][h][r]));
    }
}

TEST(H2O, KeepsTheHeavyHitter) {
  // Position 3's key lies along every query: it collects most attention and
  // stays through 40 decode steps with a budget of 2 heavy + 3 recent.
  const Shape s = shape(1, 4, 2, 8, 256);
  Seq x = random_seq(s, 60, 42);
  for (int64_t t = 0; t < x.n; ++t)
    for (int hq = 0; hq < 4; ++hq) {
      x.Q(0, t)[hq * 8] = 3.0f;
      if (hq < 2) x.K(0, t)[hq * 8] = t == 3 ? 5.0f : 0.0f;
    }
  H2OCache c(s, H2OOptions{2, 3});
  run(c, x, 20, 20, true, [&](int64_t n) {
    if (n < 20) return;
    EXPECT_EQ(c.n_stored(), 5);
    for (int h = 0; h < 2; ++h) {
      bool kept = false;
      for (int64_t r = 0; r < 5; ++r) kept |= find_key(x, 0, h, c.store().key(0, h, r)) == 3;
      EXPECT_TRUE(kept) << "length " << n << " head " << h;
    }
  });
}

TEST(H2O, CoveringBudgetIsFull) {
  for (const Shape& s : kShapes) {
    const Seq x = random_seq(s, 50, 43);
    FullCache full(s);
    const Outputs want = run(full, x, 30, 8);
    for (bool plan : {true, false}) {
      auto p = make_policy("h2o", s, {{"heavy", "25"}, {"recent", "25"}});
      const Outputs got = run(*p, x, 30, plan ? 8 : 30, plan);
      EXPECT_LT(rel_err(got.data(), want.data(), want.size()), 1e-6);
      EXPECT_EQ(p->n_stored(), 50);
    }
  }
}

TEST(H2O, BudgetsAndBytes) {
  const Shape s = shape(2, 4, 2, 16);
  const Seq x = random_seq(s, 48, 44);
  for (auto [opts, kept] : {std::pair{Options{{"heavy", "5"}, {"recent", "7"}}, int64_t{12}},
                            std::pair{Options{{"heavy_ratio", "0.25"}, {"recent_ratio", "0.1"}}, int64_t{10 + 4}},
                            std::pair{Options{}, int64_t{4 + 4}}}) {
    auto p = make_policy("h2o", s, opts);
    run(*p, x, 40, 16, true, [&](int64_t n) {
      if (n == 40) {
        EXPECT_EQ(p->bytes(), p->bytes_at(40));
      }
      if (n >= 40) {
        EXPECT_EQ(p->n_stored(), kept);
      }
    });
    const size_t rows = 2 * 2 * kept;
    EXPECT_EQ(p->bytes(), (ByteLedger{{"keys", rows * 16 * 4}, {"values", rows * 16 * 4}, {"scores", rows * 4}}));
  }
}

TEST(H2O, TruncateBackToTheLastEviction) {
  const Shape s = shape(1, 4, 2, 8);
  const Seq x = random_seq(s, 30, 45);
  H2OCache c(s, H2OOptions{2, 2});
  run(c, x, 10, 10);
  EXPECT_EQ(error_kind([&] { c.truncate(29); }), ErrorKind::Unsupported);
  H2OCache d(s, H2OOptions{20, 20});
  run(d, x, 10, 10);
  d.truncate(15);
  EXPECT_EQ(d.n_stored(), 15);
  EXPECT_EQ(d.bytes(), d.bytes_at(15));
}

TEST(H2O, OptionErrors) {
  const Shape s = shape(1, 2, 2, 8);
  EXPECT_EQ(error_kind([&] { make_policy("h2o", s, {{"heavy", "4"}, {"heavy_ratio", "0.1"}}); }),
            ErrorKind::InvalidInput);
  EXPECT_EQ(error_kind([&] { make_policy("h2o", s, {{"recent_ratio", "1.5"}}); }), ErrorKind::InvalidInput);
  EXPECT_EQ(error_kind([&] { make_policy("h2o", s, {{"budget", "4"}}); }), ErrorKind::InvalidInput);
}

}  // namespace
}  // namespace harmonia::kv
