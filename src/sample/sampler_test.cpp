#include "sample/sampler.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <numeric>
#include <random>
#include <set>
#include <string>
#include <vector>

#include "common/error.h"

namespace harmonia {
namespace {

// Options with every filter off, at temperature t.
SamplingOptions plain(float t = 1.0f) {
  SamplingOptions o;
  o.temperature = t;
  o.top_k = 0;
  o.top_p = 1.0f;
  o.min_p = 0.0f;
  return o;
}

std::vector<float> softmax(const std::vector<float>& l, double t = 1.0) {
  double mx = *std::max_element(l.begin(), l.end());
  std::vector<double> e(l.size());
  double z = 0;
  for (size_t i = 0; i < l.size(); ++i) z += e[i] = std::exp((l[i] - mx) / t);
  std::vector<float> p(l.size());
  for (size_t i = 0; i < l.size(); ++i) p[i] = float(e[i] / z);
  return p;
}

// Logits whose temperature-1 softmax is exactly p (up to rounding).
std::vector<float> logits_of(const std::vector<double>& p) {
  std::vector<float> l;
  for (double x : p) l.push_back(float(std::log(x)));
  return l;
}

std::vector<float> random_logits(int n, uint64_t seed, float scale = 3.0f) {
  std::mt19937_64 g(seed);
  std::normal_distribution<float> d(0.0f, scale);
  std::vector<float> l(n);
  for (auto& x : l) x = d(g);
  return l;
}

std::vector<int32_t> support(const std::vector<float>& p) {
  std::vector<int32_t> s;
  for (size_t i = 0; i < p.size(); ++i)
    if (p[i] > 0) s.push_back(int32_t(i));
  return s;
}

std::string error_of(const SamplingOptions& o) {
  try {
    o.validate();
  } catch (const Error& e) {
    EXPECT_EQ(e.kind(), ErrorKind::InvalidInput);
    return e.what();
  }
  return "";
}

TEST(SamplingOptions, DefaultsAreValidAndDocumented) {
  SamplingOptions o;
  EXPECT_NO_THROW(o.validate());
  EXPECT_FLOAT_EQ(o.temperature, 0.8f);
  EXPECT_EQ(o.top_k, 40);
  EXPECT_FLOAT_EQ(o.top_p, 0.95f);
  EXPECT_FLOAT_EQ(o.min_p, 0.05f);
  EXPECT_FLOAT_EQ(o.repeat_penalty, 1.0f);
  EXPECT_EQ(o.repeat_last_n, 64);
  EXPECT_EQ(o.seed, SamplingOptions::kDefaultSeed);
}

TEST(SamplingOptions, ValidationNamesFieldAndValue) {
  auto with = [](auto edit) {
    SamplingOptions o;
    edit(o);
    return error_of(o);
  };
  EXPECT_EQ(with([](auto& o) { o.top_p = 1.5f; }), "top_p must be in (0, 1], got 1.5");
  EXPECT_EQ(with([](auto& o) { o.top_p = 0.0f; }), "top_p must be in (0, 1], got 0");
  EXPECT_EQ(with([](auto& o) { o.temperature = -0.5f; }),
            "temperature must be >= 0 (0 = greedy), got -0.5");
  EXPECT_EQ(with([](auto& o) { o.temperature = NAN; }),
            "temperature must be >= 0 (0 = greedy), got nan");
  EXPECT_EQ(with([](auto& o) { o.top_k = -1; }), "top_k must be >= 0 (0 = off), got -1");
  EXPECT_EQ(with([](auto& o) { o.min_p = 1.25f; }), "min_p must be in [0, 1], got 1.25");
  EXPECT_EQ(with([](auto& o) { o.repeat_penalty = 0.0f; }),
            "repeat_penalty must be > 0 (1 = off), got 0");
  EXPECT_EQ(with([](auto& o) { o.repeat_last_n = -2; }),
            "repeat_last_n must be >= -1 (-1 = all, 0 = off), got -2");
  EXPECT_EQ(with([](auto& o) { o.frequency_penalty = 2.5f; }),
            "frequency_penalty must be in [-2, 2], got 2.5");
  EXPECT_EQ(with([](auto& o) { o.presence_penalty = -3.0f; }),
            "presence_penalty must be in [-2, 2], got -3");
  // The constructor validates too, and checks the vocabulary size.
  SamplingOptions bad;
  bad.top_p = 1.5f;
  EXPECT_THROW(Sampler(bad, 10), Error);
  EXPECT_THROW(Sampler(SamplingOptions{}, 0), Error);
}

TEST(Sampler, GreedyIsArgmax) {
  Sampler s(plain(0.0f), 1000);
  for (uint64_t seed = 1; seed <= 20; ++seed) {
    auto l = random_logits(1000, seed);
    int32_t argmax = int32_t(std::max_element(l.begin(), l.end()) - l.begin());
    EXPECT_EQ(s.sample(l.data()), argmax);
    std::vector<float> p;
    s.probs(l.data(), p);
    EXPECT_EQ(support(p), std::vector<int32_t>{argmax});
    EXPECT_EQ(p[argmax], 1.0f);
  }
  // Ties go to the lowest id.
  std::vector<float> tie = {0.0f, 2.0f, 1.0f, 2.0f};
  Sampler t(plain(0.0f), 4);
  EXPECT_EQ(t.sample(tie.data()), 1);
}

TEST(Sampler, TopK1IsGreedyAtAnyTemperature) {
  for (float temp : {0.1f, 1.0f, 5.0f, 100.0f}) {
    SamplingOptions o = plain(temp);
    o.top_k = 1;
    Sampler s(o, 500);
    for (uint64_t seed = 1; seed <= 20; ++seed) {
      auto l = random_logits(500, seed * 7);
      int32_t argmax = int32_t(std::max_element(l.begin(), l.end()) - l.begin());
      EXPECT_EQ(s.sample(l.data()), argmax) << "temperature " << temp;
    }
  }
}

TEST(Sampler, FixedSeedIsReproducible) {
  SamplingOptions o;  // defaults: top-k 40, top-p 0.95, min-p 0.05, temperature 0.8
  o.temperature = 1.5f;
  auto l = random_logits(4096, 42, 1.0f);
  auto draws = [&](Sampler& s) {
    std::vector<int32_t> out;
    for (int i = 0; i < 300; ++i) out.push_back(s.sample(l.data()));
    return out;
  };
  Sampler a(o, 4096), b(o, 4096);
  auto da = draws(a);
  EXPECT_EQ(da, draws(b));
  EXPECT_GT(std::set<int32_t>(da.begin(), da.end()).size(), 5u);  // not degenerate
  a.reset();
  EXPECT_EQ(da, draws(a));  // reset restarts the PRNG
  o.seed = 7;
  Sampler c(o, 4096);
  EXPECT_NE(da, draws(c));
  // A random seed is resolved once and reported.
  o.seed = SamplingOptions::kRandomSeed;
  Sampler r(o, 4096);
  EXPECT_NE(r.seed(), SamplingOptions::kRandomSeed);
}

// Pearson chi-square of counts against probabilities p over n draws.
double chi_square(const std::vector<int>& counts, const std::vector<float>& p, int n) {
  double chi2 = 0;
  for (size_t i = 0; i < p.size(); ++i) {
    if (p[i] == 0) {
      EXPECT_EQ(counts[i], 0) << "token " << i << " has probability 0";
      continue;
    }
    double e = double(p[i]) * n;
    chi2 += (counts[i] - e) * (counts[i] - e) / e;
  }
  return chi2;
}

TEST(Sampler, EmpiricalDistributionMatchesSoftmax) {
  const std::vector<float> l = {1.0f,  0.5f, 0.0f, -0.5f, 2.0f, 1.5f, -1.0f, 0.25f,
                                0.75f, 1.2f, -0.3f, 0.1f, 1.8f, -2.0f, 0.9f, 0.0f};
  const int n = 20000;
  Sampler s(plain(1.0f), 16);
  auto p = softmax(l);
  std::vector<float> got;
  s.probs(l.data(), got);
  for (size_t i = 0; i < p.size(); ++i) EXPECT_NEAR(got[i], p[i], 1e-6) << i;
  std::vector<int> counts(16, 0);
  for (int i = 0; i < n; ++i) ++counts[s.sample(l.data())];
  // 15 degrees of freedom: P(chi2 > 37.70) = 0.001. The seed is fixed, so this
  // is deterministic; it fails only if the draw is biased.
  EXPECT_LT(chi_square(counts, p, n), 37.70);
}

TEST(Sampler, EmpiricalDistributionMatchesProbsWithFilters) {
  // sample() draws from exactly the distribution probs() reports.
  auto l = random_logits(64, 3, 1.0f);
  SamplingOptions o;
  o.temperature = 0.7f;
  o.top_k = 12;
  o.top_p = 0.9f;
  o.min_p = 0.02f;
  Sampler s(o, 64);
  std::vector<float> p;
  s.probs(l.data(), p);
  auto kept = support(p);
  ASSERT_GE(kept.size(), 3u);
  ASSERT_LE(kept.size(), 12u);
  const int n = 20000;
  std::vector<int> counts(64, 0);
  for (int i = 0; i < n; ++i) ++counts[s.sample(l.data())];
  // df = kept - 1 <= 11: P(chi2 > 31.26) = 0.001.
  EXPECT_LT(chi_square(counts, p, n), 31.26);
}

TEST(Sampler, TemperatureScalesLogits) {
  const std::vector<float> l = {0.0f, 1.0f, 2.0f, -1.0f};
  for (float t : {0.5f, 1.0f, 2.0f}) {
    Sampler s(plain(t), 4);
    std::vector<float> p;
    s.probs(l.data(), p);
    auto want = softmax(l, t);
    for (int i = 0; i < 4; ++i) EXPECT_NEAR(p[i], want[i], 1e-6);
  }
}

TEST(Sampler, TopKRenormalisesOverKLargest) {
  const std::vector<float> l = {0.1f, 3.0f, -1.0f, 2.0f, 2.5f, 0.0f};
  SamplingOptions o = plain(1.0f);
  o.top_k = 3;
  Sampler s(o, 6);
  std::vector<float> p;
  s.probs(l.data(), p);
  EXPECT_EQ(support(p), (std::vector<int32_t>{1, 3, 4}));
  auto want = softmax({3.0f, 2.0f, 2.5f});
  EXPECT_NEAR(p[1], want[0], 1e-6);
  EXPECT_NEAR(p[3], want[1], 1e-6);
  EXPECT_NEAR(p[4], want[2], 1e-6);
}

TEST(Sampler, TopKMatchesFullSortOnLargeVocab) {
  const int V = 128 * 1024;
  auto l = random_logits(V, 21);
  for (int k : {1, 40, 5000, 50000}) {  // small k: heap selection; large k: nth_element
    SamplingOptions o = plain(1.0f);
    o.top_k = k;
    Sampler s(o, V);
    std::vector<float> p;
    s.probs(l.data(), p);
    std::vector<int32_t> order(V);
    std::iota(order.begin(), order.end(), 0);
    std::sort(order.begin(), order.end(), [&](int32_t a, int32_t b) { return l[a] > l[b]; });
    std::vector<int32_t> want(order.begin(), order.begin() + k);
    std::sort(want.begin(), want.end());
    EXPECT_EQ(support(p), want) << "top_k " << k;
  }
}

TEST(Sampler, TinyTemperatureIsNearlyGreedy) {
  const std::vector<float> l = {0.0f, 1.0f, 0.999f, -INFINITY};
  Sampler s(plain(1e-30f), 4);
  std::vector<float> p;
  s.probs(l.data(), p);
  EXPECT_EQ(p, (std::vector<float>{0.0f, 1.0f, 0.0f, 0.0f}));
  EXPECT_EQ(s.sample(l.data()), 1);
}

TEST(Sampler, TopPKeepsSmallestSetWithMassAtLeastP) {
  // Shuffled ids so the filter cannot rely on input order.
  // probabilities: id 3: .5, id 0: .2, id 4: .15, id 1: .1, id 2: .05
  const auto l = logits_of({0.2, 0.1, 0.05, 0.5, 0.15});
  auto kept = [&](float top_p) {
    SamplingOptions o = plain(1.0f);
    o.top_p = top_p;
    Sampler s(o, 5);
    std::vector<float> p;
    s.probs(l.data(), p);
    return std::make_pair(support(p), p);
  };
  EXPECT_EQ(kept(0.3f).first, (std::vector<int32_t>{3}));        // .5 >= .3
  EXPECT_EQ(kept(0.69f).first, (std::vector<int32_t>{0, 3}));    // .7 >= .69
  EXPECT_EQ(kept(0.71f).first, (std::vector<int32_t>{0, 3, 4}));  // .7 < .71 <= .85
  EXPECT_EQ(kept(0.9f).first, (std::vector<int32_t>{0, 1, 3, 4}));
  EXPECT_EQ(kept(0.99f).first, (std::vector<int32_t>{0, 1, 2, 3, 4}));
  auto [ids, p] = kept(0.8f);
  EXPECT_NEAR(p[3], 0.5 / 0.85, 1e-6);  // renormalised over the kept mass
  EXPECT_NEAR(p[0], 0.2 / 0.85, 1e-6);
  EXPECT_NEAR(p[4], 0.15 / 0.85, 1e-6);
}

TEST(Sampler, TopPMatchesFullSortOnLargeVocab) {
  // 128k vocabulary, no top-k: the chunked partial sort must find the same
  // nucleus as a plain full sort.
  const int V = 128 * 1024;
  for (float top_p : {0.5f, 0.9f, 0.99f}) {
    auto l = random_logits(V, uint64_t(top_p * 1000), 2.0f);
    SamplingOptions o = plain(0.9f);
    o.top_p = top_p;
    Sampler s(o, V);
    std::vector<float> p;
    s.probs(l.data(), p);

    auto ref = softmax(l, 0.9);
    std::vector<int32_t> order(V);
    std::iota(order.begin(), order.end(), 0);
    std::sort(order.begin(), order.end(), [&](int32_t a, int32_t b) { return l[a] > l[b]; });
    double cum = 0;
    size_t k = 0;
    while (k < order.size() && cum < top_p) cum += ref[order[k++]];
    std::vector<int32_t> want(order.begin(), order.begin() + k);
    std::sort(want.begin(), want.end());
    auto got = support(p);
    // Rounding can move the boundary by a token of negligible mass.
    EXPECT_LE(std::abs(int64_t(got.size()) - int64_t(want.size())), 1) << "top_p " << top_p;
    size_t common = 0;
    for (int32_t id : got) common += std::binary_search(want.begin(), want.end(), id);
    EXPECT_GE(common + 1, std::max(got.size(), want.size()));
    EXPECT_GT(got.size(), 100u);  // a real nucleus, not a trivial one
  }
}

TEST(Sampler, MinPThresholdRelativeToMostLikely) {
  // probabilities: .5 .2 .15 .1 .05
  const auto l = logits_of({0.5, 0.2, 0.15, 0.1, 0.05});
  auto kept = [&](float min_p, float top_p = 1.0f) {
    SamplingOptions o = plain(1.0f);
    o.min_p = min_p;
    o.top_p = top_p;
    Sampler s(o, 5);
    std::vector<float> p;
    s.probs(l.data(), p);
    return support(p);
  };
  EXPECT_EQ(kept(0.05f), (std::vector<int32_t>{0, 1, 2, 3, 4}));  // >= .025
  EXPECT_EQ(kept(0.25f), (std::vector<int32_t>{0, 1, 2}));        // >= .125
  EXPECT_EQ(kept(0.31f), (std::vector<int32_t>{0, 1}));           // >= .155
  EXPECT_EQ(kept(0.9f), (std::vector<int32_t>{0}));               // >= .45
  // top-p 0.9 keeps 4, then min-p 0.25 keeps 3 (and the reverse case).
  EXPECT_EQ(kept(0.25f, 0.9f), (std::vector<int32_t>{0, 1, 2}));
  EXPECT_EQ(kept(0.05f, 0.6f), (std::vector<int32_t>{0, 1}));
  // min-p sees the temperature-scaled distribution: at T = 2 the ratios are
  // square roots: sqrt(.05/.5) = .316 >= .3.
  SamplingOptions o = plain(2.0f);
  o.min_p = 0.3f;
  Sampler s(o, 5);
  std::vector<float> p;
  s.probs(l.data(), p);
  EXPECT_EQ(support(p), (std::vector<int32_t>{0, 1, 2, 3, 4}));
}

TEST(Sampler, PenaltiesOnHandComputedLogits) {
  const std::vector<float> l = {2.0f, -1.0f, 0.5f, 3.0f};
  SamplingOptions o = plain(1.0f);
  o.repeat_penalty = 2.0f;
  o.frequency_penalty = 0.5f;
  o.presence_penalty = 0.25f;
  Sampler s(o, 4);
  s.accept(0);
  s.accept(1);
  s.accept(0);
  // token 0: count 2, positive: 2 / 2 - (2 * 0.5 + 0.25) = -0.25
  // token 1: count 1, negative: -1 * 2 - (1 * 0.5 + 0.25) = -2.75
  // tokens 2, 3: unchanged
  std::vector<float> p;
  s.probs(l.data(), p);
  auto want = softmax({-0.25f, -2.75f, 0.5f, 3.0f});
  for (int i = 0; i < 4; ++i) EXPECT_NEAR(p[i], want[i], 1e-6) << i;
  // The raw logits are not modified.
  EXPECT_EQ(l[0], 2.0f);
  // reset() forgets the history.
  s.reset();
  s.probs(l.data(), p);
  want = softmax(l);
  for (int i = 0; i < 4; ++i) EXPECT_NEAR(p[i], want[i], 1e-6) << i;
}

TEST(Sampler, RepeatPenaltyChangesGreedyChoice) {
  const std::vector<float> l = {3.0f, 2.9f, 0.0f};
  SamplingOptions o = plain(0.0f);
  o.repeat_penalty = 1.1f;  // 3.0 / 1.1 = 2.727 < 2.9
  Sampler s(o, 3);
  EXPECT_EQ(s.sample(l.data()), 0);
  s.accept(0);
  EXPECT_EQ(s.sample(l.data()), 1);
}

TEST(Sampler, PenaltyWindowIsLastNAccepted) {
  const std::vector<float> l = {1.0f, 1.0f, 1.0f, 1.0f};
  SamplingOptions o = plain(0.0f);
  o.presence_penalty = 1.0f;
  o.repeat_last_n = 2;
  Sampler s(o, 4);
  s.accept(0);
  s.accept(1);
  s.accept(2);  // window {1, 2}: token 0 is no longer penalised
  EXPECT_EQ(s.sample(l.data()), 0);
  s.accept(0);  // window {2, 0}
  EXPECT_EQ(s.sample(l.data()), 1);

  o.repeat_last_n = 0;  // penalties off
  Sampler off(o, 4);
  off.accept(0);
  EXPECT_EQ(off.sample(l.data()), 0);

  o.repeat_last_n = -1;  // whole history, frequency counts accumulate
  o.presence_penalty = 0.0f;
  o.frequency_penalty = 0.1f;
  o.temperature = 1.0f;
  Sampler all(o, 4);
  for (int i = 0; i < 100; ++i) all.accept(3);
  std::vector<float> p;
  all.probs(l.data(), p);
  auto want = softmax({1.0f, 1.0f, 1.0f, 1.0f - 100 * 0.1f});
  for (int i = 0; i < 4; ++i) EXPECT_NEAR(p[i], want[i], 1e-6) << i;
}

TEST(Sampler, BadInputsThrowWithData) {
  Sampler s(plain(1.0f), 4);
  try {
    s.accept(4);
    FAIL();
  } catch (const Error& e) {
    EXPECT_STREQ(e.what(), "accepted token 4 is outside the vocabulary [0, 4)");
  }
  std::vector<float> nan = {0.0f, NAN, 0.0f, 0.0f};
  try {
    s.sample(nan.data());
    FAIL();
  } catch (const Error& e) {
    EXPECT_EQ(e.kind(), ErrorKind::Internal);
    EXPECT_STREQ(e.what(), "logit of token 1 (vocab 4) is nan");
  }
  std::vector<float> none(4, -INFINITY);
  EXPECT_THROW(s.sample(none.data()), Error);
}

TEST(Sampler, TopLogprobsAreSortedLogSoftmax) {
  const std::vector<float> l = {0.5f, 2.0f, -1.0f, 2.0f, 1.0f};
  Sampler s(SamplingOptions{}, 5);  // options do not affect logprobs
  auto top = s.top_logprobs(l.data(), 3);
  ASSERT_EQ(top.size(), 3u);
  auto p = softmax(l);
  EXPECT_EQ(top[0].token, 1);  // tie with 3: lower id first
  EXPECT_EQ(top[1].token, 3);
  EXPECT_EQ(top[2].token, 4);
  for (const auto& t : top) EXPECT_NEAR(t.logprob, std::log(p[t.token]), 1e-6);
  EXPECT_NEAR(s.logprob(l.data(), 2), std::log(p[2]), 1e-6);
  // Hand-checked: log_softmax of {0, 0} is -ln 2.
  Sampler two(SamplingOptions{}, 2);
  std::vector<float> z = {0.0f, 0.0f};
  EXPECT_NEAR(two.logprob(z.data(), 1), -0.6931472f, 1e-6);
  EXPECT_EQ(s.top_logprobs(l.data(), 100).size(), 5u);
  EXPECT_TRUE(s.top_logprobs(l.data(), 0).empty());
  EXPECT_THROW(s.top_logprobs(l.data(), -1), Error);
  EXPECT_THROW(s.logprob(l.data(), 5), Error);

  // Large vocabulary: matches a full sort.
  const int V = 128 * 1024;
  auto big = random_logits(V, 11);
  Sampler sb(SamplingOptions{}, V);
  auto tb = sb.top_logprobs(big.data(), 20);
  std::vector<float> sorted = big;
  std::sort(sorted.begin(), sorted.end(), std::greater<>());
  for (int i = 0; i < 20; ++i) {
    EXPECT_EQ(big[tb[i].token], sorted[i]);
    EXPECT_NEAR(tb[i].logprob, sb.logprob(big.data(), tb[i].token), 1e-5);
  }
}

TEST(Sampler, SampleFromExplicitDistribution) {
  Sampler s(plain(1.0f), 4);
  std::vector<float> one = {0.0f, 0.0f, 3.0f, 0.0f};
  for (int i = 0; i < 10; ++i) EXPECT_EQ(s.sample_from(one), 2);
  std::vector<float> w = {1.0f, 0.0f, 3.0f};  // unnormalised: 1/4, 0, 3/4
  std::vector<int> counts(3, 0);
  for (int i = 0; i < 20000; ++i) ++counts[s.sample_from(w)];
  EXPECT_EQ(counts[1], 0);
  EXPECT_LT(chi_square(counts, {0.25f, 0.0f, 0.75f}, 20000), 10.83);  // df 1, p = 0.001
  std::vector<float> zero = {0.0f, 0.0f};
  EXPECT_THROW(s.sample_from(zero), Error);
  std::vector<float> neg = {1.0f, -0.5f};
  EXPECT_THROW(s.sample_from(neg), Error);
  double u = s.uniform();
  EXPECT_GE(u, 0.0);
  EXPECT_LT(u, 1.0);
}

}  // namespace
}  // namespace harmonia
