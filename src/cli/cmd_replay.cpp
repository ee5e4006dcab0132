// `harmonia replay`: a workload file through the real serving engine in real
// time, per scheduling policy (engine/replay.h), with the simulator's metrics
// table; --record writes the per-request acceptance traces for `simulate`.
#include <algorithm>
#include <array>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <iostream>
#include <memory>
#include <set>

#include "cli/commands.h"
#include "cli/sched_table.h"
#include "common/error.h"
#include "engine/replay.h"
#include "model/forward.h"
#include "sched/profile.h"
#include "sched/simulator.h"
#include "sched/workload.h"

namespace harmonia::cli {

using nlohmann::json;

namespace {

// Recorded engine steps against the cost model, by kind of step. Kinds, by
// precedence: a step with a prefill chunk; one with a request's first decode
// step (the drafter catches up over the prompt there; the profile books that
// in prefill); one that resumes a paused request; a plain decode step.
struct StepKind {
  int64_t steps = 0;
  double real_ms = 0, model_ms = 0;                              // Σ over the steps
  double select_ms = 0, plan_ms = 0, forward_ms = 0, post_ms = 0;  // Σ phase times (select: with admission)
};
constexpr std::array<const char*, 4> kStepKinds = {"prefill", "first decode", "resumed", "decode"};

std::array<StepKind, 4> step_kinds(const std::vector<engine::StepRecord>& log, const sched::CostProfile& prof) {
  std::array<StepKind, 4> k{};
  std::set<int64_t> decoded;  // requests that had a decode step
  for (const auto& r : log) {
    size_t c = 3;
    for (const auto& m : r.members) {
      if (m.prefill_tokens > 0) c = std::min<size_t>(c, 0);
      else if (!decoded.count(m.id)) c = std::min<size_t>(c, 1);
      else if (m.resumed) c = std::min<size_t>(c, 2);
    }
    for (const auto& m : r.members)
      if (m.prefill_tokens == 0) decoded.insert(m.id);
    const auto members = engine::step_members(r);
    StepKind& x = k[c];
    ++x.steps;
    x.real_ms += r.end_ms - r.begin_ms;
    x.model_ms += sched::step_cost_ms(prof, members, prof.preempt_ms());
    x.select_ms += r.select_ms - r.begin_ms;
    x.plan_ms += r.plan_ms - r.select_ms;
    x.forward_ms += r.forward_ms - r.plan_ms;
    x.post_ms += r.end_ms - r.forward_ms;
  }
  return k;
}

nlohmann::json step_json(const engine::StepRecord& r, const sched::CostProfile& prof) {
  nlohmann::json m = nlohmann::json::array();
  for (const auto& x : r.members)
    m.push_back({{"id", x.id}, {"ctx", x.ctx_tokens}, {"fed", x.fed}, {"prefill", x.prefill_tokens},
                 {"drafted", x.drafted}, {"first", x.first}, {"resumed", x.resumed}});
  const auto members = engine::step_members(r);
  return {{"step", r.step}, {"begin_ms", r.begin_ms}, {"select_ms", r.select_ms}, {"plan_ms", r.plan_ms},
          {"forward_ms", r.forward_ms}, {"end_ms", r.end_ms}, {"admitted", r.admitted},
          {"model_ms", sched::step_cost_ms(prof, members, prof.preempt_ms())}, {"members", m}};
}

class ReplayCmd : public Command {
 public:
  void attach(CLI::App& app) override {
    sub_ = app.add_subcommand("replay",
                              "run a workload file through the real serving engine in real time (arrivals honoured) "
                              "per scheduling policy: latency, TTFT, TPOT, throughput, acceptance, preemptions");
    mf_.attach(sub_);
    sub_->add_option("--draft", draft_path_, "draft model for speculative decoding (same vocabulary)");
    sub_->add_option("--spec", spec_.drafter, "drafter without a second model: ngram | layerskip | none")->capture_default_str();
    sub_->add_option("--draft-n", spec_.n, "draft tokens per step n")->capture_default_str();
    sub_->add_option("--draft-layers", spec_.layers, "layerskip: draft depth (default: half the layers)");
    sub_->add_option("--workload", workload_, "workload file (JSON lines; docs/scheduling.md)")->required();
    sub_->add_option("--sched", sched_, "policies, comma list with inline options (name:k=v:k=v)")->capture_default_str();
    sub_->add_option("--profile", profile_,
                     "cost profile (harmonia bench --profile) for the policies' time estimates and --loads/--compare")
        ->required();
    sub_->add_option("--batch", eo_.max_seqs, "sequences per engine step B")->capture_default_str();
    sub_->add_option("--token-budget", eo_.token_budget, "tokens per step over all sequences")->capture_default_str();
    sub_->add_option("--prefill-chunk", eo_.prefill_chunk, "prompt tokens per sequence per step")->capture_default_str();
    sub_->add_option("--preempt", eo_.preempt, "pause (KV kept) | recompute (KV freed)")->capture_default_str();
    sub_->add_option("-c,--ctx", eo_.ctx, "context size per sequence (default: the model's)");
    sub_->add_option("--kv", kv_, "KV policy of every request (name:k=v)")->capture_default_str();
    sub_->add_option("-t,--threads", threads_, "compute threads (default: all cores)");
    sub_->add_option("--rates", rates_, "arrival rates to replay at, requests/s: the file's arrivals rescaled (comma list)")
        ->delimiter(',');
    sub_->add_option("--loads", loads_,
                     "loads instead: rate = load / mean service time alone (from the workload's traces and the profile)")
        ->delimiter(',');
    sub_->add_option("--record", record_, "write the first run's workload with its recorded acceptance traces to FILE");
    sub_->add_option("--steps", steps_,
                     "write every engine step (members, phase times, the profile's cost of the same step) of every "
                     "run to FILE as JSON lines");
    sub_->add_flag("--compare", compare_,
                   "also simulate each point with the workload's own traces and the profile; print simulated vs "
                   "measured mean latency");
    sub_->add_option("--baseline", baseline_, "policy label the 'x base' column divides by (default: the first)");
    sub_->add_flag("--json", json_, "print JSON instead of tables");
  }

