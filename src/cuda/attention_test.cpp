// GPU kernels against the CPU reference on fresh random inputs of several
// shapes: full-cache decode attention (kv::causal_attention) and
// FourierAttention (kv::FourierCache: prefill coefficients, rank-1 updates and
// decode attention on the same cache contents). Every test skips with a
// message where no CUDA device is present (CI).
#include <gtest/gtest.h>

#include <cmath>
#include <algorithm>
#include <cstring>
#include <numeric>
#include <ostream>
#include <random>
#include <vector>

#include "common/fp16.h"
#include "cuda/attention.h"
#include "cuda/fourier_gpu.h"
#include "cuda/runtime.h"
#include "cuda/testing.h"
#include "kv/dims.h"
#include "kv/fourier.h"
#include "kv/full.h"

using namespace harmonia;

namespace {

using cuda::testing::rel_err;

// Random values rounded to 16 bits: `raw` holds the encoding, the returned floats the exact values.
std::vector<float> random16(size_t n, std::mt19937& rng, bool bf16, std::vector<uint16_t>& raw, float scale = 1.0f) {
  std::normal_distribution<float> nd;
  std::vector<float> f(n);
  raw.resize(n);
  for (size_t i = 0; i < n; ++i) {
    const float x = scale * nd(rng);
    raw[i] = bf16 ? f32_to_bf16(x) : f32_to_f16(x);
    f[i] = bf16 ? bf16_to_f32(raw[i]) : f16_to_f32(raw[i]);
  }
  return f;
}

std::vector<float> random_f32(size_t n, std::mt19937& rng, float scale = 1.0f) {
  std::normal_distribution<float> nd;
  std::vector<float> f(n);
  for (auto& x : f) x = scale * nd(rng);
  return f;
}

template <typename T>
cuda::DeviceBuffer upload(const std::vector<T>& v) {
  cuda::DeviceBuffer d(std::max<size_t>(v.size(), 1) * sizeof(T));
  if (!v.empty()) cuda::to_device(d.get(), v.data(), v.size() * sizeof(T));
  return d;
}

// A device output poisoned with NaN, so an element the kernel misses fails the comparison.
cuda::DeviceBuffer poisoned(size_t n) {
  std::vector<float> nan(n, std::nanf(""));
  return upload(nan);
}

std::vector<float> download(const cuda::DeviceBuffer& d, size_t n) {
  std::vector<float> h(n);
  cuda::to_host(h.data(), d.get(), n * sizeof(float));
  return h;
}

kv::Shape kv_shape(int heads, int kv_heads, int hd, int64_t max_tokens) {
  kv::Shape s;
  s.n_layers = 1;
  s.n_heads = heads;
  s.n_kv_heads = kv_heads;
  s.head_dim = hd;
  s.max_tokens = max_tokens;
  return s;
}

}  // namespace

TEST(CudaDevice, Summary) {
  REQUIRE_GPU();
  const std::string s = cuda::device_summary();
  std::printf("device: %s\n", s.c_str());
  EXPECT_FALSE(s.empty());
}

// ---- Full-cache decode attention ----------------------------------------------------------

struct FullCase {
  int heads, kv_heads, hd;
  std::vector<int> lens;  // one per sequence
  cuda::KvType type;
};

// Readable parameter names in gtest/ctest output (the default prints raw bytes, padding included).
void PrintTo(const FullCase& c, std::ostream* os) {
  const char* type = c.type == cuda::KvType::BF16 ? "bf16" : c.type == cuda::KvType::F16 ? "f16" : "f32";
  *os << c.heads << "/" << c.kv_heads << " heads, head_dim " << c.hd << ", " << type
      << ", lens";
  for (int l : c.lens) *os << " " << l;
}

class CudaFullDecode : public ::testing::TestWithParam<FullCase> {};

