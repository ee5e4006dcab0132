// `harmonia serve`: the OpenAI-compatible HTTP server (server/server.h).
#include <atomic>
#include <chrono>
#include <csignal>
#include <cstdio>
#include <thread>

#include "cli/commands.h"
#include "common/error.h"
#include "kv/spec.h"
#include "model/forward.h"
#include "sched/profile.h"
#include "server/server.h"

namespace harmonia::cli {

namespace {

volatile std::sig_atomic_t g_stop_signal = 0;
extern "C" void on_stop_signal(int sig) { g_stop_signal = sig; }

// "1073741824", "512M", "512MiB", "2G", "64k" -> bytes (binary multiples).
size_t parse_bytes(const std::string& s, const char* flag) {
  size_t pos = 0;
  double v = 0;
  try {
    v = std::stod(s, &pos);
  } catch (const std::exception&) {
    fail(ErrorKind::InvalidInput, "{} must be a byte count like 1073741824, 512M or 2GiB, got '{}'", flag, s);
  }
  std::string unit = s.substr(pos);
  for (auto& c : unit) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  double mult = 1;
  if (unit.empty() || unit == "b") mult = 1;
  else if (unit == "k" || unit == "kb" || unit == "kib") mult = 1024.0;
  else if (unit == "m" || unit == "mb" || unit == "mib") mult = 1024.0 * 1024;
  else if (unit == "g" || unit == "gb" || unit == "gib") mult = 1024.0 * 1024 * 1024;
  else if (unit == "t" || unit == "tb" || unit == "tib") mult = 1024.0 * 1024 * 1024 * 1024;
  else fail(ErrorKind::InvalidInput, "{}: unknown unit '{}' in '{}' (use K, M, G, T)", flag, unit, s);
  if (!(v >= 0) || v * mult > 1.8e19) fail(ErrorKind::InvalidInput, "{} must be >= 0 and representable, got '{}'", flag, s);
  return static_cast<size_t>(v * mult);
}

class ServeCmd : public Command {
 public:
  void attach(CLI::App& app) override {
    sub_ = app.add_subcommand("serve", "OpenAI-compatible HTTP server (/v1/completions, /v1/chat/completions, /metrics, ...)");
    mf_.attach(sub_);
    auto& e = so_.engine;
    sub_->add_option("--draft", draft_, "draft model for speculative decoding (sets --spec draft)");
    sub_->add_option("--spec", spec_, "default drafter: none | draft | ngram | layerskip")->capture_default_str();
    sub_->add_option("--spec-n", so_.speculative.n, "draft tokens per step")->capture_default_str();
    sub_->add_option("--kv", kv_, "KV policies, comma list with inline options (name:k=v); the first is the default")->capture_default_str();
    sub_->add_option("--kv-opt", kv_opts_, "KV policy option key=value for every listed policy (repeatable)");
    sub_->add_option("--sched", e.sched, "request scheduler (fcfs, sjf, las, mlfq, laps-sd, ...; name:k=v)")->capture_default_str();
    sub_->add_option("-c,--ctx", e.ctx, "context size per sequence in tokens (default: the model's)");
    sub_->add_option("--max-seqs", e.max_seqs, "sequences per engine step")->capture_default_str();
    sub_->add_option("--kv-budget", kv_budget_, "KV bytes over all running sequences, e.g. 512M (0 = unlimited)")->capture_default_str();
    sub_->add_option("--max-queue", e.max_queue, "requests waiting or running at most; more get 429")->capture_default_str();
    sub_->add_option("--token-budget", e.token_budget, "tokens per step over all sequences")->capture_default_str();
    sub_->add_option("--prefill-chunk", e.prefill_chunk, "prompt tokens per sequence per step")->capture_default_str();
    sub_->add_option("--preempt", e.preempt, "pause (KV kept) | recompute (KV freed)")->capture_default_str();
    sub_->add_option("--profile", profile_, "cost profile (harmonia bench --profile) for the scheduler's time estimates");
    sub_->add_option("--profile-ctx", profile_ctx_, "context in tokens at which --profile's step time is read")->capture_default_str();
    sub_->add_option("-t,--threads", threads_, "compute threads (default: all cores)");
    sub_->add_option("--host", so_.host, "address to listen on")->capture_default_str();
    sub_->add_option("--port", so_.port, "port (0 = any free port, printed at start-up)")->capture_default_str();
    sub_->add_option("--api-key", so_.api_key, "require 'Authorization: Bearer KEY' on /v1/*, /tokenize, /detokenize");
    sub_->add_option("--model-name", so_.model_id, "model id in /v1/models (default: the file name)");
    sub_->add_option("--http-threads", so_.http_threads, "HTTP worker threads (each open connection holds one)")->capture_default_str();
    sub_->add_option("--max-body", max_body_, "largest request body, e.g. 8M")->capture_default_str();
    sub_->add_option("--timeout", so_.read_timeout_s, "seconds a client may take to send a request or read a chunk")->capture_default_str();
    sub_->add_option("--shutdown-grace", grace_s_, "seconds in-flight requests get to finish after SIGTERM")->capture_default_str();
    // Tests only: slows the engine's event delivery so a tiny model can be interrupted mid-stream.
    sub_->add_option("--debug-event-delay-ms", so_.debug_event_delay_ms, "")->group("");
  }

