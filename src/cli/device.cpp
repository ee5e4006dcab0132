#include "cli/device.h"

#include <nlohmann/json.hpp>

#include <algorithm>
#include <cstdio>
#include <iostream>
#include <optional>

#include "cli/commands.h"
#include "common/error.h"
#include "kv/fourier.h"
#include "model/forward.h"
#ifdef HARMONIA_WITH_CUDA
#include "cuda/forward_gpu.h"
#include "cuda/runtime.h"
#endif

namespace harmonia::cli {

void DeviceFlags::attach(CLI::App* sub, const std::string& device_note) {
  sub->add_option("--device", device, "where the forward pass runs: cpu | cuda (GPU 0)" + device_note)
      ->capture_default_str();
  sub->add_option("--gpu-dtype", gpu_dtype,
                  "cuda: weights and KV cache on the GPU as bf16 | f32 (f32: same tokens as the CPU)")
      ->capture_default_str();
}

void DeviceFlags::check() const {
  if (device != "cpu" && device != "cuda") fail(ErrorKind::InvalidInput, "--device must be cpu or cuda, got '{}'", device);
  if (gpu_dtype != "bf16" && gpu_dtype != "f32")
    fail(ErrorKind::InvalidInput, "--gpu-dtype must be bf16 or f32, got '{}'", gpu_dtype);
  if (!cuda()) return;
#ifdef HARMONIA_WITH_CUDA
  if (cuda::device_count() == 0)
    fail(ErrorKind::Unsupported, "--device cuda: no CUDA device found (no driver or no GPU on this machine)");
#else
  fail(ErrorKind::Unsupported, "--device cuda: this harmonia was built without CUDA (HARMONIA_CUDA=OFF or no nvcc)");
#endif
}

namespace {
void require_full_or_fourier(const std::string& kv) {
  if (kv != "full" && kv != "fourier")
    fail(ErrorKind::Unsupported, "--device cuda: KV policy '{}' is not on the GPU yet (have: full, fourier)", kv);
}
}  // namespace

std::optional<kv::FourierOptions> gpu_kv_policy(const std::string& name, const kv::Options& opts, kv::RopeLayout rope) {
  require_full_or_fourier(name);
  if (name == "full") return std::nullopt;
  kv::Options o = opts;  // the keys' RoPE layout comes from the model unless given (as kv::make_fourier)
  if (!o.count("rope")) o["rope"] = rope == kv::RopeLayout::Interleaved ? "interleaved" : "half";
  const kv::FourierOptions f = kv::FourierOptions::parse(o);
  if (f.compat_reference)
    fail(ErrorKind::Unsupported, "--device cuda: fourier compat=reference runs on the CPU only (the GPU has the default mode)");
  if (f.coeff_dtype == kv::CoeffDtype::F16)
    fail(ErrorKind::Unsupported, "--device cuda: fourier coeff_dtype f16 (have f32, bf16)");
  if (f.stats_dtype != kv::CoeffDtype::F32)
    fail(ErrorKind::Unsupported, "--device cuda: fourier stats_dtype {} (have f32)", kv::dtype_name(f.stats_dtype));
  return f;
}

#ifdef HARMONIA_WITH_CUDA

namespace {
class GpuRunner : public SequenceRunner {
 public:
  explicit GpuRunner(cuda::GpuForward& fw) : fw_(fw) {}
  void run(const int32_t* tokens, int64_t n, float* logits, int32_t* argmax) override {
    fw_.run(tokens, n, logits, argmax);
  }
  bool device_argmax() const override { return true; }
  int64_t n_tokens() const override { return fw_.n_tokens(); }
  size_t kv_bytes() const override { return fw_.kv_bytes(); }

