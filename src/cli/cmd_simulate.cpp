// `harmonia simulate`: discrete-event simulation of request scheduling under
// speculative decoding, with the engine's own scheduler classes (sched/).
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <fstream>
#include <iostream>

#include "cli/commands.h"
#include "cli/sched_table.h"
#include "common/error.h"
#include "sched/plot.h"
#include "sched/policy.h"
#include "sched/profile.h"
#include "sched/simulator.h"
#include "sched/workload.h"

namespace harmonia::cli {

using nlohmann::json;

namespace {

struct PointResult {
  double rate = 0;     // requests per second (0: the workload's own arrivals)
  double load = NAN;   // rate × mean service time alone
  std::vector<sched::SimMetrics> metrics;  // per policy
};

class SimulateCmd : public Command {
 public:
  void attach(CLI::App& app) override {
    sub_ = app.add_subcommand("simulate",
                              "discrete-event simulation of request scheduling with speculative decoding: latency of "
                              "each policy (fcfs, sjf, srpt-oracle, las, mlfq, laps-sd) against arrival rate");
    sub_->add_option("--workload", workload_, "workload file (JSON lines; see docs/scheduling.md)");
    sub_->add_option("--synthetic", synthetic_,
                     "synthetic workload instead: reference[:requests=N:seed=S:accept=mixed|stationary|drifting|bimodal] "
                     "or single[:output=200:alpha=0.7:accept=...]");
    sub_->add_option("--profile", profile_, "cost profile JSON (default: the built-in synthetic profile)");
    sub_->add_option("--sched", sched_, "policies, comma list with inline options (name:k=v:k=v)")->capture_default_str();
    sub_->add_option("--rates", rates_, "arrival rates to sweep, requests/s (comma list)")->delimiter(',');
    sub_->add_option("--loads", loads_, "loads to sweep instead: rate = load / mean service time of a request alone")
        ->delimiter(',');
    sub_->add_option("--batch", batch_, "batch capacity B (requests per step)")->capture_default_str();
    sub_->add_option("--kv-tokens", kv_tokens_, "KV budget in tokens over a step's requests (0 = unlimited)")
        ->capture_default_str();
    sub_->add_option("--draft-len", draft_len_, "draft tokens per step n (default: the workload's, else 4)");
    sub_->add_option("--accept", accept_,
                     "acceptance process for file requests without a trace: stationary|drifting|bimodal[:alpha_mean=..]")
        ->capture_default_str();
    sub_->add_option("--requests", requests_, "number of requests of --synthetic (overrides its requests=)");
    sub_->add_option("--seed", seed_, "seed of the Poisson arrivals of a sweep")->capture_default_str();
    sub_->add_option("--seeds", seeds_, "arrival seeds per point (seed, seed+1, ...), results pooled")->capture_default_str();
    sub_->add_option("--preempt-ms", preempt_ms_, "cost of resuming a preempted request, ms (default: the profile's)");
    sub_->add_flag("--no-prefill", no_prefill_, "do not charge prefill time");
    sub_->add_option("--baseline", baseline_, "policy label the 'x base' column divides by (default: the first)");
    sub_->add_option("--plot", plots_, "write mean and p99 latency against rate: FILE.svg or FILE.png (repeatable)");
    sub_->add_option("--events", events_, "write the per-step event log of the first point to FILE");
    sub_->add_option("--write-workload", write_workload_, "save the workload (as simulated, first point) to FILE");
    sub_->add_option("--write-profile", write_profile_, "save the cost profile in use to FILE");
    sub_->add_flag("--json", json_, "print JSON instead of tables");
  }

