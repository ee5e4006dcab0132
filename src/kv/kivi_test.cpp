// `kivi`: quantisation error bounds per group, exact residual, the reference's
// quantisation schedule, attention over the dequantised cache, full's outputs
// when nothing is quantised, exact byte accounting, rollback and option errors.
#include "kv/kivi.h"

#include <gtest/gtest.h>

#include "kv/baseline_test_util.h"

namespace harmonia::kv {
namespace {

using namespace testing;

const Shape kShapes[] = {shape(2, 4, 4, 16), shape(2, 4, 2, 32), shape(2, 8, 2, 8)};  // groups 1, 2, 4

// Every reconstructed value of a group is within (max - min) / (2^bits - 1) / 2 of
// its input, up to the fp16 rounding of the scale/zero-point (2^-10 of the
// group's magnitude) and fp32 rounding.
void expect_within_bound(const std::vector<float>& got, const Seq& x, int l, int h, int64_t first, int64_t count,
                         int64_t c0, int64_t channels, bool keys, int bits, bool f16) {
  const int hd = x.s.head_dim;
  float mn = INFINITY, mx = -INFINITY, mag = 0;
  auto in = [&](int64_t t, int64_t c) { return (keys ? x.K(l, t, h) : x.V(l, t, h))[c]; };
  for (int64_t t = first; t < first + count; ++t)
    for (int64_t c = c0; c < c0 + channels; ++c) {
      mn = std::min(mn, in(t, c));
      mx = std::max(mx, in(t, c));
      mag = std::max(mag, std::fabs(in(t, c)));
    }
  const double bound = (mx - mn) / ((1 << bits) - 1) / 2.0 + (f16 ? std::ldexp(mag, -10) : 0.0) + 1e-6 * mag;
  for (int64_t t = first; t < first + count; ++t)
    for (int64_t c = c0; c < c0 + channels; ++c)
      ASSERT_LE(std::fabs(got[t * hd + c] - in(t, c)), bound)
          << (keys ? "key" : "value") << " token " << t << " channel " << c << " bits " << bits;
}

TEST(KIVI, QuantisationErrorWithinHalfAStepAndResidualExact) {
  for (int bits : {2, 4})
    for (bool f16 : {true, false})
      for (const Shape& s : kShapes) {
        Seq x = random_seq(s, 70, 51 + bits);
        for (int64_t t = 0; t < x.n; ++t)  // channels of very different ranges and offsets
          for (size_t c = 0; c < x.kv_dim(); ++c) x.K(0, t)[c] = x.K(0, t)[c] * (1 + c % 5) + (c % 3) * 4.0f;
        KIVIOptions o;
        o.bits = bits, o.group = 8, o.v_group = 8, o.residual = 16, o.f16_params = f16;
        KIVICache c(s, o);
        run(c, x, 45, 11);  // prompt 45 then 25 decode steps
        // Schedule: keys quantised in whole residuals (70 -> 64), values all but the last 16.
        EXPECT_EQ(c.quantized_keys(0), 64);
        EXPECT_EQ(c.quantized_values(0), 54);
        const int hd = s.head_dim;
        for (int l = 0; l < s.n_layers; ++l)
          for (int h = 0; h < s.n_kv_heads; ++h) {
            const auto K = c.keys(l, h), V = c.values(l, h);
            for (int64_t g = 0; g < 64 / 8; ++g)  // per channel, groups of 8 tokens
              for (int ch = 0; ch < hd; ++ch) expect_within_bound(K, x, l, h, g * 8, 8, ch, 1, true, bits, f16);
            for (int64_t t = 0; t < 54; ++t)  // per token, groups of 8 channels
              for (int g = 0; g < hd / 8; ++g) expect_within_bound(V, x, l, h, t, 1, g * 8, 8, false, bits, f16);
            for (int64_t t = 64; t < 70; ++t) EXPECT_EQ(std::memcmp(&K[t * hd], x.K(l, t, h), hd * 4), 0);
            for (int64_t t = 54; t < 70; ++t) EXPECT_EQ(std::memcmp(&V[t * hd], x.V(l, t, h), hd * 4), 0);
          }
      }
}

TEST(KIVI, AttentionOverTheDequantisedCache) {
  for (const Shape& s : kShapes) {
    const Seq x = random_seq(s, 60, 53, 2.0f);
    KIVIOptions o;
    o.bits = 2, o.group = 4, o.residual = 8;
    KIVICache c(s, o);
    const int64_t P = 30;
    FullCache full(s);
    const Outputs ref = run(full, x, P, 9);
    int64_t checked = 0;
    std::vector<std::vector<float>> K, V;  // the cache before each decode step
    auto snapshot = [&] {
      K.clear(), V.clear();
      for (int l = 0; l < s.n_layers; ++l)
        for (int h = 0; h < s.n_kv_heads; ++h) K.push_back(c.keys(l, h)), V.push_back(c.values(l, h));
    };
    Outputs out(ref.size());
    c.plan(P, x.n - P);
    for (int64_t t0 = 0; t0 < x.n;) {
      const int64_t n = t0 < P ? std::min<int64_t>(9, P - t0) : 1;
      if (t0 >= P) snapshot();
      for (int l = 0; l < s.n_layers; ++l) {
        c.append(l, n, x.K(l, t0), x.V(l, t0));
        c.attend(l, n, x.Q(l, t0), out.data() + (l * x.n + t0) * x.q_dim());
        if (t0 < P) continue;
        std::vector<std::vector<const float*>> kr(s.n_kv_heads), vr(s.n_kv_heads);
        for (int h = 0; h < s.n_kv_heads; ++h) {
          for (int64_t u = 0; u < t0; ++u) {
            kr[h].push_back(&K[l * s.n_kv_heads + h][u * s.head_dim]);
            vr[h].push_back(&V[l * s.n_kv_heads + h][u * s.head_dim]);
          }
          kr[h].push_back(x.K(l, t0, h));
          vr[h].push_back(x.V(l, t0, h));
        }
        const auto want = naive_attention(s, x.Q(l, t0), kr, vr);
        EXPECT_LT(rel_err(out.data() + (l * x.n + t0) * x.q_dim(), want.data(), want.size()), 1e-5) << t0;
        ++checked;
      }
      c.commit(n);
      t0 += n;
    }
    EXPECT_EQ(checked, s.n_layers * (x.n - P));
    // The chunked prompt attended exactly (nothing is quantised before it is complete).
    for (int l = 0; l < s.n_layers; ++l)
      EXPECT_LT(rel_err(out.data() + l * x.n * x.q_dim(), ref.data() + l * x.n * x.q_dim(), P * x.q_dim()), 1e-6);
    EXPECT_GT(c.quantized_keys(0), 0);
  }
}

TEST(KIVI, NothingQuantisedIsFull) {
  for (const Shape& s : kShapes) {
    const Seq x = random_seq(s, 50, 54);
    FullCache full(s);
    const Outputs want = run(full, x, 30, 8);
    auto p = make_policy("kivi", s, {{"residual", "64"}});  // residual >= every length: exact
    const Outputs got = run(*p, x, 30, 8);
    EXPECT_LT(rel_err(got.data(), want.data(), want.size()), 1e-6);
    EXPECT_EQ(p->n_stored(), 50);
    EXPECT_EQ(ledger_total(p->bytes()), ledger_total(full.bytes()));
  }
}

TEST(KIVI, ExactByteAccounting) {
  const Shape s = shape(2, 4, 2, 32);
  const Seq x = random_seq(s, 48, 55);
  auto p = make_policy("kivi", s, {{"bits", "2"}, {"group", "8"}, {"residual", "16"}});
  run(*p, x, 40, 40, true, [&](int64_t n) {
    if (n == 40) {
      // 2 layers x 2 kv heads; keys: 32 quantised (4 groups of 8 tokens x 32 channels, 2 bits)
      // + 8 residual; values: 24 quantised (per token, 4 groups of 8 channels) + 16 residual.
      // fp16 scales and zero-points: K 4 groups x 32 channels, V 24 tokens x 4 groups.
      EXPECT_EQ(p->bytes(), (ByteLedger{{"keys_quantized", 4 * 32 * 32 * 2 / 8},
                                        {"values_quantized", 4 * 24 * 32 * 2 / 8},
                                        {"scales", 4 * (4 * 32 + 24 * 4) * 2},
                                        {"zero_points", 4 * (4 * 32 + 24 * 4) * 2},
                                        {"keys_residual", 4 * 8 * 32 * 4},
                                        {"values_residual", 4 * 16 * 32 * 4}}));
      EXPECT_EQ(p->bytes(), p->bytes_at(40));
    }
  });
  for (int64_t n : {0, 5, 16, 17, 100, 4000}) {
    auto f32 = make_policy("kivi", s, {{"bits", "4"}, {"scale_type", "f32"}});
    const auto b = f32->bytes_at(n);
    const int64_t nq_k = n / 128 * 128, nq_v = std::max<int64_t>(0, n - 128);
    EXPECT_EQ(b.at("keys_quantized"), 4u * nq_k * 32 / 2);
    EXPECT_EQ(b.at("scales"), 4u * (nq_k / 32 * 32 + nq_v * 1) * 4);
    EXPECT_EQ(b.at("values_residual"), 4u * (n - nq_v) * 32 * 4);
  }
}

TEST(KIVI, DecodeScheduleAndRollback) {
  const Shape s = shape(1, 2, 2, 8);
  const Seq x = random_seq(s, 40, 56);
  KIVIOptions o;
  o.bits = 4, o.group = 2, o.residual = 4;
  KIVICache c(s, o);
  std::vector<std::pair<int64_t, int64_t>> counts;
  run(c, x, 6, 6, true, [&](int64_t) { counts.push_back({c.quantized_keys(0), c.quantized_values(0)}); });
  // Prompt 6: keys 4 quantised, values 2; then per step keys flush at 8, 12, ...; values slide.
  EXPECT_EQ(counts[0], std::make_pair(int64_t{4}, int64_t{2}));
  EXPECT_EQ(counts[1], std::make_pair(int64_t{4}, int64_t{3}));  // 7 tokens
  EXPECT_EQ(counts[2], std::make_pair(int64_t{8}, int64_t{4}));  // 8 tokens
  EXPECT_EQ(counts.back(), std::make_pair(int64_t{40}, int64_t{36}));
  EXPECT_EQ(c.n_stored(), 0);  // 40 tokens: every key quantised
  EXPECT_EQ(error_kind([&] { c.truncate(38); }), ErrorKind::Unsupported);
  c.truncate(40);
  KIVIOptions big = o;
  big.residual = 64;
  KIVICache e(s, big);
  run(e, x, 6, 6);
  e.truncate(20);
  EXPECT_EQ(e.n_tokens(), 20);
  EXPECT_EQ(e.bytes(), e.bytes_at(20));
}

TEST(KIVI, OptionErrors) {
  const Shape s = shape(1, 2, 2, 8);
  EXPECT_EQ(error_kind([&] { make_policy("kivi", s, {{"bits", "3"}}); }), ErrorKind::InvalidInput);
  EXPECT_EQ(error_kind([&] { make_policy("kivi", s, {{"residual", "100"}}); }), ErrorKind::InvalidInput);
  EXPECT_EQ(error_kind([&] { make_policy("kivi", s, {{"v_group", "3"}}); }), ErrorKind::InvalidInput);
  EXPECT_EQ(error_kind([&] { make_policy("kivi", s, {{"group", "3"}}); }), ErrorKind::InvalidInput);
  EXPECT_EQ(error_kind([&] { make_policy("kivi", s, {{"scale_type", "bf16"}}); }), ErrorKind::InvalidInput);
  EXPECT_NO_THROW(make_policy("kivi", s));  // v_group defaults to min(32, head_dim 8)
}

}  // namespace
}  // namespace harmonia::kv
