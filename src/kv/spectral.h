#pragma once
// Spectral primitives of FourierAttention (arXiv 2506.11886; spec
// shared/specs/fourierattention.md §3): the truncated real Fourier basis of
// period T over middle positions l = 0..T-1, its coefficients (forward) and
// its evaluation (inverse), both by FFT (FFTW, single precision) and by plain
// double-precision sums, which are the oracles the FFT paths are tested against.
//
// Notation (spec §3.2): N frequencies, w_n = 2*pi*n/T for n = 0..N-1,
//   C_n = sum_l x(l) cos(w_n l),   S_n = sum_l x(l) sin(w_n l).
// Every function below needs 2*(N-1) < T (no frequency reaches Nyquist); it
// throws Error(Internal) otherwise.
#include <cstdint>
#include <memory>

namespace harmonia::kv::spectral {

// 2*pi*((n*l) mod T)/T in double: the reduction is done on integers first so
// large n*l (512 * 131072) keep full precision. Requires T > 0.
double angle(int64_t n, int64_t l, int64_t T);

// The reference code's period int(1/(1/T)) in double arithmetic (spec §3.1 and
// §10.2, oracle O6): T - 1 for about 5.9 % of T (93, 99, 105, ...), else T.
int64_t reference_period(int64_t T);

// Smallest even 7-smooth integer (2^a 3^b 5^c 7^d, a >= 1) >= n, for n >= 1.
// FFT lengths of this form run 5-50x faster than prime or odd ones in FFTW.
int64_t smooth_period(int64_t n);

// Aligned scratch for RealFft: real[n] floats and cplx[n/2+1] complex values
// (interleaved re, im). One per thread; grows as needed.
class FftBuffer {
 public:
  FftBuffer() = default;
  FftBuffer(const FftBuffer&) = delete;
  FftBuffer& operator=(const FftBuffer&) = delete;
  ~FftBuffer();
  void ensure(int64_t n);
  float* real() { return real_; }
  float* cplx() { return cplx_; }

 private:
  float* real_ = nullptr;
  float* cplx_ = nullptr;
  int64_t cap_ = 0;
};

// A real FFT of one length n, planned once per process (FFTW_ESTIMATE; the
// planner is serialised by a process-wide mutex) and shared. forward() and
// inverse() are thread-safe and take their data from an FftBuffer.
class RealFft {
 public:
  static std::shared_ptr<const RealFft> get(int64_t n);
  ~RealFft();
  int64_t size() const { return n_; }
  // buf.cplx()[k] = sum_{l<n} buf.real()[l] e^{-2 pi i k l / n}, k = 0..n/2.
  void forward(FftBuffer& buf) const;
  // buf.real()[l] = sum_{k<n} Z_k e^{+2 pi i k l / n} for the Hermitian Z whose
  // half k = 0..n/2 is buf.cplx() (unnormalised, FFTW c2r). Destroys buf.cplx().
  void inverse(FftBuffer& buf) const;

  explicit RealFft(int64_t n);  // use get()

 private:
  int64_t n_;
  void* fwd_ = nullptr;  // fftwf_plan
  void* inv_ = nullptr;
};

// Spec §3.3 (prefill): C_n, S_n of x(0..K-1) for n < N by one zero-padded real
// FFT of length T (C = Re, S = -Im). x(l) = x[l * x_stride]. K > T folds the
// samples modulo T (the sums are T-periodic in l). c, s: [N] each, written with
// stride out_stride.
void coefficients_fft(const float* x, int64_t K, int64_t x_stride, int64_t T, int N, float* c, float* s,
                      int64_t out_stride, FftBuffer& buf);

// Same sums by direct evaluation in double, for positions l0 .. l0+K-1 (spec
// §3.3 `mat_fourier_triton`; K = 1 is the decode-time rank-1 update of §3.4).
// c, s: [N] each, accumulated into (+=).
void coefficients_direct(const float* x, int64_t K, int64_t x_stride, int64_t l0, int64_t T, int N, double* c,
                         double* s);

// f(l) = sum_{n<N} a_n cos(w_n l) + b_n sin(w_n l) for l = 0..L-1 by one inverse
// real FFT of length T (periodic beyond T). out: [L]. The spectral-domain attention
// (spec §4.3) uses it for the scores of all middle tokens at once.
void eval_trig_fft(const float* a, const float* b, int N, int64_t T, int64_t L, float* out, FftBuffer& buf);
// Same, one position, direct double sum.
double eval_trig_direct(const double* a, const double* b, int N, int64_t T, int64_t l);

// Reconstruction normalisation r(l) = w0*C_0 + w*sum_{n>=1}(C_n cos + S_n sin).
struct InverseWeights {
  double w0 = 0, w = 0;
};
// The proper truncated Fourier inverse (1/T)[C_0 + 2 sum_{n>=1} ...] (spec §3.5 x-hat).
inline InverseWeights proper_inverse(int64_t T) { return {1.0 / static_cast<double>(T), 2.0 / static_cast<double>(T)}; }
// The reference code's raw reconstruction (1/N) sum_{n>=0} (spec §3.5 a(l)).
inline InverseWeights reference_inverse(int N) { return {1.0 / N, 1.0 / N}; }

// r(l), l = 0..L-1, from C[N], S[N] (strided by in_stride) by one inverse FFT. out: [L].
void reconstruct_fft(const float* c, const float* s, int64_t in_stride, int N, int64_t T, InverseWeights w,
                     int64_t L, float* out, FftBuffer& buf);
// r(l) at one position, in double.
double reconstruct_direct(const float* c, const float* s, int64_t in_stride, int N, int64_t T, InverseWeights w,
                          int64_t l);

// Spec §3.5 statistics of one dim: mean and max absolute deviation
// max(max - mean, mean - min) ("std" in the reference code) of v[0..K-1].
struct MeanDev {
  double mean = 0, dev = 0;
};
MeanDev mean_dev(const float* v, int64_t K, int64_t stride = 1);

// The affine correction K~ = (r - i_bar) * s + u_bar (spec §3.5) from the
// original's and the reconstruction's MeanDev. s = dev_u / dev_i; a
// reconstruction that is constant (dev_i = 0) keeps s = 1.
struct Affine {
  float u_bar = 0, i_bar = 0, scale = 1;
};
Affine affine_match(MeanDev original, MeanDev reconstruction);

}  // namespace harmonia::kv::spectral
