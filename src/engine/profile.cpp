#include "engine/profile.h"

#include <algorithm>
#include <fstream>
#include <random>

#include <nlohmann/json.hpp>
#include <omp.h>

#include "common/env.h"
#include "common/error.h"
#include "engine/engine.h"
#include "kv/policy.h"
#include "model/forward.h"

namespace harmonia::engine {

using nlohmann::json;

namespace {

double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  const size_t n = v.size();
  return n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
}

// Token source: the given text repeated, or random ids; `offset` shifts the window per sequence.
class Tokens {
 public:
  Tokens(const ProfileOptions& o, int vocab) : text_(o.text) {
    if (text_.empty()) {
      std::mt19937_64 rng(o.seed);
      std::uniform_int_distribution<int32_t> d(0, vocab - 1);
      text_.resize(4096);
      for (auto& t : text_) t = d(rng);
    }
  }
  std::vector<int32_t> get(int64_t n, int64_t offset) const {
    std::vector<int32_t> out(static_cast<size_t>(n));
    const int64_t L = static_cast<int64_t>(text_.size());
    for (int64_t i = 0; i < n; ++i) out[static_cast<size_t>(i)] = text_[static_cast<size_t>((offset + i) % L)];
    return out;
  }

 private:
  std::vector<int32_t> text_;
};

void check_axis(const char* name, const std::vector<int64_t>& a, int64_t lo, int64_t hi) {
  if (a.empty()) fail(ErrorKind::InvalidInput, "profile: the {} axis is empty", name);
  for (size_t i = 0; i < a.size(); ++i) {
    if (a[i] < lo || a[i] > hi)
      fail(ErrorKind::InvalidInput, "profile: {} value {} is outside [{}, {}] for this context size", name, a[i], lo, hi);
    if (i > 0 && a[i] <= a[i - 1])
      fail(ErrorKind::InvalidInput, "profile: the {} axis must be strictly increasing ({} after {})", name, a[i], a[i - 1]);
  }
}

// Prefills `tokens` into kv in chunks, as the engine's chunked prefill does.
void prefill(Forward& fw, const std::vector<int32_t>& tokens, kv::Policy& kv, int64_t chunk, std::vector<float>& logits) {
  const int64_t n = static_cast<int64_t>(tokens.size());
  for (int64_t i = 0; i < n; i += chunk) {
    const int64_t c = std::min(chunk, n - i);
    SeqStep st{tokens.data() + i, c, &kv, logits.data(), false};
    fw.run_batch({st});
  }
}

}  // namespace

std::vector<int64_t> default_contexts(int64_t ctx, int max_n) {
  const int64_t limit = ctx - max_n - 2;
  std::vector<int64_t> out;
  for (int64_t c = 64; c < limit; c *= 4) out.push_back(c);
  if (limit >= 1 && (out.empty() || limit > out.back())) out.push_back(limit);
  return out;
}

std::vector<int64_t> default_prefill_tokens(int64_t ctx) {
  std::vector<int64_t> out;
  // Dense below 512: prefill time is far from linear in the prompt length on small models.
  for (int64_t p : {1, 8, 16, 32, 64, 96, 128, 192, 256, 384, 512, 1024, 2048, 4096})
    if (p < ctx) out.push_back(p);
  return out;
}

std::string cpu_device_name() {
  std::string name = "unknown CPU";
  std::ifstream f("/proc/cpuinfo");
  std::string line;
  while (std::getline(f, line))
    if (line.rfind("model name", 0) == 0) {
      const size_t c = line.find(':');
      if (c != std::string::npos) name = line.substr(c + 2);
      break;
    }
  return fmt::format("CPU {}, {} threads", name, omp_get_max_threads());
}

