#include "cuda/profile_gpu.h"

#include <algorithm>
#include <random>
#include <string>

#include "common/env.h"
#include "common/error.h"

namespace harmonia::cuda {

namespace {

double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  const size_t h = v.size() / 2;
  return v.size() % 2 ? v[h] : 0.5 * (v[h - 1] + v[h]);
}

template <typename T>
void check_axis(const char* name, const std::vector<T>& v, T lo, int64_t hi) {
  if (v.empty()) fail(ErrorKind::InvalidInput, "gpu profile: {} is empty", name);
  for (size_t i = 0; i < v.size(); ++i) {
    if (v[i] < lo || static_cast<int64_t>(v[i]) > hi)
      fail(ErrorKind::InvalidInput, "gpu profile: {} value {} outside [{}, {}] (the KV cache capacity)", name,
           static_cast<int64_t>(v[i]), static_cast<int64_t>(lo), hi);
    if (i > 0 && v[i] <= v[i - 1])
      fail(ErrorKind::InvalidInput, "gpu profile: {} must be increasing ({} after {})", name, static_cast<int64_t>(v[i]),
           static_cast<int64_t>(v[i - 1]));
  }
}

}  // namespace

GpuProfile measure_profile_gpu(GpuForward& target, GpuForward* draft, const GpuProfileOptions& o) {
  if (o.reps < 1) fail(ErrorKind::InvalidInput, "gpu profile: reps must be >= 1, got {}", o.reps);
  if (o.draft_ref < 1 || o.draft_ref > 16)
    fail(ErrorKind::InvalidInput, "gpu profile: draft_ref must be in [1, 16], got {}", o.draft_ref);
  const int64_t cap = draft ? std::min(target.capacity(), draft->capacity()) : target.capacity();
  check_axis("draft_len", o.draft_len, 0, 16);
  const int64_t max_n = std::max<int64_t>(o.draft_len.back(), o.draft_ref);
  check_axis<int64_t>("context", o.context, 1, cap - max_n - 1);
  check_axis<int64_t>("prefill tokens", o.prefill_tokens, 1, cap);
  const int V = target.model().config.vocab_size;
  if (draft && draft->model().config.vocab_size != V)
    fail(ErrorKind::InvalidInput, "gpu profile: the draft's vocabulary ({}) is not the target's ({})",
         draft->model().config.vocab_size, V);

  std::mt19937_64 rng(o.seed);
  std::uniform_int_distribution<int32_t> tok(0, V - 1);
  const int64_t most = std::max(o.prefill_tokens.back(), max_n + 1);
  std::vector<int32_t> ids(static_cast<size_t>(most));
  for (auto& t : ids) t = tok(rng);
  std::vector<int32_t> out(static_cast<size_t>(most));
  target.fill_kv_random(o.seed);
  if (draft) draft->fill_kv_random(o.seed + 1);

  GpuProfile p;
  p.verify_ms.assign(o.draft_len.size(), {});
  for (int64_t c : o.context) {
    for (size_t ni = 0; ni < o.draft_len.size(); ++ni) {
      const int64_t n = o.draft_len[ni];
      std::vector<double> t;
      for (int r = 0; r <= o.reps; ++r) {
        target.reset(c);
        const double t0 = now_ms();
        target.run_verify(ids.data(), n + 1, out.data());
        const double t1 = now_ms();
        if (r > 0) t.push_back(t1 - t0);  // run 0 warms up
      }
      p.verify_ms[ni].push_back(median(t));
    }
    if (!draft) continue;
    std::vector<double> t;
    for (int r = 0; r <= o.reps; ++r) {
      draft->reset(c);
      int32_t id = ids[0];
      const double t0 = now_ms();
      for (int k = 0; k < o.draft_ref; ++k) draft->run(&id, 1, nullptr, &id);  // autoregressive proposal
      const double t1 = now_ms();
      if (r > 0) t.push_back((t1 - t0) / o.draft_ref);
    }
    p.draft_ms_per_token.push_back(median(t));
  }
  for (int64_t P : o.prefill_tokens) {
    std::vector<double> t, td;
    for (int r = 0; r <= o.reps; ++r) {
      int32_t id = -1;
      target.reset(0);
      double t0 = now_ms();
      target.run(ids.data(), P, nullptr, &id);
      double t1 = now_ms();
      if (r > 0) t.push_back(t1 - t0);
      if (!draft) continue;
      draft->reset(0);
      t0 = now_ms();
      draft->run(ids.data(), P, nullptr, &id);
      t1 = now_ms();
      if (r > 0) td.push_back(t1 - t0);
    }
    p.prefill_ms.push_back(median(t));
    if (draft) p.draft_prefill_ms.push_back(median(td));
  }
  target.reset(0);
  if (draft) draft->reset(0);
  return p;
}

}  // namespace harmonia::cuda
