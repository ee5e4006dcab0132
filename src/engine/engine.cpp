#include "engine/engine.h"

#include <algorithm>
#include <cmath>

#include "common/env.h"
#include "common/error.h"

namespace harmonia::engine {

struct Engine::Seq {
  int64_t id = 0;
  RequestOptions r;
  Callback cb;
  std::unique_ptr<kv::Policy> kv;  // null before admission and after a recompute preemption
  size_t reserved = 0;             // bytes reserved at admission
  std::vector<int32_t> tokens;     // prompt + committed output
  size_t prompt_len = 0;
  int64_t computed = 0;            // tokens whose K/V are in kv (= kv->n_tokens())
  std::unique_ptr<Sampler> sampler;
  std::unique_ptr<StopChecker> stop;
  std::unique_ptr<StreamDecoder> dec;
  std::unique_ptr<spec::Drafter> drafter;
  int draft_cooldown = 0;          // adaptive drafting: steps left without drafting
  bool ran = false;                // has run in some step (StepRecord::Member::first / resumed)
  bool decoded = false;            // has had a decode step (StepRecord::Member::catchup_tokens)
  Usage usage;
  double submit_ms = 0, first_token_ms = -1;
  bool done = false;
  bool cancelled = false;
  // Proposal of the current step.
  std::vector<int32_t> drafts;
  std::vector<std::vector<float>> q;
  std::vector<float> logits;  // [rows, vocab] of the current step
  int64_t fed = 0;            // tokens fed this step
  bool rollback_ok = true;    // kv->reserve_rollback(drafts) held: truncate() may undo rejected drafts
  // This step verifies its drafts one token at a time (kv policy without exact multi-token decode
  // steps or without rollback): the batch fed only the last token, the drafts follow one by one
  // while accepted, and `verdict` is the outcome.
  bool one_token_verify = false;
  spec::Verdict verdict;
};

Engine::Engine(const Model& target, const Model* draft, EngineOptions opts)
    : target_(target), draft_(draft), o_(std::move(opts)), fw_(target, o_.threads) {
  if (o_.ctx <= 0) o_.ctx = target.config.ctx_len;
  if (o_.max_seqs < 1 || o_.token_budget < 1 || o_.prefill_chunk < 1 || o_.max_queue < 1)
    fail(ErrorKind::InvalidInput, "engine: max_seqs, token_budget, prefill_chunk and max_queue must be >= 1");
  if (o_.preempt != "pause" && o_.preempt != "recompute")
    fail(ErrorKind::InvalidInput, "engine: preempt must be pause or recompute, got '{}'", o_.preempt);
  if (draft_) spec::check_same_vocab(target, *draft_);
  sched_ = sched::make_policy(o_.sched, o_.sched_context);
  t0_ms_ = now_ms();
  metrics_.kv_budget_bytes = o_.kv_budget_bytes;
}

Engine::~Engine() { stop(); }

double Engine::now_s() const { return (now_ms() - t0_ms_) / 1000.0; }

size_t Engine::kv_bytes_for(const kv::PolicySpec& spec, int64_t tokens, int64_t rollback) const {
  auto p = kv::make_policy(spec.name, kv_shape(target_.config, o_.ctx), spec.options);
  // A policy that cannot keep what a rollback needs is verified one token at a time (no rollback).
  if (rollback > 0) (void)p->reserve_rollback(rollback);
  p->plan(tokens, 0);
  return kv::ledger_total(p->bytes_at(tokens));
}

int64_t Engine::submit(RequestOptions r, Callback cb) {
  const int64_t P = static_cast<int64_t>(r.prompt.size());
  if (P == 0) fail(ErrorKind::InvalidInput, "the prompt is empty");
  if (P > o_.ctx) fail(ErrorKind::InvalidInput, "prompt has {} tokens but the context is {}", P, o_.ctx);
  if (r.max_tokens < 1) fail(ErrorKind::InvalidInput, "max_tokens must be >= 1, got {}", r.max_tokens);
  if (P + r.max_tokens > o_.ctx)
    fail(ErrorKind::InvalidInput, "max_tokens {} cannot fit: the prompt has {} tokens and the context is {}",
         r.max_tokens, P, o_.ctx);
  if (r.top_logprobs > 20) fail(ErrorKind::InvalidInput, "top_logprobs must be <= 20, got {}", r.top_logprobs);
  for (int32_t t : r.prompt)
    if (t < 0 || t >= target_.config.vocab_size)
      fail(ErrorKind::InvalidInput, "prompt token id {} is outside the vocabulary [0, {})", t, target_.config.vocab_size);
  r.sampling.validate();
  r.speculative.validate();
  if (r.speculative.drafter == "draft" && !draft_)
    fail(ErrorKind::InvalidInput, "speculative drafter 'draft' needs the server started with a draft model");
  auto seq = std::make_unique<Seq>();
  // Validates the KV policy and options now, so a bad request fails at submit.
  const int64_t rollback = r.speculative.drafter != "none" ? r.speculative.n : 0;
  seq->reserved = kv_bytes_for(r.kv, P + r.max_tokens, rollback);
  if (o_.kv_budget_bytes && seq->reserved > o_.kv_budget_bytes)
    fail(ErrorKind::InvalidInput, "the request needs {} KV bytes ({} tokens under '{}') but the budget is {}",
         seq->reserved, P + r.max_tokens, r.kv.label(), o_.kv_budget_bytes);
  seq->sampler = std::make_unique<Sampler>(r.sampling, target_.config.vocab_size);
  for (int32_t t : r.prompt) seq->sampler->accept(t);
  std::vector<int32_t> eog;
  if (!r.ignore_eos && target_.tokenizer) eog = target_.tokenizer->eog_ids();
  seq->stop = std::make_unique<StopChecker>(r.stop, eog, r.max_tokens);
  if (target_.tokenizer) {
    seq->dec = std::make_unique<StreamDecoder>(*target_.tokenizer);
    seq->dec->continue_after(r.prompt.back());
  }
  seq->drafter = spec::make_drafter(r.speculative, target_, draft_, o_.ctx);
  seq->tokens = r.prompt;
  seq->prompt_len = r.prompt.size();
  seq->usage.prompt_tokens = P;
  seq->r = std::move(r);
  seq->cb = std::move(cb);
  seq->submit_ms = now_ms();
  std::lock_guard<std::mutex> lk(mu_);
  if (static_cast<int64_t>(inbox_.size() + seqs_.size()) >= o_.max_queue)
    throw QueueFull(fmt::format("queue full: {} requests waiting or running (max {})", inbox_.size() + seqs_.size(),
                                o_.max_queue));
  seq->id = next_id_++;
  const int64_t id = seq->id;
  inbox_.push_back(std::move(seq));
  metrics_.waiting = static_cast<int64_t>(inbox_.size());
  cv_.notify_all();
  return id;
}

void Engine::cancel(int64_t id) {
  std::lock_guard<std::mutex> lk(mu_);
  cancels_.push_back(id);
  cv_.notify_all();
}

void Engine::admit_locked() {
  while (!inbox_.empty()) {
    Seq& s = *inbox_.front();
    if (o_.kv_budget_bytes && reserved_ + s.reserved > o_.kv_budget_bytes) break;  // FIFO admission
    reserved_ += s.reserved;
    sched::Request sr;
    sr.id = s.id;
    sr.arrival_s = (s.submit_ms - t0_ms_) / 1000.0;
    sr.prompt_tokens = static_cast<int64_t>(s.prompt_len);
    sr.max_new_tokens = s.r.max_tokens;
    if (s.r.predicted_tokens >= 0) sr.true_output_tokens = s.r.predicted_tokens;
    sr.true_accepted = s.r.true_accepted;
    sched_->on_arrival(sr, now_s());
    const int64_t id = s.id;
    seqs_[id] = std::move(inbox_.front());
    inbox_.pop_front();
  }
  metrics_.waiting = static_cast<int64_t>(inbox_.size());
  metrics_.admitted = static_cast<int64_t>(seqs_.size());
  metrics_.kv_bytes_reserved = reserved_;
}

void Engine::finish(Seq& s, StopReason reason, const std::string& error) {
  if (s.done) return;
  s.done = true;
  Event e;
  e.id = s.id;
  e.done = true;
  e.reason = reason;
  e.error = error;
  // Text held back (possible stop-string prefix, partial UTF-8) is released on a normal end.
  if (error.empty() && reason == StopReason::None) e.text = s.stop->flush() + (s.dec ? s.dec->flush() : "");
  e.usage = s.usage;
  const double t = now_ms();
  e.latency_ms = t - s.submit_ms;
  e.ttft_ms = s.first_token_ms >= 0 ? s.first_token_ms - s.submit_ms : e.latency_ms;
  {
    std::lock_guard<std::mutex> lk(mu_);
    if (!error.empty()) (s.cancelled ? metrics_.cancelled : metrics_.failed)++;
    else metrics_.finished++;
  }
  if (s.cb) s.cb(e);
  s.kv.reset();
}

void Engine::drop(int64_t id) {
  std::lock_guard<std::mutex> lk(mu_);
  auto it = seqs_.find(id);
  if (it == seqs_.end()) return;
  reserved_ -= it->second->reserved;
  seqs_.erase(it);
  metrics_.admitted = static_cast<int64_t>(seqs_.size());
  metrics_.kv_bytes_reserved = reserved_;
}

void Engine::verify_one_token_at_a_time(Seq& s) {
  const int V = target_.config.vocab_size;
  const std::vector<int32_t> d(s.drafts.begin() + 1, s.drafts.end());  // s.drafts = [last, d_1 .. d_k] here
  s.verdict = {};
  std::vector<float> p;
  for (size_t i = 0;; ++i) {
    float* row = s.logits.data() + i * V;
    bool accepted;
    if (s.r.sampling.temperature <= 0) {
      accepted = spec::verify_greedy_step(d, i, row, V, s.verdict);
    } else {
      s.sampler->probs(row, p);
      accepted = spec::verify_stochastic_step(d, i, p, s.q, *s.sampler, s.verdict);
    }
    if (!accepted) break;
    std::vector<SeqStep> one{{&s.drafts[i + 1], 1, s.kv.get(), row + V, true}};  // d_i: row i + 1
    fw_.run_batch(one);
  }
  s.fed = 1 + s.verdict.accepted;
}

// Commits the tokens decided from this step's logits; fills the scheduler outcome.
void Engine::process_logits(Seq& s, const float* logits, int64_t rows, std::vector<sched::StepOutcome>& out) {
  const int V = target_.config.vocab_size;
  sched::StepOutcome o;
  o.id = s.id;
  spec::Verdict v;
  const int64_t S = static_cast<int64_t>(s.tokens.size());
  if (s.drafts.empty()) {
    v.tokens.push_back(s.sampler->sample(logits + (rows - 1) * V));
  } else {
    o.drafted = static_cast<int32_t>(s.drafts.size());
    if (s.one_token_verify) {
      v = s.verdict;  // decided while feeding; the cache never saw a rejected draft
    } else if (s.r.sampling.temperature <= 0) {
      v = spec::verify_greedy(s.drafts, logits, V);
    } else {
      std::vector<std::vector<float>> p(rows);
      for (int64_t i = 0; i < rows; ++i) s.sampler->probs(logits + i * V, p[i]);
      v = spec::verify_stochastic(s.drafts, p, s.q, *s.sampler);
    }
    o.accepted = v.accepted;
    s.usage.drafted += o.drafted;
    s.usage.accepted += v.accepted;
    // The target's cache holds S + k tokens; keep the context up to the accepted drafts.
    if (!s.one_token_verify) s.kv->truncate(S + v.accepted);
    s.computed = S + v.accepted;
  }
  const double t = now_ms();
  if (s.first_token_ms < 0) s.first_token_ms = t;
  Event e;
  e.id = s.id;
  for (size_t i = 0; i < v.tokens.size(); ++i) {
    const int32_t tok = v.tokens[i];
    const float* row = logits + (s.drafts.empty() ? rows - 1 : static_cast<int64_t>(i)) * V;
    s.sampler->accept(tok);
    const std::string piece = s.dec ? s.dec->push(tok) : std::string();
    StopStep st = s.stop->push(tok, piece);
    if (st.reason != StopReason::StopToken) {
      s.tokens.push_back(tok);
      s.usage.completion_tokens++;
      TokenInfo ti;
      ti.token = tok;
      if (s.r.top_logprobs >= 0) {
        ti.logprob = s.sampler->logprob(row, tok);
        if (s.r.top_logprobs > 0) ti.top = s.sampler->top_logprobs(row, s.r.top_logprobs);
      }
      e.tokens.push_back(std::move(ti));
    }
    e.text += st.text;
    ++o.emitted;
    if (st.stop()) {
      o.finished = true;
      e.done = true;
      e.reason = st.reason;
      break;
    }
  }
  if (s.drafter && !o.finished) s.drafter->accepted(s.tokens);
  if (!o.finished && static_cast<int64_t>(s.tokens.size()) >= o_.ctx) {  // context end: as if by length
    o.finished = true;
    e.done = true;
    e.reason = StopReason::MaxTokens;
    e.text += s.stop->flush() + (s.dec ? s.dec->flush() : "");
  }
  out.push_back(o);
  if (e.done) {
    // finish() sends the final event; merge this step's tokens into it.
    s.done = true;
    e.usage = s.usage;
    e.latency_ms = t - s.submit_ms;
    e.ttft_ms = s.first_token_ms - s.submit_ms;
    {
      std::lock_guard<std::mutex> lk(mu_);
      metrics_.finished++;
    }
    if (s.cb) s.cb(e);
    s.kv.reset();
  } else if (s.cb && (!e.tokens.empty() || !e.text.empty())) {
    e.usage = s.usage;
    s.cb(e);
  }
}

bool Engine::step() {
  StepRecord rec;
  const bool log = static_cast<bool>(o_.on_step);
  if (log) rec.begin_ms = now_ms();
  std::vector<int64_t> cancels;
  {
    std::lock_guard<std::mutex> lk(mu_);
    cancels.swap(cancels_);
    // Cancelled before admission: end them straight from the inbox.
    for (int64_t id : cancels)
      for (auto it = inbox_.begin(); it != inbox_.end(); ++it)
        if ((*it)->id == id) {
          std::unique_ptr<Seq> s = std::move(*it);
          inbox_.erase(it);
          s->cancelled = true;
          mu_.unlock();
          finish(*s, StopReason::None, "cancelled");
          mu_.lock();
          break;
        }
  }
  for (int64_t id : cancels) {
    Seq* s = nullptr;
    {
      std::lock_guard<std::mutex> lk(mu_);
      auto it = seqs_.find(id);
      if (it != seqs_.end()) s = it->second.get();
    }
    if (!s) continue;
    s->cancelled = true;
    finish(*s, StopReason::None, "cancelled");
    sched_->remove(id);
    drop(id);
  }
  {
    std::lock_guard<std::mutex> lk(mu_);
    admit_locked();
    if (seqs_.empty()) {
      refresh_gauges_locked({});  // nothing runs: no stale running / KV gauges while idle
      return !inbox_.empty();
    }
  }

  const double t_start = now_s();
  sched::Capacity cap;
  cap.max_seqs = o_.max_seqs;
  const sched::Selection sel = sched_->select(t_start, cap);
  if (log) {
    rec.select_ms = now_ms();
    rec.admitted = static_cast<int64_t>(sched_->size());
  }
  {
    std::lock_guard<std::mutex> lk(mu_);  // metrics() reads these from other threads
    metrics_.preemptions += static_cast<int64_t>(sel.preempted.size());
  }
  for (int64_t id : sel.preempted) {
    Seq* s = seqs_.count(id) ? seqs_[id].get() : nullptr;
    if (!s) continue;
    s->usage.preemptions++;
    if (o_.preempt == "recompute" && s->kv) {  // free the KV; re-prefill when selected again
      s->kv.reset();
      s->computed = 0;
    }
  }

  // Plan each selected sequence's share of the step within the token budget.
  std::vector<Seq*> run;
  std::vector<SeqStep> batch;
  int64_t budget = o_.token_budget;
  const int V = target_.config.vocab_size;
  for (int64_t id : sel.run) {
    auto it = seqs_.find(id);
    if (it == seqs_.end() || budget <= 0) continue;
    Seq& s = *it->second;
    s.drafts.clear();
    s.q.clear();
    if (!s.kv) {
      s.kv = kv::make_policy(s.r.kv.name, kv_shape(target_.config, o_.ctx), s.r.kv.options);
      if (s.drafter) s.rollback_ok = s.kv->reserve_rollback(s.r.speculative.n);
      s.kv->plan(static_cast<int64_t>(s.tokens.size()), s.r.max_tokens - s.usage.completion_tokens);
      s.computed = 0;
    }
    const int64_t S = static_cast<int64_t>(s.tokens.size());
    int64_t n;
    if (s.computed < S - 1) {  // prefill (or recompute) chunk
      n = std::min({o_.prefill_chunk, S - s.computed, budget});
    } else {  // decode: the last token, plus drafts
      n = 1;
      const bool draft_now = s.drafter && s.draft_cooldown == 0;
      if (s.draft_cooldown > 0) --s.draft_cooldown;
      if (draft_now) {
        int k = s.r.speculative.n;
        k = static_cast<int>(std::min<int64_t>({k, budget - 1, o_.ctx - S - 1,
                                                s.r.max_tokens - s.usage.completion_tokens - 1}));
        // Adaptive: in a big batch the target pass is no longer cheap per token.
        if (s.r.speculative.adaptive && static_cast<int>(sel.run.size()) > 4) k = 0;
        if (k > 0) s.drafts = s.drafter->propose(s.tokens, k, s.sampler.get(), s.q);
        n += static_cast<int64_t>(s.drafts.size());
      }
    }
    s.one_token_verify = !s.drafts.empty() && (!s.rollback_ok || !s.kv->exact_multi_token_decode());
    s.fed = n;
    if (log) {
      StepRecord::Member m;
      m.id = s.id;
      m.ctx_tokens = s.computed;
      m.fed = n;
      m.drafted = static_cast<int32_t>(s.drafts.size());
      m.prefill_tokens = s.computed < S - 1 ? n : 0;
      m.first = !s.ran;
      m.resumed = s.ran && std::find(prev_run_.begin(), prev_run_.end(), s.id) == prev_run_.end();
      if (m.prefill_tokens == 0 && !s.decoded && s.drafter) m.catchup_tokens = static_cast<int64_t>(s.prompt_len);
      rec.members.push_back(m);
    }
    s.ran = true;
    if (s.computed >= S - 1) s.decoded = true;
    const bool want_all = !s.drafts.empty();
    s.logits.resize(static_cast<size_t>((want_all ? n : 1) * V));
    run.push_back(&s);
    // Feed tokens[computed, computed + n) — for a decode step the last token then the drafts
    // (one-token verify: the last token alone; the drafts follow after the batch, see below).
    if (!s.drafts.empty()) {
      s.drafts.insert(s.drafts.begin(), s.tokens.back());
      batch.push_back({s.drafts.data(), s.one_token_verify ? 1 : n, s.kv.get(), s.logits.data(), true});
    } else {
      batch.push_back({s.tokens.data() + s.computed, n, s.kv.get(), s.logits.data(), false});
    }
    budget -= n;
  }
  if (batch.empty()) return true;
  prev_run_.clear();
  for (Seq* s : run) prev_run_.push_back(s->id);
  if (log) rec.plan_ms = now_ms();
  std::vector<int64_t> ended;
  try {
    fw_.run_batch(batch);
    for (size_t i = 0; i < run.size(); ++i) {
      if (!run[i]->one_token_verify) continue;
      verify_one_token_at_a_time(*run[i]);
      if (log) rec.members[i].fed = run[i]->fed;  // 1 + accepted: the drafts the target really saw
    }
  } catch (const Error& e) {
    // One bad sequence must not take the engine down: fail this step's requests.
    std::vector<sched::StepOutcome> outs;
    for (Seq* s : run) {
      finish(*s, StopReason::None, e.what());
      outs.push_back({s->id, 0, 0, 0, 0, true});
    }
    sched_->on_step_done(outs, now_s() - t_start, now_s());
    for (Seq* s : run) drop(s->id);
    return true;
  }
  {
    std::lock_guard<std::mutex> lk(mu_);
    metrics_.steps++;
    rec.step = metrics_.steps;
  }
  if (log) rec.forward_ms = now_ms();

  std::vector<sched::StepOutcome> outcomes;
  for (Seq* sp : run) {
    Seq& s = *sp;
    const int64_t S = static_cast<int64_t>(s.tokens.size());
    if (!s.drafts.empty()) s.drafts.erase(s.drafts.begin());  // back to the proposal alone
    if (s.drafts.empty() && s.computed + s.fed < S) {  // a prefill chunk short of the end
      s.computed += s.fed;
      sched::StepOutcome o;
      o.id = s.id;
      o.prefill_tokens = s.fed;
      outcomes.push_back(o);
      continue;
    }
    if (s.drafts.empty()) s.computed += s.fed;
    const int64_t prefilled = std::max<int64_t>(0, std::min<int64_t>(s.fed, static_cast<int64_t>(s.prompt_len) - (s.computed - s.fed)));
    try {
      process_logits(s, s.logits.data(), s.drafts.empty() ? 1 : s.fed, outcomes);
    } catch (const Error& e) {  // e.g. a KV policy that cannot roll back: this request fails alone
      finish(s, StopReason::None, e.what());
      outcomes.push_back({s.id, 0, 0, 0, 0, true});
      ended.push_back(s.id);
      continue;
    }
    outcomes.back().prefill_tokens = s.drafts.empty() ? prefilled : 0;
    // Adaptive drafting: pause drafting for 8 steps after a step that accepted nothing.
    if (s.r.speculative.adaptive && !s.drafts.empty() && outcomes.back().accepted == 0) s.draft_cooldown = 8;
    if (s.done) ended.push_back(s.id);
  }
  const double t_end = now_s();
  sched_->on_step_done(outcomes, t_end - t_start, t_end);
  for (int64_t id : ended) drop(id);
  {
    std::lock_guard<std::mutex> lk(mu_);
    refresh_gauges_locked(run);
    for (const auto& o : outcomes) {
      metrics_.drafted += o.drafted;
      metrics_.accepted += o.accepted;
      metrics_.generated_tokens += o.emitted;
      metrics_.prompt_tokens += o.prefill_tokens;
    }
  }
  if (log) {
    rec.end_ms = now_ms();
    o_.on_step(rec);
  }
  return true;
}

// Called on the engine thread with mu_ held; `ran` are the sequences of the step just run.
void Engine::refresh_gauges_locked(const std::vector<Seq*>& ran) {
  int64_t running = 0;
  size_t in_use = 0;
  metrics_.kv_bytes_by_policy.clear();
  metrics_.running_by_queue.clear();
  metrics_.waiting_by_queue.clear();
  for (auto& [id, s] : seqs_) {
    if (s->kv) {
      const size_t b = s->kv->total_bytes();
      in_use += b;
      metrics_.kv_bytes_by_policy[s->r.kv.name] += b;
    }
    const sched::RequestState* rs = sched_->find(id);
    const int q = rs ? rs->queue : 0;
    if (std::find(ran.begin(), ran.end(), s.get()) != ran.end()) {
      ++running;
      metrics_.running_by_queue[q]++;
    } else {
      metrics_.waiting_by_queue[q]++;
    }
  }
  metrics_.running = running;
  metrics_.kv_bytes_in_use = in_use;
}

void Engine::run_until_idle() {
  while (step()) {
  }
}

void Engine::start() {
  stop_ = false;
  thread_ = std::thread([this] {
    while (!stop_) {
      if (!step()) {
        std::unique_lock<std::mutex> lk(mu_);
        cv_.wait_for(lk, std::chrono::milliseconds(50), [&] { return stop_ || !inbox_.empty() || !cancels_.empty(); });
      }
    }
  });
}

void Engine::stop() {
  if (thread_.joinable()) {
    stop_ = true;
    cv_.notify_all();
    thread_.join();
  }
  // Cancel whatever is left so every callback sees its end.
  std::vector<int64_t> ids;
  {
    std::lock_guard<std::mutex> lk(mu_);
    for (auto& [id, s] : seqs_) ids.push_back(id);
    for (auto& s : inbox_) ids.push_back(s->id);
  }
  for (int64_t id : ids) cancel(id);
  if (!ids.empty()) step();
}

Metrics Engine::metrics() const {
  std::lock_guard<std::mutex> lk(mu_);
  return metrics_;
}

}  // namespace harmonia::engine
