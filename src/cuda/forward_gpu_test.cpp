// The GPU forward pass against the CPU: each kernel (src/cuda/forward_kernels.h)
// against a plain fp32/double reference on random inputs of several shapes, and
// cuda::GpuForward against the CPU Forward: greedy tokens on the shared models
// (f32 weights and KV: the same ids), logits within stated tolerances (bf16),
// the Qwen2 (bias) and Qwen3 (q/k norm) variants on random tiny models, and the
// FourierAttention cache (use_fourier) against kv::FourierCache (same greedy ids). Every
// test skips with a message where no CUDA device is present (CI).
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <random>
#include <vector>

#include "common/error.h"
#include "common/fp16.h"
#include "common/testing.h"
#include "cuda/forward_gpu.h"
#include "cuda/forward_kernels.h"
#include "cuda/runtime.h"
#include "cuda/testing.h"
#include "kv/fourier.h"
#include "kv/policy.h"
#include "model/forward.h"
#include "model/presets.h"

using namespace harmonia;
using cuda::fwd::Elem;

namespace {

using cuda::testing::rel_err;

std::vector<float> randn(size_t n, std::mt19937& rng, float scale = 1.0f) {
  std::normal_distribution<float> nd;
  std::vector<float> v(n);
  for (auto& x : v) x = scale * nd(rng);
  return v;
}

// Values exactly representable in t (bf16: rounded), so both sides see the same inputs.
std::vector<float> rounded(std::vector<float> v, Elem t) {
  if (t == Elem::BF16)
    for (auto& x : v) x = bf16_to_f32(f32_to_bf16(x));
  return v;
}

// A device copy of v stored as t.
cuda::DeviceBuffer upload(const std::vector<float>& v, Elem t) {
  cuda::DeviceBuffer d(std::max<size_t>(v.size(), 1) * cuda::fwd::elem_bytes(t));
  if (t == Elem::F32) {
    cuda::to_device(d.get(), v.data(), v.size() * 4);
  } else {
    std::vector<uint16_t> h(v.size());
    for (size_t i = 0; i < v.size(); ++i) h[i] = f32_to_bf16(v[i]);
    cuda::to_device(d.get(), h.data(), h.size() * 2);
  }
  return d;
}

std::vector<float> download(const cuda::DeviceBuffer& d, size_t n, Elem t) {
  std::vector<float> v(n);
  cuda::synchronize();
  if (t == Elem::F32) {
    cuda::to_host(v.data(), d.get(), n * 4);
  } else {
    std::vector<uint16_t> h(n);
    cuda::to_host(h.data(), d.get(), n * 2);
    for (size_t i = 0; i < n; ++i) v[i] = bf16_to_f32(h[i]);
  }
  return v;
}

const char* name(Elem t) { return t == Elem::F32 ? "f32" : "bf16"; }
double tol(Elem t) { return t == Elem::F32 ? 1e-4 : 1e-2; }

}  // namespace

// ---- Kernels ----------------------------------------------------------------------------

