// `harmonia calibrate`: FourierAttention compressed-dims search on calibration text.
#include <cstdio>
#include <fstream>
#include <iostream>

#include "cli/commands.h"
#include "common/env.h"
#include "common/error.h"
#include "common/mapped_file.h"
#include "engine/calibrate.h"

namespace harmonia::cli {

namespace {

class CalibrateCmd : public Command {
 public:
  void attach(CLI::App& app) override {
    sub_ = app.add_subcommand("calibrate", "choose FourierAttention's compressed dims per layer from calibration text");
    mf_.attach(sub_);
    sub_->add_option("--text", text_, "calibration text file")->required();
    sub_->add_option("-c,--ctx", o_.ctx, "tokens per calibration prompt (default: the model's context)");
    sub_->add_option("--schema", o_.schema, "per-layer ratios: inverted-pyramid | uniform")->capture_default_str();
    sub_->add_option("--ratio", o_.ratio, "compressed fraction for --schema uniform")->capture_default_str();
    sub_->add_option("--rope", o_.rope, "score K after RoPE (post, as cached) or before (pre, as the authors)")->capture_default_str();
    sub_->add_option("--sink", o_.sink, "sink tokens skipped at the start")->capture_default_str();
    sub_->add_option("--window", o_.window, "local window skipped at the end")->capture_default_str();
    sub_->add_option("--coeffs", o_.coeffs, "spectral coefficients M = 2N")->capture_default_str();
    sub_->add_option("--prompts", o_.max_prompts, "calibration prompts at most")->capture_default_str();
    sub_->add_option("-t,--threads", o_.threads, "threads");
    sub_->add_option("-o,--output", out_, "dims file to write (the authors' splithead JSON)")->required();
  }
  int run() override {
    validate(o_, 1);  // flags first (the schema's per-layer split is checked again with the model)
    {  // an unwritable output is reported before the calibration runs, not after; nothing is left behind
      const bool existed = static_cast<bool>(std::ifstream(out_));
      const bool ok = static_cast<bool>(std::ofstream(out_, std::ios::app));
      if (!existed) std::remove(out_.c_str());
      if (!ok) fail(ErrorKind::Io, "{}: cannot create the dims file", out_);
    }
    auto m = mf_.load();
    if (!m->tokenizer) fail(ErrorKind::InvalidInput, "{}: no tokenizer to encode the text (give --tokenizer)", m->path);
    const auto toks = m->tokenizer->encode(read_file(text_), m->tokenizer->bos_id() >= 0);
    const double t0 = now_ms();
    auto res = calibrate_dims(*m, toks, o_, [&](int done, int total) {
      const double el = (now_ms() - t0) / 1000.0;
      const double eta = done > 0 ? el / done * (total - done) : 0;
      const int w = 30, fill = total ? w * done / total : w;
      std::fprintf(stderr, "\rcalibrate [%s%s] %d/%d prompts, %.1fs elapsed, ETA %.1fs", std::string(fill, '#').c_str(),
                   std::string(w - fill, '.').c_str(), done, total, el, eta);
      if (done == total) std::fprintf(stderr, "\n");
    });
    const kv::RopeLayout layout =
        m->config.rope.style == RopeConfig::Style::Interleaved ? kv::RopeLayout::Interleaved : kv::RopeLayout::Half;
    kv::write_splithead_dims(out_, res.dims, m->config.n_kv_heads, m->config.head_dim, layout);
    std::printf("wrote %s: %d layers, %d prompts x %lld middle tokens (T = %lld, N = %d), compressed fraction %.4f "
                "(K %zu, V %zu dims)\n",
                out_.c_str(), res.dims.n_layers, res.prompts, static_cast<long long>(res.middle_tokens),
                static_cast<long long>(res.period), res.frequencies, res.dims.compressed_fraction(),
                res.dims.k_compressed_total(), res.dims.v_compressed_total());
    return 0;
  }

 private:
  ModelFlags mf_;
  CalibrateOptions o_;
  std::string text_, out_;
};

}  // namespace

std::unique_ptr<Command> make_calibrate_command() { return std::make_unique<CalibrateCmd>(); }

}  // namespace harmonia::cli
