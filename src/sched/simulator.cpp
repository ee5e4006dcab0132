#include "sched/simulator.h"

#include <algorithm>
#include <cmath>
#include <unordered_map>

#include <fmt/format.h>
#include <fmt/ranges.h>

#include "common/error.h"

namespace harmonia::sched {

namespace {

struct SimState {
  const WorkloadRequest* w = nullptr;
  int64_t g = 0, step = 0, drafted = 0, accepted = 0, preemptions = 0;
  double first_token_s = -1, service_s = 0;
  bool started = false, preempted = false;
  bool est_valid = false;
  double est_s = 0, actual_s = 0;
};

void check_workload(const Workload& w, const SimOptions& o) {
  if (o.max_seqs < 1) fail(ErrorKind::InvalidInput, "simulator: batch capacity {} must be >= 1", o.max_seqs);
  if (o.draft_len < 0) fail(ErrorKind::InvalidInput, "simulator: draft length {} must be >= 0", o.draft_len);
  if (w.requests.empty()) fail(ErrorKind::InvalidInput, "{}: no requests to simulate", w.source);
  for (const auto& r : w.requests) {
    if (r.accepted.empty())
      fail(ErrorKind::InvalidInput, "{}: request {} has no acceptance trace (the simulator needs one per request)",
           w.source, r.id);
    if (o.draft_len > 0 && w.draft_len != o.draft_len)
      fail(ErrorKind::InvalidInput, "{}: traces were recorded with draft_len {} but the simulation uses {}", w.source,
           w.draft_len, o.draft_len);
  }
}

// Draft tokens of the request's next step: 0 for a prefill-only first step,
// else its drafted trace's entry, else n.
int32_t drafted_at(const SimState& s, const Workload& w, int n) {
  if (w.first_step_prefill && !s.started) return 0;
  if (!s.w->drafted.empty() && s.step < static_cast<int64_t>(s.w->drafted.size()))
    return s.w->drafted[static_cast<size_t>(s.step)];
  return n;
}

}  // namespace

double step_cost_ms(const CostProfile& prof, std::span<const StepMember> m, double preempt_ms) {
  double ms = 0, ctx = 0, drafted = 0;
  int d = 0;
  for (const StepMember& x : m) {
    if (x.prefill_tokens > 0) ms += prof.prefill_ms(x.prefill_tokens);
    if (x.catchup_tokens > 0) ms += prof.draft_prefill_ms(x.catchup_tokens);
    if (x.resumed) ms += preempt_ms;
    if (!x.decodes) continue;
    ++d;
    ctx += x.ctx_tokens;
    drafted += x.drafted;
  }
  if (d > 0) {
    ctx /= d;
    drafted /= d;
    ms += drafted * prof.draft_ms(d, ctx) + prof.verify_ms(d, drafted, ctx);
  }
  if (!m.empty()) ms += prof.step_overhead_ms(static_cast<int>(m.size()));
  return ms;
}

SimResult simulate(const Workload& w, Policy& policy, const CostProfile& prof, const SimOptions& o) {
  check_workload(w, o);
  if (policy.size() != 0) fail(ErrorKind::InvalidInput, "simulator: policy {} already holds requests", policy.label());
  const size_t N = w.requests.size();
  std::vector<SimState> st(N);
  std::unordered_map<RequestId, size_t> idx;
  for (size_t i = 0; i < N; ++i) {
    st[i].w = &w.requests[i];
    if (!idx.emplace(w.requests[i].id, i).second)
      fail(ErrorKind::InvalidInput, "{}: request id {} appears twice", w.source, w.requests[i].id);
    if (i > 0 && w.requests[i].arrival_s < w.requests[i - 1].arrival_s)
      fail(ErrorKind::InvalidInput, "{}: requests must be sorted by arrival time", w.source);
  }
  const int n = o.draft_len;
  const double cp_ms = o.preempt_ms >= 0 ? o.preempt_ms : prof.preempt_ms();
  const Capacity cap{o.max_seqs, o.max_kv_tokens};

  SimResult res;
  res.policy = policy.label().empty() ? policy.name() : policy.label();
  size_t next = 0, done = 0;
  double now = 0;
  std::vector<StepOutcome> outs;
  std::vector<StepMember> members;
  while (done < N) {
    while (next < N && w.requests[next].arrival_s <= now) {
      policy.on_arrival(to_request(w.requests[next]), w.requests[next].arrival_s);
      ++next;
    }
    if (policy.size() == 0) {
      now = w.requests[next].arrival_s;
      continue;
    }
    const Selection sel = policy.select(now, cap);
    for (RequestId id : sel.preempted) {
      SimState& s = st[idx.at(id)];
      s.preempted = true;
      ++s.preemptions;
    }
    if (sel.run.empty()) {
      const auto ord = policy.order(now);
      const SimState& s = st[idx.at(ord.front())];
      fail(ErrorKind::InvalidInput, "simulator: request {} needs {} KV tokens but the budget is {}", s.w->id,
           s.w->prompt_tokens + s.g + n + 1, o.max_kv_tokens);
    }
    // Step cost from the profile (step_cost_ms): the decoding members draft
    // (d_i tokens each; d = n without a drafted trace) and are verified in one
    // pass. Under first_step "prefill" a request's first step only prefills (it
    // emits its first token without drafting).
    members.clear();
    for (RequestId id : sel.run) {
      SimState& s = st[idx.at(id)];
      StepMember m;
      m.prefill_tokens = !s.started && o.charge_prefill ? s.w->prompt_tokens : 0;
      m.decodes = !(w.first_step_prefill && !s.started);
      m.ctx_tokens = static_cast<double>(s.w->prompt_tokens + s.g);
      m.drafted = m.decodes ? drafted_at(s, w, n) : 0;
      m.resumed = s.started && s.preempted;
      // The drafter catches up over the prompt in the request's first decode
      // step: step 1 after a prefill-only first step, else step 0.
      if (o.charge_prefill && m.decodes && s.step == (w.first_step_prefill ? 1 : 0)) m.catchup_tokens = s.w->prompt_tokens;
      members.push_back(m);
      s.preempted = false;
      // Estimation error: from the switch to perceptible (before this step) to completion.
      if (!s.est_valid) {
        const RequestState* ps = policy.find(id);
        if (ps && ps->perceptible) {
          s.est_valid = true;
          s.est_s = ps->estimate_at_switch_s;
          s.actual_s = 0;
        }
      }
    }
    const double ms = step_cost_ms(prof, members, cp_ms);
    // The estimation error's "actual" service: the step without prefills and switches.
    double decode_ms = ms;
    for (const StepMember& m : members) {
      if (m.prefill_tokens > 0) decode_ms -= prof.prefill_ms(m.prefill_tokens);
      if (m.catchup_tokens > 0) decode_ms -= prof.draft_prefill_ms(m.catchup_tokens);
      if (m.resumed) decode_ms -= cp_ms;
    }
    const double dt = ms / 1000.0, start = now;
    now += dt;
    outs.clear();
    SimEvent ev;
    for (RequestId id : sel.run) {
      SimState& s = st[idx.at(id)];
      if (s.step >= static_cast<int64_t>(s.w->accepted.size()))
        fail(ErrorKind::InvalidInput, "{}: request {}'s acceptance trace ran out after {} steps with {} of {} tokens",
             w.source, id, s.step, s.g, s.w->output_tokens);
      const int32_t a = s.w->accepted[static_cast<size_t>(s.step)];
      const int64_t e = std::min<int64_t>(a + 1, s.w->output_tokens - s.g);
      StepOutcome oc;
      oc.id = id;
      oc.drafted = drafted_at(s, w, n);
      oc.accepted = a;
      oc.emitted = e;
      oc.prefill_tokens = s.started ? 0 : s.w->prompt_tokens;
      s.g += e;
      oc.finished = s.g >= s.w->output_tokens;
      ++s.step;
      s.drafted += oc.drafted;
      s.accepted += a;
      s.service_s += dt;
      if (s.est_valid) s.actual_s += decode_ms / 1000.0;
      if (!s.started) s.first_token_s = now;
      s.started = true;
      outs.push_back(oc);
    }
    policy.on_step_done(outs, dt, now);
    for (const StepOutcome& oc : outs) {
      if (!oc.finished) continue;
      const SimState& s = st[idx.at(oc.id)];
      RequestOutcome r;
      r.id = oc.id;
      r.cls = s.w->cls;
      r.arrival_s = s.w->arrival_s;
      r.first_token_s = s.first_token_s;
      r.finish_s = now;
      r.prompt_tokens = s.w->prompt_tokens;
      r.output_tokens = s.w->output_tokens;
      r.steps = s.step;
      r.drafted = s.drafted;
      r.accepted = s.accepted;
      r.preemptions = s.preemptions;
      r.service_s = s.service_s;
      r.est_valid = s.est_valid;
      r.est_remaining_s = s.est_s;
      r.actual_remaining_s = s.actual_s;
      res.requests.push_back(r);
      ++done;
      ev.finished.push_back(oc.id);
    }
    if (o.record_events) {
      ev.start_s = start;
      ev.end_s = now;
      ev.ran = sel.run;
      ev.preempted = sel.preempted;
      res.events.push_back(std::move(ev));
    }
  }
  res.metrics = summarize(res.requests);
  return res;
}

double percentile(std::vector<double> v, double q) {
  if (v.empty()) return 0;
  std::sort(v.begin(), v.end());
  const double pos = q / 100.0 * static_cast<double>(v.size() - 1);
  const size_t i = static_cast<size_t>(std::floor(pos));
  if (i + 1 >= v.size()) return v.back();
  return v[i] + (pos - static_cast<double>(i)) * (v[i + 1] - v[i]);
}

SimMetrics summarize(std::span<const RequestOutcome> rs) {
  SimMetrics m;
  m.requests = static_cast<int64_t>(rs.size());
  if (rs.empty()) return m;
  std::vector<double> lat, ttft;
  double tpot_sum = 0, norm_sum = 0, err_sum = 0;
  int64_t tpot_n = 0, tokens = 0, drafted = 0, accepted = 0;
  double first_arrival = rs[0].arrival_s, last_finish = rs[0].finish_s;
  for (const auto& r : rs) {
    lat.push_back(r.latency_s());
    ttft.push_back(r.ttft_s());
    norm_sum += r.latency_s() / static_cast<double>(std::max<int64_t>(1, r.output_tokens));
    if (r.output_tokens > 1) {
      tpot_sum += (r.finish_s - r.first_token_s) / static_cast<double>(r.output_tokens - 1);
      ++tpot_n;
    }
    tokens += r.output_tokens;
    drafted += r.drafted;
    accepted += r.accepted;
    m.preemptions += r.preemptions;
    first_arrival = std::min(first_arrival, r.arrival_s);
    last_finish = std::max(last_finish, r.finish_s);
    if (r.est_valid && r.actual_remaining_s > 0) {
      err_sum += std::abs(r.est_remaining_s - r.actual_remaining_s) / r.actual_remaining_s;
      ++m.est_count;
    }
  }
  const double N = static_cast<double>(rs.size());
  double sum = 0;
  for (double x : lat) sum += x;
  m.mean_latency_s = sum / N;
  m.p50_latency_s = percentile(lat, 50);
  m.p90_latency_s = percentile(lat, 90);
  m.p99_latency_s = percentile(lat, 99);
  sum = 0;
  for (double x : ttft) sum += x;
  m.mean_ttft_s = sum / N;
  m.p99_ttft_s = percentile(ttft, 99);
  m.mean_tpot_s = tpot_n ? tpot_sum / static_cast<double>(tpot_n) : 0;
  m.mean_norm_latency_s = norm_sum / N;
  m.makespan_s = last_finish - first_arrival;
  m.throughput_tok_s = m.makespan_s > 0 ? static_cast<double>(tokens) / m.makespan_s : 0;
  m.mean_acceptance = drafted ? static_cast<double>(accepted) / static_cast<double>(drafted) : 0;
  m.est_error_mean = m.est_count ? err_sum / static_cast<double>(m.est_count) : -1;
  return m;
}

double mean_service_s(const Workload& w, const CostProfile& prof, int n, bool charge_prefill) {
  if (w.requests.empty()) return 0;
  double sum_ms = 0;
  for (const auto& r : w.requests) {
    int64_t left = r.output_tokens, steps = 0;  // steps that draft n
    const double ctx = static_cast<double>(r.prompt_tokens) + static_cast<double>(r.output_tokens) / 2;
    for (size_t i = 0; i < r.accepted.size() && left > 0; ++i) {
      left -= r.accepted[i] + 1;
      if (i == 0 && w.first_step_prefill) continue;  // the prefill step: prefill only
      if (r.drafted.empty()) ++steps;
      else sum_ms += prof.step_ms(1, r.drafted[i], ctx);
    }
    if (left > 0) steps += left;  // no trace: one token per step
    sum_ms += static_cast<double>(steps) * prof.step_ms(1, n, ctx) +
              (charge_prefill ? prof.prefill_ms(r.prompt_tokens) + prof.draft_prefill_ms(r.prompt_tokens) : 0);
    if (w.first_step_prefill) sum_ms += prof.step_overhead_ms(1);  // the prefill step is a step of its own
  }
  return sum_ms / 1000.0 / static_cast<double>(w.requests.size());
}

PolicyContext workload_policy_context(const Workload& w, const CostProfile& prof, int n, int batch) {
  double mean_ctx = 0;
  std::vector<int64_t> lengths;
  for (const auto& r : w.requests) {
    mean_ctx += static_cast<double>(r.prompt_tokens) + static_cast<double>(r.output_tokens) / 2;
    lengths.push_back(r.output_tokens);
  }
  if (!w.requests.empty()) mean_ctx /= static_cast<double>(w.requests.size());
  PolicyContext ctx = prof.policy_context(n, batch, mean_ctx);
  ctx.length_samples = std::move(lengths);
  return ctx;
}

std::string format_events(std::span<const SimEvent> events) {
  std::string out;
  for (const auto& e : events)
    out += fmt::format("{:.9f} {:.9f} ran=[{}] pre=[{}] fin=[{}]\n", e.start_s, e.end_s, fmt::join(e.ran, ","),
                       fmt::join(e.preempted, ","), fmt::join(e.finished, ","));
  return out;
}

}  // namespace harmonia::sched