TEST(CudaForwardKernels, EmbedRmsnormSwigluConvert) {
  REQUIRE_GPU();
  std::mt19937 rng(7);
  for (Elem t : {Elem::F32, Elem::BF16})
    for (int dim : {64, 128, 1000, 4096}) {
      const int n = 5, vocab = 37, F = dim + 24;
      SCOPED_TRACE(std::string(name(t)) + " dim " + std::to_string(dim));
      // embed
      const std::vector<float> table = rounded(randn(static_cast<size_t>(vocab) * dim, rng), t);
      const std::vector<int> tok = {3, 0, 36, 3, 17};
      auto dtab = upload(table, t);
      cuda::DeviceBuffer dtok(n * 4), dx(static_cast<size_t>(n) * dim * 4);
      cuda::to_device(dtok.get(), tok.data(), n * 4);
      cuda::fwd::embed(dtok.as<int>(), n, dtab.get(), t, dim, dx.as<float>());
      std::vector<float> ref(static_cast<size_t>(n) * dim);
      for (int i = 0; i < n; ++i) std::copy_n(table.begin() + tok[i] * dim, dim, ref.begin() + i * dim);
      EXPECT_EQ(download(dx, ref.size(), Elem::F32), ref);
      // rmsnorm (rows read with a stride of dim + 3)
      const int64_t stride = dim + 3;
      const std::vector<float> x = randn(static_cast<size_t>(n * stride), rng, 3.0f), w = randn(dim, rng);
      auto dxs = upload(x, Elem::F32), dw = upload(w, Elem::F32);
      cuda::DeviceBuffer dout(static_cast<size_t>(n) * dim * 4);
      cuda::fwd::rmsnorm(dxs.as<float>(), n, stride, dim, dw.as<float>(), 1e-5f, dout.get(), t);
      for (int i = 0; i < n; ++i) {
        double ss = 0;
        for (int d = 0; d < dim; ++d) ss += double(x[i * stride + d]) * x[i * stride + d];
        const double r = 1.0 / std::sqrt(ss / dim + 1e-5);
        for (int d = 0; d < dim; ++d) ref[i * dim + d] = static_cast<float>(x[i * stride + d] * r * w[d]);
      }
      EXPECT_LE(rel_err(download(dout, ref.size(), t), ref), tol(t)) << "rmsnorm";
      // swiglu
      const std::vector<float> gu = randn(static_cast<size_t>(n) * 2 * F, rng, 4.0f);
      auto dgu = upload(gu, Elem::F32);
      cuda::DeviceBuffer dh(static_cast<size_t>(n) * F * 4);
      cuda::fwd::swiglu(dgu.as<float>(), n, F, dh.get(), t);
      std::vector<float> href(static_cast<size_t>(n) * F);
      for (int i = 0; i < n; ++i)
        for (int j = 0; j < F; ++j) {
          const double g = gu[i * 2 * F + j], u = gu[i * 2 * F + F + j];
          href[i * F + j] = static_cast<float>(g / (1.0 + std::exp(-g)) * u);
        }
      EXPECT_LE(rel_err(download(dh, href.size(), t), href), tol(t)) << "swiglu";
      // convert (the first n * F values of gu: dh holds n * F)
      cuda::fwd::convert(dgu.as<float>(), n * F, dh.get(), t);
      EXPECT_LE(rel_err(download(dh, href.size(), t), std::vector<float>(gu.begin(), gu.begin() + href.size())),
                t == Elem::F32 ? 0.0 : 4e-3)
          << "convert";
    }
}

TEST(CudaForwardKernels, ArgmaxTiesToLowestIndex) {
  REQUIRE_GPU();
  std::mt19937 rng(3);
  for (int n : {1, 31, 512, 32000, 151936}) {
    std::vector<float> x = randn(static_cast<size_t>(n), rng);
    const int a = n / 3, b = n - 1;
    x[a] = x[b] = 100.0f;  // a tie: the lower index wins
    if (n > 2) x[n / 2] = std::nanf("");
    auto dx = upload(x, Elem::F32);
    cuda::DeviceBuffer did(4);
    cuda::fwd::argmax(dx.as<float>(), n, did.as<int>());
    int id = -1;
    cuda::to_host(&id, did.get(), 4);
    EXPECT_EQ(id, std::min(a, b)) << "n " << n;
  }
}

struct AttnCase {
  int heads, kv_heads, hd;
  int64_t n, pos0;
  bool interleaved, bias, qk_norm;
};

class CudaForwardAttention : public ::testing::TestWithParam<AttnCase> {};

void PrintTo(const AttnCase& c, std::ostream* os) {
  *os << c.heads << "/" << c.kv_heads << " heads, head_dim " << c.hd << ", " << c.n << " queries at " << c.pos0
      << (c.interleaved ? ", interleaved" : ", half") << (c.bias ? ", bias" : "") << (c.qk_norm ? ", qk_norm" : "");
}