sched::CostProfile measure_profile(const Model& target, const Model* draft, const ProfileOptions& o) {
  o.spec.validate();
  const ModelConfig& cfg = target.config;
  const int V = cfg.vocab_size;
  const int64_t ctx = o.ctx > 0 ? o.ctx : cfg.ctx_len;
  if (o.reps < 1) fail(ErrorKind::InvalidInput, "profile: reps must be >= 1, got {}", o.reps);
  if (o.draft_ref < 1 || o.draft_ref > 16) fail(ErrorKind::InvalidInput, "profile: draft_ref must be in [1, 16], got {}", o.draft_ref);
  if (o.prefill_chunk < 1) fail(ErrorKind::InvalidInput, "profile: prefill_chunk must be >= 1");
  std::vector<int64_t> batch(o.batch.begin(), o.batch.end()), nlen(o.draft_len.begin(), o.draft_len.end());
  check_axis("batch", batch, 1, 4096);
  check_axis("draft_len", nlen, 0, 16);
  const int max_n = static_cast<int>(std::max<int64_t>(nlen.back(), o.draft_ref));
  const std::vector<int64_t> contexts = o.context.empty() ? default_contexts(ctx, max_n) : o.context;
  check_axis("context", contexts, 1, ctx - max_n - 1);
  const std::vector<int64_t> prompts = o.prefill_tokens.empty() ? default_prefill_tokens(ctx) : o.prefill_tokens;
  check_axis("prefill tokens", prompts, 1, ctx - 1);
  const bool drafting = o.spec.drafter != "none";
  if (o.spec.drafter == "draft") {
    if (!draft) fail(ErrorKind::InvalidInput, "profile: drafter 'draft' needs a draft model (--draft MODEL)");
    spec::check_same_vocab(target, *draft);
  }

  Forward fw(target);
  const Tokens text(o, V);
  const kv::Shape shape = kv_shape(cfg, ctx);
  const int B = static_cast<int>(batch.back());
  std::vector<float> scratch(static_cast<size_t>(V));

  json j;
  j["format"] = "harmonia.sd_profile";
  j["version"] = 1;
  j["target"] = target.path;
  j["draft"] = o.spec.drafter == "draft" ? draft->path : o.spec.drafter;
  j["device"] = cpu_device_name();
  j["note"] = fmt::format(
      "measured by harmonia bench --profile: median of {} runs; drafter {}{}; verify = Forward::run_batch + greedy "
      "verification; prefill = target prefill (chunks of {}) + drafter catch-up",
      o.reps, o.spec.drafter, o.spec.drafter == "layerskip" ? fmt::format(" (layers {})", o.spec.layers) : "",
      o.prefill_chunk);
  j["batch"] = batch;
  j["draft_len"] = nlen;
  j["context"] = contexts;
  json draft_ms = json::array(), verify_ms = json::array();
  for (size_t bi = 0; bi < batch.size(); ++bi) {
    draft_ms.push_back(json::array());
    verify_ms.push_back(json::array());
    for (size_t ni = 0; ni < nlen.size(); ++ni) verify_ms[bi].push_back(json::array());
  }

  for (int64_t c : contexts) {
    // B sequences at context c: target caches, and the drafters caught up to c.
    std::vector<std::unique_ptr<kv::Policy>> kvs;
    std::vector<std::vector<int32_t>> ctxs;
    for (int i = 0; i < B; ++i) {
      ctxs.push_back(text.get(c, 97 * i));
      kvs.push_back(kv::make_policy("full", shape));
      kvs.back()->plan(c, ctx - c);
      prefill(fw, ctxs.back(), *kvs.back(), o.prefill_chunk, scratch);
    }
    // verify: b sequences × (n + 1) tokens.
    for (size_t bi = 0; bi < batch.size(); ++bi) {
      const int b = static_cast<int>(batch[bi]);
      for (size_t ni = 0; ni < nlen.size(); ++ni) {
        const int64_t n = nlen[ni];
        std::vector<std::vector<int32_t>> toks(b);
        std::vector<std::vector<float>> logits(b);
        std::vector<SeqStep> steps;
        for (int i = 0; i < b; ++i) {
          toks[i] = text.get(n + 1, 97 * i + c);
          logits[i].resize(static_cast<size_t>((n > 0 ? n + 1 : 1) * V));
          steps.push_back({toks[i].data(), n + 1, kvs[i].get(), logits[i].data(), n > 0});
        }
        std::vector<double> t;
        for (int r = 0; r <= o.reps; ++r) {
          const double t0 = now_ms();
          fw.run_batch(steps);
          int64_t sink = 0;
          for (int i = 0; i < b; ++i) {
            if (n > 0) {
              const std::vector<int32_t> d(toks[i].begin() + 1, toks[i].end());
              sink += spec::verify_greedy(d, logits[i].data(), V).accepted;
            } else {
              sink += std::max_element(logits[i].begin(), logits[i].end()) - logits[i].begin();
            }
          }
          const double t1 = now_ms();
          for (int i = 0; i < b; ++i) kvs[i]->truncate(c);
          if (sink < 0) fail(ErrorKind::Internal, "unreachable");
          if (r > 0) t.push_back(t1 - t0);  // run 0 warms up
        }
        verify_ms[bi][ni].push_back(median(t));
      }
    }
    // draft: b drafters proposing draft_ref tokens each after one new context token.
    std::vector<std::unique_ptr<spec::Drafter>> drafters;
    if (drafting)
      for (int i = 0; i < B; ++i) {
        drafters.push_back(spec::make_drafter(o.spec, target, draft, ctx));
        std::vector<std::vector<float>> q;
        drafters.back()->propose(ctxs[i], 1, nullptr, q);  // catch up over the context (draft prefill)
        drafters.back()->accepted(ctxs[i]);
      }
    for (size_t bi = 0; bi < batch.size(); ++bi) {
      const int b = static_cast<int>(batch[bi]);
      if (!drafting) {
        draft_ms[bi].push_back(0.0);
        continue;
      }
      std::vector<double> t;
      for (int r = 0; r <= o.reps; ++r) {
        std::vector<std::vector<float>> q;
        const double t0 = now_ms();
        for (int i = 0; i < b; ++i) drafters[i]->propose(ctxs[i], o.draft_ref, nullptr, q);
        const double t1 = now_ms();
        for (int i = 0; i < b; ++i) drafters[i]->accepted(ctxs[i]);  // back to context c − 1 in the draft cache
        if (r > 0) t.push_back((t1 - t0) / o.draft_ref);
      }
      draft_ms[bi].push_back(median(t));
    }
  }
  j["draft_ms_per_token"] = draft_ms;
  j["verify_ms"] = verify_ms;

  // prefill: a fresh cache, the target's chunked prefill, and the drafter's catch-up.
  std::vector<double> pms;
  for (int64_t p : prompts) {
    const std::vector<int32_t> toks = text.get(p, 13);
    std::vector<double> t;
    for (int r = 0; r <= o.reps; ++r) {
      std::unique_ptr<spec::Drafter> d = drafting ? spec::make_drafter(o.spec, target, draft, ctx) : nullptr;
      const double t0 = now_ms();
      auto kv = kv::make_policy("full", shape);
      kv->plan(p, ctx - p);
      prefill(fw, toks, *kv, o.prefill_chunk, scratch);
      if (d) {
        std::vector<std::vector<float>> q;
        d->propose(toks, 1, nullptr, q);
      }
      const double t1 = now_ms();
      if (r > 0) t.push_back(t1 - t0);
    }
    pms.push_back(median(t));
  }
  j["prefill"] = {{"tokens", prompts}, {"ms", pms}};
  j["preempt_ms"] = 0.0;  // pause preemption keeps the KV resident
  if (!o.engine_overhead) return sched::CostProfile::from_json(j, "measured profile");

  // Engine overhead per step: real Engine steps (scheduler, planning, sampling,
  // callbacks, bookkeeping) minus what the tables above predict for them, by
  // batch size; added to every verify cell (and, for batch[0], to prefill:
  // a prefill step is an engine step too).
  const sched::CostProfile raw = sched::CostProfile::from_json(j, "measured profile");
  std::vector<double> overhead;
  for (int64_t b : batch) {
    EngineOptions eo;
    eo.ctx = ctx;
    eo.max_seqs = static_cast<int>(b);
    eo.prefill_chunk = o.prefill_chunk;
    eo.token_budget = std::max<int64_t>(512, b * (o.draft_ref + 1) + 64);
    eo.sched_context.draft_len = o.draft_ref;
    std::vector<double> samples;
    for (int round = 0; round < 2 && samples.size() < 40; ++round) {
      Engine eng(target, draft, eo);
      const int64_t prompt_len = std::min<int64_t>(32, ctx / 4), gen = std::min<int64_t>(64, ctx / 2);
      for (int64_t i = 0; i < b; ++i) {
        RequestOptions r;
        r.prompt = text.get(prompt_len, 131 * i + 7 * round);
        r.max_tokens = static_cast<int>(gen);
        r.ignore_eos = true;
        r.sampling.temperature = 0;
        r.speculative = o.spec;
        r.speculative.n = o.draft_ref;
        eng.submit(std::move(r), nullptr);
      }
      eng.step();  // prefill
      int64_t ctx_tokens = prompt_len * b;
      while (true) {
        const Metrics m0 = eng.metrics();
        const double t0 = now_ms();
        if (!eng.step()) break;
        const double dt = now_ms() - t0;
        const Metrics m1 = eng.metrics();
        if (m1.finished > 0 || m1.running != b) break;  // only full decode steps of b sequences
        const double d = static_cast<double>(m1.drafted - m0.drafted) / static_cast<double>(b);
        const double c = static_cast<double>(ctx_tokens) / static_cast<double>(b);
        samples.push_back(dt - (d * raw.draft_ms(static_cast<int>(b), c) + raw.verify_ms(static_cast<int>(b), d, c)));
        ctx_tokens += m1.generated_tokens - m0.generated_tokens;
      }
    }
    overhead.push_back(samples.empty() ? 0.0 : std::max(0.0, median(samples)));
  }
  for (size_t bi = 0; bi < batch.size(); ++bi)
    for (auto& row : j["verify_ms"][bi])
      for (auto& x : row) x = x.get<double>() + overhead[bi];
  for (auto& x : j["prefill"]["ms"]) x = x.get<double>() + overhead[0];
  std::string ov;
  for (double x : overhead) ov += fmt::format("{}{:.4f}", ov.empty() ? "" : ", ", x);
  j["note"] = j["note"].get<std::string>() + "; engine overhead per step by batch [" + ov + "] ms added to verify and prefill";
  return sched::CostProfile::from_json(j, "measured profile");
}

}  // namespace harmonia::engine
