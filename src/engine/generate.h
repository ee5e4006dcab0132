#pragma once
// Single-sequence generation: prefill the prompt, then decode token by token
// with a sampler and stop rules. The CLI's `generate` and the evaluation
// harness use it; the serving engine (continuous batching) builds on the same
// Forward and kv::Policy.
#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "kv/policy.h"
#include "model/forward.h"
#include "sample/sampler.h"
#include "sample/stop.h"

namespace harmonia {

struct GenerateOptions {
  int max_tokens = 128;              // new tokens at most (>= 0)
  SamplingOptions sampling;          // see sample/sampler.h for defaults
  std::vector<std::string> stop;     // stop strings (not emitted)
  bool ignore_eos = false;           // keep going past EOS/EOT tokens
  int64_t ctx = 0;                   // context size in tokens; 0 = the model's trained length
  std::string kv_policy = "full";    // kv::make_policy name
  kv::Options kv_options;            // policy options (key=value)
  int prefill_chunk = 512;           // prompt tokens per forward call (bounds scratch memory)
};

struct GenerateResult {
  std::vector<int32_t> prompt_tokens;
  std::vector<int32_t> tokens;       // generated ids (stop token excluded)
  std::string text;                  // generated text (stop string excluded)
  StopReason stop_reason = StopReason::None;
  double prefill_ms = 0, decode_ms = 0;
  size_t kv_bytes = 0;               // KV cache bytes held at the end
  int64_t ctx = 0;                   // context size used
  double prefill_tok_s() const { return prefill_ms > 0 ? prompt_tokens.size() * 1000.0 / prefill_ms : 0; }
  // Decode rate over the tokens produced by decode steps (the first token comes from prefill).
  double decode_tok_s() const {
    return decode_ms > 0 && tokens.size() > 1 ? (tokens.size() - 1) * 1000.0 / decode_ms : 0;
  }
};

// One sequence's forward pass and KV cache, as generate() drives it: the CPU's
// Forward + kv::Policy, or the GPU forward (--device cuda).
class SequenceRunner {
 public:
  virtual ~SequenceRunner() = default;
  // Runs tokens[n] at the next n positions. logits: host [vocab] of the last
  // token, or null; argmax: its greedy id, or null (only called when
  // device_argmax()).
  virtual void run(const int32_t* tokens, int64_t n, float* logits, int32_t* argmax) = 0;
  // True when run() can return the greedy id without the logits (computed where
  // they are, e.g. on the GPU): plain greedy sampling then skips the logits copy.
  virtual bool device_argmax() const { return false; }
  virtual int64_t n_tokens() const = 0;
  virtual size_t kv_bytes() const = 0;
};

// Context size for a request: opts.ctx or the model's. Throws Error(InvalidInput)
// "prompt has N tokens but the context is C" when the prompt (plus at least one
// new token) does not fit.
int64_t resolve_ctx(const Model& m, int64_t requested, size_t prompt_tokens, int max_tokens);

// Runs generation. on_text receives text as it becomes final (may be null).
// Empty prompt -> Error(InvalidInput). Generation that reaches the context end
// stops with reason MaxTokens.
GenerateResult generate(Forward& fw, const std::vector<int32_t>& prompt, const GenerateOptions& opts,
                        const std::function<void(const std::string&)>& on_text = nullptr);
// The same loop over any runner, whose context (KV capacity) is res_ctx tokens
// (resolve_ctx's value). opts.kv_policy / kv_options / ctx are the runner's business.
GenerateResult generate(SequenceRunner& seq, const Model& m, int64_t ctx, const std::vector<int32_t>& prompt,
                        const GenerateOptions& opts, const std::function<void(const std::string&)>& on_text = nullptr);

}  // namespace harmonia