// qkv_post (bias, q/k norm, RoPE) against Rope::apply, then store_kv + prefill_attention
// against double-precision causal attention over the same cache.
TEST_P(CudaForwardAttention, QkvPostAndCausalAttentionMatchCpu) {
  REQUIRE_GPU();
  const AttnCase& c = GetParam();
  const cuda::fwd::QkvShape s{c.heads, c.kv_heads, c.hd};
  const int64_t n = c.n, stride = s.stride(), QD = c.heads * c.hd, KVD = c.kv_heads * c.hd;
  const int64_t cap = c.pos0 + n + 5;
  std::mt19937 rng(11 + c.hd + static_cast<int>(n));
  RopeConfig rc;
  rc.style = c.interleaved ? RopeConfig::Style::Interleaved : RopeConfig::Style::Half;
  rc.n_rot = c.hd;
  rc.theta = 10000.0;
  const Rope rope(rc);
  const int half = c.hd / 2;
  std::vector<float> cs(static_cast<size_t>(cap * half)), sn(cs.size());
  for (int64_t p = 0; p < cap; ++p) rope.cos_sin(p, p + 1, cs.data() + p * half, sn.data() + p * half);

  std::vector<float> qkv = randn(static_cast<size_t>(n * stride), rng);
  const std::vector<float> bias = c.bias ? randn(static_cast<size_t>(stride), rng, 0.5f) : std::vector<float>();
  const std::vector<float> qn = c.qk_norm ? randn(c.hd, rng) : std::vector<float>(),
                           kn = c.qk_norm ? randn(c.hd, rng) : std::vector<float>();
  // CPU reference of qkv_post.
  std::vector<float> ref = qkv;
  for (int64_t i = 0; i < n; ++i) {
    float* r = ref.data() + i * stride;
    if (c.bias)
      for (int64_t j = 0; j < stride; ++j) r[j] += bias[j];
    auto norm = [&](float* h, const std::vector<float>& w) {
      double ss = 0;
      for (int d = 0; d < c.hd; ++d) ss += double(h[d]) * h[d];
      const float rr = 1.0f / std::sqrt(static_cast<float>(ss / c.hd) + 1e-6f);
      for (int d = 0; d < c.hd; ++d) h[d] = h[d] * rr * w[d];
    };
    if (c.qk_norm) {
      for (int h = 0; h < c.heads; ++h) norm(r + h * c.hd, qn);
      for (int h = 0; h < c.kv_heads; ++h) norm(r + QD + h * c.hd, kn);
    }
    rope.apply(r, c.heads, c.hd, c.pos0 + i);
    rope.apply(r + QD, c.kv_heads, c.hd, c.pos0 + i);
  }
  auto dqkv = upload(qkv, Elem::F32), dcs = upload(cs, Elem::F32), dsn = upload(sn, Elem::F32);
  auto db = upload(bias, Elem::F32), dqn = upload(qn, Elem::F32), dkn = upload(kn, Elem::F32);
  cuda::fwd::qkv_post(dqkv.as<float>(), n, s, c.bias ? db.as<float>() : nullptr, c.qk_norm ? dqn.as<float>() : nullptr,
                      c.qk_norm ? dkn.as<float>() : nullptr, 1e-6f, dcs.as<float>(), dsn.as<float>(), c.pos0, c.hd,
                      c.interleaved);
  const std::vector<float> got = download(dqkv, qkv.size(), Elem::F32);
  EXPECT_LE(rel_err(got, ref), 1e-5) << "qkv_post";

  for (Elem kt : {Elem::F32, Elem::BF16})
    for (Elem ot : {Elem::F32, Elem::BF16}) {
      SCOPED_TRACE(std::string("kv ") + name(kt) + ", out " + name(ot));
      // Cache rows 0 .. pos0-1 random, pos0 .. pos0+n-1 from the step (store_kv), all rounded to kt.
      std::vector<float> K = rounded(randn(static_cast<size_t>(c.kv_heads * cap * c.hd), rng), kt);
      std::vector<float> V = rounded(randn(K.size(), rng), kt);
      auto dk = upload(K, kt), dv = upload(V, kt);
      cuda::fwd::store_kv(dqkv.as<float>(), n, s, dk.get(), dv.get(), kt, cap, c.pos0);
      for (int64_t i = 0; i < n; ++i)
        for (int h = 0; h < c.kv_heads; ++h)
          for (int d = 0; d < c.hd; ++d) {
            const size_t at = (static_cast<size_t>(h) * cap + c.pos0 + i) * c.hd + d;
            K[at] = rounded({got[i * stride + QD + h * c.hd + d]}, kt)[0];
            V[at] = rounded({got[i * stride + QD + KVD + h * c.hd + d]}, kt)[0];
          }
      EXPECT_EQ(download(dk, K.size(), kt), K) << "store_kv keys";
      cuda::DeviceBuffer dout(static_cast<size_t>(n * QD) * 4);
      cuda::fwd::prefill_attention(dqkv.as<float>(), n, s, dk.get(), dv.get(), kt, cap, c.pos0, dout.get(), ot);
      std::vector<float> aref(static_cast<size_t>(n * QD));
      const int G = c.heads / c.kv_heads;
      for (int64_t i = 0; i < n; ++i)
        for (int h = 0; h < c.heads; ++h) {
          const int kh = h / G;
          const float* q = got.data() + i * stride + h * c.hd;
          const int64_t T = c.pos0 + i + 1;
          std::vector<double> sc(static_cast<size_t>(T));
          double mx = -1e300;
          for (int64_t t = 0; t < T; ++t) {
            double dot = 0;
            for (int d = 0; d < c.hd; ++d) dot += double(q[d]) * K[(kh * cap + t) * c.hd + d];
            sc[t] = dot / std::sqrt(double(c.hd));
            mx = std::max(mx, sc[t]);
          }
          double sum = 0;
          for (auto& x : sc) sum += (x = std::exp(x - mx));
          for (int d = 0; d < c.hd; ++d) {
            double a = 0;
            for (int64_t t = 0; t < T; ++t) a += sc[t] * V[(kh * cap + t) * c.hd + d];
            aref[(i * c.heads + h) * c.hd + d] = static_cast<float>(a / sum);
          }
        }
      EXPECT_LE(rel_err(download(dout, aref.size(), ot), aref), tol(ot)) << "prefill attention";
    }
}