  int run() override {
    if (!draft_path_.empty()) {
      if (spec_.drafter != "none") fail(ErrorKind::InvalidInput, "give either --draft MODEL or --spec, not both");
      spec_.drafter = "draft";
    }
    spec_.validate();
    if (!rates_.empty() && !loads_.empty()) fail(ErrorKind::InvalidInput, "give --rates or --loads, not both");
    for (double r : rates_)
      if (!(r > 0)) fail(ErrorKind::InvalidInput, "--rates: {} is not a positive rate", r);
    for (double l : loads_)
      if (!(l > 0)) fail(ErrorKind::InvalidInput, "--loads: {} is not a positive load", l);
    if (!record_.empty()) {  // --record must not overwrite the workload it replays
      std::error_code ec;
      const auto a = std::filesystem::weakly_canonical(record_, ec), b = std::filesystem::weakly_canonical(workload_, ec);
      if (a == b || std::filesystem::equivalent(record_, workload_, ec))
        fail(ErrorKind::InvalidInput, "--record {} is the --workload file itself: give another path", record_);
    }
    const sched::Workload base = sched::load_workload(workload_);
    const bool traced = std::all_of(base.requests.begin(), base.requests.end(),
                                    [](const sched::WorkloadRequest& r) { return !r.accepted.empty(); });
    if ((compare_ || !loads_.empty()) && !traced)
      fail(ErrorKind::InvalidInput, "{}: --compare and --loads need an acceptance trace for every request (record one "
           "with --record first)", workload_);
    if ((compare_ || !loads_.empty()) && base.draft_len != spec_.n)
      fail(ErrorKind::InvalidInput, "{}: its traces use draft_len {} but --draft-n is {}", workload_, base.draft_len, spec_.n);
    const sched::CostProfile prof = sched::CostProfile::load(profile_);

    set_threads(threads_);
    eo_.threads = threads_;
    auto m = mf_.load();
    std::unique_ptr<Model> draft;
    if (!draft_path_.empty()) draft = load_model(draft_path_);
    const auto kvs = kv::parse_policy_list(kv_, {});
    if (kvs.size() != 1) fail(ErrorKind::InvalidInput, "replay takes one --kv policy, got '{}'", kv_);
    if (eo_.ctx < 0) fail(ErrorKind::InvalidInput, "--ctx {} must be positive (or 0 for the model's)", eo_.ctx);
    const int64_t ctx_tokens = eo_.ctx > 0 ? eo_.ctx : m->config.ctx_len;
    for (const auto& r : base.requests) {
      // Checked before any prompt is built (a prompt_tokens of 1e12 must not allocate first).
      if (r.prompt.empty() && r.prompt_tokens + r.output_tokens > ctx_tokens)
        fail(ErrorKind::InvalidInput, "{}: request {} needs {} prompt + {} output tokens but the context is {}", workload_,
             r.id, r.prompt_tokens, r.output_tokens, ctx_tokens);
      // Replay runs in real time: an arrival a day away is a mistake, not a plan.
      if (!(r.arrival_s <= 86400.0))
        fail(ErrorKind::InvalidInput, "{}: request {} arrives at {} s; replay runs in real time (at most 86400 s)",
             workload_, r.id, r.arrival_s);
    }
    const std::vector<int32_t> filler = filler_tokens(*m, 4096);
    std::vector<std::vector<int32_t>> prompts;
    for (const auto& r : base.requests) prompts.push_back(engine::make_prompt(*m, r, filler));
    // Simulate with the prompt lengths the engine actually sees.
    sched::Workload sim_base = base;
    for (size_t i = 0; i < base.requests.size(); ++i)
      sim_base.requests[i].prompt_tokens = static_cast<int64_t>(prompts[i].size());

    const auto specs = sched::parse_policy_list(sched_);
    std::vector<std::string> labels;
    for (const auto& s : specs) labels.push_back(s.label());
    size_t base_i = 0;
    if (!baseline_.empty()) {
      auto it = std::find(labels.begin(), labels.end(), baseline_);
      if (it == labels.end()) fail(ErrorKind::InvalidInput, "--baseline '{}' is not one of: {}", baseline_, join(labels));
      base_i = static_cast<size_t>(it - labels.begin());
    }
    const int n = spec_.n;
    const sched::PolicyContext ctx = sched::workload_policy_context(sim_base, prof, n, eo_.max_seqs);
    for (const auto& s : specs) sched::make_policy(s, ctx);  // reject bad specs before running anything
    eo_.sched_context = ctx;

    double service_s = NAN;
    if (traced && base.draft_len == n) service_s = sched::mean_service_s(sim_base, prof, n);
    std::vector<double> rates = rates_;
    for (double l : loads_) rates.push_back(l / service_s);
    const bool sweep = !rates.empty();
    if (!sweep) rates.push_back(0);

    engine::ReplayOptions ro;
    ro.engine = eo_;
    ro.spec = spec_;
    ro.kv = kvs[0];
    ro.record_steps = compare_ || !steps_.empty();
    std::unique_ptr<std::FILE, int (*)(std::FILE*)> steps_file(nullptr, &std::fclose);
    if (!steps_.empty()) {
      steps_file.reset(std::fopen(steps_.c_str(), "w"));
      if (!steps_file) fail(ErrorKind::Io, "{}: cannot open for writing", steps_);
    }
    if (!json_)
      std::printf("replay %s: %zu requests | target %s | drafter %s n=%d | B=%d | profile %s (step %.3f ms) | %s\n",
                  workload_.c_str(), base.requests.size(), m->path.c_str(),
                  draft ? draft->path.c_str() : spec_.drafter.c_str(), n, eo_.max_seqs, profile_.c_str(),
                  ctx.step_s * 1000, std::isnan(service_s) ? "" : fmt::format("mean service alone {:.4f} s", service_s).c_str());
    json points = json::array();
    bool recorded = false;
    for (double rate : rates) {
      sched::Workload w = sim_base;
      if (sweep) sched::scale_arrivals(w, rate);
      std::vector<sched::SimMetrics> measured, simulated, calibrated;
      std::vector<std::array<double, 3>> busy;  // per policy: real busy wall s, its CPU s, simulated busy s
      std::vector<std::array<StepKind, 4>> kinds;  // per policy: recorded steps against the cost model
      std::vector<double> submit_ms;               // per policy: mean ms in Engine::submit per request
      std::vector<int64_t> nivcsw;                 // per policy: involuntary context switches of the replay thread
      json rows = json::array();
      for (size_t s = 0; s < specs.size(); ++s) {
        std::string spec_text = specs[s].name;  // back to "name:k=v:..." for EngineOptions::sched
        for (const auto& [k, v] : specs[s].options) spec_text += ":" + k + "=" + v;
        engine::ReplayRun r = engine::replay(*m, draft.get(), w, prompts, spec_text, ro);
        if (!record_.empty() && !recorded) {
          sched::save_workload(record_, r.recorded);
          recorded = true;
        }
        measured.push_back(r.metrics);
        if (steps_file)
          for (const auto& st : r.step_log) {
            json line = step_json(st, prof);
            line["policy"] = labels[s];
            line["rate_req_s"] = sweep ? json(rate) : json(nullptr);
            std::fprintf(steps_file.get(), "%s\n", line.dump().c_str());
          }
        if (compare_) kinds.push_back(step_kinds(r.step_log, prof));
        submit_ms.push_back(1000 * r.submit_wall_s / static_cast<double>(w.requests.size()));
        nivcsw.push_back(r.involuntary_switches);
        json row = sim_metrics_json(r.metrics);
        row["policy"] = labels[s];
        row["steps"] = r.steps;
        row["wall_s"] = r.wall_s;
        row["max_submit_lag_ms"] = r.max_submit_lag_ms;
        row["busy_wall_s"] = r.busy_wall_s;
        row["busy_cpu_s"] = r.busy_cpu_s;
        row["submit_wall_s"] = r.submit_wall_s;
        row["involuntary_switches"] = r.involuntary_switches;
        busy.push_back({r.busy_wall_s, r.busy_cpu_s, 0});
        if (compare_) {
          auto pol = sched::make_policy(specs[s], ctx);
          sched::SimOptions so;
          so.max_seqs = eo_.max_seqs;
          so.draft_len = n;
          so.record_events = true;
          const sched::SimResult sr = sched::simulate(w, *pol, prof, so);
          simulated.push_back(sr.metrics);
          for (const auto& e : sr.events) busy.back()[2] += e.end_s - e.start_s;
          row["simulated_busy_s"] = busy.back()[2];
          // Calibrated: the profile rescaled so the simulated busy time equals the replay's
          // (the machine's speed during this run, one number); what remains is the simulator's
          // model of scheduling and queueing.
          const double k = busy.back()[2] > 0 && r.busy_wall_s > 0 ? r.busy_wall_s / busy.back()[2] : 1.0;
          auto pol2 = sched::make_policy(specs[s], ctx);
          const sched::SimResult sc = sched::simulate(w, *pol2, prof.scaled(k), so);
          calibrated.push_back(sc.metrics);
          row["simulated_calibrated"] = sim_metrics_json(sc.metrics);
          row["calibration_scale"] = k;
          row["simulated"] = sim_metrics_json(sr.metrics);
        }
        rows.push_back(row);
      }
      const double load = std::isnan(service_s) || !sweep ? NAN : rate * service_s;
      points.push_back({{"rate_req_s", sweep ? json(rate) : json(nullptr)},
                        {"load", std::isnan(load) ? json(nullptr) : json(load)},
                        {"results", rows}});
      if (json_) continue;
      if (sweep) std::printf("\n### rate %.3f req/s%s (measured)\n\n", rate,
                             std::isnan(load) ? "" : fmt::format(" (load {:.2f})", load).c_str());
      else std::printf("\n### arrivals as recorded (measured)\n\n");
      print_sim_table(labels, measured, base_i);
      if (compare_) {
        std::printf("\nsimulated (same workload, its traces, the profile) vs measured mean latency; busy = time in "
                    "engine steps (simulated: Σ step costs), cpu share = engine-thread CPU time / busy wall time; "
                    "calib. sim = simulated with the profile times busy r/s:\n\n");
        std::printf("| %-24s | %11s | %11s | %8s | %8s | %9s | %9s | %8s | %11s | %9s |\n", "policy", "sim mean ms",
                    "real mean ms", "sim/real", "sim busy", "real busy", "busy r/s", "cpu share", "calib. sim", "cal/real");
        std::printf("|%s|%s|%s|%s|%s|%s|%s|%s|%s|%s|\n", std::string(26, '-').c_str(), std::string(13, '-').c_str(),
                    std::string(13, '-').c_str(), std::string(10, '-').c_str(), std::string(10, '-').c_str(),
                    std::string(11, '-').c_str(), std::string(11, '-').c_str(), std::string(10, '-').c_str(),
                    std::string(13, '-').c_str(), std::string(11, '-').c_str());
        for (size_t s = 0; s < specs.size(); ++s)
          std::printf("| %-24s | %11.3f | %11.3f | %8.3f | %7.3fs | %8.3fs | %9.3f | %8.3f | %11.3f | %9.3f |\n",
                      labels[s].c_str(), 1000 * simulated[s].mean_latency_s, 1000 * measured[s].mean_latency_s,
                      simulated[s].mean_latency_s / measured[s].mean_latency_s, busy[s][2], busy[s][0],
                      busy[s][2] > 0 ? busy[s][0] / busy[s][2] : 0.0, busy[s][0] > 0 ? busy[s][1] / busy[s][0] : 0.0,
                      1000 * calibrated[s].mean_latency_s, calibrated[s].mean_latency_s / measured[s].mean_latency_s);
        std::printf("\nengine steps against the cost model (the same steps priced by sched::step_cost_ms): count, "
                    "mean real ms / mean model ms per kind; decode phases = mean select / plan+draft / forward / post ms "
                    "of plain decode steps:\n\n");
        std::printf("| %-24s | %6s | %9s |", "policy", "steps", "model/real");
        for (const char* k : kStepKinds) std::printf(" %-22s |", k);
        std::printf(" %-27s | %8s | %8s |\n", "decode phases", "submit ms", "inv. csw");
        std::printf("|%s|%s|%s|", std::string(26, '-').c_str(), std::string(8, '-').c_str(), std::string(11, '-').c_str());
        for (size_t k = 0; k < kStepKinds.size(); ++k) std::printf("%s|", std::string(24, '-').c_str());
        std::printf("%s|%s|%s|\n", std::string(29, '-').c_str(), std::string(10, '-').c_str(), std::string(10, '-').c_str());
        for (size_t s = 0; s < specs.size(); ++s) {
          double real = 0, model = 0;
          int64_t steps = 0;
          for (const StepKind& k : kinds[s]) real += k.real_ms, model += k.model_ms, steps += k.steps;
          std::printf("| %-24s | %6lld | %9.3f |", labels[s].c_str(), static_cast<long long>(steps), real > 0 ? model / real : 0.0);
          for (const StepKind& k : kinds[s]) {
            const double d = k.steps ? static_cast<double>(k.steps) : 1.0;
            std::printf(" %5lld %7.4f / %7.4f |", static_cast<long long>(k.steps), k.real_ms / d, k.model_ms / d);
          }
          const StepKind& dk = kinds[s][3];
          const double d = dk.steps ? static_cast<double>(dk.steps) : 1.0;
          std::printf(" %.4f/%.4f/%.4f/%.4f | %8.4f | %8lld |\n", dk.select_ms / d, dk.plan_ms / d, dk.forward_ms / d,
                      dk.post_ms / d, submit_ms[s], static_cast<long long>(nivcsw[s]));
        }
      }
      std::fflush(stdout);
    }
    if (json_)
      std::cout << dump_json(json{{"workload", workload_},
                                  {"requests", base.requests.size()},
                                  {"target", m->path},
                                  {"drafter", draft ? draft->path : spec_.drafter},
                                  {"draft_len", n},
                                  {"batch", eo_.max_seqs},
                                  {"profile", profile_},
                                  {"step_ms_ref", ctx.step_s * 1000},
                                  {"mean_service_s", std::isnan(service_s) ? json(nullptr) : json(service_s)},
                                  {"points", points}},
                             2)
                << "\n";
    return 0;
  }

 private:
  ModelFlags mf_;
  engine::EngineOptions eo_;
  spec::SpecOptions spec_;
  std::string draft_path_, workload_, profile_, record_, steps_, baseline_, kv_ = "full";
  std::string sched_ = "fcfs,sjf,srpt-oracle,las,mlfq,laps-sd";
  std::vector<double> rates_, loads_;
  int threads_ = 0;
  bool compare_ = false, json_ = false;

 public:
  ReplayCmd() { eo_.max_seqs = 1; }  // B = 1 by default, as `simulate` (the paper's server model)
};

}  // namespace

std::unique_ptr<Command> make_replay_command() { return std::make_unique<ReplayCmd>(); }

}  // namespace harmonia::cli
