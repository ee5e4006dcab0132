// Decode-step attention timing, `full` vs `fourier`, at a long context on the
// llama-1b shape (16 layers, 32 q heads, 8 kv heads, head_dim 64; one layer is
// timed, the per-step cost is 16x). Prints, does not assert. Runs only with
// HARMONIA_BENCH=1 (the prefill of 16k random tokens takes a few seconds).
#include <gtest/gtest.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <omp.h>

#include <random>

#include "common/env.h"
#include "kv/fourier.h"
#include "kv/full.h"

using namespace harmonia;
using namespace harmonia::kv;

namespace {

// Fastest of `reps` calls (the machine may be shared), after one warm-up call.
double time_attend(Policy& p, const std::vector<float>& q, std::vector<float>& out, int reps) {
  p.attend(0, 1, q.data(), out.data());
  double best = 1e30;
  for (int r = 0; r < reps; ++r) {
    const double t0 = now_ms();
    p.attend(0, 1, q.data(), out.data());
    best = std::min(best, now_ms() - t0);
  }
  return best;
}

}  // namespace

TEST(FourierTiming, DecodeAttendVsFull) {
  const char* env = std::getenv("HARMONIA_BENCH");
  if (!env || std::string(env) != "1") GTEST_SKIP() << "set HARMONIA_BENCH=1 to time decode attention";
  const int64_t depth = std::getenv("HARMONIA_BENCH_DEPTH") ? std::atoll(std::getenv("HARMONIA_BENCH_DEPTH")) : 16384;
  Shape s;
  s.n_layers = 1;
  s.n_heads = 32;
  s.n_kv_heads = 8;
  s.head_dim = 64;
  s.max_tokens = depth + 1024;
  // Layer-0 dims of the built-in 16-layer selection are the most compressed
  // (K 0.90 / V 0.95); also time a middle layer's 0.80 / 0.80.
  Shape s16 = s;
  s16.n_layers = 16;
  const FourierDims all = default_fourier_dims(s16, RopeLayout::Half);
  std::mt19937 rng(1);
  std::normal_distribution<float> nd;
  const size_t kvd = 8 * 64;
  std::vector<float> k(depth * kvd), v(depth * kvd), q(32 * 64), out(32 * 64), k1(kvd), v1(kvd);
  for (auto& x : k) x = nd(rng);
  for (auto& x : v) x = nd(rng);
  for (auto& x : q) x = nd(rng);
  for (auto& x : k1) x = nd(rng);
  for (auto& x : v1) x = nd(rng);
  FullCache full(s);
  full.append(0, depth, k.data(), v.data());
  full.commit(depth);
  full.append(0, 1, k1.data(), v1.data());
  const int reps = 9;
  const double t_full = time_attend(full, q, out, reps);
  std::printf("[ timing ] depth %lld, %d threads: full attend %.2f ms/layer\n", static_cast<long long>(depth),
              omp_get_max_threads(), t_full);
  for (int layer : {0, 8}) {
    for (const char* mode : {"spectral"}) {
      FourierDims d;
      d.n_layers = 1;
      d.kv_dim = static_cast<int>(kvd);
      d.layers = {all.layers[layer]};
      FourierOptions o = FourierOptions::parse({{"attention", mode}});
      FourierCache fc(s, o, d);
      fc.plan(depth, 256);
      const double t0 = now_ms();
      fc.append(0, depth, k.data(), v.data());
      fc.commit(depth);
      const double t_compress = now_ms() - t0;
      const double t1 = now_ms();
      fc.append(0, 1, k1.data(), v1.data());  // one eviction: rank-1 update of every coefficient
      const double t_update = now_ms() - t1;
      const double t = time_attend(fc, q, out, reps);
      std::printf(
          "[ timing ] fourier %s (dims of layer %d: %zu K + %zu V compressed of %zu, M %lld, T %lld): attend %.2f "
          "ms/layer (%.2fx full), rank-1 update %.2f ms, prefill compression %.0f ms; KV bytes %.1f MiB vs full "
          "%.1f MiB\n",
          mode, layer, d.layers[0].k_compressed.size(), d.layers[0].v_compressed.size(), kvd,
          static_cast<long long>(o.coeffs), static_cast<long long>(fc.segments(0).period), t, t / t_full, t_update,
          t_compress, ledger_total(fc.bytes()) / 1048576.0, ledger_total(full.bytes()) / 1048576.0);
    }
  }
}
