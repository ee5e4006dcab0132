// The `fourier` policy (FourierAttention, arXiv 2506.11886) on random inputs:
// spec oracles O5 (policy level), O7, O10 a/b/d, O11, plus options, memory
// ledger, short prompts, period re-anchoring, rollback and multi-query steps.
#include "kv/fourier.h"

#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <random>

#include "common/error.h"
#include "common/testing.h"
#include "kv/full.h"
#include "kv/spectral.h"

using namespace harmonia;
using namespace harmonia::kv;

namespace {

Shape make_shape(int layers, int heads, int kv_heads, int hd, int64_t max_tokens = 4096) {
  Shape s;
  s.n_layers = layers;
  s.n_heads = heads;
  s.n_kv_heads = kv_heads;
  s.head_dim = hd;
  s.max_tokens = max_tokens;
  return s;
}

// One forward step's inputs for every layer: k, v [n][kv_heads][hd], q [n][heads][hd].
struct Step {
  int64_t n = 0;
  std::vector<std::vector<float>> k, v, q;
};

Step random_step(const Shape& s, int64_t n, std::mt19937& rng, float qscale = 1.0f) {
  std::normal_distribution<float> nd;
  Step st;
  st.n = n;
  const size_t kvd = static_cast<size_t>(s.n_kv_heads) * s.head_dim, qd = static_cast<size_t>(s.n_heads) * s.head_dim;
  for (int l = 0; l < s.n_layers; ++l) {
    st.k.emplace_back(n * kvd);
    st.v.emplace_back(n * kvd);
    st.q.emplace_back(n * qd);
    for (auto& x : st.k.back()) x = nd(rng);
    for (auto& x : st.v.back()) x = nd(rng);
    for (auto& x : st.q.back()) x = qscale * nd(rng);
  }
  return st;
}

// Runs the step through p (append, attend, commit); returns [layer][n*heads*hd].
std::vector<std::vector<float>> run(Policy& p, const Step& st, bool attend = true) {
  const Shape& s = p.shape();
  std::vector<std::vector<float>> out(s.n_layers);
  for (int l = 0; l < s.n_layers; ++l) {
    p.append(l, st.n, st.k[l].data(), st.v[l].data());
    if (attend) {
      out[l].assign(st.q[l].size(), 0.0f);
      p.attend(l, st.n, st.q[l].data(), out[l].data());
    }
  }
  p.commit(st.n);
  return out;
}

double rel_diff(const std::vector<float>& a, const std::vector<float>& b) {
  double d = 0, m = 1e-30;
  for (size_t i = 0; i < a.size(); ++i) {
    d = std::max(d, std::abs(static_cast<double>(a[i]) - b[i]));
    m = std::max(m, std::abs(static_cast<double>(b[i])));
  }
  return d / m;
}

double rel_diff(const std::vector<std::vector<float>>& a, const std::vector<std::vector<float>>& b) {
  double d = 0;
  for (size_t l = 0; l < a.size(); ++l) d = std::max(d, rel_diff(a[l], b[l]));
  return d;
}

FourierOptions small_opts(int64_t sink, int64_t window, int64_t coeffs) {
  FourierOptions o;
  o.sink = sink;
  o.window = window;
  o.coeffs = coeffs;
  return o;
}

// Per head h of layer l, mode (h + l) % 4: 0 nothing compressed, 1 everything,
// 2 a random subset, 3 all K and no V dims: heads with zero compressed and zero
// exact dims both occur (spec O9, §4.2 "degenerate heads").
FourierDims mixed_dims(const Shape& s, uint32_t seed) {
  std::mt19937 rng(seed);
  FourierDims d;
  d.n_layers = s.n_layers;
  d.kv_dim = s.n_kv_heads * s.head_dim;
  d.source = "test";
  for (int l = 0; l < s.n_layers; ++l) {
    LayerDims ld;
    for (int h = 0; h < s.n_kv_heads; ++h) {
      const int mode = (h + l) % 4;
      for (int dd = 0; dd < s.head_dim; ++dd) {
        const int g = h * s.head_dim + dd;
        const bool ck = mode == 1 || mode == 3 || (mode == 2 && rng() % 2);
        const bool cv = mode == 1 || (mode == 2 && rng() % 2);
        if (ck) ld.k_compressed.push_back(g);
        if (cv) ld.v_compressed.push_back(g);
      }
    }
    d.layers.push_back(ld);
  }
  return d;
}

}  // namespace

