#pragma once
// FourierAttention compressed-dimension search (spec §7, our implementation):
// run calibration text through the model, record each layer's K and V over the
// middle segment, score every feature dim by the reconstruction error of its
// time series from N Fourier frequencies (with the §3.5 mean/max-deviation
// correction), and compress the lowest-error dims of each layer.
#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "kv/dims.h"
#include "model/model.h"

namespace harmonia {

struct CalibrateOptions {
  int64_t ctx = 0;              // tokens per calibration prompt (0 = the model's context)
  int sink = 4;                 // L_init: skipped at the start of each prompt
  int window = 1024;            // L_local: skipped at the end (clamped so the middle keeps >= 1/2 of the prompt)
  int coeffs = 1024;            // M = 2N real coefficients (clamped to the middle length)
  std::string schema = "inverted-pyramid";  // inverted-pyramid | uniform
  double ratio = 0.76;          // uniform: compressed fraction of every layer's K and V dims
  std::string rope = "post";    // post: K as cached (after RoPE); pre: K before RoPE (the authors' search)
  int max_prompts = 16;         // calibration prompts taken from the text (consecutive ctx-token pieces)
  int threads = 0;
};

struct CalibrateResult {
  kv::FourierDims dims;
  std::vector<std::vector<double>> k_mse, v_mse;  // [n_layers][kv_dim] mean over prompts
  int prompts = 0;
  int64_t middle_tokens = 0;  // per prompt
  int64_t period = 0;         // T used (= middle length, as the authors' search)
  int frequencies = 0;        // N
};

// Per-layer compressed fractions (K, V) for `schema` over n_layers (the authors'
// 28-layer table scaled: first ceil(L/8) layers 0.90/0.95, last ceil(L/4)
// 0.50/0.70, else 0.80/0.80), or `ratio` for both under "uniform".
std::pair<double, double> calibration_ratio(const std::string& schema, double ratio, int layer, int n_layers);

// Checks the options (rope, ratio/schema, sink/window >= 0, coeffs even >= 2,
// prompts >= 1, ctx >= 0) for a model of n_layers; throws Error(InvalidInput)
// naming the flag. calibrate_dims calls it; the CLI calls it before loading.
void validate(const CalibrateOptions& o, int n_layers);

// tokens: the calibration text's ids. progress(done, total) is called as prompts finish.
CalibrateResult calibrate_dims(const Model& m, const std::vector<int32_t>& tokens, const CalibrateOptions& o,
                               const std::function<void(int, int)>& progress = nullptr);

}  // namespace harmonia
