#pragma once
// Random-weight models of real models' shapes, for benchmarks and tests (speed
// does not depend on weight values) — `harmonia make-model` and `--preset`.
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "model/model.h"

namespace harmonia {

// Known presets: llama-110m (stories110M), llama-1b (Llama-3.2-1B), llama-3b
// (Llama-3.2-3B), llama-8b (Llama-3.1-8B), mistral-7b (Mistral-7B-v0.3),
// qwen2-0.5b (Qwen2-0.5B), qwen3-0.6b (Qwen3-0.6B), and tiny-llama / tiny-qwen2 /
// tiny-qwen3 / tiny-mistral (a few hundred K parameters, for tests).
std::vector<std::string> preset_names();
// Throws Error(InvalidInput) listing the known names.
ModelConfig preset_config(const std::string& name);

struct RandomModelOptions {
  DType dtype = DType::F32;  // 2-D weights; norms and biases stay f32
  uint64_t seed = 1;         // same seed -> same weights
};

// Builds the model in memory (format "random"): weights uniform in
// ±1/sqrt(fan_in) (norm weights near 1), so activations stay O(1) at any depth.
std::unique_ptr<Model> make_random_model(const ModelConfig& cfg, const RandomModelOptions& opts);

// Writes `m` as GGUF v3 with llama.cpp tensor names and `<arch>.*` metadata
// (llama3 RoPE scaling as `rope_freqs.weight`, as llama.cpp does).
void write_gguf(const Model& m, const std::string& path);

}  // namespace harmonia