TEST(Fourier, OptionsAndRegistry) {
  const FourierOptions d = FourierOptions::parse({});
  EXPECT_EQ(d.sink, 4);
  EXPECT_EQ(d.window, 1024);
  EXPECT_EQ(d.coeffs, 1024);
  EXPECT_EQ(d.max_new, -1);
  EXPECT_TRUE(d.smooth_period);
  EXPECT_FALSE(d.compat_reference);
  EXPECT_EQ(d.attention, FourierAttentionMode::Spectral);
  const FourierOptions r =
      FourierOptions::parse({{"compat", "reference"}, {"coeff_dtype", "bf16"}, {"window", "1020"}});
  EXPECT_TRUE(r.compat_reference);
  EXPECT_FALSE(r.smooth_period);
  EXPECT_EQ(r.coeff_dtype, CoeffDtype::BF16);
  auto err = [](const Options& o) {
    try {
      FourierOptions::parse(o);
    } catch (const Error& e) {
      EXPECT_EQ(e.kind(), ErrorKind::InvalidInput);
      return std::string(e.what());
    }
    return std::string();
  };
  EXPECT_NE(err({{"coeffs", "1023"}}).find("coeffs=1023 must be even"), std::string::npos);
  EXPECT_NE(err({{"window", "0"}}).find("window=0"), std::string::npos);
  EXPECT_NE(err({{"bogus", "1"}}).find("has no option 'bogus'"), std::string::npos);
  EXPECT_NE(err({{"compat", "reference"}, {"period", "smooth"}}).find("contradicts"), std::string::npos);
  EXPECT_NE(err({{"attention", "fast"}}).find("spectral"), std::string::npos);
  const auto names = policy_names();
  EXPECT_NE(std::find(names.begin(), names.end(), "fourier"), names.end());
  auto p = make_policy("fourier", make_shape(2, 4, 2, 8), {{"window", "16"}, {"coeffs", "8"}});
  EXPECT_EQ(p->name(), "fourier");
  try {
    make_policy("fourier", make_shape(2, 4, 2, 8), {{"dims", "/nonexistent.json"}});
    ADD_FAILURE();
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("/nonexistent.json"), std::string::npos);
  }
}

// O10 a: without compressed dims the cache stays exact and equals `full` bit for
// bit; a layer without compressed dims does too while other layers compress; and
// prefill (chunked) is exact in every layer (O12 at the policy level).
TEST(Fourier, O10aNoCompressedDimsEqualsFullBitForBit) {
  const Shape s = make_shape(3, 8, 2, 16, 1024);
  FourierDims dims = mixed_dims(s, 7);
  dims.layers[0] = LayerDims{};  // layer 0: nothing compressed
  FourierOptions o = small_opts(4, 16, 16);
  FourierCache none(s, o, no_compressed_dims(s));
  FourierCache mixed(s, o, dims);
  FullCache full(s);
  for (Policy* p : {static_cast<Policy*>(&none), static_cast<Policy*>(&mixed), static_cast<Policy*>(&full)})
    p->plan(120, 30);
  std::mt19937 rng(1);
  int step = 0;
  for (int64_t n : {50, 50, 20, 1, 1, 1, 1, 1, 1, 1, 1}) {
    const Step st = random_step(s, n, rng);
    const auto a = run(none, st), b = run(mixed, st), f = run(full, st);
    for (int l = 0; l < s.n_layers; ++l) {
      EXPECT_EQ(std::memcmp(a[l].data(), f[l].data(), a[l].size() * 4), 0) << "dims=none, step " << step;
      if (l == 0 || step < 3) {
        EXPECT_EQ(std::memcmp(b[l].data(), f[l].data(), b[l].size() * 4), 0) << "layer " << l << " step " << step;
      }
    }
    ++step;
  }
  EXPECT_FALSE(none.compressed());
  EXPECT_TRUE(mixed.compressed());
  EXPECT_FALSE(mixed.segments(0).compressed);
  EXPECT_TRUE(mixed.segments(1).compressed);
}

