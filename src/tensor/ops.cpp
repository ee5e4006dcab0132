// Fast kernels: dot_row, matvec (decode) and matmul (prefill) over the row
// kernels of tensor/kernels.cpp, threaded with OpenMP; matmul with more than
// kMatmulStreamMaxN vectors goes to single-threaded OpenBLAS sgemm calls, one
// per OpenMP thread.
#include <cblas.h>
#include <omp.h>

#include <algorithm>
#include <atomic>
#include <bit>
#include <cmath>
#include <cstring>
#include <mutex>
#include <vector>

#include "common/error.h"
#include "tensor/kernels.h"
#include "tensor/ops.h"

namespace harmonia {

namespace {

using kernels::Acts;
using kernels::kMaxVec;
using kernels::RowKernel;

// Weights smaller than this run on the calling thread: waking the OpenMP team
// (a few microseconds) costs more than it saves.
constexpr size_t kMinParallelBytes = size_t{64} << 10;
// y rows one thread owns start at a multiple of this, so two threads never write
// the same 64-byte cache line of y.
constexpr int64_t kRowAlign = 16;
// fp32 tile of dequantised W rows handed to sgemm, per thread (half of a 1 MiB L2).
constexpr size_t kTileBytes = size_t{512} << 10;

// Activations of the calling thread, reused across calls (no allocation in decode).
thread_local kernels::Q8ActBuffer tl_act;
thread_local std::vector<Acts> tl_acts;
thread_local std::vector<float> tl_tile;

const char* name_of(const Tensor& W) { return W.name.empty() ? "(unnamed)" : W.name.c_str(); }

RowKernel checked_kernel(const Tensor& W, const char* op) {
  const RowKernel k = kernels::row_kernel(W.type);
  if (!k) fail(ErrorKind::Unsupported, "{}: no kernel for tensor '{}' of type {}", op, name_of(W), dtype_name(W.type));
  if (!W.data) fail(ErrorKind::InvalidInput, "{}: tensor '{}' has no data", op, name_of(W));
  const auto& info = dtype_info(W.type);
  if (W.cols() <= 0 || W.cols() % info.block_elems != 0)
    fail(ErrorKind::InvalidInput, "{}: tensor '{}' has rows of {} elements, not a multiple of the {} block size {}",
         op, name_of(W), W.cols(), info.name, info.block_elems);
  const size_t need = static_cast<size_t>(W.rows()) * W.row_stride();
  if (W.nbytes != 0 && W.nbytes < need)
    fail(ErrorKind::InvalidInput, "{}: tensor '{}' [{} x {}] {} needs {} bytes but holds {}", op, name_of(W),
         W.rows(), W.cols(), info.name, need, W.nbytes);
  return k;
}

bool go_parallel(size_t work_bytes) {
  return work_bytes >= kMinParallelBytes && omp_get_max_threads() > 1 && !omp_in_parallel();
}

// Rows [r0, r1) of the thread's share: contiguous, starts aligned to kRowAlign.
void thread_rows(int64_t rows, int64_t* r0, int64_t* r1) {
  const int64_t nt = omp_get_num_threads(), t = omp_get_thread_num();
  const int64_t per = ((rows + nt - 1) / nt + kRowAlign - 1) / kRowAlign * kRowAlign;
  *r0 = std::min(rows, t * per);
  *r1 = std::min(rows, *r0 + per);
}

// Units [front, back) of work not yet taken, as one atomic word (front in the
// low 32 bits) so that the owner taking from the front and a thief taking from
// the back never take the same unit. Own cache line: owners update theirs often.
struct alignas(64) UnitRange {
  std::atomic<uint64_t> fb{0};
  static uint64_t pack(int64_t f, int64_t b) { return static_cast<uint64_t>(b) << 32 | static_cast<uint64_t>(f); }
  void init(int64_t f, int64_t b) { fb.store(pack(f, b), std::memory_order_relaxed); }
  int64_t left() const {
    const uint64_t v = fb.load(std::memory_order_relaxed);
    return static_cast<int64_t>(v >> 32) - static_cast<int64_t>(v & 0xffffffffu);
  }
  // The front unit, or -1 when none is left.
  int64_t take_front() {
    uint64_t v = fb.load(std::memory_order_relaxed);
    for (;;) {
      const int64_t f = static_cast<int64_t>(v & 0xffffffffu), b = static_cast<int64_t>(v >> 32);
      if (f >= b) return -1;
      if (fb.compare_exchange_weak(v, pack(f + 1, b), std::memory_order_relaxed)) return f;
    }
  }
  // The back half (rounded up) of what is left as [*u0, *u1); false when none is left.
  bool take_back_half(int64_t* u0, int64_t* u1) {
    uint64_t v = fb.load(std::memory_order_relaxed);
    for (;;) {
      const int64_t f = static_cast<int64_t>(v & 0xffffffffu), b = static_cast<int64_t>(v >> 32);
      if (f >= b) return false;
      const int64_t m = b - (b - f + 1) / 2;
      if (fb.compare_exchange_weak(v, pack(f, m), std::memory_order_relaxed)) {
        *u0 = m;
        *u1 = b;
        return true;
      }
    }
  }
};

// One matrix of a streaming pass: Y[v, r] = dot(W row r, X[v]), Y[n, rows].
struct RowJob {
  const Tensor* W;
  RowKernel kern;
  float* Y;
};

RowJob row_job(const Tensor& W, float* Y, const char* op) {
  return RowJob{&W, checked_kernel(W, op), Y};
}

// Runs every job over the same X[n, cols] in one OpenMP region: streams each W
// once; each row meets all n vectors while it is in L1. X is quantised once
// when any job needs 8-bit activations.
void multiply_rows(const RowJob* jobs, int njobs, const float* X, int64_t n) {
  const int64_t cols = jobs[0].W->cols();
  bool quantised = false;
  size_t bytes = 0;
  for (int j = 0; j < njobs; ++j) {
    quantised = quantised || kernels::uses_q8_act(jobs[j].W->type);
    bytes += static_cast<size_t>(jobs[j].W->rows()) * jobs[j].W->row_stride();
  }
  if (quantised) tl_act.quantize(X, n, cols);
  const int64_t nchunks = (n + kMaxVec - 1) / kMaxVec;
  Acts one;
  Acts* acts = &one;
  if (nchunks > 1) {
    tl_acts.resize(static_cast<size_t>(nchunks));
    acts = tl_acts.data();
  }
  for (int64_t v = 0; v < n; ++v) {  // both forms: jobs may differ in type
    Acts& a = acts[v / kMaxVec];
    if (quantised) a.q[v % kMaxVec] = tl_act.view(v);
    a.x[v % kMaxVec] = X + v * cols;
  }
  // Rows go out in units of kRowAlign rows (never spanning two jobs; a job's
  // last unit may be shorter). Each thread owns a contiguous share of the units
  // and takes them one at a time from its front, so its weight stream stays
  // sequential and the prefetch 4 KiB ahead warms its next unit; a thread whose
  // share is done takes half of what is left of the fullest other share, from
  // its back. (An earlier dynamic schedule of interleaved blocks restarted a
  // cold stream at every block: ~20 us per matvec region of llama-110m q8_0 on
  // 2 cores. Stealing keeps what it was for: when one core gets less memory
  // bandwidth for a while, the other does more of the work.)
  int64_t first_unit[8 + 1] = {};  // job j owns units [first_unit[j], first_unit[j + 1])
  for (int j = 0; j < njobs; ++j)
    first_unit[j + 1] = first_unit[j] + (jobs[j].W->rows() + kRowAlign - 1) / kRowAlign;
  const int64_t nunits = first_unit[njobs];
  const bool parallel = go_parallel(bytes);
  const int nt = parallel ? std::max(1, omp_get_max_threads()) : 1;
  std::vector<UnitRange> shares(static_cast<size_t>(nt));
  for (int t = 0; t < nt; ++t) shares[t].init(nunits * t / nt, nunits * (t + 1) / nt);
  auto run_units = [&](int64_t u0, int64_t u1, float* out) {
    int j = 0;
    for (int64_t u = u0; u < u1; ++u) {
      while (u >= first_unit[j + 1]) ++j;
      const RowJob& job = jobs[j];
      const int64_t rows = job.W->rows(), stride = static_cast<int64_t>(job.W->row_stride());
      const int64_t r0 = (u - first_unit[j]) * kRowAlign, r1 = std::min(rows, r0 + kRowAlign);
      const uint8_t* row = job.W->row(r0);
      for (int64_t r = r0; r < r1; ++r, row += stride) {
        for (int64_t c = 0; c < nchunks; ++c) {
          const int nv = static_cast<int>(std::min<int64_t>(kMaxVec, n - c * kMaxVec));
          job.kern(row, cols, acts[c], nv, out);
          for (int v = 0; v < nv; ++v) job.Y[(c * kMaxVec + v) * rows + r] = out[v];
        }
      }
    }
  };
#pragma omp parallel num_threads(nt) if (parallel)
  {
    float out[kMaxVec];
    const int t = omp_get_thread_num();
    int64_t u;
    while ((u = shares[t].take_front()) >= 0) run_units(u, u + 1, out);
    for (;;) {  // steal
      int victim = -1;
      int64_t most = 0;
      for (int o = 0; o < nt; ++o)
        if (const int64_t left = shares[o].left(); left > most) most = left, victim = o;
      if (victim < 0) break;
      int64_t s0, s1;
      if (shares[victim].take_back_half(&s0, &s1)) run_units(s0, s1, out);
    }
  }
}

// Y[n, rows] (leading dimension ldy) = X[n, cols] * Wf[rows, cols]^T, fp32.
void sgemm_xwt(const float* X, int64_t n, const float* Wf, int64_t rows, int64_t cols, float* Y, int64_t ldy) {
  cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, static_cast<blasint>(n), static_cast<blasint>(rows),
              static_cast<blasint>(cols), 1.0f, X, static_cast<blasint>(cols), Wf, static_cast<blasint>(cols), 0.0f,
              Y, static_cast<blasint>(ldy));
}

}  // namespace

