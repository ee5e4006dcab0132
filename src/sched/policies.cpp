// fcfs, sjf, srpt-oracle, las, mlfq (FastServe skip-join MLFQ) and laps-sd.
// Each is a priority key over the Policy base class's request states; the
// base class selects the top of the order each step (sched/policy.cpp).
#include "sched/policies.h"

#include <algorithm>
#include <cmath>
#include <unordered_map>

#include "common/error.h"

namespace harmonia::sched {

namespace {

// Spec A17: a prediction at or below what was already generated becomes g + max(1, ceil(ρ·g)).
double guard_length(double L_hat, const RequestState& r, double rho) {
  if (r.req.max_new_tokens > 0) L_hat = std::min(L_hat, static_cast<double>(r.req.max_new_tokens));
  const double g = static_cast<double>(r.generated);
  if (L_hat <= g) L_hat = g + std::max(1.0, std::ceil(rho * g));
  return L_hat;
}

// ---- fcfs ---------------------------------------------------------------------------------

class Fcfs final : public Policy {
 public:
  using Policy::Policy;
  std::string name() const override { return "fcfs"; }

 protected:
  Key key(const RequestState& r, double) const override { return {r.req.arrival_s, 0, 0}; }
};

// ---- sjf ----------------------------------------------------------------------------------

class Sjf final : public Policy {
 public:
  Sjf(const SjfOptions& o, const PolicyContext& ctx) : Policy(ctx), o_(o), pred_(make_predictor(o.predictor)) {}
  std::string name() const override { return "sjf"; }

 protected:
  void admit(RequestState& r, double) override { r.length_hat = guard_length(pred_->predict(r), r, o_.rho); }
  void update(RequestState& r, const StepOutcome&, double, double) override {
    // Re-predicting matters for cond-mean (E[L | L > g] grows with g); oracles are constant.
    r.length_hat = guard_length(pred_->predict(r), r, o_.rho);
  }
  Key key(const RequestState& r, double) const override {
    if (o_.preemptive) return {r.length_hat - static_cast<double>(r.generated), 0, 0};
    // Non-preemptive: whatever has started keeps running, in start order.
    if (r.first_run_s >= 0) return {0, r.first_run_s, 0};
    return {1, r.length_hat, 0};
  }

 private:
  SjfOptions o_;
  std::unique_ptr<LengthPredictor> pred_;
};

// ---- srpt-oracle --------------------------------------------------------------------------

class SrptOracle final : public Policy {
 public:
  using Policy::Policy;
  std::string name() const override { return "srpt-oracle"; }

 protected:
  void admit(RequestState& r, double) override {
    if (r.req.true_output_tokens < 1)
      fail(ErrorKind::InvalidInput,
           "srpt-oracle needs the true output length of request {} (a simulation / trace-replay bound only)", r.req.id);
    if (!r.req.true_accepted.empty())
      total_steps_[r.req.id] = remaining_steps(r.req, 0, r.req.true_output_tokens, context().draft_len, 0.0);
  }
  Key key(const RequestState& r, double) const override {
    const int64_t left_tokens = std::max<int64_t>(0, r.req.true_output_tokens - r.generated);
    int64_t steps;
    auto it = total_steps_.find(r.req.id);
    if (it != total_steps_.end()) steps = std::max<int64_t>(0, it->second - r.acc.steps);
    else steps = remaining_steps(r.req, r.acc.steps, left_tokens, context().draft_len, r.acc.rate());
    const double prefill = r.first_run_s < 0 ? prefill_s(r.req.prompt_tokens) : 0.0;
    return {static_cast<double>(steps) * context().step_s + prefill, 0, 0};
  }

 private:
  std::unordered_map<RequestId, int64_t> total_steps_;  // steps the trace needs for the whole output
};

// ---- las ----------------------------------------------------------------------------------

class Las final : public Policy {
 public:
  Las(const LasOptions& o, const PolicyContext& ctx) : Policy(ctx) { unit_ = o.service_unit; }
  std::string name() const override { return "las"; }

