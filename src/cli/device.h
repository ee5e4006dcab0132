#pragma once
// `--device cpu|cuda` for generate and bench: the GPU forward pass (src/cuda)
// where the build has it (HARMONIA_WITH_CUDA), else a one-line error (exit 2).
#include <CLI/CLI.hpp>

#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <vector>

#include "engine/bench.h"
#include "engine/generate.h"
#include "kv/fourier.h"
#include "kv/spec.h"
#include "model/model.h"

namespace harmonia::cli {

struct DeviceFlags {
  std::string device = "cpu";     // cpu | cuda
  std::string gpu_dtype = "bf16"; // cuda: weights and KV cache on the device as bf16 | f32
  void attach(CLI::App* sub, const std::string& device_note = "");  // note: appended to --device's help
  bool cuda() const { return device == "cuda"; }
  // Throws Error(InvalidInput) for an unknown --device / --gpu-dtype, and
  // Error(Unsupported) for cuda in a build without CUDA or on a machine without a GPU.
  void check() const;
};

// The KV policy of `generate --device cuda`: nullopt for `full`; for `fourier` its options
// (kv::FourierOptions::parse, RoPE layout `rope` unless given) when the GPU has them. Throws
// Error(Unsupported) for another policy, fourier compat=reference, coeff_dtype=f16 or 16-bit
// statistics; Error(InvalidInput) from the option parser. Needs no GPU.
std::optional<kv::FourierOptions> gpu_kv_policy(const std::string& name, const kv::Options& opts, kv::RopeLayout rope);

// generate() on the GPU: KV cache of resolve_ctx's size, `full` or `fourier` (cuda::GpuForward::
// use_fourier, kv::FourierCache's semantics); others: Error(Unsupported) (gpu_kv_policy).
GenerateResult generate_cuda(const Model& m, const std::vector<int32_t>& prompt, const GenerateOptions& o,
                             const DeviceFlags& d, const std::function<void(const std::string&)>& on_text);

// bench on the GPU: prefill and decode tokens/s at each depth (synthetic depth: the KV
// cache is filled with noise, no prefill runs for it), device memory, as a table or JSON.
// random_weights: weights generated on the device (m carries shapes only, e.g. --preset).
// kv: full, or fourier (decode only, from a random FourierAttention state of `depth` tokens;
// options sink, window, coeffs, coeff_dtype f32|bf16). Others: Error(Unsupported).
void bench_cuda(const Model& m, bool random_weights, const BenchOptions& o, const std::vector<int64_t>& depths,
                const kv::PolicySpec& kv, const DeviceFlags& d, bool json);

}  // namespace harmonia::cli