// NOTE: Harmonia threads BLAS calls itself (OpenMP over row tiles of W, one
// single-threaded sgemm per thread) instead of letting OpenBLAS run its own
// pthread pool: with OpenMP dequantising tiles and OpenBLAS's pool running the
// sgemm of each, the two pools' spinning threads fought for the 2 cores and a
// 2048x768 q8_0 matmul took ~60 ms whatever n (16, 64 or 256). This sets
// OpenBLAS to 1 thread for the whole process.
void set_blas_single_threaded() {
  static std::once_flag once;
  std::call_once(once, [] { openblas_set_num_threads(1); });
}

const char* kernel_isa() { return kernels::isa_name(); }

float dot_row(DType t, const void* row, const float* x, int64_t n) {
  const RowKernel kern = kernels::row_kernel(t);
  if (!kern) fail(ErrorKind::Unsupported, "dot_row: no kernel for tensor type {}", dtype_name(t));
  (void)row_bytes(t, n);  // validates the block multiple
  Acts a;
  if (kernels::uses_q8_act(t)) {
    tl_act.quantize(x, 1, n);
    a.q[0] = tl_act.view(0);
  } else {
    a.x[0] = x;
  }
  float out;
  kern(static_cast<const uint8_t*>(row), n, a, 1, &out);
  return out;
}

