// `harmonia bench --profile`: measures the speculative-decoding cost profile
// (engine/profile.h) that LAPS-SD's estimates and `harmonia simulate` read.
#include <cstdio>
#include <random>

#include "cli/commands.h"
#include "common/error.h"
#include "engine/profile.h"
#include "eval/filler.h"
#include "model/forward.h"

namespace harmonia::cli {

struct BenchProfileFlags {
  bool profile = false;
  std::string out, draft_path, spec = "none";
  engine::ProfileOptions o;
  std::vector<int64_t> contexts, prefill;
};

std::vector<int32_t> filler_tokens(const Model& m, size_t min_tokens) {
  std::vector<int32_t> out;
  if (m.tokenizer) {
    for (size_t chars = 4 * min_tokens + 64; out.size() < min_tokens; chars *= 2)
      out = m.tokenizer->encode(eval::synthetic_filler(chars), false);
    return out;
  }
  std::mt19937_64 rng(0x48415953ULL);
  std::uniform_int_distribution<int32_t> d(0, m.config.vocab_size - 1);
  out.resize(min_tokens);
  for (auto& t : out) t = d(rng);
  return out;
}

std::shared_ptr<BenchProfileFlags> attach_bench_profile(CLI::App* sub) {
  auto f = std::make_shared<BenchProfileFlags>();
  const std::string g = "Cost profile (--profile)";
  sub->add_flag("--profile", f->profile,
                "measure the speculative-decoding cost profile (draft ms/token, verify ms by batch, draft length and "
                "context; prefill ms) for the scheduler and simulator, instead of the speed test")
      ->group(g);
  sub->add_option("-o,--output", f->out, "profile JSON to write (with --profile)")->group(g);
  sub->add_option("--draft", f->draft_path, "draft model (same vocabulary; sets drafter 'draft')")->group(g);
  sub->add_option("--spec", f->spec, "drafter without a second model: ngram | layerskip | none")->group(g)->capture_default_str();
  sub->add_option("--draft-layers", f->o.spec.layers, "layerskip: draft depth (default: half the layers)")->group(g);
  sub->add_option("--batches", f->o.batch, "batch sizes (comma list)")->delimiter(',')->group(g)->capture_default_str();
  sub->add_option("--draft-lens", f->o.draft_len, "draft lengths n (comma list, from 0)")->delimiter(',')->group(g)->capture_default_str();
  sub->add_option("--contexts", f->contexts, "context buckets in tokens (default: 64, 256, ... up to the context)")
      ->delimiter(',')
      ->group(g);
  sub->add_option("--prefill-tokens", f->prefill, "prompt lengths for prefill (default: 1, 8, 16, 32, 64, 96, 128, 192, 256, 384, 512, 1024, 2048, 4096 below --ctx)")
      ->delimiter(',')
      ->group(g);
  sub->add_option("--ctx", f->o.ctx, "context size per sequence (default: the model's)")->group(g);
  sub->add_option("--profile-reps", f->o.reps, "timed runs per cell (median)")->group(g)->capture_default_str();
  return f;
}

bool bench_profile_requested(const BenchProfileFlags& f) { return f.profile; }

int run_bench_profile(const BenchProfileFlags& cf, const ModelFlags& mf, int threads) {
  BenchProfileFlags f = cf;
  if (f.out.empty()) fail(ErrorKind::InvalidInput, "bench --profile needs -o FILE (the profile JSON to write)");
  if (!f.draft_path.empty()) {
    if (f.spec != "none" && f.spec != "draft") fail(ErrorKind::InvalidInput, "give either --draft MODEL or --spec, not both");
    f.spec = "draft";
  }
  f.o.spec.drafter = f.spec;
  f.o.context = f.contexts;
  f.o.prefill_tokens = f.prefill;
  set_threads(threads);
  auto m = mf.load();
  std::unique_ptr<Model> draft;
  if (!f.draft_path.empty()) draft = load_model(f.draft_path);
  f.o.text = filler_tokens(*m, 4096);
  const sched::CostProfile p = engine::measure_profile(*m, draft.get(), f.o);
  p.save(f.out);
  std::printf("profile of %s, drafter %s, on %s -> %s\n", m->path.c_str(), p.draft.c_str(), p.device.c_str(), f.out.c_str());
  const int64_t ctx = f.o.ctx > 0 ? f.o.ctx : m->config.ctx_len;
  const double c = static_cast<double>(ctx) / 4;
  std::printf("at context %.0f: %6s %14s", c, "batch", "draft ms/tok");
  for (int n : f.o.draft_len) std::printf(" %10s", fmt::format("verify n={}", n).c_str());
  std::printf(" %12s\n", "step n=4 ms");
  for (int b : f.o.batch) {
    std::printf("%*s %6d %14.4f", static_cast<int>(fmt::format("at context {:.0f}:", c).size()), "", b, p.draft_ms(b, c));
    for (int n : f.o.draft_len) std::printf(" %10.4f", p.verify_ms(b, n, c));
    std::printf(" %12.4f\n", p.step_ms(b, 4, c));
  }
  std::printf("prefill ms:");
  for (int64_t t : f.o.prefill_tokens.empty() ? engine::default_prefill_tokens(ctx) : f.o.prefill_tokens)
    std::printf(" %lld tok %.3f;", static_cast<long long>(t), p.prefill_ms(t));
  std::printf("\nstep overhead ms (engine steps):");
  for (int b : f.o.batch) std::printf(" b=%d %.4f;", b, p.step_overhead_ms(b));
  std::printf(" switch cost (preempt_ms) %.4f\n", p.preempt_ms());
  return 0;
}

}  // namespace harmonia::cli
