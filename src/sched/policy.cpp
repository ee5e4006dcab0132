// The Policy base class: per-request bookkeeping shared by every policy, and
// selection of the top requests of a policy's order.
#include "sched/policy.h"

#include <algorithm>
#include <cmath>
#include <limits>

#include "common/error.h"

namespace harmonia::sched {

const char* service_unit_name(ServiceUnit u) {
  switch (u) {
    case ServiceUnit::Seconds: return "seconds";
    case ServiceUnit::Iterations: return "iterations";
    case ServiceUnit::Tokens: return "tokens";
  }
  return "?";
}

void AcceptanceStats::record(int32_t d, int32_t a, size_t keep) {
  if (d <= 0) return;
  ++steps;
  drafted += d;
  accepted += a;
  last_rate = static_cast<double>(a) / d;
  history.push_back(rate());
  while (history.size() > std::max<size_t>(keep, 1)) history.pop_front();
}

double AcceptanceStats::drift(size_t w) const {
  if (w == 0 || history.size() < w) return std::numeric_limits<double>::infinity();
  const double now = history.back();
  double m = 0;
  for (size_t i = history.size() - w; i < history.size(); ++i) m = std::max(m, std::abs(history[i] - now));
  return m;
}

double Policy::service_increment(ServiceUnit unit, const StepOutcome& o, double step_s) {
  switch (unit) {
    case ServiceUnit::Seconds: return step_s;
    case ServiceUnit::Iterations: return 1.0;
    case ServiceUnit::Tokens: return static_cast<double>(o.emitted);
  }
  return step_s;
}

void Policy::on_arrival(const Request& r, double now_s) {
  if (index_.count(r.id)) fail(ErrorKind::InvalidInput, "scheduler {}: request id {} arrived twice", name(), r.id);
  if (r.prompt_tokens < 0) fail(ErrorKind::InvalidInput, "request {}: prompt_tokens {} < 0", r.id, r.prompt_tokens);
  auto st = std::make_unique<RequestState>();
  st->req = r;
  st->last_run_end_s = now_s;
  st->enqueue_s = now_s;
  RequestState& ref = *st;
  index_[r.id] = reqs_.size();
  reqs_.push_back(std::move(st));
  try {
    admit(ref, now_s);
  } catch (...) {
    erase(r.id);
    throw;
  }
}

void Policy::sorted(double now_s, std::vector<RequestState*>& out, size_t top) const {
  struct Item {
    Key k;
    RequestState* r;
  };
  std::vector<Item> items;
  items.reserve(reqs_.size());
  for (const auto& p : reqs_) items.push_back({key(*p, now_s), p.get()});
  auto less = [](const Item& a, const Item& b) {
    if (a.k.k0 != b.k.k0) return a.k.k0 < b.k.k0;
    if (a.k.k1 != b.k.k1) return a.k.k1 < b.k.k1;
    if (a.k.k2 != b.k.k2) return a.k.k2 < b.k.k2;
    if (a.r->req.arrival_s != b.r->req.arrival_s) return a.r->req.arrival_s < b.r->req.arrival_s;
    return a.r->req.id < b.r->req.id;
  };
  if (top < items.size()) std::partial_sort(items.begin(), items.begin() + top, items.end(), less);
  else std::sort(items.begin(), items.end(), less);
  out.clear();
  for (size_t i = 0; i < std::min(top, items.size()); ++i) out.push_back(items[i].r);
}

std::vector<RequestId> Policy::order(double now_s) const {
  std::vector<RequestState*> all;
  sorted(now_s, all, reqs_.size());
  std::vector<RequestId> ids;
  for (auto* r : all) ids.push_back(r->req.id);
  return ids;
}

Selection Policy::select(double now_s, const Capacity& cap) {
  if (cap.max_seqs < 1) fail(ErrorKind::InvalidInput, "scheduler capacity max_seqs must be >= 1, got {}", cap.max_seqs);
  prepare(now_s);
  const size_t B = static_cast<size_t>(cap.max_seqs);
  std::vector<RequestState*> cand;
  sorted(now_s, cand, cap.max_kv_tokens > 0 ? reqs_.size() : B);
  Selection sel;
  int64_t kv_left = cap.max_kv_tokens;
  for (RequestState* r : cand) {
    if (sel.run.size() == B) break;
    if (cap.max_kv_tokens > 0) {
      const int64_t need = r->req.prompt_tokens + r->generated + ctx_.draft_len + 1;
      if (need > kv_left) continue;
      kv_left -= need;
    }
    sel.run.push_back(r->req.id);
  }
  std::vector<char> chosen(reqs_.size(), 0);
  for (RequestId id : sel.run) chosen[index_.at(id)] = 1;
  for (size_t i = 0; i < reqs_.size(); ++i) {
    RequestState& r = *reqs_[i];
    if (r.running && !chosen[i]) {
      sel.preempted.push_back(r.req.id);
      ++r.preemptions;
    }
    r.running = chosen[i] != 0;
  }
  std::sort(sel.preempted.begin(), sel.preempted.end());
  return sel;
}

void Policy::on_step_done(std::span<const StepOutcome> outcomes, double step_s, double now_s) {
  if (!(step_s >= 0) || !std::isfinite(step_s))
    fail(ErrorKind::InvalidInput, "scheduler {}: step time {} s is not a finite non-negative number", name(), step_s);
  for (const StepOutcome& o : outcomes) {
    auto it = index_.find(o.id);
    if (it == index_.end()) fail(ErrorKind::InvalidInput, "scheduler {}: step outcome for unknown request {}", name(), o.id);
    if (o.drafted < 0 || o.accepted < 0 || o.accepted > o.drafted || o.emitted < 0 || o.prefill_tokens < 0)
      fail(ErrorKind::InvalidInput,
           "scheduler {}: request {} step outcome drafted={} accepted={} emitted={} prefill_tokens={} is inconsistent "
           "(need 0 <= accepted <= drafted, emitted >= 0)",
           name(), o.id, o.drafted, o.accepted, o.emitted, o.prefill_tokens);
    RequestState& r = *reqs_[it->second];
    if (r.first_run_s < 0) r.first_run_s = now_s - step_s;
    r.last_run_end_s = now_s;
    ++r.steps;
    r.generated += o.emitted;
    r.prefilled += o.prefill_tokens;
    r.acc.record(o.drafted, o.accepted, history_keep_);
    r.service_s += step_s;
    const double dx = service_increment(unit_, o, step_s);
    r.attained += dx;
    r.queue_service += dx;
    if (o.finished) {
      erase(o.id);
      continue;
    }
    update(r, o, step_s, now_s);
  }
}

void Policy::remove(RequestId id) {
  if (index_.count(id)) erase(id);
}

const RequestState* Policy::find(RequestId id) const {
  auto it = index_.find(id);
  return it == index_.end() ? nullptr : reqs_[it->second].get();
}

void Policy::erase(RequestId id) {
  const size_t i = index_.at(id);
  index_.erase(id);
  if (i + 1 != reqs_.size()) {
    reqs_[i] = std::move(reqs_.back());
    index_[reqs_[i]->req.id] = i;
  }
  reqs_.pop_back();
}

}  // namespace harmonia::sched
