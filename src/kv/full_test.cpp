// `full`: the fp32 path against plain double attention and against
// causal_attention bit for bit; the typed K/V paths against attention over the
// dequantised rows; byte accounting; option errors.
#include "kv/full.h"

#include <gtest/gtest.h>

#include "kv/baseline_test_util.h"
#include "tensor/ops.h"

namespace harmonia::kv {
namespace {

using namespace testing;

struct Case {
  int heads, kv_heads, head_dim;
};
const Case kCases[] = {{4, 4, 32}, {4, 2, 32}, {8, 2, 64}};  // GQA groups 1, 2, 4

// Attention of token t over tokens [0, t] (layer l) in double, with K/V rounded through types kt/vt.
std::vector<double> reference(const Seq& x, int l, int64_t t, DType kt, DType vt, std::vector<float>& kbuf,
                              std::vector<float>& vbuf) {
  const Shape& s = x.s;
  const int hd = s.head_dim;
  kbuf.resize((t + 1) * s.n_kv_heads * hd);
  vbuf.resize(kbuf.size());
  std::vector<uint8_t> tmp(row_bytes(DType::F32, hd));
  std::vector<std::vector<const float*>> kr(s.n_kv_heads), vr(s.n_kv_heads);
  for (int64_t u = 0; u <= t; ++u)
    for (int h = 0; h < s.n_kv_heads; ++h) {
      float* kd = kbuf.data() + (u * s.n_kv_heads + h) * hd;
      float* vd = vbuf.data() + (u * s.n_kv_heads + h) * hd;
      for (auto [src, dst, type] : {std::tuple{x.K(l, u, h), kd, kt}, std::tuple{x.V(l, u, h), vd, vt}}) {
        tmp.resize(row_bytes(type, hd));
        quantize_row(type, src, tmp.data(), hd);
        dequantize_row(type, tmp.data(), dst, hd);
      }
      kr[h].push_back(kd);
      vr[h].push_back(vd);
    }
  return naive_attention(s, x.Q(l, t), kr, vr);
}

TEST(FullCache, F32MatchesPlainAttentionAndIsCausalAttentionBitForBit) {
  for (const Case& c : kCases) {
    const Shape s = shape(2, c.heads, c.kv_heads, c.head_dim);
    const Seq x = random_seq(s, 40, 1);
    FullCache f(s);
    const Outputs out = run(f, x, 25, 7);
    auto via_registry = make_policy("full", s, {{"k_type", "f32"}, {"v_type", "f32"}});
    EXPECT_EQ(run(*via_registry, x, 25, 7), out);
    std::vector<float> kb, vb;
    for (int l = 0; l < s.n_layers; ++l)
      for (int64_t t = 0; t < x.n; ++t) {
        const auto want = reference(x, l, t, DType::F32, DType::F32, kb, vb);
        EXPECT_LT(rel_err(out.data() + (l * x.n + t) * x.q_dim(), want.data(), want.size()), 1e-5) << t;
      }
    // The same as causal_attention over contiguous per-head rows, bit for bit.
    const int64_t n = x.n;
    const int hd = s.head_dim;
    for (int l = 0; l < s.n_layers; ++l) {
      std::vector<float> k(s.n_kv_heads * n * hd), v(k.size()), o(n * x.q_dim());
      for (int64_t t = 0; t < n; ++t)
        for (int h = 0; h < s.n_kv_heads; ++h) {
          std::copy_n(x.K(l, t, h), hd, k.data() + (h * n + t) * hd);
          std::copy_n(x.V(l, t, h), hd, v.data() + (h * n + t) * hd);
        }
      causal_attention(s, 25, x.Q(l, 0), k.data(), v.data(), 25, n * hd, o.data());
      EXPECT_EQ(std::memcmp(o.data(), out.data() + l * n * x.q_dim(), 25 * x.q_dim() * 4), 0);
    }
  }
}

TEST(FullCache, TypedKVMatchesAttentionOverDequantisedRows) {
  const std::pair<const char*, const char*> types[] = {{"f16", "f16"},   {"bf16", "bf16"}, {"q8_0", "q8_0"},
                                                       {"q4_0", "q4_0"}, {"q8_0", "f32"},  {"f32", "q4_0"},
                                                       {"f16", "q8_0"}};
  for (const Case& c : kCases)
    for (auto [kt, vt] : types) {
      const Shape s = shape(2, c.heads, c.kv_heads, c.head_dim);
      const Seq x = random_seq(s, 30, 2);
      auto p = make_policy("full", s, {{"k_type", kt}, {"v_type", vt}});
      const Outputs out = run(*p, x, 20, 9);  // prefill blocks of queries, then decode
      const DType K = *dtype_from_name(kt), V = *dtype_from_name(vt);
      std::vector<float> kb, vb;
      for (int l = 0; l < s.n_layers; ++l)
        for (int64_t t = 0; t < x.n; ++t) {
          const auto want = reference(x, l, t, K, V, kb, vb);
          EXPECT_LT(rel_err(out.data() + (l * x.n + t) * x.q_dim(), want.data(), want.size()), 1e-5)
              << kt << "/" << vt << " token " << t;
        }
      const size_t rows = 2 * s.n_kv_heads * x.n;
      EXPECT_EQ(p->bytes(), (ByteLedger{{"keys", rows * row_bytes(K, c.head_dim)},
                                        {"values", rows * row_bytes(V, c.head_dim)}}));
      EXPECT_EQ(p->bytes(), p->bytes_at(x.n));
    }
}

TEST(FullCache, ByteAccountingByType) {
  const Shape s = shape(3, 8, 2, 64);
  // Per token and layer and kv head: f32 256 B, f16/bf16 128 B, q8_0 2*34 = 68 B, q4_0 2*18 = 36 B.
  const std::pair<const char*, size_t> per_row[] = {{"f32", 256}, {"f16", 128}, {"bf16", 128}, {"q8_0", 68}, {"q4_0", 36}};
  for (auto [t, b] : per_row) {
    auto p = make_policy("full", s, {{"k_type", t}, {"v_type", "q4_0"}});
    EXPECT_EQ(p->bytes_at(100).at("keys"), 3 * 2 * 100 * b) << t;
    EXPECT_EQ(p->bytes_at(100).at("values"), 3 * 2 * 100 * 36u) << t;
  }
}

TEST(FullCache, TypedTruncateThenContinue) {
  const Shape s = shape(1, 4, 2, 32);
  const Seq x = random_seq(s, 16, 3);
  auto a = make_policy("full", s, {{"k_type", "q8_0"}, {"v_type", "f16"}});
  run(*a, x, 10, 10);  // 10 prompt + 6 decode
  a->truncate(12);
  // Feed different tokens 12..15 after the rollback; compare with a cache that never saw the old ones.
  Seq y = random_seq(s, 16, 4);
  for (int64_t t = 0; t < 12; ++t) {
    std::copy_n(x.K(0, t), x.kv_dim(), y.K(0, t));
    std::copy_n(x.V(0, t), x.kv_dim(), y.V(0, t));
    std::copy_n(x.Q(0, t), x.q_dim(), y.Q(0, t));
  }
  auto b = make_policy("full", s, {{"k_type", "q8_0"}, {"v_type", "f16"}});
  const Outputs want = run(*b, y, 12, 12);
  std::vector<float> o(x.q_dim());
  for (int64_t t = 12; t < 16; ++t) {
    a->append(0, 1, y.K(0, t), y.V(0, t));
    a->attend(0, 1, y.Q(0, t), o.data());
    a->commit(1);
    EXPECT_EQ(std::memcmp(o.data(), want.data() + t * x.q_dim(), o.size() * 4), 0) << t;
  }
}

TEST(FullCache, OptionErrors) {
  const Shape s48 = shape(1, 2, 2, 48);
  EXPECT_EQ(error_kind([&] { make_policy("full", s48, {{"k_type", "q8_0"}}); }), ErrorKind::InvalidInput);
  EXPECT_NE(error_message([&] { make_policy("full", s48, {{"v_type", "q4_0"}}); }).find("head_dim is 48"),
            std::string::npos);
  EXPECT_NO_THROW(make_policy("full", s48, {{"k_type", "f16"}, {"v_type", "bf16"}}));
  const Shape s = shape(1, 2, 2, 32);
  EXPECT_NE(error_message([&] { make_policy("full", s, {{"k_type", "q4_k"}}); }).find("must be one of"),
            std::string::npos);
  EXPECT_NE(error_message([&] { make_policy("full", s, {{"ktype", "f16"}}); }).find("no option 'ktype'"),
            std::string::npos);
  EXPECT_EQ(error_kind([&] { FullCache(s, FullOptions{DType::Q4_K, DType::F32}); }), ErrorKind::InvalidInput);
}

}  // namespace
}  // namespace harmonia::kv
