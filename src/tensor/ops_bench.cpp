// Microbenchmarks of the tensor kernels (Google Benchmark).
//
//   bench_tensor --benchmark_filter='StreamSum|Roofline/(0|8)/'   f32/q8_0 decode roofline
//   bench_tensor --benchmark_filter=Decode110M                     one decode step, 110M model
//   bench_tensor --benchmark_filter=Matmul                         prefill GFLOP/s by n
//
// Decode is memory-bound, so matvec is reported as GB/s of weight bytes read, to
// compare with BM_StreamSum (a plain streaming read of 512 MiB: the machine's
// achievable read bandwidth). BM_MatvecRoofline interleaves the two on the same
// data and reports their ratio (robust to other load on the machine; needs a
// quiet machine all the same: with 2 threads on 2 cores, any other runnable
// process stalls whole calls). In BM_Matvec, "cold" rotates through >= 512 MiB
// of copies of the matrix so every call reads from DRAM, as a model's decode
// step does; "hot" repeats one copy, which stays in L2/L3 when it fits.
// BM_Decode110M runs one decode step's matvecs of a 110M-parameter llama
// (llama2.c stories110M: dim 768, hidden 2048, 12 layers, vocab 32000).
// Args are (DType id, rows, cols, threads, ...); the label names the type.
#include <benchmark/benchmark.h>
#include <omp.h>

#include <algorithm>
#include <chrono>
#include <cstring>
#include <memory>
#include <random>
#include <vector>

#if defined(__AVX2__)
#include <immintrin.h>
#endif

#include "tensor/ops.h"