TEST_P(CudaFullDecode, MatchesCpuCausalAttention) {
  REQUIRE_GPU();
  const FullCase& c = GetParam();
  const int B = static_cast<int>(c.lens.size());
  const int64_t cap = *std::max_element(c.lens.begin(), c.lens.end()) + 3;  // rows past lens stay unread
  const bool bf = c.type == cuda::KvType::BF16;
  std::mt19937 rng(1234 + c.hd + B * 7 + c.heads);
  std::vector<uint16_t> kraw, vraw;
  const size_t kv_n = static_cast<size_t>(B) * c.kv_heads * cap * c.hd;
  const bool f32 = c.type == cuda::KvType::F32;
  const std::vector<float> k = f32 ? random_f32(kv_n, rng) : random16(kv_n, rng, bf, kraw);
  const std::vector<float> v = f32 ? random_f32(kv_n, rng) : random16(kv_n, rng, bf, vraw);
  const size_t q_n = static_cast<size_t>(B) * c.heads * c.hd;
  const std::vector<float> q = random_f32(q_n, rng, 2.0f);  // peaked softmax, not near-uniform

  std::vector<float> ref(q_n);
  const kv::Shape s = kv_shape(c.heads, c.kv_heads, c.hd, cap);
  for (int b = 0; b < B; ++b) {
    const size_t kvo = static_cast<size_t>(b) * c.kv_heads * cap * c.hd, qo = static_cast<size_t>(b) * c.heads * c.hd;
    kv::causal_attention(s, 1, q.data() + qo, k.data() + kvo, v.data() + kvo, c.lens[b], cap * c.hd, ref.data() + qo);
  }

  auto dk = f32 ? upload(k) : upload(kraw), dv = f32 ? upload(v) : upload(vraw), dq = upload(q), dl = upload(c.lens);
  cuda::AttentionWorkspace ws;
  const cuda::DecodeShape ds{B, c.heads, c.kv_heads, c.hd};
  // Default split count, a forced single split (the merge of one partial), and the default again with the
  // same workspace (the last-block merge's counters must be back at zero), each into a fresh poisoned output.
  for (int target : {0, 1, 0}) {
    auto dout = poisoned(q_n);
    cuda::decode_attention_full(ds, c.type, dq.as<float>(), dk.get(), dv.get(), cap, dl.as<int>(),
                                *std::max_element(c.lens.begin(), c.lens.end()), dout.as<float>(), ws, target);
    cuda::synchronize();
    const double err = rel_err(download(dout, q_n), ref);
    EXPECT_LE(err, 1e-4) << "target_blocks " << target;  // fp32 arithmetic on exactly representable inputs
  }
}

INSTANTIATE_TEST_SUITE_P(
    Shapes, CudaFullDecode,
    ::testing::Values(FullCase{32, 8, 128, {4096}, cuda::KvType::BF16},            // Llama-3.1-8B layer
                      FullCase{32, 8, 128, {5000, 1, 777, 2048}, cuda::KvType::BF16},  // ragged batch
                      FullCase{8, 2, 64, {1000, 33}, cuda::KvType::F16},
                      FullCase{4, 4, 32, {300}, cuda::KvType::BF16},               // no GQA
                      FullCase{16, 2, 128, {2500, 129}, cuda::KvType::F16},        // group of 8
                      FullCase{6, 3, 64, {65, 17, 1}, cuda::KvType::BF16},         // group of 2, tiny
                      FullCase{32, 8, 128, {3000, 2}, cuda::KvType::F32},          // f32 cache (exact-match forward)
                      FullCase{8, 4, 16, {700, 1, 64}, cuda::KvType::F32},         // TinyStories-656K shape
                      FullCase{8, 4, 16, {1500}, cuda::KvType::BF16},
                      FullCase{8, 8, 8, {512, 3}, cuda::KvType::F32},              // stories260K shape
                      FullCase{8, 1, 8, {900}, cuda::KvType::F16}));               // head_dim 8, group of 8

// ---- FourierAttention ---------------------------------------------------------------------

struct FourierCase {
  int heads, kv_heads, hd;
  int64_t coeffs, window, sink, prompt, max_new;
  kv::CoeffDtype dtype;
  int batch, steps;
  bool aligned = false;  // period=aligned (T a multiple of Q: the four-step path)
};

void PrintTo(const FourierCase& c, std::ostream* os) {
  *os << c.heads << "/" << c.kv_heads << " heads, head_dim " << c.hd << ", M " << c.coeffs << ", window " << c.window
      << ", sink " << c.sink << ", prompt " << c.prompt << ", coeffs " << kv::dtype_name(c.dtype) << ", batch "
      << c.batch << ", " << c.steps << " steps" << (c.aligned ? ", period=aligned" : "");
}

class CudaFourier : public ::testing::TestWithParam<FourierCase> {};

