#include "kv/spectral.h"

#include <fftw3.h>

#include <algorithm>
#include <cmath>
#include <map>
#include <mutex>
#include <vector>

#include "common/error.h"

namespace harmonia::kv::spectral {

namespace {

constexpr double kTwoPi = 6.283185307179586476925286766559;

// FFTW's planner is not thread-safe; every plan creation and destruction takes this.
std::mutex& planner_mutex() {
  static std::mutex m;
  return m;
}

void check_band(int N, int64_t T, const char* what) {
  if (N < 1 || T < 1 || 2 * static_cast<int64_t>(N - 1) >= T)
    fail(ErrorKind::Internal, "{}: {} frequencies need a period above {}, got T = {}", what, N, 2 * (N - 1), T);
}

}  // namespace

double angle(int64_t n, int64_t l, int64_t T) {
  // (n mod T)*(l mod T) < T^2 fits int64 for T < 3e9.
  const int64_t r = ((n % T) * (l % T)) % T;
  return kTwoPi * static_cast<double>(r) / static_cast<double>(T);
}

int64_t reference_period(int64_t T) {
  const double dt = 1.0 / static_cast<double>(T);
  return static_cast<int64_t>(1.0 / dt);  // Python int(): truncation toward zero
}

int64_t smooth_period(int64_t n) {
  for (int64_t m = std::max<int64_t>(n, 2);; ++m) {
    if (m % 2) continue;
    int64_t r = m;
    for (int p : {2, 3, 5, 7})
      while (r % p == 0) r /= p;
    if (r == 1) return m;
  }
}

// ---- FFT plumbing ----------------------------------------------------------------

FftBuffer::~FftBuffer() {
  fftwf_free(real_);
  fftwf_free(cplx_);
}

void FftBuffer::ensure(int64_t n) {
  if (n <= cap_) return;
  fftwf_free(real_);
  fftwf_free(cplx_);
  real_ = fftwf_alloc_real(static_cast<size_t>(n));
  cplx_ = reinterpret_cast<float*>(fftwf_alloc_complex(static_cast<size_t>(n / 2 + 1)));
  if (!real_ || !cplx_) fail(ErrorKind::Internal, "fft buffer: out of memory for length {}", n);
  cap_ = n;
}

RealFft::RealFft(int64_t n) : n_(n) {
  if (n < 1 || n > (int64_t{1} << 30)) fail(ErrorKind::Internal, "fft length {} out of range", n);
  FftBuffer tmp;  // planning arrays: fftwf_malloc alignment, as every FftBuffer has
  tmp.ensure(n);
  std::lock_guard<std::mutex> lock(planner_mutex());
  fwd_ = fftwf_plan_dft_r2c_1d(static_cast<int>(n), tmp.real(), reinterpret_cast<fftwf_complex*>(tmp.cplx()),
                               FFTW_ESTIMATE);
  inv_ = fftwf_plan_dft_c2r_1d(static_cast<int>(n), reinterpret_cast<fftwf_complex*>(tmp.cplx()), tmp.real(),
                               FFTW_ESTIMATE);
  if (!fwd_ || !inv_) fail(ErrorKind::Internal, "fftw: could not plan a real FFT of length {}", n);
}

RealFft::~RealFft() {
  std::lock_guard<std::mutex> lock(planner_mutex());
  if (fwd_) fftwf_destroy_plan(static_cast<fftwf_plan>(fwd_));
  if (inv_) fftwf_destroy_plan(static_cast<fftwf_plan>(inv_));
}

std::shared_ptr<const RealFft> RealFft::get(int64_t n) {
  static std::mutex cache_mutex;
  static std::map<int64_t, std::shared_ptr<const RealFft>> cache;
  std::lock_guard<std::mutex> lock(cache_mutex);
  auto& slot = cache[n];
  if (!slot) slot = std::make_shared<RealFft>(n);
  return slot;
}

void RealFft::forward(FftBuffer& buf) const {
  fftwf_execute_dft_r2c(static_cast<fftwf_plan>(fwd_), buf.real(), reinterpret_cast<fftwf_complex*>(buf.cplx()));
}

void RealFft::inverse(FftBuffer& buf) const {
  fftwf_execute_dft_c2r(static_cast<fftwf_plan>(inv_), reinterpret_cast<fftwf_complex*>(buf.cplx()), buf.real());
}

// ---- Transforms ------------------------------------------------------------------

void coefficients_fft(const float* x, int64_t K, int64_t x_stride, int64_t T, int N, float* c, float* s,
                      int64_t out_stride, FftBuffer& buf) {
  check_band(N, T, "fourier coefficients");
  const auto fft = RealFft::get(T);
  buf.ensure(T);
  float* re = buf.real();
  const int64_t k = std::min(K, T);
  for (int64_t l = 0; l < k; ++l) re[l] = x[l * x_stride];
  std::fill(re + k, re + T, 0.0f);
  for (int64_t l = T; l < K; ++l) re[l % T] += x[l * x_stride];  // the basis is T-periodic
  fft->forward(buf);
  const float* z = buf.cplx();
  for (int n = 0; n < N; ++n) {
    c[n * out_stride] = z[2 * n];
    s[n * out_stride] = -z[2 * n + 1];  // FFT kernel is e^{-i w l}: S = -Im
  }
}

void coefficients_direct(const float* x, int64_t K, int64_t x_stride, int64_t l0, int64_t T, int N, double* c,
                         double* s) {
  check_band(N, T, "fourier coefficients");
  for (int64_t l = 0; l < K; ++l) {
    const double xl = x[l * x_stride];
    for (int n = 0; n < N; ++n) {
      const double a = angle(n, l0 + l, T);
      c[n] += xl * std::cos(a);
      s[n] += xl * std::sin(a);
    }
  }
}

void eval_trig_fft(const float* a, const float* b, int N, int64_t T, int64_t L, float* out, FftBuffer& buf) {
  check_band(N, T, "fourier evaluation");
  const auto fft = RealFft::get(T);
  buf.ensure(T);
  float* z = buf.cplx();
  std::fill(z, z + 2 * (T / 2 + 1), 0.0f);
  z[0] = a[0];
  for (int n = 1; n < N; ++n) {  // Hermitian half: 2 Re(Z_n e^{i w l}) = a cos + b sin
    z[2 * n] = 0.5f * a[n];
    z[2 * n + 1] = -0.5f * b[n];
  }
  fft->inverse(buf);
  for (int64_t l0 = 0; l0 < L; l0 += T) std::copy_n(buf.real(), std::min(T, L - l0), out + l0);  // T-periodic
}

double eval_trig_direct(const double* a, const double* b, int N, int64_t T, int64_t l) {
  check_band(N, T, "fourier evaluation");
  double f = 0;
  for (int n = 0; n < N; ++n) {
    const double t = angle(n, l, T);
    f += a[n] * std::cos(t) + b[n] * std::sin(t);
  }
  return f;
}

void reconstruct_fft(const float* c, const float* s, int64_t in_stride, int N, int64_t T, InverseWeights w,
                     int64_t L, float* out, FftBuffer& buf) {
  std::vector<float> a(N), b(N);
  for (int n = 0; n < N; ++n) {
    a[n] = static_cast<float>((n == 0 ? w.w0 : w.w) * c[n * in_stride]);
    b[n] = static_cast<float>(w.w * s[n * in_stride]);
  }
  eval_trig_fft(a.data(), b.data(), N, T, L, out, buf);
}

double reconstruct_direct(const float* c, const float* s, int64_t in_stride, int N, int64_t T, InverseWeights w,
                          int64_t l) {
  std::vector<double> a(N), b(N);
  for (int n = 0; n < N; ++n) {
    a[n] = (n == 0 ? w.w0 : w.w) * c[n * in_stride];
    b[n] = w.w * s[n * in_stride];
  }
  return eval_trig_direct(a.data(), b.data(), N, T, l);
}

MeanDev mean_dev(const float* v, int64_t K, int64_t stride) {
  if (K <= 0) return {};
  double sum = 0, mn = v[0], mx = v[0];
  for (int64_t l = 0; l < K; ++l) {
    const double x = v[l * stride];
    sum += x;
    mn = std::min(mn, x);
    mx = std::max(mx, x);
  }
  MeanDev r;
  r.mean = sum / static_cast<double>(K);
  r.dev = std::max(mx - r.mean, r.mean - mn);
  return r;
}

Affine affine_match(MeanDev original, MeanDev reconstruction) {
  Affine a;
  a.u_bar = static_cast<float>(original.mean);
  a.i_bar = static_cast<float>(reconstruction.mean);
  // NOTE: the reference divides 0/0 for a constant reconstruction (spec §10.6); keep it unscaled.
  a.scale = reconstruction.dev > 0 ? static_cast<float>(original.dev / reconstruction.dev) : 1.0f;
  return a;
}

}  // namespace harmonia::kv::spectral