// O10 b: compressed dims whose middle signal lies in the span of the N
// frequencies over a whole period (K_mid = T) give full attention to fp tolerance.
TEST(Fourier, O10bInSpanMiddleEqualsFull) {
  const Shape s = make_shape(1, 4, 2, 8, 256);
  const int64_t sink = 4, window = 16, T = 64, P = sink + (T - 1) + window;  // L_mid = T-1 after the prompt
  const int N = 8;
  FourierDims dims;
  dims.n_layers = 1;
  dims.kv_dim = 16;
  dims.layers.resize(1);
  dims.layers[0].k_compressed = {0, 1, 2, 5, 8, 9, 10, 11, 12, 13, 14, 15};  // head 1: all K dims
  dims.layers[0].v_compressed = {1, 3, 4, 6, 7, 8, 12};
  std::mt19937 rng(3);
  std::normal_distribution<float> nd;
  Step prompt = random_step(s, P, rng, 0.5f);
  // Middle token l (position sink + l, l < T): compressed dim value x(l) = y(l) - y(T-1)
  // with y in the span, so the token evicted at the decode step (l = T-1) holds 0
  // there and the prompt's zero-padded transform is the full-period one.
  for (int g = 0; g < 16; ++g) {
    std::vector<double> a(N), b(N);
    for (int n = 0; n < N; ++n) a[n] = nd(rng), b[n] = n ? nd(rng) : 0.0;
    const double last = spectral::eval_trig_direct(a.data(), b.data(), N, T, T - 1);
    for (int64_t l = 0; l < T; ++l) {
      const float x = static_cast<float>(spectral::eval_trig_direct(a.data(), b.data(), N, T, l) - last);
      prompt.k[0][(sink + l) * 16 + g] = x;
      prompt.v[0][(sink + l) * 16 + g] = x;
    }
  }
  for (auto mode : {FourierAttentionMode::Spectral, FourierAttentionMode::Direct}) {
    FourierOptions o = small_opts(sink, window, 2 * N);
    o.smooth_period = false;
    o.attention = mode;
    FourierCache fc(s, o, dims);
    FullCache full(s);
    fc.plan(P, 1);
    full.plan(P, 1);
    run(fc, prompt, false);
    run(full, prompt, false);
    ASSERT_TRUE(fc.compressed());
    EXPECT_EQ(fc.segments(0).period, T);
    std::mt19937 r2(9);
    const Step dec = random_step(s, 1, r2);
    const auto a = run(fc, dec), f = run(full, dec);
    EXPECT_EQ(fc.segments(0).middle, T);
    EXPECT_LT(rel_diff(a, f), 2e-5) << (mode == FourierAttentionMode::Spectral ? "spectral" : "direct");
    for (int64_t l = 0; l < T; l += 7) {  // the reconstruction itself is exact
      const auto rec = fc.reconstruct(0, 1, false, l);
      for (int d = 0; d < 8; ++d) EXPECT_NEAR(rec[d], prompt.k[0][(sink + l) * 16 + 8 + d], 1e-4);
    }
  }
}

// O10 d: spectral-domain attention equals direct reconstruction on random inputs,
// GQA groups 1/2/4, degenerate heads, decode steps of 1 and several tokens
// (including more tokens than the window), compat on and off, 16-bit coefficients.
TEST(Fourier, O10dSpectralEqualsDirect) {
  struct Case {
    int heads, kv, hd;
    Options extra;
  };
  const std::vector<Case> cases = {
      {4, 4, 8, {}},
      {4, 2, 16, {}},
      {8, 2, 8, {{"compat", "reference"}}},
      {8, 2, 16, {{"coeff_dtype", "f16"}, {"stats_dtype", "f16"}}},
      {4, 1, 8, {{"coeff_dtype", "bf16"}, {"period", "exact"}}},
  };
  for (const auto& c : cases) {
    const Shape s = make_shape(2, c.heads, c.kv, c.hd, 512);
    const FourierDims dims = mixed_dims(s, 11);
    Options base = {{"sink", "3"}, {"window", "8"}, {"coeffs", "12"}};
    for (const auto& [k, v] : c.extra) base[k] = v;
    Options od = base;
    od["attention"] = "direct";
    FourierCache spec(s, FourierOptions::parse(base), dims), dir(s, FourierOptions::parse(od), dims);
    spec.plan(60, 12);
    dir.plan(60, 12);
    std::mt19937 rng(c.heads * 100 + c.hd);
    run(spec, random_step(s, 60, rng), false);
    std::mt19937 rng2(c.heads * 100 + c.hd);
    run(dir, random_step(s, 60, rng2), false);
    ASSERT_TRUE(spec.compressed());
    double worst = 0;
    for (int64_t n : {1, 1, 3, 1, 11, 1}) {
      const Step st = random_step(s, n, rng);
      const auto a = run(spec, st), b = run(dir, st);
      worst = std::max(worst, rel_diff(a, b));
    }
    EXPECT_LT(worst, 1e-5) << "heads " << c.heads << " kv " << c.kv << " hd " << c.hd;
  }
}