TEST_P(CudaFourier, MatchesCpuFourierCache) {
  REQUIRE_GPU();
  const FourierCase& c = GetParam();
  const bool coeff_bf16 = c.dtype == kv::CoeffDtype::BF16;
  const double tol = coeff_bf16 ? 1e-2 : 1e-4;
  const int H = c.kv_heads, D = c.hd, P = static_cast<int>(c.prompt);
  const kv::Shape s = kv_shape(c.heads, H, D, c.prompt + c.max_new + 8);
  kv::FourierOptions o;
  o.sink = c.sink;
  o.window = c.window;
  o.coeffs = c.coeffs;
  o.coeff_dtype = c.dtype;
  o.aligned_period = c.aligned;
  std::mt19937 rng(99 + c.heads * 3 + D + c.batch + static_cast<int>(c.coeffs));

  // CPU caches (one per sequence) and the same prompt for the GPU, [B][H][P][D].
  std::vector<std::unique_ptr<kv::FourierCache>> cpu;
  std::vector<uint16_t> hk(static_cast<size_t>(c.batch) * H * P * D), hv(hk.size());
  for (int b = 0; b < c.batch; ++b) {
    cpu.push_back(std::make_unique<kv::FourierCache>(s, o));
    std::vector<uint16_t> kr, vr;
    const std::vector<float> k = random16(static_cast<size_t>(P) * H * D, rng, true, kr);  // [P][H][D]
    const std::vector<float> v = random16(k.size(), rng, true, vr);
    cpu[b]->plan(P, c.max_new);
    cpu[b]->append(0, P, k.data(), v.data());
    cpu[b]->commit(P);
    for (int t = 0; t < P; ++t)
      for (int h = 0; h < H; ++h)
        for (int d = 0; d < D; ++d) {
          const size_t dst = ((static_cast<size_t>(b) * H + h) * P + t) * D + d;
          hk[dst] = kr[(static_cast<size_t>(t) * H + h) * D + d];
          hv[dst] = vr[(static_cast<size_t>(t) * H + h) * D + d];
        }
  }
  const auto seg = cpu[0]->segments(0);
  ASSERT_TRUE(seg.compressed) << "the prompt must be long enough to compress";
  ASSERT_EQ(seg.middle, P - c.sink - c.window);

  cuda::FourierConfig cfg;
  cfg.shape = {c.batch, c.heads, H, D};
  cfg.sink = c.sink;
  cfg.window = c.window;
  cfg.coeffs = c.coeffs;
  cfg.coeff_bf16 = coeff_bf16;
  cfg.period = seg.period;
  cfg.w0 = 1.0 / static_cast<double>(seg.period);  // kv::spectral::proper_inverse
  cfg.w = 2.0 / static_cast<double>(seg.period);
  cfg.mid_capacity = seg.middle + c.steps;
  std::vector<cuda::FourierHeadDims> heads;
  for (const kv::HeadDims& hd : kv::split_heads(cpu[0]->dims().layers[0], H, D))
    heads.push_back({hd.kc, hd.kn, hd.vc, hd.vn});
  cuda::FourierLayer gpu(cfg, heads);
  {
    auto dk = upload(hk), dv = upload(hv);
    gpu.prefill(dk.as<uint16_t>(), dv.as<uint16_t>(), P);
    cuda::synchronize();
  }
  auto check_coefficients = [&](const char* when) {
    for (int b = 0; b < c.batch; ++b)
      for (int h = 0; h < H; ++h)
        for (bool values : {false, true}) {
          const std::vector<float> ref = cpu[b]->coefficients(0, h, values);
          const std::vector<float> got = gpu.coefficients(b, h, values);
          ASSERT_EQ(got.size(), ref.size());
          if (ref.empty()) continue;
          EXPECT_LE(rel_err(got, ref), tol) << when << ": sequence " << b << " head " << h << (values ? " V" : " K");
        }
  };
  check_coefficients("prefill (cuFFT)");

  cuda::AttentionWorkspace ws;
  const size_t qn = static_cast<size_t>(c.batch) * c.heads * D;
  // Paths: direct, FFT, where N allows (N % 8 == 0, N <= 512) tiled and tiled-fast, and where T allows
  // (T % Q == 0, Q <= 512) four-step.
  const int N = static_cast<int>(c.coeffs / 2);
  const bool tiled = N % 8 == 0 && N <= 512;
  const bool four = gpu.auto_path() == cuda::FourierPath::FourStep;
  if (c.aligned) {
    EXPECT_TRUE(four) << "period=aligned T " << seg.period << " takes the four-step path";
  }
  const cuda::FourierPath paths[] = {cuda::FourierPath::Direct, cuda::FourierPath::Fft, cuda::FourierPath::Tiled,
                                     cuda::FourierPath::TiledFast, cuda::FourierPath::FourStep};
  const char* names[] = {"direct", "FFT", "tiled", "tiled-fast", "four-step"};
  // Against the direct path (same coefficients): f32-class paths 1e-4; tiled-fast has fp16 operands
  // (2^-12 relative per term), stated tolerance 5e-3.
  const double vs_direct[] = {0, 1e-4, 1e-4, 5e-3, 1e-4};
  std::vector<int> run_paths = {0, 1};
  if (tiled) run_paths.insert(run_paths.end(), {2, 3});
  if (four) run_paths.push_back(4);
  double worst[5] = {0, 0, 0, 0, 0}, worst_diff[5] = {0, 0, 0, 0, 0};  // against the CPU, against direct
  auto keep_max = [](double& w, double e) { w = std::isnan(e) || std::isnan(w) ? NAN : std::max(w, e); };
  for (int step = 0; step < c.steps; ++step) {
    std::vector<uint16_t> nk(static_cast<size_t>(c.batch) * H * D), nv(nk.size());
    const std::vector<float> q = random_f32(qn, rng, 1.5f);
    std::vector<float> ref(qn);
    for (int b = 0; b < c.batch; ++b) {
      std::vector<uint16_t> kr, vr;
      const std::vector<float> k = random16(static_cast<size_t>(H) * D, rng, true, kr);
      const std::vector<float> v = random16(k.size(), rng, true, vr);
      std::copy(kr.begin(), kr.end(), nk.begin() + static_cast<ptrdiff_t>(b) * H * D);
      std::copy(vr.begin(), vr.end(), nv.begin() + static_cast<ptrdiff_t>(b) * H * D);
      cpu[b]->append(0, 1, k.data(), v.data());
      cpu[b]->attend(0, 1, q.data() + static_cast<size_t>(b) * c.heads * D, ref.data() + static_cast<size_t>(b) * c.heads * D);
      cpu[b]->commit(1);
    }
    auto dk = upload(nk), dv = upload(nv), dq = upload(q);
    gpu.append(dk.as<uint16_t>(), dv.as<uint16_t>());
    // All paths on the same state; alternate the default split count and a single middle split.
    std::vector<float> got[5];
    for (int pi : run_paths) {
      auto dout = poisoned(qn);
      gpu.attend(dq.as<float>(), dout.as<float>(), ws, step % 2 ? 1 : 0, paths[pi]);
      cuda::synchronize();
      got[pi] = download(dout, qn);
      const double err = rel_err(got[pi], ref);
      keep_max(worst[pi], err);
      EXPECT_LE(err, pi == 3 ? std::max(tol, vs_direct[3]) : tol) << names[pi] << " path, decode step " << step;
      if (pi > 0) {
        const double diff = rel_err(got[pi], got[0]);
        keep_max(worst_diff[pi], diff);
        EXPECT_LE(diff, vs_direct[pi]) << names[pi] << " path against the direct path, decode step " << step;
      }
    }
  }
  std::printf("fourier %s: T %lld, middle %lld -> %lld, worst output error direct %.3g, FFT %.3g",
              kv::dtype_name(c.dtype), static_cast<long long>(seg.period), static_cast<long long>(seg.middle),
              static_cast<long long>(gpu.mid_len()), worst[0], worst[1]);
  if (tiled) std::printf(", tiled %.3g, tiled-fast %.3g", worst[2], worst[3]);
  if (four) std::printf(", four-step %.3g", worst[4]);
  std::printf("; against direct: FFT %.3g", worst_diff[1]);
  if (tiled) std::printf(", tiled %.3g, tiled-fast %.3g", worst_diff[2], worst_diff[3]);
  if (four) std::printf(", four-step %.3g", worst_diff[4]);
  std::printf("\n");
  EXPECT_EQ(gpu.mid_len(), cpu[0]->segments(0).middle);
  check_coefficients("after rank-1 updates");
}

