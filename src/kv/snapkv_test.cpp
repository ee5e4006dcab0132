// `snapkv`: selection on a hand-built attention pattern, against an independent
// double-precision implementation of SnapKV's scoring on random inputs, exact
// prompt attention, full's outputs when the budget covers the prompt, budgets,
// bytes and rollback.
#include "kv/snapkv.h"

#include <gtest/gtest.h>

#include <numeric>

#include "kv/baseline_test_util.h"

namespace harmonia::kv {
namespace {

using namespace testing;

const Shape kShapes[] = {shape(2, 4, 4, 16), shape(2, 4, 2, 32), shape(2, 8, 2, 8)};  // groups 1, 2, 4

// SnapKV's kept positions of kv head h (layer l) after a prompt of P tokens, in
// double precision (SnapKVCluster.update_kv): window votes, pooling, top-B, window.
std::vector<int64_t> expected_positions(const Seq& x, int l, int h, int64_t P, int64_t W, int64_t B, int kernel,
                                        bool max_pool) {
  const Shape& s = x.s;
  const int hd = s.head_dim, group = s.n_heads / s.n_kv_heads;
  const int64_t Wq = std::min(W, P), prefix = P - Wq;
  std::vector<int64_t> keep;
  if (prefix <= B) {
    keep.resize(P);
    std::iota(keep.begin(), keep.end(), 0);
    return keep;
  }
  std::vector<double> acc(prefix, 0.0), pooled(prefix);
  for (int64_t pos = prefix; pos < P; ++pos)
    for (int g = 0; g < group; ++g) {
      const float* q = x.Q(l, pos) + (h * group + g) * hd;
      std::vector<double> p(pos + 1);
      double mx = -INFINITY, sum = 0;
      for (int64_t t = 0; t <= pos; ++t) {
        double d = 0;
        for (int j = 0; j < hd; ++j) d += double(q[j]) * x.K(l, t, h)[j];
        p[t] = d / std::sqrt(double(hd));
        mx = std::max(mx, p[t]);
      }
      for (auto& e : p) sum += (e = std::exp(e - mx));
      for (int64_t t = 0; t < prefix; ++t) acc[t] += p[t] / sum;
    }
  for (int64_t t = 0; t < prefix; ++t) {
    double m = -INFINITY, sum = 0;
    for (int64_t u = t - kernel / 2; u <= t + kernel / 2; ++u)
      if (u >= 0 && u < prefix) m = std::max(m, acc[u]), sum += acc[u];
    pooled[t] = max_pool ? m : sum / kernel;
  }
  std::vector<int64_t> idx(prefix);
  std::iota(idx.begin(), idx.end(), 0);
  std::stable_sort(idx.begin(), idx.end(), [&](int64_t a, int64_t b) { return pooled[a] > pooled[b]; });
  keep.assign(idx.begin(), idx.begin() + B);
  std::sort(keep.begin(), keep.end());
  for (int64_t t = prefix; t < P; ++t) keep.push_back(t);
  return keep;
}

std::vector<int64_t> stored_positions(const SnapKVCache& c, const Seq& x, int l, int h) {
  std::vector<int64_t> pos;
  for (int64_t r = 0; r < c.store().rows(l); ++r) pos.push_back(find_key(x, l, h, c.store().key(l, h, r)));
  return pos;
}

TEST(SnapKV, HandBuiltPatternKeepsPooledPeaksPerHead) {
  // Head 0's keys spike at position 10, head 1's at 25; every window query looks
  // along the spike's direction. Max or avg pooling (kernel 3) then ranks the spike and
  // its two neighbours first: budget 3 keeps exactly them, plus the window 36..39.
  const Shape s = shape(1, 4, 2, 8);
  Seq x = random_seq(s, 44, 21);
  const int64_t P = 40;
  for (int64_t t = 0; t < x.n; ++t)
    for (int h = 0; h < 2; ++h)
      for (int j = 0; j < 8; ++j) x.K(0, t)[h * 8 + j] *= 0.1f;
  x.K(0, 10)[0 * 8 + 0] = 6.0f;
  x.K(0, 25)[1 * 8 + 0] = 6.0f;
  for (int64_t t = P - 4; t < P; ++t)
    for (int hq = 0; hq < 4; ++hq) {
      std::fill_n(x.Q(0, t) + hq * 8, 8, 0.0f);
      x.Q(0, t)[hq * 8] = 4.0f;
    }
  for (const char* pool : {"max", "avg"}) {
    auto p = make_policy("snapkv", s, {{"budget", "3"}, {"window", "4"}, {"kernel", "3"}, {"pool", pool}});
    auto& c = dynamic_cast<SnapKVCache&>(*p);
    run(c, x, P, 16);
    EXPECT_EQ(stored_positions(c, x, 0, 0), (std::vector<int64_t>{9, 10, 11, 36, 37, 38, 39, 40, 41, 42, 43})) << pool;
    EXPECT_EQ(stored_positions(c, x, 0, 1), (std::vector<int64_t>{24, 25, 26, 36, 37, 38, 39, 40, 41, 42, 43})) << pool;
  }
}

TEST(SnapKV, SelectionMatchesIndependentImplementation) {
  for (const Shape& s : kShapes)
    for (int kernel : {1, 5, 7})
      for (bool max_pool : {true, false}) {
        const int64_t P = 60, W = 8, B = 12;
        const Seq x = random_seq(s, 70, 22 + kernel, 2.0f);
        SnapKVOptions o;
        o.budget = B, o.window = W, o.kernel = kernel, o.max_pool = max_pool;
        SnapKVCache c(s, o);
        FullCache full(s);
        const Outputs ref = run(full, x, P, 13);
        const Outputs out = run(c, x, P, 13);
        const size_t qd = x.q_dim();
        for (int l = 0; l < s.n_layers; ++l) {
          // The chunked prompt attends exactly.
          EXPECT_EQ(std::memcmp(out.data() + l * x.n * qd, ref.data() + l * x.n * qd, P * qd * 4), 0);
          for (int h = 0; h < s.n_kv_heads; ++h) {
            auto want = expected_positions(x, l, h, P, W, B, kernel, max_pool);
            for (int64_t t = P; t < x.n; ++t) want.push_back(t);
            ASSERT_EQ(stored_positions(c, x, l, h), want) << "layer " << l << " head " << h << " kernel " << kernel;
          }
          // Decode attends over the kept rows (a per-head selection) plus the new tokens.
          const int64_t t = x.n - 1;
          std::vector<std::vector<const float*>> kr(s.n_kv_heads), vr(s.n_kv_heads);
          for (int h = 0; h < s.n_kv_heads; ++h)
            for (int64_t r = 0; r < c.store().rows(l); ++r) {
              kr[h].push_back(c.store().key(l, h, r));
              vr[h].push_back(c.store().value(l, h, r));
            }
          const auto want = naive_attention(s, x.Q(l, t), kr, vr);
          EXPECT_LT(rel_err(out.data() + (l * x.n + t) * qd, want.data(), want.size()), 1e-5);
        }
        EXPECT_EQ(c.n_stored(), B + W + (x.n - P));
      }
}

TEST(SnapKV, ShortPromptIsLeftWholeAndEqualsFull) {
  for (const Shape& s : kShapes) {
    const Seq x = random_seq(s, 50, 23);
    FullCache full(s);
    const Outputs want = run(full, x, 40, 9);
    for (bool plan : {true, false}) {
      auto p = make_policy("snapkv", s, {{"budget", "32"}, {"window", "8"}});  // 40 = budget + window
      EXPECT_EQ(run(*p, x, 40, plan ? 9 : 40, plan), want);
      EXPECT_EQ(p->n_stored(), 50);
      EXPECT_EQ(p->bytes(), full.bytes());
      EXPECT_EQ(p->bytes_at(40), full.bytes_at(40));
    }
  }
}

TEST(SnapKV, BudgetsAndBytes) {
  const Shape s = shape(3, 4, 2, 16);
  const Seq x = random_seq(s, 110, 24);
  for (auto [opts, kept] : {std::pair{Options{{"budget", "20"}, {"window", "6"}}, int64_t{26}},
                            std::pair{Options{{"ratio", "0.25"}, {"window", "6"}}, int64_t{25}}}) {
    auto p = make_policy("snapkv", s, opts);
    ByteLedger at_prompt;
    run(*p, x, 100, 32, true, [&](int64_t n) {
      if (n == 100) at_prompt = p->bytes();
      if (n >= 100) {
        EXPECT_EQ(p->n_stored(), kept + n - 100);
      }
    });
    EXPECT_EQ(at_prompt, p->bytes_at(100));
    const size_t half = 3 * 2 * kept * 16 * 4;
    EXPECT_EQ(at_prompt, (ByteLedger{{"keys", half}, {"values", half}}));
    for (int l = 0; l < 3; ++l) EXPECT_EQ(dynamic_cast<SnapKVCache&>(*p).store().rows(l), kept + 10);
  }
}

TEST(SnapKV, ObservationWindowBufferedAcrossChunksIsCounted) {
  const Shape s = shape(1, 4, 2, 8);
  const Seq x = random_seq(s, 30, 25);
  SnapKVCache c(s, SnapKVOptions{4, 0.0, 6, 3, true, false, 20});
  c.plan(30, 0);
  for (int64_t t0 = 0; t0 < 30; t0 += 10) {
    std::vector<float> o(10 * x.q_dim());
    c.append(0, 10, x.K(0, t0), x.V(0, t0));
    c.attend(0, 10, x.Q(0, t0), o.data());
    if (t0 < 20) {
      EXPECT_EQ(c.bytes().at("queries"), 6 * 4 * 8 * 4u);
    }
    c.commit(10);
  }
  EXPECT_EQ(c.bytes().count("queries"), 0u);
  EXPECT_EQ(c.bytes(), c.bytes_at(30));
  EXPECT_EQ(c.n_stored(), 10);
}

TEST(SnapKV, TruncateBackToTheCompression) {
  const Shape s = shape(1, 4, 2, 8);
  const Seq x = random_seq(s, 40, 26);
  SnapKVCache c(s, SnapKVOptions{4, 0.0, 4, 3, true, false, 20});
  run(c, x, 30, 30);
  EXPECT_EQ(error_kind([&] { c.truncate(29); }), ErrorKind::Unsupported);
  c.truncate(33);
  EXPECT_EQ(c.n_stored(), 4 + 4 + 3);
  EXPECT_EQ(find_key(x, 0, 1, c.store().key(0, 1, 10)), 32);
}

TEST(SnapKV, OptionErrors) {
  const Shape s = shape(1, 2, 2, 8);
  EXPECT_EQ(error_kind([&] { make_policy("snapkv", s, {{"kernel", "4"}}); }), ErrorKind::InvalidInput);
  EXPECT_EQ(error_kind([&] { make_policy("snapkv", s, {{"budget", "8"}, {"ratio", "0.5"}}); }),
            ErrorKind::InvalidInput);
  EXPECT_EQ(error_kind([&] { make_policy("snapkv", s, {{"ratio", "0"}}); }), ErrorKind::InvalidInput);
  EXPECT_EQ(error_kind([&] { make_policy("snapkv", s, {{"pool", "min"}}); }), ErrorKind::InvalidInput);
  EXPECT_EQ(error_kind([&] { make_policy("snapkv", s, {{"beta", "10"}}); }), ErrorKind::InvalidInput);
  EXPECT_EQ(error_kind([&] { make_policy("snapkv", s, {{"window", "0"}}); }), ErrorKind::InvalidInput);
  // Defaults: 2020 + 32 = 2052 prompt tokens kept (FourierAttention's comparison budget).
  EXPECT_EQ(make_policy("snapkv", s)->bytes_at(10000).at("keys"), 2052 * 2 * 8 * 4u);
}

}  // namespace
}  // namespace harmonia::kv
