// Kernel-level decode-attention benchmark on the GPU (issue #7): time per layer
// and achieved bandwidth (bytes the step must read / time) of `full` and
// `fourier` (f32 and bf16 coefficients; FFT, tiled and tiled-fast paths) at Llama-3.1-8B attention shape
// (32 query heads, 8 KV heads, head_dim 128), against a device-to-device copy
// measured in the same run. Median of many reps (CUDA events), after warm-up;
// several layers' buffers are rotated so repeated calls do not hit in L2. Times are
// per call of 8 calls queued back to back (as a decode step's layers run); the last
// column times one call alone, which adds the host's launch latency.
//
//   bench_cuda [--reps 50] [--contexts 4096,32768,131072] [--batches 1,16] [--out FILE]
//              [--full-targets 132,264,...]   also time full at these split-kernel block targets
//              [--full-only]                  skip the fourier rows
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <sstream>
#include <string>
#include <vector>

#include "cuda/attention.h"
#include "cuda/fourier_gpu.h"
#include "cuda/runtime.h"
#include "kv/dims.h"
#include "kv/fourier.h"
#include "kv/spectral.h"

using namespace harmonia;

namespace {

constexpr int kHeads = 32, kKvHeads = 8, kHeadDim = 128, kLayers = 32;
constexpr int64_t kSink = 4, kWindow = 1024, kCoeffs = 1024, kMaxNew = 500;

std::vector<int64_t> parse_list(const std::string& s) {
  std::vector<int64_t> v;
  std::stringstream ss(s);
  std::string item;
  while (std::getline(ss, item, ',')) v.push_back(std::stoll(item));
  return v;
}

double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  const size_t n = v.size();
  return n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
}

// Median milliseconds per call of fn(i): each of `reps` samples times `per` consecutive calls
// (i = sample * per + j) between one pair of CUDA events, after `warm` calls. per = 1 times a call
// alone, including the host's launch latency (the GPU is idle when the start event is recorded);
// per > 1 times calls queued back to back, as the layers of a decode step run.
template <typename Fn>
double time_ms(int warm, int reps, int per, Fn fn) {
  cuda::EventTimer t;
  for (int i = 0; i < warm; ++i) fn(i);
  cuda::synchronize();
  std::vector<double> ms;
  for (int i = 0; i < reps; ++i) {
    t.start();
    for (int j = 0; j < per; ++j) fn(i * per + j);
    ms.push_back(t.stop_ms() / per);
  }
  return median(ms);
}

// Calls per back-to-back sample (the table's times; "alone" is per = 1).
constexpr int kBackToBack = 8;

// Layer copies to rotate through: enough that they do not fit in L2 together.
int rotation(size_t bytes_per_layer) {
  const size_t want = size_t{512} << 20;
  return static_cast<int>(std::clamp<size_t>((want + bytes_per_layer - 1) / bytes_per_layer, 2, 16));
}

}  // namespace

