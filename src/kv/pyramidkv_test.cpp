// `pyramidkv`: per-layer budgets (linear in depth, same total as SnapKV's
// uniform budget), their use by the cache, per-layer bytes.
#include <gtest/gtest.h>

#include <numeric>

#include "kv/baseline_test_util.h"
#include "kv/snapkv.h"

namespace harmonia::kv {
namespace {

using namespace testing;

TEST(PyramidKV, BudgetsAreLinearWithTheUniformTotal) {
  struct Case {
    int L;
    int64_t B, W, P, beta;
  };
  for (const Case& c : {Case{32, 2020, 32, 10000, 20}, Case{28, 2020, 8, 32000, 20}, Case{5, 7, 2, 40, 20},
                        Case{7, 100, 8, 230, 3}, Case{6, 50, 4, 120, 20}, Case{1, 9, 4, 40, 20}}) {
    const auto b = pyramid_budgets(c.L, c.B, c.W, c.P, c.beta);
    ASSERT_EQ(static_cast<int>(b.size()), c.L);
    EXPECT_EQ(std::accumulate(b.begin(), b.end(), int64_t{0}), c.L * c.B) << c.L << " " << c.B;
    for (int l = 1; l < c.L; ++l) EXPECT_LE(b[l], b[l - 1]);
    for (int64_t x : b) EXPECT_LE(x, c.P - c.W);
    if (c.L > 1) {
      int64_t mn = c.B / c.beta, mx = 2 * c.B - mn;
      if (mx >= c.P - c.W) mx = c.P - c.W, mn = 2 * c.B - mx;
      EXPECT_EQ(b.front(), mx);
      EXPECT_EQ(b.back(), mn);
      // Within one token of the exact arithmetic sequence.
      for (int l = 0; l < c.L; ++l)
        EXPECT_LT(std::abs(b[l] - (mx - double(mx - mn) * l / (c.L - 1))), 1.0) << l;
    }
  }
  // Llama-3-8B-like: 32 layers, the FourierAttention comparison budget; top layer budget/beta.
  const auto b = pyramid_budgets(32, 2020, 32, 10000, 20);
  EXPECT_EQ(b.front(), 3939);
  EXPECT_EQ(b.back(), 101);
  // Prompts shorter than 2 * budget: uniform (the reference's middle branch).
  EXPECT_EQ(pyramid_budgets(4, 100, 8, 150, 20), (std::vector<int64_t>{100, 100, 100, 100}));
  // Prompts of at most budget + window tokens are left whole in every layer, even when window > budget.
  EXPECT_EQ(pyramid_budgets(3, 4, 16, 18, 20), (std::vector<int64_t>{4, 4, 4}));
}

TEST(PyramidKV, LayersKeepTheirBudgetsPlusWindow) {
  for (const Shape& s : {shape(4, 4, 4, 8), shape(4, 4, 2, 16), shape(5, 8, 2, 8)}) {
    const int64_t P = 90, W = 6, B = 20;
    const Seq x = random_seq(s, 95, 31);
    auto p = make_policy("pyramidkv", s, {{"budget", "20"}, {"window", "6"}, {"beta", "4"}});
    auto& c = dynamic_cast<SnapKVCache&>(*p);
    FullCache full(s);
    const Outputs ref = run(full, x, P, 25);
    ByteLedger at_prompt;
    const Outputs out = run(c, x, P, 25, true, [&](int64_t n) {
      if (n == P) at_prompt = c.bytes();
    });
    const auto b = pyramid_budgets(s.n_layers, B, W, P, 4);
    int64_t total = 0;
    for (int l = 0; l < s.n_layers; ++l) {
      EXPECT_EQ(c.store().rows(l), b[l] + W + (x.n - P));
      total += b[l];
      // Exact prompt attention in every layer.
      EXPECT_EQ(std::memcmp(out.data() + l * x.n * x.q_dim(), ref.data() + l * x.n * x.q_dim(), P * x.q_dim() * 4), 0);
    }
    EXPECT_EQ(total, s.n_layers * B);
    EXPECT_GT(b.front(), b.back());
    EXPECT_EQ(at_prompt, c.bytes_at(P));
    const auto per_layer = c.layer_bytes_at(P);
    for (int l = 0; l < s.n_layers; ++l)
      EXPECT_EQ(per_layer[l].at("keys"), static_cast<size_t>(b[l] + W) * s.n_kv_heads * s.head_dim * 4);
    // Same total as snapkv with the same (mean) budget.
    auto snap = make_policy("snapkv", s, {{"budget", "20"}, {"window", "6"}});
    EXPECT_EQ(snap->total_bytes(), 0u);
    EXPECT_EQ(ledger_total(snap->bytes_at(P)), ledger_total(c.bytes_at(P)));
  }
}

TEST(PyramidKV, CoveringBudgetIsFull) {
  const Shape s = shape(3, 4, 2, 16);
  const Seq x = random_seq(s, 40, 32);
  FullCache full(s);
  auto p = make_policy("pyramidkv", s, {{"budget", "40"}, {"window", "8"}});
  EXPECT_EQ(run(*p, x, 30, 7), run(full, x, 30, 7));
  EXPECT_EQ(p->name(), "pyramidkv");
}

}  // namespace
}  // namespace harmonia::kv