// A KV head without compressed dims attends exactly: its query heads match
// full attention even though the layer is compressed.
TEST(Fourier, DegenerateHeadsAttendExactly) {
  const Shape s = make_shape(1, 4, 2, 8, 512);
  FourierDims dims;
  dims.n_layers = 1;
  dims.kv_dim = 16;
  dims.layers.resize(1);
  for (int g = 8; g < 16; ++g) dims.layers[0].k_compressed.push_back(g), dims.layers[0].v_compressed.push_back(g);
  FourierCache fc(s, small_opts(4, 8, 8), dims);
  FullCache full(s);
  std::mt19937 rng(5);
  const Step p = random_step(s, 40, rng);
  run(fc, p, false);
  run(full, p, false);
  ASSERT_TRUE(fc.compressed());
  for (int i = 0; i < 4; ++i) {
    const Step st = random_step(s, 1, rng);
    const auto a = run(fc, st), f = run(full, st);
    // Query heads 0, 1 read KV head 0 (exact); heads 2, 3 read the compressed head 1.
    const std::vector<float> a0(a[0].begin(), a[0].begin() + 16), f0(f[0].begin(), f[0].begin() + 16);
    EXPECT_LT(rel_diff(a0, f0), 1e-5);
  }
}

// O5 at the policy level: prefill FFT + rank-1 updates = batch transform of the
// whole middle (true positions); compat=reference is off by one (and uses
// int(1/(1/T)) = 92 for T = 93).
TEST(Fourier, O5CoefficientsEqualBatchTransform) {
  const Shape s = make_shape(1, 2, 1, 8, 512);
  const int64_t sink = 4, window = 8, P = 82, max_new = 23, J = 6;  // T = 82 + 23 - 12 = 93
  FourierDims dims = default_fourier_dims(s, RopeLayout::Half);
  for (bool compat : {false, true}) {
    FourierOptions o = small_opts(sink, window, 16);
    o.smooth_period = false;
    o.compat_reference = compat;
    FourierCache fc(s, o, dims);
    fc.plan(P, max_new);
    std::mt19937 rng(8);
    std::vector<float> keys;  // all tokens' K rows [t][8]
    const Step p = random_step(s, P, rng);
    keys = p.k[0];
    run(fc, p, false);
    for (int j = 0; j < J; ++j) {
      const Step st = random_step(s, 1, rng);
      keys.insert(keys.end(), st.k[0].begin(), st.k[0].end());
      run(fc, st);
    }
    const auto seg = fc.segments(0);
    EXPECT_EQ(seg.period, 93);
    EXPECT_EQ(seg.fft_period, compat ? 92 : 93);
    const int64_t K = seg.middle;
    EXPECT_EQ(K, P - sink - window + J);
    const std::vector<int> kc = split_heads(dims.layers[0], 1, 8)[0].kc;
    const auto coef = fc.coefficients(0, 0, false);
    const int N = 8, cols = static_cast<int>(kc.size());
    double worst = 0, mag = 0;
    for (int j = 0; j < cols; ++j) {
      std::vector<double> c(N, 0.0), sn(N, 0.0);
      // Expected: true positions with T; compat: prompt middle by FFT of length 92,
      // then the evicted tokens at one past their index.
      const int64_t K0 = compat ? P - sink - window : K;
      spectral::coefficients_direct(keys.data() + sink * 8 + kc[j], K0, 8, 0, seg.fft_period, N, c.data(), sn.data());
      if (compat)
        for (int64_t t = K0; t < K; ++t)
          spectral::coefficients_direct(keys.data() + (sink + t) * 8 + kc[j], 1, 8, t + 1, 92, N, c.data(), sn.data());
      for (int n = 0; n < N; ++n) {
        worst = std::max({worst, std::abs(coef[n * cols + j] - c[n]), std::abs(coef[(N + n) * cols + j] - sn[n])});
        mag = std::max({mag, std::abs(c[n]), std::abs(sn[n])});
      }
    }
    EXPECT_LT(worst / mag, 1e-5) << (compat ? "compat" : "default");
  }
}

