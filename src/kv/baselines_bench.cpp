// Microbenchmarks of the baseline policies' attention (Google Benchmark):
// one decode step of one layer at a Llama-3-8B head layout (32 query heads,
// 8 kv heads, head_dim 128) over a context of `ctx` tokens, and the
// prompt-time work of the compressing policies.
//
//   bench_kv --benchmark_filter=Decode     per-token attention cost by policy
//
// Built as `bench_kv` when Google Benchmark is installed (CMakeLists.txt).
#include <benchmark/benchmark.h>

#include <random>
#include <string>
#include <vector>

#include "kv/policy.h"

namespace harmonia::kv {
namespace {

Shape layer_shape(int64_t ctx) {
  Shape s;
  s.n_layers = 1;
  s.n_heads = 32;
  s.n_kv_heads = 8;
  s.head_dim = 128;
  s.max_tokens = ctx + 4096;
  return s;
}

std::vector<float> randn(size_t n, uint32_t seed) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> nd;
  std::vector<float> v(n);
  for (auto& x : v) x = nd(rng);
  return v;
}

// Prefills ctx tokens (planned, one chunk), then times decode steps.
void decode(benchmark::State& st, const std::string& policy, const Options& opts) {
  const int64_t ctx = st.range(0);
  const Shape s = layer_shape(ctx);
  auto p = make_policy(policy, s, opts);
  const size_t kvd = 8 * 128, qd = 32 * 128;
  const auto k = randn(ctx * kvd, 1), v = randn(ctx * kvd, 2), q = randn(ctx * qd, 3);
  std::vector<float> out(ctx * qd);
  p->plan(ctx, 1 << 20);
  p->append(0, ctx, k.data(), v.data());
  p->attend(0, ctx, q.data(), out.data());
  p->commit(ctx);
  int64_t i = 0;
  for (auto _ : st) {
    const int64_t t = i++ % ctx;
    p->append(0, 1, k.data() + t * kvd, v.data() + t * kvd);
    p->attend(0, 1, q.data() + t * qd, out.data());
    p->commit(1);
    if (p->n_tokens() >= s.max_tokens) st.SkipWithError("context full");
  }
  st.counters["kv_bytes"] = static_cast<double>(p->total_bytes());
}

#define DECODE(NAME, POLICY, ...)                                                                    \
  void BM_Decode_##NAME(benchmark::State& st) { decode(st, POLICY, Options{__VA_ARGS__}); }        \
  BENCHMARK(BM_Decode_##NAME)->Arg(4096)->Unit(benchmark::kMicrosecond)

DECODE(FullF32, "full", );
DECODE(FullF16, "full", {"k_type", "f16"}, {"v_type", "f16"});
DECODE(FullQ8_0, "full", {"k_type", "q8_0"}, {"v_type", "q8_0"});
DECODE(FullQ4_0, "full", {"k_type", "q4_0"}, {"v_type", "q4_0"});
DECODE(Streaming, "streaming", {"sink", "4"}, {"window", "1024"});
DECODE(SnapKV, "snapkv", {"budget", "2020"});
DECODE(H2O, "h2o", {"heavy", "1024"}, {"recent", "1024"});
DECODE(KIVI2, "kivi", {"bits", "2"});
DECODE(KIVI4, "kivi", {"bits", "4"});

}  // namespace
}  // namespace harmonia::kv

BENCHMARK_MAIN();