  int run() override {
    // Before any thread exists: SIGTERM / SIGINT only set a flag that the main loop polls.
    std::signal(SIGTERM, on_stop_signal);
    std::signal(SIGINT, on_stop_signal);
    so_.write_timeout_s = so_.read_timeout_s;
    so_.engine.kv_budget_bytes = parse_bytes(kv_budget_, "--kv-budget");
    so_.max_body_bytes = parse_bytes(max_body_, "--max-body");
    so_.engine.threads = threads_;
    so_.kv = kv::parse_policy_list(kv_, kv_opts_);
    if (!draft_.empty() && spec_ == "none") spec_ = "draft";
    so_.speculative.drafter = spec_;
    so_.speculative.validate();
    // The scheduler's view: n, and τ / prefill time from a measured profile (the default τ = 1 s otherwise).
    if (!profile_.empty())
      e_ctx() = sched::CostProfile::load(profile_).policy_context(so_.speculative.n, so_.engine.max_seqs, profile_ctx_);
    e_ctx().draft_len = so_.speculative.n;
    set_threads(threads_);
    auto m = mf_.load();
    std::unique_ptr<Model> draft;
    if (!draft_.empty()) draft = load_model(draft_);
    if (spec_ == "draft" && !draft) fail(ErrorKind::InvalidInput, "--spec draft needs --draft MODEL");
    server::Server srv(*m, draft.get(), so_);
    std::printf("harmonia serve: %s (%s)%s\n", m->path.c_str(), srv.options().model_id.c_str(),
                draft ? (", draft " + draft->path).c_str() : "");
    std::printf("%s", srv.capacity().text().c_str());
    std::printf("scheduler    %s, speculative %s\n", so_.engine.sched.c_str(), spec_.c_str());
    const int port = srv.start();
    std::printf("listening on http://%s:%d%s\n", so_.host.c_str(), port, so_.api_key.empty() ? "" : " (API key required)");
    std::fflush(stdout);
    while (!g_stop_signal) std::this_thread::sleep_for(std::chrono::milliseconds(50));
    std::printf("harmonia serve: %s: stopping (new requests refused, %g s for in-flight requests)\n",
                g_stop_signal == SIGINT ? "SIGINT" : "SIGTERM", grace_s_);
    std::fflush(stdout);
    srv.shutdown(grace_s_);
    const auto em = srv.engine().metrics();
    std::printf("harmonia serve: stopped cleanly (%lld finished, %lld cancelled, %lld failed)\n",
                static_cast<long long>(em.finished), static_cast<long long>(em.cancelled), static_cast<long long>(em.failed));
    return 0;
  }

 private:
  sched::PolicyContext& e_ctx() { return so_.engine.sched_context; }
  ModelFlags mf_;
  server::ServerOptions so_;
  std::string draft_, spec_ = "none", kv_ = "full", kv_budget_ = "0", max_body_ = "2M", profile_;
  double profile_ctx_ = 512;
  std::vector<std::string> kv_opts_;
  int threads_ = 0;
  double grace_s_ = 30;
};

}  // namespace

std::unique_ptr<Command> make_serve_command() { return std::make_unique<ServeCmd>(); }

}  // namespace harmonia::cli