// O7: segment invariants with the Triton defaults (sink 4, window 1020, M 1024).
TEST(Fourier, O7SegmentInvariants) {
  const Shape s = make_shape(1, 2, 1, 8, 16384);
  auto opts = [](bool compat) {
    FourierOptions o = small_opts(4, 1020, 1024);
    o.compat_reference = compat;
    o.smooth_period = false;
    return o;
  };
  std::mt19937 rng(7);
  {
    FourierCache fc(s, opts(true));
    fc.plan(10000, 500);
    run(fc, random_step(s, 10000, rng), false);
    auto g = fc.segments(0);
    EXPECT_TRUE(g.compressed);
    EXPECT_EQ(g.sinks, 4);
    EXPECT_EQ(g.local, 1020);
    EXPECT_EQ(g.middle, 8976);
    EXPECT_EQ(g.coeff_rows, 1024);
    EXPECT_EQ(g.period, 9476);
    const size_t nc = fc.dims().layers[0].k_compressed.size() + fc.dims().layers[0].v_compressed.size();
    EXPECT_EQ(fc.bytes().at("coefficients"), nc * 1024 * 4);
    for (int t = 1; t <= 3; ++t) {
      run(fc, random_step(s, 1, rng));
      g = fc.segments(0);
      EXPECT_EQ(g.middle, 8976 + t);
      EXPECT_EQ(g.local, 1020);
      EXPECT_EQ(g.coeff_rows, 1024);
    }
  }
  for (bool compat : {true, false}) {
    for (int64_t P : {2048, 2049}) {
      FourierCache fc(s, opts(compat));
      fc.plan(P, 100);
      run(fc, random_step(s, P, rng), false);
      EXPECT_EQ(fc.compressed(), P == 2049) << P;
      if (P == 2049) {
        EXPECT_EQ(fc.segments(0).middle, 1025);
      }
      for (int t = 0; t < 3; ++t) run(fc, random_step(s, 1, rng));
      // Reference: a short prompt is never compressed. Ours: the first decode step
      // takes the middle to 1025 > M and compresses it, with T from the plan.
      if (P == 2048) {
        EXPECT_EQ(fc.compressed(), !compat);
        const auto g = fc.segments(0);
        if (!compat) {
          EXPECT_EQ(g.middle, 1025 + 2);
          EXPECT_EQ(g.period, 2048 + 100 - 1024);
        } else {
          EXPECT_EQ(g.local, 2051 - 4);
        }
      }
    }
  }
}

// O11: spec §8's totals with the shipped splithead dims (fp16 exact, fp32
// coefficients, fp16 statistics; index lists reported separately).
TEST(Fourier, O11MemoryTable) {
  struct Row {
    int64_t L;
    double full3, fa3, full8, fa8;
  };
  const std::vector<Row> table = {{4096, 448, 363.1, 512, 414.3},
                                  {16384, 1792, 685.1, 2048, 774.8},
                                  {32768, 3584, 1114.5, 4096, 1255.4},
                                  {65536, 7168, 1973.2, 8192, 2216.7},
                                  {131072, 14336, 3690.7, 16384, 4139.2}};
  const char* files[] = {
      "data/fourierattention-dims/llama3.2-3b-fourier/compressed_dims_32k_1024states_splithead.json",
      "data/fourierattention-dims/llama3.1-8b-fourier/compressed_dims_32k_1024states_splithead.json"};
  HARMONIA_REQUIRE_SHARED(files[0]);
  HARMONIA_REQUIRE_SHARED(files[1]);
  FourierMemoryParams p;
  p.sink = 4;
  p.window = 1020;
  p.coeffs = 1024;
  p.exact_bytes = 2;
  p.coeff_bytes = 4;
  p.stats_bytes = 2;
  p.index_bytes = 8;  // the reference's int64 lists
  const double MiB = 1024.0 * 1024.0;
  for (int m = 0; m < 2; ++m) {
    const Shape s = make_shape(m == 0 ? 28 : 32, m == 0 ? 24 : 32, 8, 128, 131072);
    const FourierDims d = load_fourier_dims(shared_path(files[m]), s, RopeLayout::Half);
    for (const Row& r : table) {
      const FourierMemory fm = fourier_memory(s, d, p, r.L, true);
      const double full = 2.0 * r.L * 1024 * 2 * s.n_layers / MiB;
      EXPECT_NEAR(full, m == 0 ? r.full3 : r.full8, 1e-9);
      EXPECT_NEAR((fm.total() - fm.indices) / MiB, m == 0 ? r.fa3 : r.fa8, 0.05) << "L " << r.L;
      EXPECT_EQ(fm.indices, static_cast<size_t>(s.n_layers) * 2 * 1024 * 8);
    }
    const FourierMemory at32k = fourier_memory(s, d, p, 32768, true);
    std::printf("[ O11 ] %s at 32k: %.1f MiB (+%.2f MiB int64 index lists) vs full %.0f MiB\n", m == 0 ? "3B" : "8B",
                (at32k.total() - at32k.indices) / MiB, at32k.indices / MiB, 2.0 * 32768 * 1024 * 2 * s.n_layers / MiB);
  }
}