INSTANTIATE_TEST_SUITE_P(Shapes, CudaForwardAttention,
                         ::testing::Values(AttnCase{8, 4, 8, 37, 0, true, false, false},     // stories260K
                                           AttnCase{8, 4, 16, 70, 50, false, false, false},  // TinyStories-656K
                                           AttnCase{4, 2, 16, 9, 3, false, true, false},     // tiny-qwen2
                                           AttnCase{4, 2, 32, 33, 0, false, false, true},    // tiny-qwen3
                                           AttnCase{8, 8, 64, 5, 300, true, true, true},
                                           AttnCase{32, 8, 128, 21, 1000, false, false, false},  // Llama-3.1-8B
                                           AttnCase{6, 1, 96, 1, 77, false, false, false}));    // decode, odd dims

// ---- The forward pass -------------------------------------------------------------------

namespace {

int argmax_host(const std::vector<float>& v) {
  return static_cast<int>(std::max_element(v.begin(), v.end()) - v.begin());
}
// Largest minus second-largest logit.
float top2_margin(std::vector<float> v) {
  std::partial_sort(v.begin(), v.begin() + 2, v.end(), std::greater<float>());
  return v[0] - v[1];
}

struct Trace {
  std::vector<int32_t> ids;                // greedy tokens after the prompt
  std::vector<std::vector<float>> logits;  // per step, [vocab]
};

// Greedy decoding of `steps` tokens after `prompt` on the CPU Forward (full policy).
Trace cpu_greedy(const Model& m, const std::vector<int32_t>& prompt, int steps) {
  Forward fw(m);
  auto kv = kv::make_policy("full", kv_shape(m.config, static_cast<int64_t>(prompt.size()) + steps + 1), {});
  Trace t;
  std::vector<float> logits(m.config.vocab_size);
  fw.run(prompt.data(), static_cast<int64_t>(prompt.size()), *kv, logits.data());
  for (int s = 0; s < steps; ++s) {
    t.logits.push_back(logits);
    const int32_t id = argmax_host(logits);
    t.ids.push_back(id);
    fw.run(&id, 1, *kv, logits.data());
  }
  return t;
}

// The same on the GPU: greedy ids from the device argmax, logits copied beside them.
Trace gpu_greedy(const Model& m, const std::vector<int32_t>& prompt, int steps, bool f32) {
  cuda::GpuForwardOptions o;
  o.f32_weights = o.f32_kv = f32;
  o.max_tokens = static_cast<int64_t>(prompt.size()) + steps + 1;
  cuda::GpuForward fw(m, o);
  Trace t;
  std::vector<float> logits(m.config.vocab_size);
  int32_t id = 0;
  fw.run(prompt.data(), static_cast<int64_t>(prompt.size()), logits.data(), &id);
  for (int s = 0; s < steps; ++s) {
    t.logits.push_back(logits);
    t.ids.push_back(id);
    fw.run(&id, 1, logits.data(), &id);
  }
  return t;
}

std::vector<int32_t> prompt_of(const Model& m, int n) {
  std::vector<int32_t> p = {1};
  if (m.tokenizer) {
    p = m.tokenizer->encode("Once upon a time, there was a little girl named Lily. She loved to play outside",
                            m.tokenizer->bos_id() >= 0);
  }
  std::mt19937 rng(5);
  while (static_cast<int>(p.size()) < n) p.push_back(static_cast<int32_t>(rng() % m.config.vocab_size));
  p.resize(static_cast<size_t>(n));
  return p;
}

// f32 weights and KV: every greedy id equals the CPU's; the logits agree to fp32 summation order.
// A prompt of `prompt_len` tokens (prefill kernel), then `steps` decode steps (decode kernel).
void expect_same_greedy(const Model& m, int prompt_len, int steps) {
  const std::vector<int32_t> prompt = prompt_of(m, prompt_len);
  const Trace cpu = cpu_greedy(m, prompt, steps), gpu = gpu_greedy(m, prompt, steps, true);
  double worst = 0;
  int first_diff = -1;
  for (int s = 0; s < steps; ++s) {
    worst = std::max(worst, rel_err(gpu.logits[s], cpu.logits[s]));
    if (first_diff < 0 && gpu.ids[s] != cpu.ids[s]) first_diff = s;
  }
  std::printf("gpu f32 vs cpu, %s: %d prompt + %d greedy tokens, max logit error %.2e (relative to max |logit|)\n",
              m.path.c_str(), prompt_len, steps, worst);
  EXPECT_LE(worst, 1e-4);
  EXPECT_EQ(first_diff, -1) << "first differing step " << first_diff << ": cpu " << cpu.ids[first_diff] << ", gpu "
                            << gpu.ids[first_diff] << ", cpu top-2 margin "
                            << top2_margin(cpu.logits[first_diff]);
  EXPECT_EQ(gpu.ids, cpu.ids);
}

// bf16 weights and KV: logits within 5e-2 of the largest |logit| at every step (each step fed
// the CPU's token, so the two sequences stay the same), and the greedy ids of the first steps
// equal while the CPU's top-2 margin exceeds that error.
void expect_close_bf16(const Model& m, int prompt_len, int steps) {
  const std::vector<int32_t> prompt = prompt_of(m, prompt_len);
  const Trace cpu = cpu_greedy(m, prompt, steps);
  cuda::GpuForwardOptions o;
  o.max_tokens = prompt_len + steps + 1;
  cuda::GpuForward fw(m, o);
  std::vector<float> logits(m.config.vocab_size);
  fw.run(prompt.data(), prompt_len, logits.data(), nullptr);
  double worst = 0;
  int agree = 0, decided = 0;
  for (int s = 0; s < steps; ++s) {
    const double e = rel_err(logits, cpu.logits[s]);
    worst = std::max(worst, e);
    float mx = 0;
    for (float x : cpu.logits[s]) mx = std::max(mx, std::abs(x));
    if (top2_margin(cpu.logits[s]) > 2 * e * mx) {  // the error cannot flip this argmax
      ++decided;
      agree += argmax_host(logits) == cpu.ids[s];
    }
    fw.run(&cpu.ids[s], 1, logits.data(), nullptr);
  }
  std::printf("gpu bf16 vs cpu, %s: max logit error %.2e, top-1 agrees on %d of %d clear-margin steps (%d steps)\n",
              m.path.c_str(), worst, agree, decided, steps);
  EXPECT_LE(worst, 5e-2);
  EXPECT_EQ(agree, decided);
}

// FourierAttention with kv::FourierCache's semantics (GpuForward::use_fourier) against the CPU's
// Forward over kv::FourierCache, f32 weights and exact K/V: sink 4, window 32, M = 64 coefficients,
// so a prompt of prompt_len tokens compresses at its end (middle prompt_len - 36 > 64) and the
// middle grows by one per decode step. With f32 coefficients every greedy id equals the CPU's (the GPU
// runs the CPU's ids); with bf16 coefficients every id where the CPU's top-2 margin is above the
// 1e-2 relative tolerance (a near tie may flip: the sums run in another order). The period is the CPU's;
// the held bytes equal the CPU's segments with two f32 statistics per compressed dim (scale and
// offset) where the CPU keeps three (u_bar, i_bar, s).
void expect_fourier_greedy(const Model& m, int prompt_len, int steps, const std::string& coeff_dtype) {
  SCOPED_TRACE(m.path + " fourier coeff_dtype=" + coeff_dtype);
  const std::vector<int32_t> prompt = prompt_of(m, prompt_len);
  const int64_t ctx = m.config.ctx_len, P = prompt_len;
  const kv::Shape shape = kv_shape(m.config, ctx);
  kv::Options opts = {{"sink", "4"}, {"window", "32"}, {"coeffs", "64"}, {"coeff_dtype", coeff_dtype}};
  opts["rope"] = shape.rope_layout == kv::RopeLayout::Interleaved ? "interleaved" : "half";
  const kv::FourierOptions f = kv::FourierOptions::parse(opts);
  ASSERT_GT(P - f.sink - f.window, f.coeffs) << "the prompt must compress";
  ASSERT_LE(P + steps, ctx);

  Forward cfw(m);
  kv::FourierCache cpu(shape, f);
  cpu.plan(P, steps);
  std::vector<float> logits(m.config.vocab_size), glogits(m.config.vocab_size);
  std::vector<int32_t> cpu_ids, gpu_ids;
  cfw.run(prompt.data(), P, cpu, logits.data());
  ASSERT_TRUE(cpu.compressed());
  std::vector<std::vector<float>> cpu_logits;
  for (int s = 0; s < steps; ++s) {
    cpu_logits.push_back(logits);
    cpu_ids.push_back(argmax_host(logits));
    if (s + 1 < steps) cfw.run(&cpu_ids.back(), 1, cpu, logits.data());
  }

  cuda::GpuForwardOptions o;
  o.f32_weights = o.f32_kv = true;
  o.max_tokens = P + steps;
  cuda::GpuForward gfw(m, o);
  gfw.use_fourier(f, ctx);
  gfw.plan(P, steps);
  int32_t id = -1;
  gfw.run(prompt.data(), P, glogits.data(), &id);
  const cuda::GpuForward::FourierState s0 = gfw.fourier_state();
  ASSERT_TRUE(s0.compressed);
  EXPECT_EQ(s0.compressed_layers, m.config.n_layers);
  EXPECT_EQ(s0.mid_len, P - f.sink - f.window);
  EXPECT_EQ(s0.period, cpu.segments(0).period);
  // bf16 coefficients: the GPU sums their products in another order than the CPU, so logits differ by
  // ~1e-3 relative and a near tie may flip; stated tolerance 1e-2 relative, and ids must agree at every
  // step whose CPU top-2 margin is above it (f32 coefficients: every id, 1e-4).
  const bool f32_coeffs = coeff_dtype == "f32";
  const double tol = f32_coeffs ? 1e-4 : 1e-2;
  double worst = 0;
  int clear_disagreements = 0, near_ties = 0;
  for (int s = 0; s < steps; ++s) {
    const std::vector<float>& cl = cpu_logits[static_cast<size_t>(s)];
    worst = std::max(worst, rel_err(glogits, cl));
    if (id != cpu_ids[static_cast<size_t>(s)]) {
      float mx = 0;
      for (float x : cl) mx = std::max(mx, std::abs(x));
      (!f32_coeffs && top2_margin(cl) <= tol * mx ? near_ties : clear_disagreements)++;
    }
    gpu_ids.push_back(id);
    if (s + 1 < steps) gfw.run(&cpu_ids[static_cast<size_t>(s)], 1, glogits.data(), &id);  // the CPU's token
  }
  const cuda::GpuForward::FourierState s1 = gfw.fourier_state();
  EXPECT_EQ(s1.mid_len, s0.mid_len + steps - 1);
  EXPECT_EQ(s1.mid_len, cpu.segments(0).middle);
  int first_diff = -1;
  for (int s = 0; s < steps && first_diff < 0; ++s)
    if (gpu_ids[static_cast<size_t>(s)] != cpu_ids[static_cast<size_t>(s)]) first_diff = s;
  const kv::ByteLedger held = cpu.held_bytes();
  const size_t cpu_bytes =
      held.at("sinks") + held.at("local") + held.at("middle_exact") + held.at("coefficients") + held.at("statistics") * 2 / 3;
  std::printf("gpu fourier (f32 weights + exact K/V, coeff_dtype %s) vs cpu, %s: %lld prompt (middle %lld, T %lld) + %d "
              "greedy tokens, %d equal ids before the first difference, %d near ties, max logit error %.2e; held bytes "
              "gpu %zu, cpu %zu (indices %zu, rollback %zu excluded, statistics x 2/3)\n",
              coeff_dtype.c_str(), m.path.c_str(), static_cast<long long>(P), static_cast<long long>(s0.mid_len),
              static_cast<long long>(s0.period), steps, first_diff < 0 ? steps : first_diff, near_ties, worst, gfw.kv_bytes(),
              cpu_bytes, held.at("indices"), held.at("rollback"));
  EXPECT_LE(worst, tol);
  EXPECT_EQ(clear_disagreements, 0) << "first differing step " << first_diff << ": cpu " << cpu_ids[first_diff]
                                    << ", gpu " << gpu_ids[first_diff] << ", cpu top-2 margin "
                                    << top2_margin(cpu_logits[first_diff]) << " (" << near_ties << " near ties)";
  EXPECT_EQ(gfw.kv_bytes(), cpu_bytes);
  // A multi-token step on the compressed cache is refused.
  const std::vector<int32_t> two = {1, 2};
  try {
    gfw.run(two.data(), 2, nullptr, &id);
    ADD_FAILURE() << "a 2-token step after compression ran";
  } catch (const Error& e) {
    EXPECT_EQ(e.kind(), ErrorKind::Unsupported) << e.what();
  }
}

}  // namespace