INSTANTIATE_TEST_SUITE_P(
    Shapes, CudaFourier,
    ::testing::Values(
        FourierCase{8, 2, 64, 64, 64, 4, 700, 40, kv::CoeffDtype::F32, 2, 12},       // group 4, N = 32
        FourierCase{8, 2, 64, 64, 64, 4, 700, 40, kv::CoeffDtype::BF16, 2, 12},
        FourierCase{32, 8, 128, 1024, 256, 4, 3000, 64, kv::CoeffDtype::F32, 1, 4},  // Llama-3.1-8B heads, N = 512
        FourierCase{32, 8, 128, 1024, 256, 4, 3000, 64, kv::CoeffDtype::BF16, 1, 4},
        FourierCase{4, 4, 64, 256, 100, 2, 1500, 30, kv::CoeffDtype::BF16, 1, 6},    // no GQA, N = 128
        FourierCase{16, 2, 128, 512, 128, 4, 2000, 30, kv::CoeffDtype::F32, 2, 5},   // group 8, N = 256
        FourierCase{4, 2, 128, 2048, 128, 4, 2600, 20, kv::CoeffDtype::F32, 1, 3},   // group 2, N = 1024
        // period=aligned (four-step path): T = 3072, 672, 2048, 1536
        FourierCase{32, 8, 128, 1024, 256, 4, 3000, 64, kv::CoeffDtype::F32, 1, 4, true},
        FourierCase{8, 2, 64, 64, 64, 4, 700, 40, kv::CoeffDtype::BF16, 2, 12, true},
        FourierCase{16, 2, 128, 512, 128, 4, 2000, 30, kv::CoeffDtype::F32, 2, 5, true},
        FourierCase{4, 4, 64, 256, 100, 2, 1500, 30, kv::CoeffDtype::BF16, 3, 6, true}));