// bytes() equals bytes_at() after the prompt and what the containers hold, in
// every state; 16-bit coefficients take 2*M bytes per compressed dim.
TEST(Fourier, BytesMatchHeldAndPlanned) {
  const Shape s = make_shape(2, 4, 2, 8, 1024);
  for (const char* dt : {"f32", "f16", "bf16"}) {
    for (int64_t P : {20, 40, 100}) {
      Options o = {{"sink", "4"}, {"window", "8"}, {"coeffs", "16"}, {"coeff_dtype", dt}, {"stats_dtype", dt}};
      FourierCache fc(s, FourierOptions::parse(o));
      fc.plan(P, 20);
      std::mt19937 rng(static_cast<uint32_t>(P));
      run(fc, random_step(s, P, rng), false);
      EXPECT_EQ(fc.bytes(), fc.bytes_at(P)) << dt << " P " << P;
      EXPECT_EQ(fc.bytes(), fc.held_bytes()) << dt << " P " << P;
      size_t per_layer = 0;
      for (const auto& l : fc.layer_bytes_at(P)) per_layer += ledger_total(l);
      EXPECT_EQ(per_layer, ledger_total(fc.bytes_at(P)));
      for (int t = 0; t < 12; ++t) {
        run(fc, random_step(s, 1, rng));
        EXPECT_EQ(fc.bytes(), fc.held_bytes()) << dt << " P " << P << " step " << t;
      }
      EXPECT_TRUE(fc.compressed());
      size_t nc = 0;
      for (const auto& l : fc.dims().layers) nc += l.k_compressed.size() + l.v_compressed.size();
      EXPECT_EQ(fc.bytes().at("coefficients"), nc * 16 * (std::string(dt) == "f32" ? 4 : 2));
      EXPECT_EQ(fc.bytes().at("statistics"), nc * 3 * (std::string(dt) == "f32" ? 4 : 2));
    }
  }
}

// Past T the period is re-anchored (doubled), nothing wraps, and the two
// attention forms still agree; compat=reference wraps as the authors' code does.
TEST(Fourier, ReanchorsInsteadOfWrapping) {
  const Shape s = make_shape(2, 4, 2, 8, 1024);
  const FourierDims dims = mixed_dims(s, 3);
  for (bool compat : {false, true}) {
    Options o = {{"sink", "2"}, {"window", "4"}, {"coeffs", "8"}, {"period", "exact"}};
    if (compat) o["compat"] = "reference";
    Options od = o;
    od["attention"] = "direct";
    FourierCache fc(s, FourierOptions::parse(o), dims), dir(s, FourierOptions::parse(od), dims);
    fc.plan(30, 2);  // T = 30 + 2 - 6 = 26, middle 24 after the prompt
    dir.plan(30, 2);
    std::mt19937 rng(21), rng2(21);
    run(fc, random_step(s, 30, rng), false);
    run(dir, random_step(s, 30, rng2), false);
    EXPECT_EQ(fc.segments(0).period, 26);
    double worst = 0;
    for (int t = 0; t < 40; ++t) {
      const Step st = random_step(s, 1, rng);
      worst = std::max(worst, rel_diff(run(fc, st), run(dir, st)));
      if (!compat) {
        EXPECT_LT(fc.max_position(), fc.segments(0).period) << "step " << t;
      }
    }
    EXPECT_LT(worst, 1e-5);
    const auto g = fc.segments(0);
    EXPECT_EQ(g.middle, 64);
    if (compat) {
      EXPECT_EQ(g.period, 26);
      EXPECT_GE(fc.max_position(), 26) << "the reference's basis wraps past T";
    } else {
      EXPECT_EQ(g.period, 104);  // 26 -> 52 -> 104
    }
  }
}