 protected:
  Key key(const RequestState& r, double) const override { return {r.attained, 0, 0}; }
};

// ---- aging shared by mlfq and laps-sd -----------------------------------------------------

// NOTE: spec §2.2 moves a starving request to queue 0; to make the aging bound
// of §6.10 hold (only other promoted requests go ahead of it) a pinned request
// ranks above every queue, FCFS by promotion time, until it next runs.
void apply_aging(const std::vector<std::unique_ptr<RequestState>>& reqs, double limit_s, double now_s,
                 const std::function<void(RequestState&)>& on_promote) {
  if (!std::isfinite(limit_s)) return;
  for (const auto& p : reqs) {
    RequestState& r = *p;
    if (r.running || r.pinned) continue;
    if (now_s - r.last_run_end_s > limit_s) {
      r.pinned = true;
      r.enqueue_s = now_s;
      on_promote(r);
    }
  }
}

// ---- mlfq ---------------------------------------------------------------------------------

class Mlfq final : public Policy {
 public:
  Mlfq(const MlfqOptions& o, const PolicyContext& ctx) : Policy(ctx), o_(o) {
    unit_ = o.service_unit;
    const double scale = unit_ == ServiceUnit::Seconds ? ctx.step_s : 1.0;
    for (int j = 0; j < o.queues; ++j)
      quantum_.push_back(j + 1 == o.queues ? kInf : o.quantum1 * std::pow(o.ratio, j) * scale);
  }
  std::string name() const override { return "mlfq"; }

 protected:
  void admit(RequestState& r, double now_s) override {
    r.queue = 0;
    if (o_.skip_join) {
      // FastServe: join the highest queue whose quantum covers the first iteration.
      const double first = unit_ == ServiceUnit::Seconds ? prefill_s(r.req.prompt_tokens) + context().step_s : 1.0;
      while (r.queue + 1 < o_.queues && quantum_[r.queue] < first) ++r.queue;
    }
    r.queue_service = 0;
    r.enqueue_s = now_s;
  }
  void update(RequestState& r, const StepOutcome&, double, double now_s) override {
    r.pinned = false;
    while (r.queue + 1 < o_.queues && r.queue_service >= quantum_[r.queue]) {
      r.queue_service -= quantum_[r.queue];
      ++r.queue;
      r.enqueue_s = now_s;
    }
  }
  void prepare(double now_s) override {
    apply_aging(requests(), o_.starve_limit_s, now_s, [](RequestState& r) {
      r.queue = 0;
      r.queue_service = 0;
    });
  }
  Key key(const RequestState& r, double) const override {
    if (r.pinned) return {-1, r.enqueue_s, 0};
    return {static_cast<double>(r.queue), r.enqueue_s, 0};
  }

 private:
  MlfqOptions o_;
  std::vector<double> quantum_;  // per queue, in the service unit
};

// ---- laps-sd ------------------------------------------------------------------------------

class LapsSd final : public Policy {
 public:
  LapsSd(const LapsOptions& o, const PolicyContext& ctx) : Policy(ctx), o_(o), pred_(make_predictor(o.predictor)) {
    unit_ = o.service_unit;
    history_keep_ = static_cast<size_t>(std::max(1, o.window));
    const double scale = unit_ == ServiceUnit::Seconds ? ctx.step_s : 1.0;
    if (!o.thresholds.empty()) {
      for (double t : o.thresholds) theta_.push_back(t * scale);
    } else {
      for (int j = 0; j + 1 < o.queues; ++j) theta_.push_back(o.theta1 * std::pow(o.ratio, j) * scale);
    }
    for (size_t j = 0; j < theta_.size(); ++j)
      if (!(theta_[j] > 0) || (j > 0 && !(theta_[j] > theta_[j - 1])))
        fail(ErrorKind::InvalidInput, "sched policy 'laps-sd': thresholds must be positive and increasing");
    theta_.push_back(kInf);  // θ_K
  }
  std::string name() const override { return "laps-sd"; }

