#include "engine/profile.h"

#include <algorithm>
#include <fstream>
#include <random>

#include <nlohmann/json.hpp>
#include <omp.h>

#include "common/env.h"
#include "common/error.h"
#include "engine/engine.h"
#include "engine/replay.h"
#include "sched/simulator.h"
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
  j["preempt_ms"] = 0.0;  // measured below (engine_overhead)
  if (!o.engine_overhead) return sched::CostProfile::from_json(j, "measured profile");

  // What the cells above leave out, from real Engine steps (their StepRecords,
  // priced by the same sched::step_cost_ms the simulator uses). Means, not
  // medians: the simulator predicts mean latency, and engine steps have a right
  // tail (cache misses, interrupts) that hot-loop medians do not see.
  //  - step_overhead_ms[b]: mean over decode steps of b requests of (step time
  //    − the cells' price): scheduler, planning, sampling, callbacks, and the
  //    cold caches of a step that runs the target and the drafters in turn;
  //  - preempt_ms: kSwitchRequests requests at B = 1 round-robin (las counting
  //    iterations: every decode step resumes the request that ran
  //    kSwitchRequests steps ago) against the same requests served one after the
  //    other (fcfs), the difference of the mean residuals;
  //  - prefill.ms[P]: what starting a request costs the engine, measured on it:
  //    Engine::submit (validation, KV reservation, drafter and sampler set-up)
  //    and the prefill step, minus the step overhead that step_cost_ms adds;
  //  - draft_prefill_ms[P]: the excess of the request's first decode step over
  //    a decode step's price: the drafter catches up over the prompt there.
  // NOTE: submit runs between steps when the request arrives; the profile books
  // it in prefill (at the request's first step) so that the cost profile keeps
  // one per-request term. With B = 1 and FCFS the two are the same total work.
  const sched::CostProfile raw = sched::CostProfile::from_json(j, "measured profile");
  constexpr int64_t kSwitchRequests = 6;
  const int rounds = std::max(2, o.reps / 3);
  const int64_t prompt_len = std::min<int64_t>(32, ctx / 4), gen = std::min<int64_t>(64, ctx / 2);
  auto engine_options = [&](int max_seqs, const std::string& sched_spec, int64_t b) {
    EngineOptions eo;
    eo.ctx = ctx;
    eo.max_seqs = max_seqs;
    eo.sched = sched_spec;
    eo.prefill_chunk = o.prefill_chunk;
    eo.token_budget = std::max<int64_t>(512, b * (o.draft_ref + 1) + 64);
    eo.sched_context.draft_len = o.draft_ref;
    return eo;
  };
  auto request = [&](const std::vector<int32_t>& prompt, int64_t max_tokens) {
    RequestOptions r;
    r.prompt = prompt;
    r.max_tokens = static_cast<int>(max_tokens);
    r.ignore_eos = true;
    r.sampling.temperature = 0;
    r.speculative = o.spec;
    r.speculative.n = o.draft_ref;
    return r;
  };
  // Runs `b` requests (prompts from `offset`) to completion in a fresh Engine
  // with `sched_spec` and B = max_seqs; returns (step time − price) of every
  // decode step of exactly `want_b` members, none a request's first decode
  // step, whose resumed flags all equal `resumed`.
  auto residuals = [&](int64_t b, int max_seqs, const std::string& sched_spec, int64_t want_b, bool resumed,
                       int64_t offset, const sched::CostProfile& prof) {
    EngineOptions eo = engine_options(max_seqs, sched_spec, b);
    std::vector<double> out;
    std::vector<int64_t> decoded;
    eo.on_step = [&](const StepRecord& r) {
      bool take = static_cast<int64_t>(r.members.size()) == want_b;
      for (const auto& m : r.members) {
        if (m.prefill_tokens > 0) {
          take = false;
          continue;
        }
        if (std::find(decoded.begin(), decoded.end(), m.id) == decoded.end()) {
          decoded.push_back(m.id);
          take = false;
        }
        if (m.resumed != resumed) take = false;
      }
      if (take) out.push_back((r.end_ms - r.begin_ms) - sched::step_cost_ms(prof, step_members(r), 0.0));
    };
    Engine eng(target, draft, eo);
    for (int64_t i = 0; i < b; ++i) eng.submit(request(text.get(prompt_len, 131 * i + offset), gen), nullptr);
    eng.run_until_idle();
    return out;
  };
  auto mean = [](const std::vector<double>& v) {
    double sum = 0;
    for (double x : v) sum += x;
    return v.empty() ? 0.0 : sum / static_cast<double>(v.size());
  };
  std::vector<double> overhead;
  for (int64_t b : batch) {
    std::vector<double> samples;
    for (int round = 0; round < rounds; ++round) {
      const auto r = residuals(b, static_cast<int>(b), "fcfs", b, false, 7 * round, raw);
      samples.insert(samples.end(), r.begin(), r.end());
    }
    overhead.push_back(std::max(0.0, mean(samples)));
  }
  j["step_overhead_ms"] = overhead;
  const sched::CostProfile with_overhead = sched::CostProfile::from_json(j, "measured profile");
  std::vector<double> alone, switching;
  for (int round = 0; round < rounds; ++round) {
    const auto a = residuals(kSwitchRequests, 1, "fcfs", 1, false, 11 * round, with_overhead);
    const auto s = residuals(kSwitchRequests, 1, "las:service_unit=iterations", 1, true, 11 * round, with_overhead);
    alone.insert(alone.end(), a.begin(), a.end());
    switching.insert(switching.end(), s.begin(), s.end());
  }
  const double switch_ms = alone.empty() || switching.empty() ? 0.0 : std::max(0.0, mean(switching) - mean(alone));
  j["preempt_ms"] = switch_ms;
  // Request start, per prompt length: kStartRequests requests submitted
  // together and served FCFS at B = 1 (so a request starts while others hold
  // their KV caches and drafters, as in serving), on one engine.
  constexpr int kStartRequests = 4;
  std::vector<double> start_ms, catchup_ms;
  {
    EngineOptions eo = engine_options(1, "fcfs", 1);
    std::vector<StepRecord> log;
    eo.on_step = [&](const StepRecord& r) { log.push_back(r); };
    Engine eng(target, draft, eo);
    for (int64_t p : prompts) {
      std::vector<double> t, c;
      for (int r = 0; r <= o.reps; ++r) {
        log.clear();
        std::vector<std::pair<int64_t, double>> submitted;  // request id, submit ms
        for (int i = 0; i < kStartRequests; ++i) {
          // The first decode step drafts draft_ref tokens: room for 1 + draft_ref + 1 more.
          // Room for the first decode step and the next one to draft draft_ref tokens each.
          RequestOptions req = request(text.get(p, 13 + 29 * i + r), std::min<int64_t>(2 * o.draft_ref + 4, ctx - p));
          const double t0 = now_ms();
          const int64_t id = eng.submit(std::move(req), nullptr);
          submitted.emplace_back(id, now_ms() - t0);
        }
        eng.run_until_idle();
        if (r == 0) continue;  // warm-up
        for (const auto& [id, submit] : submitted) {
          // Chunked prefill: every step of the request before its first decode step (a
          // one-token prompt has none); the simulator adds one step overhead to the
          // step that charges the prefill.
          // The catch-up: the first decode step's planning phase (where the drafter
          // runs) minus the next decode step's, when both drafted the same count —
          // two steps a millisecond apart, so the machine's drift cancels; else the
          // first decode step's excess over its price.
          double prefill_steps = -with_overhead.step_overhead_ms(1), first_decode_excess = 0;
          const StepRecord* first_decode = nullptr;
          for (const StepRecord& st : log) {
            if (st.members.size() != 1 || st.members[0].id != id) continue;
            if (st.members[0].prefill_tokens > 0) {
              prefill_steps += st.end_ms - st.begin_ms;
              continue;
            }
            if (!first_decode) {
              first_decode = &st;
              first_decode_excess =
                  (st.end_ms - st.begin_ms) - sched::step_cost_ms(with_overhead, step_members(st), 0.0);
              continue;
            }
            if (st.members[0].drafted == first_decode->members[0].drafted)
              first_decode_excess = (first_decode->plan_ms - first_decode->select_ms) - (st.plan_ms - st.select_ms);
            break;
          }
          t.push_back(std::max(1e-6, submit + prefill_steps));
          c.push_back(std::max(0.0, first_decode_excess));
        }
      }
      start_ms.push_back(mean(t));
      catchup_ms.push_back(mean(c));
    }
  }
  j["prefill"]["ms"] = start_ms;
  j["draft_prefill_ms"] = catchup_ms;
  std::string ov;
  for (double x : overhead) ov += fmt::format("{}{:.4f}", ov.empty() ? "" : ", ", x);
  j["note"] = j["note"].get<std::string>() +
              fmt::format("; from real Engine steps (means): step_overhead_ms by batch [{}], preempt_ms {:.4f} (switch "
                          "cost, {} requests round-robin), prefill = submit + prefill step(s), draft_prefill_ms = the first "
                          "decode step's excess (drafter catch-up)",
                          ov, switch_ms, kSwitchRequests);
  return sched::CostProfile::from_json(j, "measured profile");
}

}  // namespace harmonia::engine