// Re-anchoring keeps the reconstruction of a smooth middle close.
TEST(Fourier, ReanchorPreservesSmoothSignals) {
  const Shape s = make_shape(1, 1, 1, 2, 4096);
  FourierDims dims;
  dims.n_layers = 1;
  dims.kv_dim = 2;
  dims.layers.resize(1);
  dims.layers[0].k_compressed = {0};
  FourierOptions o = small_opts(1, 4, 64);
  o.smooth_period = false;
  FourierCache fc(s, o, dims);
  const int64_t P = 205;  // middle 200, T = 200 + 1 -> re-anchors at the second decode step
  fc.plan(P, 1);
  auto signal = [](int64_t t) { return static_cast<float>(std::sin(0.02 * t) + 0.5 * std::cos(0.013 * t)); };
  Step st;
  st.n = P;
  st.k.assign(1, std::vector<float>(P * 2));
  st.v.assign(1, std::vector<float>(P * 2, 0.0f));
  st.q.assign(1, std::vector<float>(P * 2, 0.0f));
  for (int64_t t = 0; t < P; ++t) st.k[0][t * 2] = signal(t);
  run(fc, st, false);
  std::vector<float> before;
  for (int64_t l = 0; l < 200; ++l) before.push_back(fc.reconstruct(0, 0, false, l)[0]);
  for (int64_t t = P; t < P + 3; ++t) {
    Step d;
    d.n = 1;
    d.k.assign(1, {signal(t), 0.0f});
    d.v.assign(1, {0.0f, 0.0f});
    d.q.assign(1, {0.1f, 0.0f});
    run(fc, d);
  }
  EXPECT_EQ(fc.segments(0).period, 402);
  // The reconstruction (affine-matched truncated series; it rings near the ends
  // of the middle) stays close to the signal, and re-anchoring changes it little.
  double e_before = 0, e_change = 0, energy = 0;
  for (int64_t l = 10; l < 190; ++l) {
    const double x = signal(1 + l), r = fc.reconstruct(0, 0, false, l)[0];
    e_before += (before[l] - x) * (before[l] - x);
    e_change += (r - before[l]) * (r - before[l]);
    energy += x * x;
  }
  EXPECT_LT(std::sqrt(e_before / energy), 0.05);
  EXPECT_LT(std::sqrt(e_change / energy), 0.05);
}

// truncate() undoes the last evictions (speculative decoding's rejected tokens);
// beyond the log, or before compression, it throws Unsupported.
TEST(Fourier, TruncateRollsBackEvictions) {
  const Shape s = make_shape(2, 4, 2, 8, 512);
  const FourierDims dims = mixed_dims(s, 5);
  Options o = {{"sink", "3"}, {"window", "6"}, {"coeffs", "8"}, {"rollback", "4"}};
  FourierCache a(s, FourierOptions::parse(o), dims), b(s, FourierOptions::parse(o), dims);
  a.plan(40, 30);
  b.plan(40, 30);
  std::mt19937 rng(17);
  const Step p = random_step(s, 40, rng);
  run(a, p, false);
  run(b, p, false);
  const Step d1 = random_step(s, 1, rng);
  run(a, d1);
  run(b, d1);
  const auto coef = a.coefficients(1, 0, true);
  const Step spec = random_step(s, 3, rng);  // rejected draft
  run(a, spec);
  a.truncate(a.n_tokens() - 3);
  EXPECT_EQ(a.n_tokens(), b.n_tokens());
  EXPECT_EQ(a.segments(1).middle, b.segments(1).middle);
  EXPECT_EQ(a.bytes(), b.bytes());
  EXPECT_LT(rel_diff(a.coefficients(1, 0, true), coef), 1e-5);
  for (int t = 0; t < 3; ++t) {
    const Step st = random_step(s, 1, rng);
    EXPECT_LT(rel_diff(run(a, st), run(b, st)), 1e-5);
  }
  try {
    run(a, random_step(s, 5, rng));
    a.truncate(a.n_tokens() - 5);
    ADD_FAILURE() << "5 > rollback=4";
  } catch (const Error& e) {
    EXPECT_EQ(e.kind(), ErrorKind::Unsupported);
  }
  try {
    a.truncate(10);
    ADD_FAILURE();
  } catch (const Error& e) {
    EXPECT_EQ(e.kind(), ErrorKind::Unsupported);
  }
}