 protected:
  void admit(RequestState& r, double now_s) override {
    r.queue = 0;
    r.enqueue_s = now_s;
    if (o_.perceptible_at_arrival) {
      const Request& q = r.req;
      if (q.true_output_tokens < 1 || q.true_accepted.empty())
        fail(ErrorKind::InvalidInput,
             "laps-sd perceptible_at_arrival needs request {}'s true length and acceptance trace (simulation only)",
             q.id);
      int64_t left = q.true_output_tokens, steps = 0, acc = 0;
      for (size_t i = 0; i < q.true_accepted.size() && left > 0; ++i, ++steps) {
        acc += q.true_accepted[i];
        left -= q.true_accepted[i] + 1;
      }
      const double A = steps ? static_cast<double>(acc) / (static_cast<double>(context().draft_len) * steps) : 0.0;
      become_perceptible(r, now_s, A);
      requeue(r, now_s);
    }
  }

  void update(RequestState& r, const StepOutcome& o, double, double now_s) override {
    r.pinned = false;
    requeue(r, now_s);  // by X while non-perceptible; by the rules below once perceptible
    if (!r.perceptible) {
      if (o_.perceptible_enabled && stable(r)) {
        become_perceptible(r, now_s, r.acc.rate());
        requeue(r, now_s);
      }
      return;
    }
    if (o_.ewma_beta > 0 && o_.use_acceptance && o.drafted > 0)
      r.accept_hat = (1 - o_.ewma_beta) * r.accept_hat + o_.ewma_beta * r.acc.last_rate;
    reestimate(r);
    requeue(r, now_s);
  }

  void prepare(double now_s) override {
    apply_aging(requests(), o_.starve_limit_s, now_s, [](RequestState&) {});
  }

  Key key(const RequestState& r, double) const override {
    if (r.pinned) return {-1, r.enqueue_s, 0};
    if (r.perceptible) return {static_cast<double>(r.queue), 0, key_value(r)};
    return {static_cast<double>(r.queue), 1, r.enqueue_s};
  }

 private:
  LapsOptions o_;
  std::unique_ptr<LengthPredictor> pred_;
  std::vector<double> theta_;  // θ_1..θ_K in the service unit, θ_K = inf

  // Spec §1.4: the cumulative Â moved at most eps over the last W steps, after t_min steps.
  bool stable(const RequestState& r) const {
    return r.acc.steps >= o_.t_min && r.acc.drift(static_cast<size_t>(std::max(1, o_.window))) <= o_.eps;
  }

  void become_perceptible(RequestState& r, double now_s, double A) {
    r.perceptible = true;
    r.perceptible_at_s = now_s;
    r.accept_hat = o_.use_acceptance ? A : 0.0;
    r.length_hat = pred_->predict(r);
    reestimate(r);
    r.estimate_at_switch_s = r.remaining_hat_s;
  }

  // Spec §1.1: T̃ = L·(n·T_SSM + T_LLM)/(n·A + 1), here on the remaining tokens, τ = n·T_SSM + T_LLM.
  void reestimate(RequestState& r) {
    r.length_hat = guard_length(r.length_hat, r, o_.rho);
    const double per_token = context().step_s / (context().draft_len * r.accept_hat + 1.0);
    r.remaining_hat_s = std::max(0.0, r.length_hat - static_cast<double>(r.generated)) * per_token;
  }

  double key_value(const RequestState& r) const {
    if (o_.key == LapsOptions::KeyKind::Remaining) return r.remaining_hat_s;
    return r.length_hat * context().step_s / (context().draft_len * r.accept_hat + 1.0);
  }

  // The perceived service of a perceptible request, in the unit of X (for P1 placement).
  double perceived(const RequestState& r) const {
    switch (unit_) {
      case ServiceUnit::Seconds: return key_value(r);
      case ServiceUnit::Iterations: return key_value(r) / context().step_s;
      case ServiceUnit::Tokens:
        return o_.key == LapsOptions::KeyKind::Remaining ? r.length_hat - static_cast<double>(r.generated)
                                                          : r.length_hat;
    }
    return key_value(r);
  }

  int queue_for(double service) const {
    int j = 0;
    while (!(service < theta_[j])) ++j;  // θ_K = inf ends the loop
    return j;
  }

