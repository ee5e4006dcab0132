// `harmonia` command line: maps flags onto the components' Options structs.
#include "cli/cli.h"

#include <CLI/CLI.hpp>
#include <nlohmann/json.hpp>

#include <cstdio>
#include <functional>
#include <iostream>
#include <new>

#include "cli/commands.h"
#include "common/error.h"

namespace harmonia::cli {

int run(int argc, char** argv) {
  CLI::App app{"Harmonia: long-context LLM inference with FourierAttention KV compression"};
  app.require_subcommand(1);
  app.set_version_flag("--version", "harmonia 0.1.0");
  std::vector<std::unique_ptr<Command>> cmds = all_commands();
  for (auto& c : cmds) c->attach(app);
  // Every command that takes --kv (also eval's tasks) says where the policies' options are.
  const std::function<void(CLI::App*)> kv_footer = [&](CLI::App* a) {
    if (a->get_option_no_throw("--kv"))
      a->footer(
          "KV policies (--kv NAME[:key=value...]): full (k_type, v_type), streaming (sink, window), snapkv and "
          "pyramidkv (budget, window, kernel, pool, ratio), h2o (heavy, recent, heavy_ratio, recent_ratio), kivi (bits, "
          "group, v_group, residual, scale_type), fourier (sink, window, coeffs, dims, coeff_dtype, stats_dtype, ...). "
          "Defaults and meanings: docs/kv.md; an unknown option's error lists the valid ones.");
    for (CLI::App* s : a->get_subcommands({})) kv_footer(s);
  };
  kv_footer(&app);
  try {
    app.parse(argc, argv);
  } catch (const CLI::CallForHelp& e) {
    return app.exit(e);
  } catch (const CLI::CallForAllHelp& e) {
    return app.exit(e);
  } catch (const CLI::CallForVersion& e) {
    return app.exit(e);
  } catch (const CLI::ParseError& e) {
    std::fprintf(stderr, "harmonia: error: %s (see --help)\n", e.what());
    return 2;
  }
  try {
    for (auto& c : cmds)
      if (c->parsed()) return c->run();
    return 2;
  } catch (const Error& e) {
    std::fflush(stdout);
    std::fprintf(stderr, "harmonia: error: %s\n", e.what());
    return e.exit_code();
  } catch (const std::bad_alloc&) {
    std::fprintf(stderr, "harmonia: error: out of memory\n");
    return 1;
  } catch (const nlohmann::json::exception& e) {
    std::fprintf(stderr, "harmonia: error: JSON: %s\n", e.what());
    return 2;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "harmonia: internal error: %s\n", e.what());
    return 1;
  }
}

}  // namespace harmonia::cli