// period=aligned: T is the smallest multiple of Q (power of two >= max(N, 32)) >= the planned T, also
// after re-anchoring; the cache is otherwise the exact-period cache with that T (same outputs, bit for bit).
TEST(Fourier, AlignedPeriod) {
  EXPECT_EQ(fourier_aligned_quantum(16), 32);
  EXPECT_EQ(fourier_aligned_quantum(512), 512);
  EXPECT_EQ(fourier_aligned_quantum(513), 1024);
  EXPECT_EQ(aligned_period(130044, 512), 130048);
  EXPECT_EQ(aligned_period(1024, 512), 1024);
  EXPECT_EQ(aligned_period(1, 32), 32);
  const FourierOptions a = FourierOptions::parse({{"period", "aligned"}});
  EXPECT_TRUE(a.aligned_period);
  EXPECT_FALSE(a.smooth_period);
  try {
    FourierOptions::parse({{"compat", "reference"}, {"period", "aligned"}});
    ADD_FAILURE() << "period=aligned with compat=reference";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("period=aligned contradicts"), std::string::npos) << e.what();
  }

  const Shape s = make_shape(2, 4, 2, 8, 600);
  FourierOptions o = small_opts(4, 8, 64);  // N = 32: Q = 32
  o.aligned_period = true;
  o.smooth_period = false;
  FourierOptions e = small_opts(4, 8, 64);
  e.smooth_period = false;
  FourierCache fa(s, o, mixed_dims(s, 5)), fe(s, e, mixed_dims(s, 5));
  fa.plan(150, 40);       // planned T = 150 + 40 - 12 = 178 -> 192
  fe.plan(150, 40 + 14);  // the exact period 192
  std::mt19937 rng(17);
  const Step prompt = random_step(s, 150, rng);
  EXPECT_EQ(rel_diff(run(fa, prompt), run(fe, prompt)), 0.0);
  int layer = 0;
  while (!fa.segments(layer).compressed) ++layer;
  EXPECT_EQ(fa.segments(layer).period, 192);
  EXPECT_EQ(fe.segments(layer).period, 192);
  // 70 decode steps: the middle passes T = 192 and both re-anchor to min(2T, 600 - 12) = 384.
  for (int t = 0; t < 70; ++t) {
    const Step st = random_step(s, 1, rng);
    ASSERT_EQ(rel_diff(run(fa, st), run(fe, st)), 0.0) << "decode step " << t;
  }
  EXPECT_EQ(fa.segments(layer).period, 384);
  EXPECT_EQ(fa.segments(layer).period % fourier_aligned_quantum(32), 0);
  EXPECT_GE(fa.segments(layer).period, fa.segments(layer).middle);
}

// Without plan(), a multi-token step is the prompt and T spans the context.
TEST(Fourier, UnplannedPromptUsesTheContext) {
  const Shape s = make_shape(1, 2, 1, 8, 300);
  FourierCache fc(s, small_opts(4, 8, 16));
  std::mt19937 rng(2);
  run(fc, random_step(s, 50, rng), false);
  ASSERT_TRUE(fc.compressed());
  EXPECT_EQ(fc.segments(0).period, spectral::smooth_period(300 - 12));
  FourierOptions o = small_opts(4, 8, 16);
  o.max_new = 10;
  o.smooth_period = false;
  FourierCache fm(s, o);
  fm.plan(50, 200);  // the option wins over the plan (README runs: max_new=500)
  run(fm, random_step(s, 50, rng), false);
  EXPECT_EQ(fm.segments(0).period, 50 + 10 - 12);
}
