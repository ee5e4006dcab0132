#include "engine/bench.h"

#include <omp.h>

#include <algorithm>
#include <memory>

#include "common/env.h"
#include "common/error.h"
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
  std::unique_ptr<float[]> buf(new float[n]);
  const int nt = threads > 0 ? threads : omp_get_max_threads();
#pragma omp parallel for num_threads(nt) schedule(static)
  for (size_t i = 0; i < n; ++i) buf[i] = static_cast<float>(i & 1023);
  std::vector<double> gbs;
  volatile float sink = 0;
  for (int r = 0; r < reps + 1; ++r) {
    const double t0 = now_ms();
    float total = 0;
#pragma omp parallel for num_threads(nt) schedule(static) reduction(+ : total)
    for (size_t i = 0; i < n; ++i) total += buf[i];
    const double ms = now_ms() - t0;
    sink = sink + total;
    if (r > 0) gbs.push_back(static_cast<double>(bytes) / (ms * 1e6));  // first pass warms up
  }
  return median(gbs);
}

BenchResult run_bench(const Model& m, const BenchOptions& o, double bw) {
  if (o.reps < 1 || o.n_prompt < 0 || o.n_gen < 0 || o.depth < 0)
    fail(ErrorKind::InvalidInput, "bench: reps must be >= 1 and -p/-n/-d >= 0");
  const ModelConfig& c = m.config;
  const int64_t ctx = o.depth + std::max(o.n_prompt, o.n_gen) + 1;
  set_threads(o.threads);
  Forward fw(m);
  auto kv = kv::make_policy(o.kv_policy, kv_shape(c, ctx));
  uint64_t s = o.seed;
  auto rand_tok = [&]() {
    s = s * 6364136223846793005ull + 1442695040888963407ull;
    return static_cast<int32_t>((s >> 33) % static_cast<uint64_t>(c.vocab_size));
  };
  std::vector<float> logits(c.vocab_size);
  // The depth prefix is computed once (in chunks) and kept; each test truncates back to it.
  std::vector<int32_t> prefix(static_cast<size_t>(o.depth));
  for (auto& t : prefix) t = rand_tok();
  for (int64_t i = 0; i < o.depth; i += 512) {
    const int64_t n = std::min<int64_t>(512, o.depth - i);
    fw.run(prefix.data() + i, n, *kv, logits.data());
  }
  BenchResult r;
  r.kv_policy = o.kv_policy;
  r.depth = o.depth;
  std::vector<int32_t> prompt(static_cast<size_t>(o.n_prompt));
  for (int rep = 0; rep < o.reps + 1 && o.n_prompt > 0; ++rep) {  // rep 0 warms up
    for (auto& t : prompt) t = rand_tok();
    kv->truncate(o.depth);
    const double t0 = now_ms();
    fw.run(prompt.data(), o.n_prompt, *kv, logits.data());
    const double ms = now_ms() - t0;
    if (rep > 0) r.prefill_samples.push_back(o.n_prompt * 1000.0 / ms);
  }
  for (int rep = 0; rep < o.reps + 1 && o.n_gen > 0; ++rep) {
    kv->truncate(o.depth);
    int32_t t = rand_tok();
    const double t0 = now_ms();
    for (int i = 0; i < o.n_gen; ++i) fw.run(&t, 1, *kv, logits.data());
    const double ms = now_ms() - t0;
    if (rep > 0) r.decode_samples.push_back(o.n_gen * 1000.0 / ms);
  }
  r.prefill_tok_s = median(r.prefill_samples);
  r.decode_tok_s = median(r.decode_samples);
  r.weight_bytes = m.decode_read_bytes();
  // Mean context during the decode test is depth + n_gen/2; full cache reads all of it.
  // (Per-policy byte counts come from the policy's own ledger once compression applies.)
  const double mean_ctx = static_cast<double>(o.depth) + o.n_gen / 2.0;
  r.kv_bytes_read = static_cast<size_t>(mean_ctx * static_cast<double>(kv->total_bytes()) /
                                        std::max<int64_t>(1, kv->n_tokens()));
  r.bandwidth_gb_s = bw;
  if (bw > 0) r.roofline_tok_s = bw * 1e9 / static_cast<double>(r.weight_bytes + r.kv_bytes_read);
  return r;
}

}  // namespace harmonia
