#pragma once
// The serving engine: continuous batching with chunked prefill, speculative
// decoding and a pluggable request scheduler (sched::Policy), over the KV
// policies of kv/. The HTTP server and `harmonia replay` call it in-process.
//
// The step loop is a ledger (vLLM's design): each step the scheduler picks the
// sequences to run; each computes a prompt chunk, one decode token, or 1 +
// draft tokens; one batched forward pass runs them all; results flow back to
// the scheduler and to each request's callback.
//
// Memory: a request is admitted (handed to the scheduler) only when its KV
// cache at its largest size — bytes_at(prompt + max_tokens) under its own KV
// policy — fits in the budget with the reservations of the requests already
// admitted. Compressed policies reserve less, so more requests run at once.
// Preemption: a request the scheduler does not select keeps its KV (paused);
// `recompute` preemption (EngineOptions::preempt = "recompute") frees a paused
// request's KV and reservation instead and re-prefills its prompt + generated
// tokens when it is selected again.
#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "common/error.h"
#include "kv/spec.h"
#include "model/forward.h"
#include "sample/sampler.h"
#include "sample/stop.h"
#include "sched/policy.h"
#include "spec/drafter.h"

namespace harmonia::engine {

// What one engine step ran and how long its phases took (EngineOptions::on_step).
// Times are ms on the engine's clock (common/env.h now_ms); the phases tile
// [begin_ms, end_ms]: cancels + admission, select (the scheduler), plan
// (per-sequence planning and drafter proposals), forward (one batched target
// pass), post (verification, sampling, stop checks, callbacks, the scheduler's
// on_step_done, gauges).
struct StepRecord {
  struct Member {
    int64_t id = 0;
    int64_t ctx_tokens = 0;      // tokens already in its KV cache before the step
    int64_t fed = 0;             // tokens fed to the target this step
    int64_t prefill_tokens = 0;  // of those, prompt (or recompute) tokens; 0 for a decode step
    int32_t drafted = 0;         // draft tokens proposed (fed = 1 + drafted for a decode step, 1 + accepted
                                 // when the KV policy verifies one token at a time)
    bool first = false;          // the request's first step (its KV cache was created in it)
    bool resumed = false;        // ran before, but not in the previous step (a switch back to it)
    int64_t catchup_tokens = 0;  // its first decode step: the prompt tokens its drafter catches up over
  };
  int64_t step = 0;              // engine step index (Metrics::steps after it)
  double begin_ms = 0, select_ms = 0, plan_ms = 0, forward_ms = 0, end_ms = 0;  // phase ends
  int64_t admitted = 0;          // requests the scheduler held during the step
  std::vector<Member> members;   // in selection order
};

struct EngineOptions {
  int64_t ctx = 0;               // context size per sequence in tokens (0 = the model's)
  int max_seqs = 8;              // sequences per step
  size_t kv_budget_bytes = 0;    // KV bytes over all admitted sequences (0 = unlimited)
  int64_t token_budget = 512;    // tokens per step over all sequences (prefill chunks + decode)
  int64_t prefill_chunk = 256;   // prompt tokens per sequence per step
  std::string sched = "fcfs";    // sched::make_policy spec ("laps-sd:queues=4", ...)
  int max_queue = 256;           // admitted + waiting requests; more -> submit() throws QueueFull
  std::string preempt = "pause"; // pause (KV kept) | recompute (KV freed, re-prefilled later)
  int threads = 0;               // compute threads (0 = all cores)
  // What the scheduler knows of this deployment: draft length n, the step time τ
  // and prefill time of its estimates (LAPS-SD's R̂, mlfq/laps-sd thresholds in
  // steps of τ), output-length samples for the cond-mean predictor. Build it
  // with sched::CostProfile::policy_context (or sched::workload_policy_context)
  // from a measured profile (`harmonia bench --profile`). The default (τ = 1 s,
  // no prefill cost) is only right for policies that use no time estimates (fcfs).
  sched::PolicyContext sched_context;
  // Called on the engine thread after every step that ran a batch (null: none).
  // `harmonia replay` records the step log with it to compare against the cost profile.
  std::function<void(const StepRecord&)> on_step;
};

struct TokenInfo {
  int32_t token = 0;
  float logprob = 0;                // log p(token) under the target's raw distribution
  std::vector<TokenLogprob> top;    // top_logprobs entries (when asked)
};

struct Usage {
  int64_t prompt_tokens = 0, completion_tokens = 0;
  int64_t drafted = 0, accepted = 0;  // speculative decoding counters
  int64_t preemptions = 0;
  double acceptance_rate() const { return drafted ? static_cast<double>(accepted) / drafted : 0.0; }
};

// Delivered to a request's callback (on the engine thread) once per step in
// which it made progress, and once at the end (done = true).
struct Event {
  int64_t id = 0;
  std::vector<TokenInfo> tokens;  // tokens committed this step
  std::string text;               // text that became final this step
  bool done = false;
  StopReason reason = StopReason::None;  // when done: why (None + error = failed/cancelled)
  std::string error;              // non-empty when the request failed or was cancelled
  Usage usage;
  double ttft_ms = 0, latency_ms = 0;  // set when done (TTFT: first token committed)
};
using Callback = std::function<void(const Event&)>;

struct RequestOptions {
  std::vector<int32_t> prompt;            // token ids (BOS included when wanted)
  int max_tokens = 128;                   // >= 1
  SamplingOptions sampling;
  std::vector<std::string> stop;
  bool ignore_eos = false;
  kv::PolicySpec kv{"full", {}};
  spec::SpecOptions speculative;          // drafter "none" = plain decoding
  int priority = 0;                       // informational (schedulers order by their own keys)
  int top_logprobs = -1;                  // -1: no logprobs; 0..20: logprob (+ that many alternatives)
  int64_t predicted_tokens = -1;          // output-length hint for sjf / oracle predictors (-1 = none)
  std::vector<int32_t> true_accepted;     // per-step accepted counts of a recorded run (srpt-oracle in replay)
};

class QueueFull : public Error {
 public:
  explicit QueueFull(const std::string& m) : Error(ErrorKind::InvalidInput, m) {}
};

struct Metrics {
  int64_t running = 0, waiting = 0, admitted = 0;  // now
  size_t kv_bytes_in_use = 0, kv_bytes_reserved = 0, kv_budget_bytes = 0;
  std::map<std::string, size_t> kv_bytes_by_policy;
  // Admitted requests by scheduler queue index (sched::RequestState::queue; 0 for
  // single-queue policies): in the latest step's selection, and the rest.
  std::map<int, int64_t> running_by_queue, waiting_by_queue;
  int64_t steps = 0, preemptions = 0, finished = 0, cancelled = 0, failed = 0;
  int64_t drafted = 0, accepted = 0;
  int64_t prompt_tokens = 0, generated_tokens = 0;
};

class Engine {
 public:
  // draft: the draft model for drafter "draft" (may be null). Throws on bad options.
  Engine(const Model& target, const Model* draft, EngineOptions opts);
  ~Engine();