void matvec(const Tensor& W, const float* x, float* y) {
  const RowJob job = row_job(W, y, "matvec");
  multiply_rows(&job, 1, x, 1);
}

void matmul(const Tensor& W, const float* X, int64_t n, float* Y) {
  if (n <= 0) return;
  const RowJob job = row_job(W, Y, "matmul");
  if (n <= kMatmulStreamMaxN) return multiply_rows(&job, 1, X, n);

  const int64_t rows = W.rows(), cols = W.cols();
  set_blas_single_threaded();
  const bool is_f32 = W.type == DType::F32;
  // Rows of W per sgemm call: a dequantised tile of ~512 KiB stays in L2 while
  // sgemm packs it; X is packed once per call, negligible at >= 64 rows.
  const int64_t tile =
      std::max<int64_t>(kRowAlign, static_cast<int64_t>(kTileBytes / (4 * cols)) / kRowAlign * kRowAlign);
#pragma omp parallel if (go_parallel(static_cast<size_t>(rows) * W.row_stride()))
  {
    int64_t r0, r1;
    thread_rows(rows, &r0, &r1);
    if (is_f32) {
      if (r1 > r0) sgemm_xwt(X, n, reinterpret_cast<const float*>(W.row(r0)), r1 - r0, cols, Y + r0, rows);
    } else {
      tl_tile.resize(static_cast<size_t>(std::min(tile, std::max<int64_t>(r1 - r0, 1)) * cols));
      float* Wf = tl_tile.data();
      for (int64_t t0 = r0; t0 < r1; t0 += tile) {
        const int64_t nr = std::min(tile, r1 - t0);
        for (int64_t r = 0; r < nr; ++r) dequantize_row(W.type, W.row(t0 + r), Wf + r * cols, cols);
        sgemm_xwt(X, n, Wf, nr, cols, Y + t0, rows);
      }
    }
  }
}