TEST(CudaForward, FourierGreedyEqualsCpu) {
  REQUIRE_GPU();
  HARMONIA_REQUIRE_SHARED("models/stories260K/stories260K.gguf");
  HARMONIA_REQUIRE_SHARED("models/TinyStories-656K/model.safetensors");
  auto a = load_model(shared_path("models/stories260K/stories260K.gguf"));
  auto b = load_model(shared_path("models/TinyStories-656K"));
  for (const Model* m : {a.get(), b.get()}) {
    expect_fourier_greedy(*m, 200, 128, "f32");
    expect_fourier_greedy(*m, 200, 128, "bf16");
  }
}

// use_fourier's refusals and its short-prompt rule: a prompt whose middle does not exceed M stays
// exact (full's tokens) until a decode step makes it exceed M, then compresses there.
TEST(CudaForward, FourierPolicyShortPromptAndRefusals) {
  REQUIRE_GPU();
  auto m = make_random_model(preset_config("tiny-llama"), {});
  m->path = "tiny-llama";
  cuda::GpuForwardOptions o;
  o.f32_weights = o.f32_kv = true;
  o.max_tokens = 160;
  cuda::GpuForward fw(*m, o);
  auto parse = [&](kv::Options opts) { return kv::FourierOptions::parse(opts); };
  for (const char* bad : {"compat", "coeff_dtype", "stats_dtype"}) {
    kv::Options opts = {{bad, std::string(bad) == "compat" ? "reference" : "f16"}};
    try {
      fw.use_fourier(parse(opts), 160);
      ADD_FAILURE() << bad << " accepted";
    } catch (const Error& e) {
      EXPECT_EQ(e.kind(), ErrorKind::Unsupported) << e.what();
    }
  }
  const kv::FourierOptions f = parse({{"sink", "2"}, {"window", "8"}, {"coeffs", "16"}});
  fw.use_fourier(f, 160);
  fw.plan(20, 100);
  const std::vector<int32_t> prompt = prompt_of(*m, 20);
  int32_t id = -1;
  fw.run(prompt.data(), 20, nullptr, &id);
  EXPECT_FALSE(fw.fourier_state().compressed) << "middle 10 <= M = 16";
  Forward cfw(*m);
  kv::FourierCache cpu(kv_shape(m->config, 160), f);
  cpu.plan(20, 100);
  std::vector<float> logits(m->config.vocab_size);
  cfw.run(prompt.data(), 20, cpu, logits.data());
  int steps = 0, first_diff = -1;
  for (; steps < 60; ++steps) {
    const int32_t cid = argmax_host(logits);
    if (first_diff < 0 && cid != id) first_diff = steps;
    EXPECT_EQ(fw.fourier_state().compressed, cpu.compressed()) << "step " << steps;
    cfw.run(&cid, 1, cpu, logits.data());
    fw.run(&cid, 1, nullptr, &id);
  }
  EXPECT_TRUE(fw.fourier_state().compressed);
  EXPECT_EQ(fw.fourier_state().period, cpu.segments(0).period);
  EXPECT_EQ(fw.fourier_state().mid_len, cpu.segments(0).middle);
  EXPECT_EQ(first_diff, -1) << "first differing step " << first_diff;
}