  void requeue(RequestState& r, double now_s) {
    int j = r.queue;
    if (!r.perceptible || o_.perceptible_policy == LapsOptions::Perceptible::IntraQueue) j = queue_for(r.attained);
    else if (o_.perceptible_policy == LapsOptions::Perceptible::Requeue) j = queue_for(perceived(r));
    // Freeze (P3): stays where it became perceptible.
    if (j != r.queue) {
      r.queue = j;
      r.enqueue_s = now_s;
    }
  }
};

// ---- option parsing -----------------------------------------------------------------------

ServiceUnit read_unit(OptionReader& rd, ServiceUnit def) {
  const std::string u = rd.get_choice("service_unit", service_unit_name(def), {"seconds", "iterations", "tokens"});
  return u == "seconds" ? ServiceUnit::Seconds : u == "iterations" ? ServiceUnit::Iterations : ServiceUnit::Tokens;
}

PredictorOptions read_predictor(OptionReader& rd, const PolicyContext& ctx) {
  PredictorOptions p;
  p.kind = rd.get_choice("predictor", p.kind, {"oracle", "noisy-oracle", "cond-mean"});
  p.sigma = rd.get_double("sigma", p.sigma, 0, 10);
  p.seed = static_cast<uint64_t>(rd.get_int("predictor_seed", 1, 0, INT64_MAX));
  p.samples = ctx.length_samples;
  if (p.kind == "cond-mean" && p.samples.empty())
    fail(ErrorKind::InvalidInput, "predictor=cond-mean needs an empirical length distribution (none was given)");
  return p;
}

}  // namespace

int64_t remaining_steps(const Request& r, int64_t done_steps, int64_t remaining_tokens, int draft_len,
                        double fallback_rate) {
  if (remaining_tokens <= 0) return 0;
  const auto& t = r.true_accepted;
  int64_t steps = 0;
  for (size_t i = static_cast<size_t>(std::max<int64_t>(0, done_steps)); i < t.size() && remaining_tokens > 0; ++i) {
    remaining_tokens -= t[i] + 1;
    ++steps;
  }
  if (remaining_tokens > 0)
    steps += static_cast<int64_t>(std::ceil(static_cast<double>(remaining_tokens) / (draft_len * fallback_rate + 1.0)));
  return steps;
}

std::unique_ptr<Policy> make_fcfs(const PolicyContext& ctx) { return std::make_unique<Fcfs>(ctx); }
std::unique_ptr<Policy> make_sjf(const SjfOptions& o, const PolicyContext& ctx) { return std::make_unique<Sjf>(o, ctx); }
std::unique_ptr<Policy> make_srpt_oracle(const PolicyContext& ctx) { return std::make_unique<SrptOracle>(ctx); }
std::unique_ptr<Policy> make_las(const LasOptions& o, const PolicyContext& ctx) { return std::make_unique<Las>(o, ctx); }
std::unique_ptr<Policy> make_mlfq(const MlfqOptions& o, const PolicyContext& ctx) {
  if (o.queues < 1) fail(ErrorKind::InvalidInput, "sched policy 'mlfq': queues must be >= 1");
  return std::make_unique<Mlfq>(o, ctx);
}
std::unique_ptr<Policy> make_laps_sd(const LapsOptions& o, const PolicyContext& ctx) {
  if (o.queues < 1) fail(ErrorKind::InvalidInput, "sched policy 'laps-sd': queues must be >= 1");
  return std::make_unique<LapsSd>(o, ctx);
}

std::vector<std::string> policy_names() { return {"fcfs", "sjf", "srpt-oracle", "las", "mlfq", "laps-sd"}; }

std::unique_ptr<Policy> make_policy(const std::string& spec, const PolicyContext& ctx) {
  return make_policy(parse_policy_spec(spec), ctx);
}

std::unique_ptr<Policy> make_policy(const PolicySpec& spec, const PolicyContext& ctx) {
  if (ctx.draft_len < 0) fail(ErrorKind::InvalidInput, "scheduler: draft length {} < 0", ctx.draft_len);
  if (!(ctx.step_s > 0) || !std::isfinite(ctx.step_s))
    fail(ErrorKind::InvalidInput, "scheduler: reference step time {} s must be positive", ctx.step_s);
  OptionReader rd("sched policy '" + spec.name + "'", spec.options);
  std::unique_ptr<Policy> p;
  if (spec.name == "fcfs") {
    p = make_fcfs(ctx);
  } else if (spec.name == "sjf") {
    SjfOptions o;
    o.predictor = read_predictor(rd, ctx);
    o.preemptive = rd.get_bool("preemptive", o.preemptive);
    o.rho = rd.get_double("rho", o.rho, 0, 100);
    p = make_sjf(o, ctx);
  } else if (spec.name == "srpt-oracle") {
    p = make_srpt_oracle(ctx);
  } else if (spec.name == "las") {
    LasOptions o;
    o.service_unit = read_unit(rd, o.service_unit);
    p = make_las(o, ctx);
  } else if (spec.name == "mlfq") {
    MlfqOptions o;
    o.queues = static_cast<int>(rd.get_int("queues", o.queues, 1, 64));
    o.quantum1 = rd.get_double("quantum1", o.quantum1, 1e-9, 1e12);
    o.ratio = rd.get_double("ratio", o.ratio, 1, 1e6);
    o.skip_join = rd.get_bool("skip_join", o.skip_join);
    o.starve_limit_s = rd.get_double("starve_limit_s", o.starve_limit_s, 0, kInf);
    o.service_unit = read_unit(rd, o.service_unit);
    p = make_mlfq(o, ctx);
  } else if (spec.name == "laps-sd") {
    LapsOptions o;
    o.queues = static_cast<int>(rd.get_int("queues", o.queues, 1, 64));
    o.theta1 = rd.get_double("theta1", o.theta1, 1e-9, 1e12);
    o.ratio = rd.get_double("ratio", o.ratio, 1.0 + 1e-9, 1e6);
    if (rd.has("thresholds")) o.thresholds = parse_number_list(rd.get_string("thresholds", ""), "laps-sd thresholds");
    o.service_unit = read_unit(rd, o.service_unit);
    o.window = static_cast<int>(rd.get_int("window", o.window, 1, 1000));
    o.eps = rd.get_double("eps", o.eps, 0, kInf);
    o.t_min = static_cast<int>(rd.get_int("t_min", o.t_min, 0, 1000000));
    o.perceptible_enabled = rd.get_bool("perceptible_enabled", o.perceptible_enabled);
    o.perceptible_at_arrival = rd.get_bool("perceptible_at_arrival", o.perceptible_at_arrival);
    const std::string pp = rd.get_choice("perceptible_policy", "P1", {"P1", "P2", "P3"});
    o.perceptible_policy = pp == "P1" ? LapsOptions::Perceptible::Requeue
                           : pp == "P2" ? LapsOptions::Perceptible::IntraQueue
                                        : LapsOptions::Perceptible::Freeze;
    o.key = rd.get_choice("key", "remaining", {"remaining", "total"}) == "remaining" ? LapsOptions::KeyKind::Remaining
                                                                                      : LapsOptions::KeyKind::Total;
    o.ewma_beta = rd.get_double("ewma_beta", o.ewma_beta, 0, 1);
    o.use_acceptance = rd.get_bool("use_acceptance", o.use_acceptance);
    o.predictor = read_predictor(rd, ctx);
    o.rho = rd.get_double("rho", o.rho, 0, 100);
    o.starve_limit_s = rd.get_double("starve_limit_s", o.starve_limit_s, 0, kInf);
    p = make_laps_sd(o, ctx);
  } else {
    std::string known;
    for (const auto& n : policy_names()) known += (known.empty() ? "" : ", ") + n;
    fail(ErrorKind::InvalidInput, "unknown scheduling policy '{}' (known: {})", spec.name, known);
  }
  rd.finish();
  p->set_label(spec.label());
  return p;
}

}  // namespace harmonia::sched