void matmul_multi(std::initializer_list<MatmulJob> jobs, const float* X, int64_t n) {
  if (n <= 0 || jobs.size() == 0) return;
  if (jobs.size() > 8) fail(ErrorKind::InvalidInput, "matmul_multi: {} matrices, at most 8", jobs.size());
  const int64_t cols = jobs.begin()->W->cols();
  for (const MatmulJob& j : jobs)
    if (j.W->cols() != cols)
      fail(ErrorKind::InvalidInput, "matmul_multi: tensor '{}' has {} columns, '{}' has {}", name_of(*j.W),
           j.W->cols(), name_of(*jobs.begin()->W), cols);
  if (n > kMatmulStreamMaxN) {
    for (const MatmulJob& j : jobs) matmul(*j.W, X, n, j.Y);
    return;
  }
  RowJob rj[8];
  int k = 0;
  for (const MatmulJob& j : jobs) rj[k++] = row_job(*j.W, j.Y, "matmul");
  multiply_rows(rj, k, X, n);
}

// ---- SwiGLU ------------------------------------------------------------------
// expf as Cephes' expf.c: x = k ln2 + r (|r| <= ln2/2, ln2 split in two so k ln2
// is exact), exp(r) by its degree-6 minimax polynomial, times 2^k built in the
// exponent bits. |x| clamped to 88.37 so 2^k stays a normal float (k in [-127, 127];
// k = -127 gives 0, which silu absorbs: x / (1 + ~1e-38)). Written once with GCC
// vector extensions: -march=native makes it 16 lanes of AVX-512 or 8 of AVX2.
namespace {
#if defined(__AVX512F__)
constexpr int kLanes = 16;
#elif defined(__AVX2__)
constexpr int kLanes = 8;
#else
constexpr int kLanes = 4;
#endif
typedef float VecF __attribute__((vector_size(4 * kLanes)));
typedef int32_t VecI __attribute__((vector_size(4 * kLanes)));

VecF exp_lanes(VecF x) {
  const VecF hi = VecF{} + 88.3762626647949f, lo = -hi;
  x = x > hi ? hi : x;
  x = x < lo ? lo : x;
  // Round to nearest by adding 1.5 * 2^23 (|x log2 e| < 2^22): no -ffast-math here.
  const VecF k = (x * 1.44269504088896341f + 12582912.0f) - 12582912.0f;
  VecF r = x - k * 0.693359375f;
  r = r - k * -2.12194440e-4f;
  VecF p = r * 1.9875691500e-4f + 1.3981999507e-3f;
  p = p * r + 8.3334519073e-3f;
  p = p * r + 4.1665795894e-2f;
  p = p * r + 1.6666665459e-1f;
  p = p * r + 5.0000001201e-1f;
  p = p * (r * r) + r + 1.0f;
  const VecI e = (__builtin_convertvector(k, VecI) + 127) << 23;
  return p * std::bit_cast<VecF>(e);
}
}  // namespace

void swiglu(float* h, const float* g, int64_t n) {
  int64_t i = 0;
  for (; i + kLanes <= n; i += kLanes) {
    VecF x, y;
    std::memcpy(&x, h + i, sizeof x);
    std::memcpy(&y, g + i, sizeof y);
    x = x / (1.0f + exp_lanes(-x)) * y;
    std::memcpy(h + i, &x, sizeof x);
  }
  for (; i < n; ++i) h[i] = h[i] / (1.0f + std::exp(-h[i])) * g[i];
}

}  // namespace harmonia