TEST(CudaForward, Stories260KGreedyEqualsCpu) {
  REQUIRE_GPU();
  HARMONIA_REQUIRE_SHARED("models/stories260K/stories260K.gguf");
  auto m = load_model(shared_path("models/stories260K/stories260K.gguf"));
  expect_same_greedy(*m, 1, 100);   // BOS alone: decode kernel from position 1
  expect_same_greedy(*m, 40, 80);   // prefill of 40 tokens
  expect_close_bf16(*m, 40, 64);
}

TEST(CudaForward, TinyStories656KGreedyEqualsCpu) {
  REQUIRE_GPU();
  HARMONIA_REQUIRE_SHARED("models/TinyStories-656K/model.safetensors");
  auto m = load_model(shared_path("models/TinyStories-656K"));
  expect_same_greedy(*m, 1, 100);
  expect_same_greedy(*m, 70, 80);
  expect_close_bf16(*m, 70, 64);
}

// Qwen2 (q/k/v bias, half RoPE), Qwen3 (per-head q/k RMSNorm), Mistral (GQA 4:1) on random tiny models.
TEST(CudaForward, ArchitecturesMatchCpu) {
  REQUIRE_GPU();
  for (const char* preset : {"tiny-llama", "tiny-qwen2", "tiny-qwen3", "tiny-mistral"}) {
    SCOPED_TRACE(preset);
    auto m = make_random_model(preset_config(preset), {});
    m->path = preset;
    expect_same_greedy(*m, 20, 64);
  }
}

