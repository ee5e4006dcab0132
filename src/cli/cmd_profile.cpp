// `harmonia bench --profile`: measures the speculative-decoding cost profile
// (engine/profile.h) that LAPS-SD's estimates and `harmonia simulate` read.
#include <cstdio>
#include <random>

#include <nlohmann/json.hpp>

#include "cli/commands.h"
#include "cli/device.h"
#include "common/error.h"
#include "engine/profile.h"
#include "eval/filler.h"
#include "model/forward.h"
#include "model/presets.h"
#ifdef HARMONIA_WITH_CUDA
#include "cuda/forward_gpu.h"
#include "cuda/profile_gpu.h"
#include "cuda/runtime.h"
#endif

namespace harmonia::cli {

struct BenchProfileFlags {
  bool profile = false;
  std::string out, draft_path, draft_preset, spec = "none";
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
  sub->add_option("--draft-preset", f->draft_preset,
                  "random-weight draft model of a preset shape (--dtype as the target's; with --device cuda generated on the "
                  "GPU), instead of --draft: e.g. --preset llama-8b --draft-preset llama-1b")
      ->group(g);
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

namespace {

#ifdef HARMONIA_WITH_CUDA
// The B = 1 profile on the GPU (cuda::measure_profile_gpu), written as a sched::CostProfile.
int run_bench_profile_cuda(const BenchProfileFlags& f, const ModelFlags& mf, const DeviceFlags& dev) {
  if (f.spec != "none" && f.spec != "draft")
    fail(ErrorKind::Unsupported, "--device cuda: bench --profile drafts with a draft model only (--draft or --draft-preset), "
         "not --spec {}", f.spec);
  if (f.o.batch != std::vector<int>{1} && f.o.batch != engine::ProfileOptions{}.batch)
    fail(ErrorKind::Unsupported, "--device cuda: bench --profile measures batch 1 only (the GPU forward runs one sequence)");
  const bool random = !mf.preset.empty();
  if (random && !mf.model.empty()) fail(ErrorKind::InvalidInput, "give either -m or --preset, not both");
  std::unique_ptr<Model> m = random ? shape_only(mf) : mf.load();
  if (random) m->path = "preset " + mf.preset + " (random weights on the GPU)";
  std::unique_ptr<Model> draft;
  const bool draft_random = !f.draft_preset.empty();
  if (draft_random) {
    ModelFlags df = mf;
    df.model.clear();
    df.preset = f.draft_preset;
    df.weight_seed = mf.weight_seed + 1;
    draft = shape_only(df);
    draft->path = "preset " + f.draft_preset + " (random weights on the GPU)";
  } else if (!f.draft_path.empty()) {
    draft = load_model(f.draft_path);
  }
  cuda::GpuProfileOptions po;
  po.draft_len = f.o.draft_len;
  if (!f.contexts.empty()) po.context = f.contexts;
  if (!f.prefill.empty()) po.prefill_tokens = f.prefill;
  po.reps = f.o.reps;
  po.draft_ref = f.o.draft_ref;
  const int64_t cap = std::max(po.context.empty() ? 0 : po.context.back() + 18, po.prefill_tokens.empty() ? 0 : po.prefill_tokens.back());
  auto options = [&](bool rnd, uint64_t seed) {
    cuda::GpuForwardOptions g;
    g.f32_weights = g.f32_kv = dev.gpu_dtype == "f32";
    g.max_tokens = std::max<int64_t>(cap, 1);
    g.random_weights = rnd;
    g.seed = seed;
    return g;
  };
  cuda::GpuForward tf(*m, options(random, mf.weight_seed));
  std::unique_ptr<cuda::GpuForward> df;
  if (draft) {
    if (draft->config.vocab_size != m->config.vocab_size)
      fail(ErrorKind::InvalidInput, "draft model {}: vocabulary of {} tokens, the target {} has {}", draft->path,
           draft->config.vocab_size, m->path, m->config.vocab_size);
    df = std::make_unique<cuda::GpuForward>(*draft, options(draft_random, mf.weight_seed + 1));
  }
  const cuda::GpuProfile g = cuda::measure_profile_gpu(tf, df.get(), po);
  nlohmann::json j;
  j["format"] = "harmonia.sd_profile";
  j["version"] = 1;
  j["target"] = m->path;
  j["draft"] = draft ? draft->path : "none";
  j["device"] = cuda::device_summary() + ", " + dev.gpu_dtype + " weights and KV cache";
  j["note"] = fmt::format(
      "measured by harmonia bench --profile --device cuda: B = 1, median of {} runs after a warm-up; verify = "
      "GpuForward::run_verify (n + 1 tokens, every greedy id copied back); draft = draft model decode steps; prefill = "
      "one target forward call; draft_prefill_ms = the draft model's forward over the prompt; preempt_ms 0 (the KV "
      "cache stays on the GPU); no engine step overhead measured (the serving engine runs on the CPU)",
      po.reps);
  j["batch"] = std::vector<int>{1};
  j["draft_len"] = po.draft_len;
  j["context"] = po.context;
  j["draft_ms_per_token"] = nlohmann::json::array({draft ? nlohmann::json(g.draft_ms_per_token)
                                                         : nlohmann::json(std::vector<double>(po.context.size(), 0.0))});
  j["verify_ms"] = nlohmann::json::array({g.verify_ms});
  j["prefill"] = {{"tokens", po.prefill_tokens}, {"ms", g.prefill_ms}};
  if (draft) j["draft_prefill_ms"] = g.draft_prefill_ms;
  j["preempt_ms"] = 0.0;
  const sched::CostProfile p = sched::CostProfile::from_json(j, "gpu profile");
  p.save(f.out);
  std::printf("profile of %s, draft %s, on %s -> %s\n", m->path.c_str(), p.draft.c_str(), p.device.c_str(), f.out.c_str());
  std::printf("%10s %14s", "context", "draft ms/tok");
  for (int n : po.draft_len) std::printf(" %10s", fmt::format("verify n={}", n).c_str());
  std::printf(" %12s\n", "step n=4 ms");
  for (int64_t c : po.context) {
    std::printf("%10lld %14.4f", static_cast<long long>(c), p.draft_ms(1, static_cast<double>(c)));
    for (int n : po.draft_len) std::printf(" %10.4f", p.verify_ms(1, n, static_cast<double>(c)));
    std::printf(" %12.4f\n", p.step_ms(1, 4, static_cast<double>(c)));
  }
  std::printf("prefill ms (target + draft catch-up):");
  for (int64_t t : po.prefill_tokens)
    std::printf(" %lld tok %.3f + %.3f;", static_cast<long long>(t), p.prefill_ms(t), p.draft_prefill_ms(t));
  std::printf("\n");
  return 0;
}
#endif

}  // namespace

int run_bench_profile(const BenchProfileFlags& cf, const ModelFlags& mf, int threads, const DeviceFlags& dev) {
  BenchProfileFlags f = cf;
  if (f.out.empty()) fail(ErrorKind::InvalidInput, "bench --profile needs -o FILE (the profile JSON to write)");
  if (!f.draft_path.empty() && !f.draft_preset.empty())
    fail(ErrorKind::InvalidInput, "give either --draft MODEL or --draft-preset NAME, not both");
  if (!f.draft_path.empty() || !f.draft_preset.empty()) {
    if (f.spec != "none" && f.spec != "draft") fail(ErrorKind::InvalidInput, "give either --draft MODEL or --spec, not both");
    f.spec = "draft";
  }
  if (dev.cuda()) {
#ifdef HARMONIA_WITH_CUDA
    return run_bench_profile_cuda(f, mf, dev);
#else
    dev.check();  // refuses cuda in this build
#endif
  }
  f.o.spec.drafter = f.spec;
  f.o.context = f.contexts;
  f.o.prefill_tokens = f.prefill;
  set_threads(threads);
  auto m = mf.load();
  std::unique_ptr<Model> draft;
  if (!f.draft_path.empty()) draft = load_model(f.draft_path);
  if (!f.draft_preset.empty()) {
    ModelFlags df = mf;
    df.model.clear();
    df.preset = f.draft_preset;
    df.weight_seed = mf.weight_seed + 1;
    draft = df.load();
  }
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