// ---- FourierAttention: FFT and tiled paths against the direct path at larger middles -------
// Random cache contents (FourierLayer::fill_random) with periods T that are prime (cuFFT's
// Bluestein path) and 7-smooth; the direct path evaluates the same sums term by term.

struct PathCase {
  int heads, kv_heads, hd;
  int64_t coeffs, period, mid;
  int batch;
  bool coeff_bf16;
  bool degenerate = false;  // KV head 0 all dims compressed, head 1 none (needs 2+ KV heads)
};

void PrintTo(const PathCase& c, std::ostream* os) {
  *os << c.heads << "/" << c.kv_heads << " heads, head_dim " << c.hd << ", M " << c.coeffs << ", T " << c.period
      << ", middle " << c.mid << ", batch " << c.batch << (c.coeff_bf16 ? ", bf16" : ", f32") << " coeffs"
      << (c.degenerate ? ", degenerate heads" : "");
}

class CudaFourierPaths : public ::testing::TestWithParam<PathCase> {};

TEST_P(CudaFourierPaths, PathsMatchDirect) {
  REQUIRE_GPU();
  const PathCase& c = GetParam();
  std::mt19937 rng(7 + c.heads + c.hd + static_cast<int>(c.period));
  std::vector<cuda::FourierHeadDims> heads;
  for (int h = 0; h < c.kv_heads; ++h) {  // ~3/4 of the dims compressed, different per head and side
    cuda::FourierHeadDims hd;
    for (int side = 0; side < 2; ++side) {
      std::vector<int> d(c.hd);
      std::iota(d.begin(), d.end(), 0);
      std::shuffle(d.begin(), d.end(), rng);
      const int nc = c.degenerate && h < 2 ? (h == 0 ? c.hd : 0) : c.hd * 3 / 4 - 3 * h - side;
      std::vector<int> comp(d.begin(), d.begin() + nc), exact(d.begin() + nc, d.end());
      std::sort(comp.begin(), comp.end());
      std::sort(exact.begin(), exact.end());
      (side ? hd.vc : hd.kc) = comp;
      (side ? hd.vn : hd.kn) = exact;
    }
    heads.push_back(hd);
  }
  cuda::FourierConfig cfg;
  cfg.shape = {c.batch, c.heads, c.kv_heads, c.hd};
  cfg.sink = 4;
  cfg.window = 64;
  cfg.coeffs = c.coeffs;
  cfg.coeff_bf16 = c.coeff_bf16;
  cfg.period = c.period;
  cfg.w0 = 1.0 / static_cast<double>(c.period);
  cfg.w = 2.0 / static_cast<double>(c.period);
  cfg.mid_capacity = c.mid;
  cuda::FourierLayer gpu(cfg, heads);
  gpu.fill_random(c.mid, 4242);
  int Q = 32;
  while (Q < c.coeffs / 2) Q *= 2;
  const bool four = Q <= 512 && c.period % Q == 0;
  EXPECT_EQ(gpu.auto_path(), four ? cuda::FourierPath::FourStep : cuda::FourierPath::Fft)
      << "these sizes are where Auto takes the four-step path (T % Q == 0) or else the FFT path";
  const size_t qn = static_cast<size_t>(c.batch) * c.heads * c.hd;
  auto dq = upload(random_f32(qn, rng, 1.5f));
  cuda::AttentionWorkspace ws;
  const cuda::FourierPath paths[] = {cuda::FourierPath::Direct, cuda::FourierPath::Fft, cuda::FourierPath::Tiled,
                                     cuda::FourierPath::TiledFast, cuda::FourierPath::FourStep};
  const char* names[] = {"direct", "FFT", "tiled", "tiled-fast", "four-step"};
  const double tol[] = {0, 1e-4, 1e-4, 5e-3, 1e-4};  // against direct; tiled-fast: fp16 operands (see CudaFourier)
  const int N = static_cast<int>(c.coeffs / 2);
  std::vector<int> run_paths = {0, 1};
  if (N % 8 == 0 && N <= 512) run_paths.insert(run_paths.end(), {2, 3});
  if (four) run_paths.push_back(4);
  for (int target : {0, 1}) {
    std::vector<float> got[5];
    for (int pi : run_paths) {
      auto dout = poisoned(qn);
      gpu.attend(dq.as<float>(), dout.as<float>(), ws, target, paths[pi]);
      cuda::synchronize();
      got[pi] = download(dout, qn);
    }
    std::printf("fourier paths (%s, G %d, T %lld, middle %lld, target_blocks %d) against direct:",
                c.coeff_bf16 ? "bf16" : "f32", c.heads / c.kv_heads, static_cast<long long>(c.period),
                static_cast<long long>(c.mid), target);
    for (int pi : run_paths) {
      if (pi == 0) continue;
      const double diff = rel_err(got[pi], got[0]);
      std::printf(" %s %.3g", names[pi], diff);
      EXPECT_LE(diff, tol[pi]) << names[pi] << ", target_blocks " << target;
    }
    std::printf("\n");
  }
}

