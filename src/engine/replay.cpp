#include "engine/replay.h"

#include <algorithm>
#include <chrono>
#include <thread>
#include <unordered_map>

#include <sys/resource.h>
#include <time.h>

#include "common/env.h"
#include "common/error.h"

namespace harmonia::engine {

std::vector<int32_t> make_prompt(const Model& m, const sched::WorkloadRequest& r, const std::vector<int32_t>& filler) {
  const Tokenizer* tok = m.tokenizer.get();
  if (!r.prompt.empty()) {
    if (!tok) fail(ErrorKind::InvalidInput, "request {} has a prompt text but the model {} has no tokenizer", r.id, m.path);
    auto p = tok->encode(r.prompt, tok->bos_id() >= 0 && tok->add_bos_default());
    if (p.empty()) p.push_back(tok->bos_id() >= 0 ? tok->bos_id() : 0);
    return p;
  }
  if (filler.empty()) fail(ErrorKind::InvalidInput, "request {}: no prompt text and no filler tokens to build one", r.id);
  std::vector<int32_t> p;
  p.reserve(static_cast<size_t>(r.prompt_tokens));
  if (tok && tok->bos_id() >= 0) p.push_back(tok->bos_id());
  const size_t L = filler.size();
  size_t at = static_cast<size_t>(r.id * 7919) % L;
  while (static_cast<int64_t>(p.size()) < r.prompt_tokens) p.push_back(filler[at++ % L]);
  return p;
}

std::vector<sched::StepMember> step_members(const StepRecord& r) {
  std::vector<sched::StepMember> out;
  for (const StepRecord::Member& m : r.members) {
    sched::StepMember x;
    x.prefill_tokens = m.prefill_tokens;
    x.decodes = m.prefill_tokens == 0;
    x.ctx_tokens = static_cast<double>(m.ctx_tokens);
    x.drafted = m.drafted;
    x.resumed = m.resumed;
    x.catchup_tokens = m.catchup_tokens;
    out.push_back(x);
  }
  return out;
}

namespace {

int64_t thread_involuntary_switches() {
  rusage ru{};
  getrusage(RUSAGE_THREAD, &ru);
  return ru.ru_nivcsw;
}

double thread_cpu_ms() {
  timespec ts{};
  clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
  return static_cast<double>(ts.tv_sec) * 1e3 + static_cast<double>(ts.tv_nsec) / 1e6;
}

// What the replay observes of one request through its event callback.
struct Track {
  double first_ms = -1, done_ms = -1, submit_ms = 0;
  int64_t tokens = 0, last_drafted = 0, last_accepted = 0;
  std::vector<int32_t> accepted, drafted;  // per step that emitted tokens
  Usage usage;
  std::string error;
  bool done = false;
};

}  // namespace

ReplayRun replay(const Model& target, const Model* draft, const sched::Workload& w,
                 const std::vector<std::vector<int32_t>>& prompts, const std::string& sched_spec,
                 const ReplayOptions& o) {
  const size_t N = w.requests.size();
  if (N == 0) fail(ErrorKind::InvalidInput, "{}: no requests to replay", w.source);
  if (prompts.size() != N) fail(ErrorKind::InvalidInput, "replay: {} prompts for {} requests", prompts.size(), N);
  for (size_t i = 1; i < N; ++i)
    if (w.requests[i].arrival_s < w.requests[i - 1].arrival_s)
      fail(ErrorKind::InvalidInput, "{}: requests must be sorted by arrival time", w.source);
  EngineOptions eo = o.engine;
  eo.sched = sched_spec;
  eo.max_queue = static_cast<int>(std::max<size_t>(eo.max_queue, N + 1));
  if (eo.ctx <= 0) eo.ctx = target.config.ctx_len;
  for (size_t i = 0; i < N; ++i) {
    const auto& r = w.requests[i];
    const int64_t need = static_cast<int64_t>(prompts[i].size()) + r.output_tokens;
    if (need > eo.ctx)
      fail(ErrorKind::InvalidInput, "{}: request {} needs {} prompt + {} output = {} tokens but the context is {}",
           w.source, r.id, prompts[i].size(), r.output_tokens, need, eo.ctx);
  }
  const bool traces = o.pass_traces && w.draft_len == o.spec.n;

  std::vector<Track> tr(N);
  std::unordered_map<int64_t, int64_t> engine_to_workload;  // Engine request id -> workload id
  size_t finished = 0;
  ReplayRun run;
  run.policy = sched_spec;
  if (o.record_steps) eo.on_step = [&run](const StepRecord& r) { run.step_log.push_back(r); };
  Engine eng(target, draft, eo);
  const int64_t nivcsw0 = thread_involuntary_switches();
  const double t0 = now_ms();
  auto submit = [&](size_t i) {
    const auto& wr = w.requests[i];
    RequestOptions r;
    r.prompt = prompts[i];
    r.max_tokens = static_cast<int>(wr.output_tokens);
    r.sampling.temperature = 0;
    r.ignore_eos = true;  // exactly output_tokens tokens
    r.kv = o.kv;
    r.speculative = o.spec;
    r.predicted_tokens = wr.output_tokens;  // the oracle length predictors' truth
    if (traces) r.true_accepted = wr.accepted;
    tr[i].submit_ms = now_ms();
    const int64_t eid = eng.submit(std::move(r), [&tr, &finished, i](const Event& e) {
      Track& k = tr[i];
      const double t = now_ms();
      if (!e.tokens.empty()) {
        if (k.first_ms < 0) k.first_ms = t;
        k.tokens += static_cast<int64_t>(e.tokens.size());
        // One event per step that emitted tokens: the usage deltas are that step's counts.
        k.drafted.push_back(static_cast<int32_t>(e.usage.drafted - k.last_drafted));
        k.accepted.push_back(static_cast<int32_t>(e.usage.accepted - k.last_accepted));
        k.last_drafted = e.usage.drafted;
        k.last_accepted = e.usage.accepted;
      }
      if (e.done) {
        k.done = true;
        k.done_ms = t;
        k.usage = e.usage;
        k.error = e.error;
        ++finished;
      }
    });
    engine_to_workload[eid] = wr.id;
  };

  size_t next = 0;
  while (finished < N) {
    const double now = now_ms() - t0;
    while (next < N && w.requests[next].arrival_s * 1000.0 <= now) {
      run.max_submit_lag_ms = std::max(run.max_submit_lag_ms, now - w.requests[next].arrival_s * 1000.0);
      const double s0 = now_ms();
      submit(next++);
      run.submit_wall_s += (now_ms() - s0) / 1000.0;
    }
    const double w0 = now_ms(), c0 = thread_cpu_ms();
    const bool ran = eng.step();
    if (ran) {
      run.busy_wall_s += (now_ms() - w0) / 1000.0;
      run.busy_cpu_s += (thread_cpu_ms() - c0) / 1000.0;
      continue;
    }
    if (finished >= N) break;
    if (next >= N) fail(ErrorKind::Internal, "replay: the engine is idle with {} of {} requests unfinished", N - finished, N);
    // Idle until the next arrival: sleep, then spin the last kSpinMs so the
    // request is submitted at its arrival time and not a timer wake-up later
    // (50-100 us here, which the simulator does not model).
    constexpr double kSpinMs = 0.5;
    const double due_ms = w.requests[next].arrival_s * 1000.0;
    const double wait_ms = due_ms - (now_ms() - t0) - kSpinMs;
    if (wait_ms > 0) std::this_thread::sleep_for(std::chrono::duration<double, std::milli>(wait_ms));
    while (now_ms() - t0 < due_ms) {
    }
  }
  run.wall_s = (now_ms() - t0) / 1000.0;
  run.involuntary_switches = thread_involuntary_switches() - nivcsw0;
  for (StepRecord& r : run.step_log) {  // workload ids, engine-relative times as the requests' (ms from t0)
    for (auto& m : r.members) m.id = engine_to_workload.at(m.id);
    for (double* t : {&r.begin_ms, &r.select_ms, &r.plan_ms, &r.forward_ms, &r.end_ms}) *t -= t0;
  }
  run.steps = eng.metrics().steps;

  run.recorded = w;
  run.recorded.draft_len = o.spec.n;
  run.recorded.first_step_prefill = true;
  for (size_t i = 0; i < N; ++i) {
    const auto& wr = w.requests[i];
    const Track& k = tr[i];
    if (!k.error.empty()) fail(ErrorKind::InvalidInput, "replay: request {} failed: {}", wr.id, k.error);
    if (k.tokens != wr.output_tokens)
      fail(ErrorKind::Internal, "replay: request {} produced {} tokens but output_tokens is {}", wr.id, k.tokens,
           wr.output_tokens);
    sched::RequestOutcome r;
    r.id = wr.id;
    r.cls = wr.cls;
    r.arrival_s = wr.arrival_s;
    r.first_token_s = (k.first_ms - t0) / 1000.0;
    r.finish_s = (k.done_ms - t0) / 1000.0;
    r.prompt_tokens = static_cast<int64_t>(prompts[i].size());
    r.output_tokens = k.tokens;
    r.steps = static_cast<int64_t>(k.accepted.size());
    r.drafted = k.usage.drafted;
    r.accepted = k.usage.accepted;
    r.preemptions = k.usage.preemptions;
    run.requests.push_back(r);
    auto& rec = run.recorded.requests[i];
    rec.prompt_tokens = r.prompt_tokens;
    rec.accepted = k.accepted;
    rec.drafted = k.drafted;
  }
  std::sort(run.requests.begin(), run.requests.end(),
            [](const sched::RequestOutcome& a, const sched::RequestOutcome& b) { return a.finish_s < b.finish_s; });
  run.recorded.note = fmt::format("recorded by harmonia replay: target {}, drafter {} n={}, sched {}, B={}", target.path,
                                  o.spec.drafter == "draft" && draft ? draft->path : o.spec.drafter, o.spec.n, sched_spec,
                                  eo.max_seqs);
  run.metrics = sched::summarize(run.requests);
  return run;
}

}  // namespace harmonia::engine