 private:
  cuda::GpuForward& fw_;
};

cuda::GpuForwardOptions gpu_options(const DeviceFlags& d, int64_t max_tokens) {
  cuda::GpuForwardOptions g;
  g.f32_weights = g.f32_kv = d.gpu_dtype == "f32";
  g.max_tokens = max_tokens;
  return g;
}
}  // namespace

GenerateResult generate_cuda(const Model& m, const std::vector<int32_t>& prompt, const GenerateOptions& o,
                             const DeviceFlags& d, const std::function<void(const std::string&)>& on_text) {
  const auto fourier = gpu_kv_policy(o.kv_policy, o.kv_options, kv_shape(m.config, 1).rope_layout);
  o.sampling.validate();
  const int64_t ctx = resolve_ctx(m, o.ctx, prompt.size(), o.max_tokens);
  // The cache holds what this request can reach (generate() runs prompt + max_tokens - 1 tokens),
  // not the whole trained context: an 8B model's 128k would take 16 GiB for a short answer.
  const int64_t need = static_cast<int64_t>(prompt.size()) + std::max(o.max_tokens, 1);
  cuda::GpuForward fw(m, gpu_options(d, std::min(ctx, need)));
  if (fourier) {  // as generate() on the CPU: kv::FourierCache of the context ctx, planned for this request
    fw.use_fourier(*fourier, ctx);
    fw.plan(static_cast<int64_t>(prompt.size()), o.max_tokens);
  }
  GpuRunner seq(fw);
  return generate(seq, m, ctx, prompt, o, on_text);
}

namespace {
// --kv fourier[:sink=..:window=..:coeffs=..:coeff_dtype=f32|bf16:period=aligned] for the GPU bench.
cuda::GpuFourierOptions gpu_fourier(const kv::PolicySpec& sp) {
  const kv::FourierOptions f = kv::FourierOptions::parse(sp.options);
  if (f.coeff_dtype == kv::CoeffDtype::F16)
    fail(ErrorKind::Unsupported, "--device cuda: fourier coeff_dtype f16 (have f32, bf16)");
  cuda::GpuFourierOptions g;
  g.sink = f.sink;
  g.window = f.window;
  g.coeffs = f.coeffs;
  g.coeff_bf16 = f.coeff_dtype == kv::CoeffDtype::BF16;
  g.aligned_period = f.aligned_period;
  return g;
}
}  // namespace

void bench_cuda(const Model& m, bool random_weights, const BenchOptions& o, const std::vector<int64_t>& depths,
                const kv::PolicySpec& sp, const DeviceFlags& d, bool json) {
  const std::string kv = sp.label();
  const bool fourier = sp.name == "fourier";
  require_full_or_fourier(sp.name);
  // fourier: the context lives in the FourierAttention state; the full cache holds only the warm-up.
  const int64_t most = std::max(o.n_prompt, o.n_gen) + (fourier ? 16 : *std::max_element(depths.begin(), depths.end()));
  cuda::GpuForwardOptions g = gpu_options(d, std::max<int64_t>(most, 1));
  g.random_weights = random_weights;
  g.seed = o.seed;
  cuda::GpuForward fw(m, g);
  nlohmann::json rows = nlohmann::json::array();
  if (!json)
    std::printf("%-14s %8s %12s %12s %12s %12s %12s\n", "kv", "depth", "prefill t/s", "decode t/s", "KV read MiB",
                "KV held MiB", "GPU mem GiB");
  for (int64_t depth : depths) {
    cuda::GpuBenchOptions b;
    b.n_prompt = o.n_prompt;
    b.n_gen = o.n_gen;
    b.depth = depth;
    b.reps = o.reps;
    b.seed = o.seed;
    b.fourier = fourier;
    if (fourier) b.fourier_options = gpu_fourier(sp);
    const cuda::GpuBenchResult r = cuda::bench_forward(fw, b);
    BenchOptions row_o = o;
    row_o.depth = depth;
    BenchResult row_r;
    row_r.prefill_tok_s = r.prefill_tok_s;
    row_r.decode_tok_s = r.decode_tok_s;
    row_r.prefill_samples = r.prefill_samples;
    row_r.decode_samples = r.decode_samples;
    row_r.weight_bytes = r.weight_bytes;
    row_r.kv_bytes_read = r.kv_bytes_read;
    nlohmann::json row = bench_row_json(kv, row_o, row_r);
    row["device_memory_bytes"] = r.device_memory_bytes;
    row["kv_bytes_held"] = r.kv_bytes_held;
    rows.push_back(row);
    if (!json)
      std::printf("%-14s %8lld %12.1f %12.2f %12.1f %12.1f %12.2f\n", kv.c_str(), static_cast<long long>(depth),
                  r.prefill_tok_s, r.decode_tok_s, r.kv_bytes_read / 1048576.0, r.kv_bytes_held / 1048576.0,
                  r.device_memory_bytes / 1073741824.0);
  }
  const std::string dev = cuda::device_summary();
  if (json) {
    std::cout << dump_json(nlohmann::json{{"model", m.path}, {"device", dev}, {"gpu_dtype", d.gpu_dtype},
                                          {"depth_fill", "synthetic"}, {"results", rows}},
                           2)
              << "\n";
  } else {
    std::printf("model %s on %s, %s weights and KV cache, %.1f MiB weights; depth is synthetic (KV cache filled with "
                "noise, no prefill run for it; fourier: a random FourierAttention state, decode only); KV read/held at the end "
                "of the decode test; GPU mem = all device memory in use (cudaMemGetInfo)\n",
                m.path.c_str(), dev.c_str(), d.gpu_dtype.c_str(), fw.weight_bytes() / 1048576.0);
  }
}

#else  // no CUDA in this build: check() has already refused --device cuda

GenerateResult generate_cuda(const Model& m, const std::vector<int32_t>&, const GenerateOptions& o, const DeviceFlags& d,
                             const std::function<void(const std::string&)>&) {
  gpu_kv_policy(o.kv_policy, o.kv_options, kv_shape(m.config, 1).rope_layout);
  d.check();
  fail(ErrorKind::Unsupported, "--device cuda: this harmonia was built without CUDA");
}

void bench_cuda(const Model&, bool, const BenchOptions&, const std::vector<int64_t>&, const kv::PolicySpec&,
                const DeviceFlags& d, bool) {
  d.check();
  fail(ErrorKind::Unsupported, "--device cuda: this harmonia was built without CUDA");
}

#endif

}  // namespace harmonia::cli