int main(int argc, char** argv) {
  int reps = 50;
  std::vector<int64_t> contexts = {4096, 32768, 131072}, batches = {1, 16};
  std::vector<int64_t> full_targets;  // extra full rows at these target_blocks (split-count sweep)
  bool full_only = false;
  std::string out_path;
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    auto next = [&]() -> std::string {
      if (i + 1 >= argc) {
        std::fprintf(stderr, "%s needs a value\n", a.c_str());
        std::exit(2);
      }
      return argv[++i];
    };
    if (a == "--reps")
      reps = std::stoi(next());
    else if (a == "--contexts")
      contexts = parse_list(next());
    else if (a == "--batches")
      batches = parse_list(next());
    else if (a == "--out")
      out_path = next();
    else if (a == "--full-targets")
      full_targets = parse_list(next());
    else if (a == "--full-only")
      full_only = true;
    else {
      std::fprintf(stderr,
                   "usage: bench_cuda [--reps N] [--contexts a,b] [--batches a,b] [--full-targets a,b] [--full-only] "
                   "[--out FILE]\n");
      return 2;
    }
  }
  if (cuda::device_count() == 0) {
    std::printf("bench_cuda: no CUDA device, nothing measured\n");
    return 0;
  }
  std::string report;
  auto emit = [&](const std::string& line) {
    std::printf("%s\n", line.c_str());
    std::fflush(stdout);
    report += line + "\n";
  };
  char buf[512];
  emit("device: " + cuda::device_summary());

  // Copy ceiling: bytes read + bytes written per second.
  const size_t copy_bytes = size_t{2} << 30;
  double copy_gbs = 0;
  {
    cuda::DeviceBuffer a(copy_bytes), b(copy_bytes);
    cuda::fill_uniform_f32(a.as<float>(), copy_bytes / 4, 1);
    const double ms = time_ms(5, 30, 1, [&](int) { cuda::copy_device(b.get(), a.get(), copy_bytes); });
    copy_gbs = 2.0 * copy_bytes / (ms * 1e-3) / 1e9;
    std::snprintf(buf, sizeof buf, "copy: %.2f GiB D2D in %.3f ms = %.0f GB/s (read + write)", copy_bytes / 1073741824.0,
                  ms, copy_gbs);
    emit(buf);
  }

  kv::Shape shape;
  shape.n_layers = kLayers;
  shape.n_heads = kHeads;
  shape.n_kv_heads = kKvHeads;
  shape.head_dim = kHeadDim;
  shape.max_tokens = 131072 + kMaxNew;
  const kv::FourierDims dims = kv::default_fourier_dims(shape, kv::RopeLayout::Half);
  const int dims_layers[] = {0, 10, 21, 31};  // spread over the inverted pyramid

  emit("| policy | context | batch | time/layer (us) | MB read/layer | GB/s | % of copy | fourier time / goal | one call alone (us) |");
  emit("|---|---|---|---|---|---|---|---|---|");
  for (int64_t ctx : contexts)
    for (int64_t B : batches) {
      const cuda::DecodeShape ds{static_cast<int>(B), kHeads, kKvHeads, kHeadDim};
      const size_t qn = static_cast<size_t>(B) * kHeads * kHeadDim;
      cuda::DeviceBuffer q(qn * 4), out(qn * 4);
      cuda::fill_uniform_f32(q.as<float>(), qn, 7, 2.0f);
      cuda::AttentionWorkspace ws;

      // full: bf16 K and V, [B][8][ctx][128] per layer.
      const size_t kv_elems = static_cast<size_t>(B) * kKvHeads * ctx * kHeadDim;
      const size_t full_bytes = 2 * kv_elems * 2;
      double full_ms = 0;
      {
        const int nl = rotation(full_bytes);
        std::vector<cuda::DeviceBuffer> k, v;
        for (int l = 0; l < nl; ++l) {
          k.emplace_back(kv_elems * 2);
          v.emplace_back(kv_elems * 2);
          cuda::fill_uniform_bf16(k.back().get(), kv_elems, 100 + 2 * l);
          cuda::fill_uniform_bf16(v.back().get(), kv_elems, 101 + 2 * l);
        }
        std::vector<int> lens_h(B, static_cast<int>(ctx));
        cuda::DeviceBuffer lens(B * sizeof(int));
        cuda::to_device(lens.get(), lens_h.data(), B * sizeof(int));
        auto call = [&](int i) {
          cuda::decode_attention_full(ds, cuda::KvType::BF16, q.as<float>(), k[i % nl].get(), v[i % nl].get(), ctx,
                                      lens.as<int>(), ctx, out.as<float>(), ws);
        };
        full_ms = time_ms(5, reps, kBackToBack, call);
        const double alone_ms = time_ms(5, reps, 1, call);
        const double gbs = full_bytes / (full_ms * 1e-3) / 1e9;
        std::snprintf(buf, sizeof buf, "| full bf16 | %lld | %lld | %.1f | %.1f | %.0f | %.1f | | %.1f |",
                      static_cast<long long>(ctx), static_cast<long long>(B), full_ms * 1e3, full_bytes / 1e6, gbs,
                      100.0 * gbs / copy_gbs, alone_ms * 1e3);
        emit(buf);
        for (int64_t tb : full_targets) {
          const double t_ms = time_ms(5, reps, kBackToBack, [&](int i) {
            cuda::decode_attention_full(ds, cuda::KvType::BF16, q.as<float>(), k[i % nl].get(), v[i % nl].get(), ctx,
                                        lens.as<int>(), ctx, out.as<float>(), ws, static_cast<int>(tb));
          });
          const double t_gbs = full_bytes / (t_ms * 1e-3) / 1e9;
          std::snprintf(buf, sizeof buf, "| full bf16, %lld blocks | %lld | %lld | %.1f | %.1f | %.0f | %.1f | | |",
                        static_cast<long long>(tb), static_cast<long long>(ctx), static_cast<long long>(B), t_ms * 1e3,
                        full_bytes / 1e6, t_gbs, 100.0 * t_gbs / copy_gbs);
          emit(buf);
        }
      }
      if (full_only) continue;

      // fourier: sinks 4 + window 1024 exact, M = 1024 coefficients, the built-in dims of 4 layers.
      const int64_t mid = ctx - kSink - kWindow;
      if (mid <= kCoeffs) continue;
      // Periods: the 7-smooth one kv::FourierCache plans by default (smooth_period = true) for the FFT
      // path (the previous default), and period=aligned (a multiple of Q = 512, kv::aligned_period) for
      // the four-step path, f32 and bf16 coefficients. Direct and tiled paths (2.3-27x the goal,
      // docs/perf/gpu.md) are left out to keep one GPU round short.
      const int64_t T_smooth = kv::spectral::smooth_period(ctx + kMaxNew - kSink - kWindow);
      const int64_t T_aligned = kv::aligned_period(ctx + kMaxNew - kSink - kWindow, static_cast<int>(kCoeffs / 2));
      struct Variant {
        bool bf;
        cuda::FourierPath path;
        int64_t T;
      };
      const Variant variants[] = {{false, cuda::FourierPath::Fft, T_smooth},
                                  {false, cuda::FourierPath::FourStep, T_aligned},
                                  {true, cuda::FourierPath::FourStep, T_aligned}};
      // HARMONIA_BENCH_FOURSTEP_ONLY=1: the f32 four-step row only (sweeps of HARMONIA_FOURSTEP_FLAGS).
      const char* only_env = std::getenv("HARMONIA_BENCH_FOURSTEP_ONLY");
      const bool only_fourstep = only_env && std::string(only_env) == "1";
      for (const Variant& var : variants) {
        if (only_fourstep && (var.bf || var.path != cuda::FourierPath::FourStep)) continue;
        std::vector<std::unique_ptr<cuda::FourierLayer>> layers;
        cuda::FourierConfig cfg;
        cfg.shape = ds;
        cfg.sink = kSink;
        cfg.window = kWindow;
        cfg.coeffs = kCoeffs;
        cfg.coeff_bf16 = var.bf;
        cfg.period = var.T;
        cfg.w0 = 1.0 / cfg.period;
        cfg.w = 2.0 / cfg.period;
        cfg.mid_capacity = mid;
        size_t bytes = 0;
        for (int l : dims_layers) {
          std::vector<cuda::FourierHeadDims> heads;
          for (const kv::HeadDims& hd : kv::split_heads(dims.layers[l], kKvHeads, kHeadDim))
            heads.push_back({hd.kc, hd.kn, hd.vc, hd.vn});
          layers.push_back(std::make_unique<cuda::FourierLayer>(cfg, heads));
          layers.back()->fill_random(mid, 1000 + l);
          bytes += layers.back()->attention_bytes();
        }
        const int nl = static_cast<int>(layers.size());
        const double fbytes = static_cast<double>(bytes) / nl;  // mean over the rotated layers
        auto call = [&](int i) { layers[i % nl]->attend(q.as<float>(), out.as<float>(), ws, 0, var.path); };
        const double ms = time_ms(5, reps, kBackToBack, call);
        const double alone_ms = time_ms(5, reps, 1, call);
        const double gbs = fbytes / (ms * 1e-3) / 1e9;
        const double goal_ms = 1.25 * (fbytes / full_bytes) * full_ms;
        const char* path = var.path == cuda::FourierPath::Fft        ? "fft"
                           : var.path == cuda::FourierPath::FourStep ? "four-step"
                           : var.path == cuda::FourierPath::Tiled    ? "tiled"
                                                                     : "tiled-fast";
        std::snprintf(buf, sizeof buf, "| fourier %s %s | %lld | %lld | %.1f | %.1f | %.0f | %.1f | %.2f (goal <= 1) | %.1f |",
                      var.bf ? "bf16" : "f32", path, static_cast<long long>(ctx), static_cast<long long>(B), ms * 1e3,
                      fbytes / 1e6, gbs, 100.0 * gbs / copy_gbs, ms / goal_ms, alone_ms * 1e3);
        emit(buf);
      }
    }
  if (!out_path.empty()) {
    FILE* f = std::fopen(out_path.c_str(), "w");
    if (f) {
      std::fputs(report.c_str(), f);
      std::fclose(f);
    }
  }
  return 0;
}