INSTANTIATE_TEST_SUITE_P(
    Shapes, CudaFourierPaths,
    ::testing::Values(PathCase{32, 8, 128, 1024, 20011, 19000, 2, false},   // Llama-3.1-8B heads, prime T
                      PathCase{32, 8, 128, 1024, 20160, 20000, 1, true},    // smooth T = 2^6 3^2 5 7, bf16
                      PathCase{8, 2, 64, 256, 4999, 3999, 3, false},        // group 4, prime T, batch 3, odd middle
                      PathCase{16, 2, 128, 512, 12288, 12001, 2, false},    // group 8, odd middle
                      PathCase{8, 4, 128, 512, 9973, 9001, 2, true},        // group 2, prime T, bf16
                      PathCase{4, 4, 64, 1024, 8192, 7777, 1, false},       // no GQA, N = 512
                      // T a multiple of Q (the four-step path): Q = 512, 32, 256, 128, 256, 128, 512
                      PathCase{32, 8, 128, 1024, 20480, 19001, 2, false},   // Llama-3.1-8B heads, P = 40
                      PathCase{8, 2, 64, 64, 4096, 3001, 3, false, true},   // N = 32, batch 3, degenerate heads
                      PathCase{16, 2, 128, 512, 12800, 12345, 2, true},     // group 8, bf16
                      PathCase{8, 4, 128, 256, 9984, 9001, 2, true, true},  // group 2, bf16, degenerate heads
                      PathCase{4, 4, 64, 512, 8192, 8192, 1, false},        // no GQA, middle = T
                      PathCase{8, 2, 64, 200, 6400, 5555, 2, false},        // N = 100 (not a power of two)
                      PathCase{32, 8, 128, 1024, 18944, 18000, 1, true}));  // P = 37 (odd), bf16