  int run() override {
    if (workload_.empty() == synthetic_.empty()) fail(ErrorKind::InvalidInput, "give exactly one of --workload FILE and --synthetic SPEC");
    if (!rates_.empty() && !loads_.empty()) fail(ErrorKind::InvalidInput, "give --rates or --loads, not both");
    if (seeds_ < 1) fail(ErrorKind::InvalidInput, "--seeds must be >= 1, got {}", seeds_);
    if (batch_ < 1) fail(ErrorKind::InvalidInput, "--batch must be >= 1, got {}", batch_);
    auto given = [&](const char* flag) { return sub_->get_option(flag)->count() > 0; };
    if (given("--preempt-ms") && !(preempt_ms_ >= 0 && preempt_ms_ <= 1e6))
      fail(ErrorKind::InvalidInput, "--preempt-ms must be between 0 and 1e6 ms, got {}", preempt_ms_);
    if (given("--draft-len") && draft_len_ < 0)
      fail(ErrorKind::InvalidInput, "--draft-len must be >= 0, got {}", draft_len_);
    if (given("--requests") && requests_ < 1) fail(ErrorKind::InvalidInput, "--requests must be >= 1, got {}", requests_);
    if (kv_tokens_ < 0) fail(ErrorKind::InvalidInput, "--kv-tokens must be >= 0 (0 = unlimited), got {}", kv_tokens_);
    for (double r : rates_)
      if (!(r > 0)) fail(ErrorKind::InvalidInput, "--rates: {} is not a positive rate", r);
    for (double l : loads_)
      if (!(l > 0)) fail(ErrorKind::InvalidInput, "--loads: {} is not a positive load", l);

    const sched::CostProfile prof =
        profile_.empty() ? sched::CostProfile::synthetic_default() : sched::CostProfile::load(profile_);
    if (!write_profile_.empty()) prof.save(write_profile_);

    // The workload, with an acceptance trace for every request.
    sched::Workload base;
    const bool synthetic = !synthetic_.empty();
    if (synthetic) {
      sched::SyntheticSpec spec = sched::parse_synthetic(synthetic_);
      if (requests_ > 0) spec.requests = requests_;
      if (draft_len_ >= 0) spec.draft_len = draft_len_;
      base = sched::generate_workload(spec);
    } else {
      if (seeds_ > 1) fail(ErrorKind::InvalidInput, "--seeds > 1 needs --synthetic (a file's arrivals are only rescaled)");
      base = sched::load_workload(workload_);
      const int n = draft_len_ >= 0 ? draft_len_ : (base.draft_len > 0 ? base.draft_len : 4);
      sched::fill_missing_traces(base, sched::parse_acceptance(accept_), n, seed_);
    }
    const int n = base.draft_len;
    if (draft_len_ >= 0 && draft_len_ != n)
      fail(ErrorKind::InvalidInput, "--draft-len {} does not match the workload's traces (draft_len {})", draft_len_, n);

    const auto specs = sched::parse_policy_list(sched_);
    const sched::PolicyContext ctx = sched::workload_policy_context(base, prof, n, batch_);
    for (const auto& s : specs) sched::make_policy(s, ctx);  // reject bad specs before running anything

    sched::SimOptions so;
    so.max_seqs = batch_;
    so.max_kv_tokens = kv_tokens_;
    so.draft_len = n;
    so.charge_prefill = !no_prefill_;
    so.preempt_ms = preempt_ms_;
    const double service_s = sched::mean_service_s(base, prof, n, so.charge_prefill);

    std::vector<double> rates = rates_;
    for (double l : loads_) rates.push_back(l / service_s);
    const bool sweep = !rates.empty();
    if (!sweep) rates.push_back(0);

    std::vector<PointResult> points;
    std::string event_text;
    for (size_t pi = 0; pi < rates.size(); ++pi) {
      PointResult pr;
      pr.rate = rates[pi];
      if (sweep) pr.load = rates[pi] * service_s;
      std::vector<std::vector<sched::RequestOutcome>> pooled(specs.size());
      for (int k = 0; k < seeds_; ++k) {
        sched::Workload w = base;
        if (sweep) {
          if (synthetic) sched::set_poisson_arrivals(w, rates[pi], seed_ + static_cast<uint64_t>(k));
          else sched::scale_arrivals(w, rates[pi]);
        }
        if (pi == 0 && k == 0 && !write_workload_.empty()) sched::save_workload(write_workload_, w);
        for (size_t s = 0; s < specs.size(); ++s) {
          auto pol = sched::make_policy(specs[s], ctx);
          sched::SimOptions o = so;
          o.record_events = pi == 0 && k == 0 && !events_.empty();
          const sched::SimResult r = sched::simulate(w, *pol, prof, o);
          if (o.record_events) event_text += "# " + r.policy + "\n" + sched::format_events(r.events);
          pooled[s].insert(pooled[s].end(), r.requests.begin(), r.requests.end());
        }
      }
      for (auto& p : pooled) pr.metrics.push_back(sched::summarize(p));
      points.push_back(std::move(pr));
    }
    if (!events_.empty()) {
      std::ofstream f(events_, std::ios::trunc);
      if (!f) fail(ErrorKind::Io, "{}: cannot open for writing", events_);
      f << event_text;
    }

    std::vector<std::string> labels;
    for (const auto& s : specs) labels.push_back(s.label());
    size_t base_i = 0;
    if (!baseline_.empty()) {
      auto it = std::find(labels.begin(), labels.end(), baseline_);
      if (it == labels.end()) fail(ErrorKind::InvalidInput, "--baseline '{}' is not one of: {}", baseline_, join(labels));
      base_i = static_cast<size_t>(it - labels.begin());
    }
    if (!plots_.empty()) {
      if (!sweep) fail(ErrorKind::InvalidInput, "--plot needs a sweep (--rates or --loads)");
      sched::Figure fig;
      fig.title = fmt::format("{} | B={} n={} | {}", base.source, batch_, n, prof.device);
      sched::Panel mean{"mean latency", "arrival rate (req/s)", "latency (s)", {}, true};
      sched::Panel p99{"p99 latency", "arrival rate (req/s)", "latency (s)", {}, true};
      for (size_t s = 0; s < specs.size(); ++s) {
        sched::Series a{labels[s], {}, {}}, b{labels[s], {}, {}};
        for (const auto& p : points) {
          a.x.push_back(p.rate), a.y.push_back(p.metrics[s].mean_latency_s);
          b.x.push_back(p.rate), b.y.push_back(p.metrics[s].p99_latency_s);
        }
        mean.series.push_back(a);
        p99.series.push_back(b);
      }
      fig.panels = {mean, p99};
      for (const auto& path : plots_) sched::write_figure(path, fig);
    }

    if (json_) {
      json jp = json::array();
      for (const auto& p : points) {
        json rows = json::array();
        for (size_t s = 0; s < specs.size(); ++s) {
          json m = sim_metrics_json(p.metrics[s]);
          m["policy"] = labels[s];
          rows.push_back(m);
        }
        jp.push_back({{"rate_req_s", sweep ? json(p.rate) : json(nullptr)},
                      {"load", std::isnan(p.load) ? json(nullptr) : json(p.load)},
                      {"results", rows}});
      }
      std::cout << dump_json(json{{"workload", base.source},
                                  {"requests", base.requests.size()},
                                  {"draft_len", n},
                                  {"batch", batch_},
                                  {"seeds", seeds_},
                                  {"profile", profile_.empty() ? "built-in synthetic" : profile_},
                                  {"step_ms_ref", ctx.step_s * 1000},
                                  {"mean_service_s", service_s},
                                  {"points", jp}},
                             2)
                << "\n";
      return 0;
    }
    std::printf("workload %s: %zu requests, draft_len %d | profile %s (%s) | B=%d | step %.2f ms at B=%d | "
                "mean service alone %.3f s | %d seed(s)\n",
                base.source.c_str(), base.requests.size(), n, profile_.empty() ? "built-in synthetic" : profile_.c_str(),
                prof.device.c_str(), batch_, ctx.step_s * 1000, batch_, service_s, seeds_);
    for (const auto& p : points) {
      if (sweep) std::printf("\n### rate %.3f req/s (load %.2f)\n\n", p.rate, p.load);
      else std::printf("\n### arrivals as recorded\n\n");
      print_sim_table(labels, p.metrics, base_i);
    }
    return 0;
  }

 private:
  std::string workload_, synthetic_, profile_, sched_ = "fcfs,sjf,srpt-oracle,las,mlfq,laps-sd";
  std::string accept_ = "stationary", baseline_, events_, write_workload_, write_profile_;
  std::vector<double> rates_, loads_;
  std::vector<std::string> plots_;
  int batch_ = 1, draft_len_ = -1, seeds_ = 1;
  int64_t kv_tokens_ = 0, requests_ = 0;
  uint64_t seed_ = 1;
  double preempt_ms_ = -1;
  bool no_prefill_ = false, json_ = false;
};

}  // namespace

std::unique_ptr<Command> make_simulate_command() { return std::make_unique<SimulateCmd>(); }

}  // namespace harmonia::cli