// A verify pass (run_verify: every token's greedy id) against the CPU's argmax at each position,
// f32 weights and KV; and against decoding the same tokens one at a time on the GPU.
TEST(CudaForward, VerifyPassGivesEveryPositionsGreedyId) {
  REQUIRE_GPU();
  HARMONIA_REQUIRE_SHARED("models/stories260K/stories260K.gguf");
  auto m = load_model(shared_path("models/stories260K/stories260K.gguf"));
  const int V = m->config.vocab_size;
  std::mt19937 rng(7);
  std::vector<int32_t> toks(37);
  for (auto& t : toks) t = static_cast<int32_t>(rng() % static_cast<uint32_t>(V));
  Forward cpu(*m);
  auto kv = kv::make_policy("full", kv_shape(m->config, 64), {});
  std::vector<float> logits(toks.size() * static_cast<size_t>(V));
  std::vector<SeqStep> steps{{toks.data(), static_cast<int64_t>(toks.size()), kv.get(), logits.data(), true}};
  cpu.run_batch(steps);
  cuda::GpuForwardOptions o;
  o.f32_weights = o.f32_kv = true;
  o.max_tokens = 64;
  cuda::GpuForward g(*m, o);
  // Prefix of 5 tokens, then a verify pass of 4 tokens (the split-KV decode kernel, one query per
  // token) and one of the other 28 (longer than kMaxDecodeKernelTokens: the prefill kernel).
  int32_t id = -1;
  g.run(toks.data(), 5, nullptr, &id);
  std::vector<int32_t> ids(toks.size() - 5, -1);
  g.run_verify(toks.data() + 5, 4, ids.data());
  g.run_verify(toks.data() + 9, static_cast<int64_t>(ids.size()) - 4, ids.data() + 4);
  EXPECT_EQ(g.n_tokens(), static_cast<int64_t>(toks.size()));
  for (size_t i = 0; i < ids.size(); ++i) {
    const float* row = logits.data() + (i + 5) * static_cast<size_t>(V);
    EXPECT_EQ(ids[i], std::max_element(row, row + V) - row) << "position " << i + 5;
  }
  // Rolled back and decoded one token at a time: the same ids.
  g.reset(5);
  for (size_t i = 0; i < ids.size(); ++i) {
    g.run(&toks[i + 5], 1, nullptr, &id);
    EXPECT_EQ(id, ids[i]) << "position " << i + 5;
  }
  EXPECT_THROW(g.run_verify(toks.data(), 1, nullptr), Error);
}

