#include "engine/bench.h"

#include <omp.h>

#include <algorithm>
#include <memory>

#include "common/env.h"
#include "common/huge_pages.h"
#include "common/error.h"
#include "kv/full.h"
#include "kv/policy.h"
#include "model/forward.h"

namespace harmonia {

double median(std::vector<double> v) {
  if (v.empty()) return 0;
  std::sort(v.begin(), v.end());
  const size_t n = v.size();
  return n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
}

double measure_read_bandwidth(int threads, size_t bytes, int reps) {
  const size_t n = bytes / sizeof(float);
  HugeVector<float> buf(n);  // on huge pages, as the weights and the KV cache are
  const int nt = threads > 0 ? threads : omp_get_max_threads();
#pragma omp parallel for num_threads(nt) schedule(static)
  for (size_t i = 0; i < n; ++i) buf[i] = static_cast<float>(i & 1023);
  std::vector<double> gbs;
  volatile float sink = 0;
  for (int r = 0; r < reps + 1; ++r) {
    const double t0 = now_ms();
    float total = 0;
    // 64 independent partial sums per thread (the compiler turns them into vector registers): one
    // ordered float sum is a chain of dependent adds (~4 GB/s per core), far below memory bandwidth.
    constexpr size_t kLanes = 64;
#pragma omp parallel num_threads(nt) reduction(+ : total)
    {
      const size_t t = static_cast<size_t>(omp_get_thread_num()), T = static_cast<size_t>(omp_get_num_threads());
      const size_t blocks = n / kLanes, lo = blocks * t / T * kLanes, hi = blocks * (t + 1) / T * kLanes;
      float acc[kLanes] = {};
      for (size_t i = lo; i < hi; i += kLanes)
        for (size_t l = 0; l < kLanes; ++l) acc[l] += buf[i + l];
      for (size_t l = 0; l < kLanes; ++l) total += acc[l];
    }
    const double ms = now_ms() - t0;
    sink = sink + total;
    if (r > 0) gbs.push_back(static_cast<double>(bytes) / (ms * 1e6));  // first pass warms up
  }
  return median(gbs);
}

namespace {

// Puts `depth` tokens into a fresh policy (see BenchOptions::fill).
std::unique_ptr<kv::Policy> filled_cache(const Model& m, Forward& fw, const BenchOptions& o, int64_t ctx,
                                         uint64_t seed) {
  const ModelConfig& c = m.config;
  auto kv = kv::make_policy(o.kv_policy, kv_shape(c, ctx), o.kv_options);
  kv->plan(o.depth, std::max(o.n_prompt, o.n_gen));
  // The test measures steady decode: no re-lay of a growing cache inside it.
  if (auto* full = dynamic_cast<kv::FullCache*>(kv.get())) full->reserve(ctx);
  constexpr int64_t kChunk = 512;
  if (o.fill == "model") {
    std::vector<int32_t> toks(kChunk);
    std::vector<float> logits(c.vocab_size);
    uint64_t s = seed;
    for (int64_t i = 0; i < o.depth; i += kChunk) {
      const int64_t n = std::min(kChunk, o.depth - i);
      for (int64_t j = 0; j < n; ++j) {
        s = s * 6364136223846793005ull + 1442695040888963407ull;
        toks[j] = static_cast<int32_t>((s >> 33) % static_cast<uint64_t>(c.vocab_size));
      }
      fw.run(toks.data(), n, *kv, logits.data());
    }
  } else if (o.fill == "synthetic") {
    const int64_t width = static_cast<int64_t>(c.n_kv_heads) * c.head_dim;
    std::vector<float> k(kChunk * width), v(kChunk * width);
    uint64_t s = seed;
    auto next = [&]() {
      s = s * 6364136223846793005ull + 1442695040888963407ull;
      return static_cast<float>(static_cast<int32_t>(s >> 32)) * (1.0f / 2147483648.0f);
    };
    for (int64_t i = 0; i < o.depth; i += kChunk) {
      const int64_t n = std::min(kChunk, o.depth - i);
      for (int l = 0; l < c.n_layers; ++l) {
        for (int64_t j = 0; j < n * width; ++j) {
          k[j] = next();
          v[j] = next();
        }
        kv->append(l, n, k.data(), v.data());
      }
      kv->commit(n);
    }
  } else {
    fail(ErrorKind::InvalidInput, "bench: --fill must be synthetic or model, got '{}'", o.fill);
  }
  return kv;
}

}  // namespace

BenchResult run_bench(const Model& m, const BenchOptions& o, double bw) {
  if (o.reps < 1 || o.n_prompt < 0 || o.n_gen < 0 || o.depth < 0)
    fail(ErrorKind::InvalidInput, "bench: reps must be >= 1 and -p/-n/-d >= 0");
  const ModelConfig& c = m.config;
  const int64_t ctx = o.depth + std::max(o.n_prompt, o.n_gen) + 1;
  set_threads(o.threads);
  Forward fw(m);
  uint64_t s = o.seed;
  auto rand_tok = [&]() {
    s = s * 6364136223846793005ull + 1442695040888963407ull;
    return static_cast<int32_t>((s >> 33) % static_cast<uint64_t>(c.vocab_size));
  };
  std::vector<float> logits(c.vocab_size);
  BenchResult r;
  r.kv_policy = o.kv_policy;
  r.depth = o.depth;
  std::vector<int32_t> prompt(static_cast<size_t>(o.n_prompt));
  size_t kv_bytes_start = 0, kv_bytes_end = 0;
  // Each repetition starts from a freshly filled cache (compressed policies cannot
  // roll back); repetition 0 warms up and is not counted.
  for (int rep = 0; rep < o.reps + 1 && o.n_prompt > 0; ++rep) {
    for (auto& t : prompt) t = rand_tok();
    auto kv = filled_cache(m, fw, o, ctx, o.seed + rep);
    const double t0 = now_ms();
    fw.run(prompt.data(), o.n_prompt, *kv, logits.data());
    const double ms = now_ms() - t0;
    if (rep > 0) r.prefill_samples.push_back(o.n_prompt * 1000.0 / ms);
  }
  r.weight_bytes = m.decode_read_bytes();
  std::vector<double> fractions;
  for (int rep = 0; rep < o.reps + 1 && o.n_gen > 0; ++rep) {
    auto kv = filled_cache(m, fw, o, ctx, o.seed + 1000 + rep);
    kv_bytes_start = kv->total_bytes();
    // bw < 0: the bandwidth is measured right before each repetition, so that a
    // machine whose bandwidth drifts (shared hosts) is compared with itself.
    const double rep_bw = bw < 0 ? measure_read_bandwidth(o.threads, size_t{256} << 20, 3) : bw;
    int32_t t = rand_tok();
    const double t0 = now_ms();
    for (int i = 0; i < o.n_gen; ++i) fw.run(&t, 1, *kv, logits.data());
    const double ms = now_ms() - t0;
    kv_bytes_end = kv->total_bytes();
    if (rep == 0) continue;
    const double tok_s = o.n_gen * 1000.0 / ms;
    r.decode_samples.push_back(tok_s);
    if (rep_bw > 0) {
      r.bandwidth_samples.push_back(rep_bw);
      // A decode step reads the whole cache it holds: mean of the held bytes over the test.
      const double bytes = static_cast<double>(r.weight_bytes + (kv_bytes_start + kv_bytes_end) / 2);
      fractions.push_back(tok_s / (rep_bw * 1e9 / bytes));
    }
  }
  r.prefill_tok_s = median(r.prefill_samples);
  r.decode_tok_s = median(r.decode_samples);
  r.kv_bytes_read = (kv_bytes_start + kv_bytes_end) / 2;
  r.bandwidth_gb_s = median(r.bandwidth_samples);
  if (r.bandwidth_gb_s > 0) {
    r.roofline_tok_s = r.bandwidth_gb_s * 1e9 / static_cast<double>(r.weight_bytes + r.kv_bytes_read);
    r.fraction = median(fractions);
  }
  return r;
}

}  // namespace harmonia