namespace harmonia {
namespace {

constexpr size_t kColdBytes = size_t{512} << 20;

struct AlignedFree {
  void operator()(void* p) const { std::free(p); }
};
using Buffer = std::unique_ptr<uint8_t, AlignedFree>;

Buffer alloc(size_t bytes) {
  auto* p = static_cast<uint8_t*>(std::aligned_alloc(64, (bytes + 63) / 64 * 64));
  return Buffer(p);
}

// `copies` copies of one random [rows, cols] matrix of type t, back to back.
struct Weights {
  Buffer buf;
  std::vector<Tensor> copies;
};

Weights make_weights(DType t, int64_t rows, int64_t cols, size_t min_total_bytes) {
  const size_t bytes = row_bytes(t, cols) * static_cast<size_t>(rows);
  const size_t ncopies = std::max<size_t>(1, (min_total_bytes + bytes - 1) / bytes);
  Weights w;
  w.buf = alloc(bytes * ncopies);
  std::mt19937 rng(1);
  std::normal_distribution<float> nd(0.0f, 0.02f);
  std::vector<float> row(static_cast<size_t>(cols));
  for (int64_t r = 0; r < rows; ++r) {
    for (auto& v : row) v = nd(rng);
    quantize_row(t, row.data(), w.buf.get() + r * row_bytes(t, cols), cols);
  }
  for (size_t c = 0; c < ncopies; ++c) {
    if (c > 0) std::memcpy(w.buf.get() + c * bytes, w.buf.get(), bytes);
    Tensor tt;
    tt.name = "bench";
    tt.type = t;
    tt.ne = {cols, rows, 1, 1};
    tt.n_dims = 2;
    tt.data = w.buf.get() + c * bytes;
    tt.nbytes = bytes;
    w.copies.push_back(tt);
  }
  return w;
}

std::vector<float> random_vec(size_t n) {
  std::mt19937 rng(2);
  std::normal_distribution<float> nd(0.0f, 1.0f);
  std::vector<float> v(n);
  for (auto& x : v) x = nd(rng);
  return v;
}

void set_rate(benchmark::State& st, double bytes_per_iter) {
  st.counters["GB/s"] = benchmark::Counter(bytes_per_iter * static_cast<double>(st.iterations()) / 1e9,
                                           benchmark::Counter::kIsRate);
}

// ---- read bandwidth -------------------------------------------------------------------

// Sum of the floats in [p, p + bytes) with the current OpenMP team, each thread
// reading a contiguous share: the read pattern of matvec without its arithmetic.
float stream_sum(const uint8_t* p, size_t bytes) {
  const auto* a = reinterpret_cast<const float*>(p);
  const size_t n = bytes / sizeof(float);
  float total = 0;
#pragma omp parallel reduction(+ : total)
  {
    const size_t t = omp_get_thread_num(), nt = omp_get_num_threads();
    const size_t b = n * t / nt / 64 * 64, e = n * (t + 1) / nt / 64 * 64;
#if defined(__AVX512F__)
    __m512 s0 = _mm512_setzero_ps(), s1 = s0, s2 = s0, s3 = s0;
    for (size_t i = b; i < e; i += 64) {
      s0 = _mm512_add_ps(s0, _mm512_loadu_ps(a + i));
      s1 = _mm512_add_ps(s1, _mm512_loadu_ps(a + i + 16));
      s2 = _mm512_add_ps(s2, _mm512_loadu_ps(a + i + 32));
      s3 = _mm512_add_ps(s3, _mm512_loadu_ps(a + i + 48));
    }
    alignas(64) float lanes[16];
    _mm512_store_ps(lanes, _mm512_add_ps(_mm512_add_ps(s0, s1), _mm512_add_ps(s2, s3)));
    for (float v : lanes) total += v;
#else
    float s[16] = {};
    for (size_t i = b; i < e; i += 16)
      for (int k = 0; k < 16; ++k) s[k] += a[i + k];
    for (float v : s) total += v;
#endif
  }
  return total;
}

// Args: threads.
void BM_StreamSum(benchmark::State& st) {
  omp_set_num_threads(static_cast<int>(st.range(0)));
  Buffer buf = alloc(kColdBytes);
  auto* a = reinterpret_cast<float*>(buf.get());
  const size_t n = kColdBytes / sizeof(float);
#pragma omp parallel for schedule(static)
  for (size_t i = 0; i < n; ++i) a[i] = 1.0f;  // first touch by the reading thread
  for (auto _ : st) benchmark::DoNotOptimize(stream_sum(buf.get(), kColdBytes));
  set_rate(st, static_cast<double>(kColdBytes));
}
BENCHMARK(BM_StreamSum)->Arg(1)->Arg(2)->UseRealTime()->Unit(benchmark::kMillisecond);

// ---- matvec (decode) ------------------------------------------------------------------------

// Args: type, rows, cols, threads, cold
void BM_Matvec(benchmark::State& st) {
  const auto t = static_cast<DType>(st.range(0));
  const int64_t rows = st.range(1), cols = st.range(2);
  const bool cold = st.range(4) != 0;
  omp_set_num_threads(static_cast<int>(st.range(3)));
  const Weights w = make_weights(t, rows, cols, cold ? kColdBytes : 0);
  const auto x = random_vec(static_cast<size_t>(cols));
  std::vector<float> y(static_cast<size_t>(rows));
  size_t c = 0;
  for (auto _ : st) {
    matvec(w.copies[c], x.data(), y.data());
    benchmark::ClobberMemory();
    if (++c == w.copies.size()) c = 0;
  }
  set_rate(st, static_cast<double>(w.copies[0].nbytes));
  st.SetLabel(std::string(dtype_name(t)) + (cold ? " cold " : " hot ") + kernel_isa());
}

void MatvecArgs(benchmark::internal::Benchmark* b) {
  for (DType t : {DType::F32, DType::Q8_0, DType::F16, DType::BF16, DType::Q4_0, DType::Q4_K, DType::Q5_K, DType::Q6_K})
    for (auto [rows, cols] : {std::pair<int64_t, int64_t>{32000, 768}, {2048, 768}, {768, 2048}})
      for (int threads : {1, 2})
        for (int cold : {1, 0}) b->Args({static_cast<int64_t>(t), rows, cols, threads, cold});
}
BENCHMARK(BM_Matvec)->Apply(MatvecArgs)->UseRealTime()->Unit(benchmark::kMicrosecond);

// Roofline fraction robust to a shared, noisy machine: each iteration streams
// one cold copy of the weights (stream_sum) and runs matvec on the next, so both
// see the same interference; reports the median GB/s of each and their ratio.
// Args: type, rows, cols, threads.
void BM_MatvecRoofline(benchmark::State& st) {
  using clock = std::chrono::steady_clock;
  const auto t = static_cast<DType>(st.range(0));
  const int64_t rows = st.range(1), cols = st.range(2);
  omp_set_num_threads(static_cast<int>(st.range(3)));
  const Weights w = make_weights(t, rows, cols, kColdBytes);
  const auto x = random_vec(static_cast<size_t>(cols));
  std::vector<float> y(static_cast<size_t>(rows));
  std::vector<double> t_stream, t_matvec;
  const size_t nc = w.copies.size();
  size_t c = 0;
  for (auto _ : st) {
    const auto t0 = clock::now();
    benchmark::DoNotOptimize(stream_sum(static_cast<const uint8_t*>(w.copies[c % nc].data), w.copies[0].nbytes));
    const auto t1 = clock::now();
    matvec(w.copies[(c + 1) % nc], x.data(), y.data());
    benchmark::ClobberMemory();
    const auto t2 = clock::now();
    t_stream.push_back(std::chrono::duration<double>(t1 - t0).count());
    t_matvec.push_back(std::chrono::duration<double>(t2 - t1).count());
    c += 2;
  }
  auto median = [](std::vector<double> v) {
    std::nth_element(v.begin(), v.begin() + v.size() / 2, v.end());
    return v[v.size() / 2];
  };
  const double bytes = static_cast<double>(w.copies[0].nbytes);
  const double ms = median(t_matvec), ss = median(t_stream);
  st.counters["matvec_GB/s"] = bytes / ms / 1e9;
  st.counters["stream_GB/s"] = bytes / ss / 1e9;
  st.counters["roofline_%"] = 100.0 * ss / ms;
  st.SetLabel(std::string(dtype_name(t)) + " " + kernel_isa());
}
void RooflineArgs(benchmark::internal::Benchmark* b) {
  for (DType t : {DType::F32, DType::Q8_0, DType::F16, DType::BF16, DType::Q4_0, DType::Q4_K, DType::Q5_K, DType::Q6_K})
    for (auto [rows, cols] : {std::pair<int64_t, int64_t>{32000, 768}, {2048, 768}, {768, 2048}})
      for (int threads : {1, 2}) b->Args({static_cast<int64_t>(t), rows, cols, threads});
}
BENCHMARK(BM_MatvecRoofline)->Apply(RooflineArgs)->UseRealTime()->Unit(benchmark::kMicrosecond);

// One decode step of a 110M llama: every weight matrix once, as the forward pass
// reads them. Args: type, threads.
void BM_Decode110M(benchmark::State& st) {
  const auto t = static_cast<DType>(st.range(0));
  omp_set_num_threads(static_cast<int>(st.range(1)));
  constexpr int64_t dim = 768, hidden = 2048, layers = 12, vocab = 32000;
  std::vector<Weights> mats;
  for (int l = 0; l < layers; ++l) {
    for (int k = 0; k < 4; ++k) mats.push_back(make_weights(t, dim, dim, 0));  // wq wk wv wo
    mats.push_back(make_weights(t, hidden, dim, 0));                            // w_gate
    mats.push_back(make_weights(t, hidden, dim, 0));                            // w_up
    mats.push_back(make_weights(t, dim, hidden, 0));                            // w_down
  }
  mats.push_back(make_weights(t, vocab, dim, 0));  // output
  const auto x = random_vec(hidden);
  std::vector<float> y(vocab);
  double bytes = 0;
  for (const auto& m : mats) bytes += static_cast<double>(m.copies[0].nbytes);
  for (auto _ : st) {
    for (const auto& m : mats) matvec(m.copies[0], x.data(), y.data());
    benchmark::ClobberMemory();
  }
  set_rate(st, bytes);
  st.counters["MB/token"] = bytes / 1e6;
  st.SetLabel(std::string(dtype_name(t)) + " " + kernel_isa());
}
BENCHMARK(BM_Decode110M)
    ->ArgsProduct({{static_cast<int64_t>(DType::F32), static_cast<int64_t>(DType::Q8_0),
                    static_cast<int64_t>(DType::Q4_K), static_cast<int64_t>(DType::Q6_K)},
                   {1, 2}})
    ->UseRealTime()
    ->Unit(benchmark::kMillisecond);

// ---- matmul (prefill) -----------------------------------------------------------------------

// Args: type, rows, cols, n, threads. Reports GFLOP/s (2 n rows cols per call).
void BM_Matmul(benchmark::State& st) {
  const auto t = static_cast<DType>(st.range(0));
  const int64_t rows = st.range(1), cols = st.range(2), n = st.range(3);
  omp_set_num_threads(static_cast<int>(st.range(4)));
  const Weights w = make_weights(t, rows, cols, 0);
  const auto X = random_vec(static_cast<size_t>(n * cols));
  std::vector<float> Y(static_cast<size_t>(n * rows));
  for (auto _ : st) {
    matmul(w.copies[0], X.data(), n, Y.data());
    benchmark::ClobberMemory();
  }
  st.counters["GFLOP/s"] = benchmark::Counter(2.0 * n * rows * cols * static_cast<double>(st.iterations()) / 1e9,
                                              benchmark::Counter::kIsRate);
  st.SetLabel(dtype_name(t));
}
BENCHMARK(BM_Matmul)
    ->ArgsProduct({{static_cast<int64_t>(DType::F32), static_cast<int64_t>(DType::Q8_0),
                    static_cast<int64_t>(DType::Q4_K)},
                   {2048},
                   {768},
                   {1, 2, 4, 8, 16, 32, 33, 64, 256},
                   {2}})
    ->UseRealTime()
    ->Unit(benchmark::kMicrosecond);

// ---- row conversion -------------------------------------------------------------------------

// Args: type. Reports fp32 elements per second produced.
void BM_DequantizeRow(benchmark::State& st) {
  const auto t = static_cast<DType>(st.range(0));
  constexpr int64_t n = 4096;
  const Weights w = make_weights(t, 64, n, 0);
  std::vector<float> y(n);
  int64_t r = 0;
  for (auto _ : st) {
    dequantize_row(t, w.copies[0].row(r), y.data(), n);
    benchmark::ClobberMemory();
    r = (r + 1) % 64;
  }
  st.SetItemsProcessed(st.iterations() * n);
  st.SetLabel(dtype_name(t));
}
BENCHMARK(BM_DequantizeRow)
    ->Arg(static_cast<int64_t>(DType::F16))
    ->Arg(static_cast<int64_t>(DType::Q8_0))
    ->Arg(static_cast<int64_t>(DType::Q4_0))
    ->Arg(static_cast<int64_t>(DType::Q4_K))
    ->Arg(static_cast<int64_t>(DType::Q5_K))
    ->Arg(static_cast<int64_t>(DType::Q6_K));

}  // namespace
}  // namespace harmonia

BENCHMARK_MAIN();