TEST(CudaForward, ContextOverflowAndBadTokensThrow) {
  REQUIRE_GPU();
  auto m = make_random_model(preset_config("tiny-llama"), {});
  cuda::GpuForwardOptions o;
  o.max_tokens = 4;
  cuda::GpuForward fw(*m, o);
  const std::vector<int32_t> t = {1, 2, 3};
  int32_t id = -1;
  fw.run(t.data(), 3, nullptr, &id);
  EXPECT_GE(id, 0);
  EXPECT_THROW(fw.run(t.data(), 2, nullptr, &id), Error);  // 3 + 2 > 4
  const int32_t bad = m->config.vocab_size;
  EXPECT_THROW(fw.run(&bad, 1, nullptr, &id), Error);
  EXPECT_EQ(fw.n_tokens(), 3);
}

// FourierAttention decode (the benchmark mode): a random compressed state of 500 tokens in far
// fewer bytes than the full cache, decode steps through FlashFourierAttention with finite
// logits, the context end at len + max_new, prefill steps refused, reset() back to full.
TEST(CudaForward, FourierDecodeFromRandomState) {
  REQUIRE_GPU();
  ModelConfig c = preset_config("tiny-llama");
  c.dim = 256;
  c.n_heads = 4;
  c.n_kv_heads = 2;
  c.head_dim = 64;  // FourierLayer: 64 or 128
  c.rope.n_rot = 64;
  c.ctx_len = 4096;
  auto m = make_random_model(c, {});
  cuda::GpuForwardOptions o;
  o.max_tokens = 64;
  cuda::GpuForward fw(*m, o);
  cuda::GpuFourierOptions f;
  f.sink = 4;
  f.window = 64;
  f.coeffs = 32;
  fw.start_fourier_random(f, 500, 8, 3);
  ASSERT_TRUE(fw.fourier_active());
  EXPECT_EQ(fw.n_tokens(), 500);
  EXPECT_LT(fw.kv_bytes(), fw.kv_bytes_per_token() * 500 / 2);
  EXPECT_LT(fw.kv_bytes_read(), fw.kv_bytes_per_token() * 500 / 2);
  std::vector<float> logits(m->config.vocab_size);
  int32_t id = 1;
  for (int i = 0; i < 8; ++i) {
    fw.run(&id, 1, logits.data(), &id);
    ASSERT_TRUE(std::all_of(logits.begin(), logits.end(), [](float x) { return std::isfinite(x); })) << "step " << i;
    EXPECT_EQ(id, argmax_host(logits));
  }
  EXPECT_EQ(fw.n_tokens(), 508);
  EXPECT_THROW(fw.run(&id, 1, nullptr, &id), Error);  // room for max_new = 8 tokens
  fw.start_fourier_random(f, 500, 8, 3);
  const std::vector<int32_t> two = {1, 2};
  EXPECT_THROW(fw.run(two.data(), 2, nullptr, &id), Error);  // decode only
  fw.reset(0);
  EXPECT_FALSE(fw.fourier_active());
  fw.run(two.data(), 2, nullptr, &id);
  EXPECT_EQ(fw.n_tokens(), 2);
}
