// `harmonia load`: bounded load generator for a running `harmonia serve` (server/load.h).
#include <cstdio>
#include <iostream>

#include "cli/commands.h"
#include "common/error.h"
#include "server/load.h"

namespace harmonia::cli {

namespace {

class LoadCmd : public Command {
 public:
  void attach(CLI::App& app) override {
    sub_ = app.add_subcommand("load", "load a running server (loopback only): latency percentiles, TTFT, TPOT, throughput, errors");
    sub_->add_option("--url", o_.url, "the server, e.g. http://127.0.0.1:8080 (loopback addresses only)")->capture_default_str();
    sub_->add_option("--workload", o_.workload, "JSONL workload file (arrival_s, prompt or prompt_tokens, output_tokens)");
    sub_->add_option("--rate", o_.rate, "requests per second (Poisson arrivals), with --duration");
    sub_->add_option("--duration", o_.duration_s, "seconds of arrivals, with --rate");
    sub_->add_option("--concurrency", o_.concurrency, "requests in flight at most")->capture_default_str();
    sub_->add_option("-p,--prompt", o_.prompt, "prompt of every request (rate mode)")->capture_default_str();
    sub_->add_option("-n,--max-tokens", o_.max_tokens, "max_tokens of every request (rate mode)")->capture_default_str();
    sub_->add_flag("--ignore-eos", o_.ignore_eos, "generate max_tokens tokens every time (rate mode)");
    sub_->add_option("--api-key", o_.api_key, "API key of the server");
    sub_->add_option("--seed", o_.seed, "seed of the arrival times and request seeds")->capture_default_str();
    sub_->add_option("--timeout", o_.timeout_s, "seconds per request")->capture_default_str();
    sub_->add_flag("--json", json_, "print JSON");
  }
  int run() override {
    if (!o_.workload.empty() && (o_.rate > 0 || o_.duration_s > 0))
      fail(ErrorKind::InvalidInput, "give either --workload or --rate/--duration, not both");
    const server::LoadReport r = server::run_load(o_);
    if (json_) std::cout << dump_json(r.to_json(), 2) << "\n";
    else std::printf("load %s: %s", o_.url.c_str(), r.text().c_str());
    return r.errors ? 1 : 0;
  }

 private:
  server::LoadGenOptions o_;
  bool json_ = false;
};

}  // namespace

std::unique_ptr<Command> make_load_command() { return std::make_unique<LoadCmd>(); }

}  // namespace harmonia::cli