  // Thread-safe. Validates (prompt fits the context with max_tokens, options in
  // range, KV policy known) and queues the request; returns its id. Throws
  // Error(InvalidInput) with the numbers, or QueueFull.
  int64_t submit(RequestOptions r, Callback cb);
  // Thread-safe; the request ends with an Event{done, error="cancelled"} and its KV is freed.
  void cancel(int64_t id);

  // One scheduling step (the calling thread runs it). Returns false when idle.
  bool step();
  // Steps until no request is left.
  void run_until_idle();
  // Background loop: start() spawns a thread that steps while there is work;
  // stop() finishes the current step, cancels what is left, and joins.
  void start();
  void stop();

  Metrics metrics() const;
  const EngineOptions& options() const { return o_; }
  const Model& model() const { return target_; }
  // KV bytes one sequence of `tokens` tokens holds under `kv` (admission uses this).
  // rollback: speculative draft length n (Policy::reserve_rollback), 0 without drafting.
  size_t kv_bytes_for(const kv::PolicySpec& kv, int64_t tokens, int64_t rollback = 0) const;

 private:
  struct Seq;
  const Model& target_;
  const Model* draft_;
  EngineOptions o_;
  Forward fw_;
  std::unique_ptr<sched::Policy> sched_;
  double t0_ms_ = 0;
  std::vector<int64_t> prev_run_;         // ids of the previous step's batch (StepRecord::Member::resumed)

  mutable std::mutex mu_;                 // guards inbox_, cancels_, metrics_, seqs_ map membership
  std::condition_variable cv_;
  std::deque<std::unique_ptr<Seq>> inbox_;  // submitted, not yet admitted
  std::vector<int64_t> cancels_;
  std::map<int64_t, std::unique_ptr<Seq>> seqs_;  // admitted
  size_t reserved_ = 0;
  int64_t next_id_ = 1;
  Metrics metrics_;
  std::thread thread_;
  std::atomic<bool> stop_{false};

  double now_s() const;
  void admit_locked();
  void finish(Seq& s, StopReason reason, const std::string& error);
  void drop(int64_t id);
  void refresh_gauges_locked(const std::vector<Seq*>& ran);  // running / per-queue / KV-bytes gauges
  void process_logits(Seq& s, const float* logits, int64_t n_rows, std::vector<sched::StepOutcome>& out);
  // Speculative verification for a KV policy whose multi-token decode steps are not exact
  // (Policy::exact_multi_token_decode) or that cannot roll back (Policy::reserve_rollback): the
  // step's batch fed the last token alone (row 0 of s.logits); each draft is judged against the
  // row before it and fed, one token, only once accepted, so the cache never holds a rejected
  // draft. Same verdict and random draws as verifying all rows at once. Sets s.verdict, s.fed.
  void verify_one_token_at_a_time(Seq& s);
};

}  // namespace harmonia::engine
