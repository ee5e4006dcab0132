#pragma once
// KV fidelity: the same text through `full` and each listed policy, teacher
// forced, compared position by position on the continuation (the tokens
// decoded after the prompt, where compression acts).
//
// Per policy: KV bytes held at the end, mean and max KL(full || policy) of the
// next-token distributions, top-1 agreement with full, perplexity of the true
// next tokens and its delta against full.
#include <cstdint>
#include <string>
#include <vector>

#include "kv/spec.h"
#include "model/model.h"

namespace harmonia::eval {

struct FidelityOptions {
  int64_t ctx = 0;          // tokens of the text to use (0 = the model's context); the text is cut to it
  double prompt_frac = 0.5; // share of those tokens prefilled as the prompt; the rest is teacher-forced decode
  int64_t prompt_tokens = 0;// explicit prompt length (overrides prompt_frac when > 0)
  int threads = 0;
};

struct FidelityRow {
  std::string policy;        // label, e.g. "fourier(coeffs=32,sink=4,window=32)"
  size_t kv_bytes = 0;       // held after the last token
  double kv_ratio = 0;       // kv_bytes / full's
  double kl_mean = 0, kl_max = 0;  // nats, over continuation positions
  double top1_agreement = 0; // fraction of positions whose argmax equals full's
  double ppl = 0;            // perplexity of the true next tokens over the continuation
  double ppl_delta = 0;      // ppl - full's ppl
  int64_t positions = 0;     // continuation positions compared
  double ms = 0;             // wall time of this policy's run
};

struct FidelityReport {
  int64_t prompt_tokens = 0, continuation_tokens = 0;
  std::vector<FidelityRow> rows;  // rows[0] is full
};

// tokens: the whole text's ids (BOS included if wanted). Throws Error(InvalidInput)
// when fewer than 3 tokens remain or the prompt share leaves no continuation.
FidelityReport run_fidelity(const Model& m, const std::vector<int32_t>& tokens,
                            const std::vector<kv::PolicySpec>& policies, const FidelityOptions& opts);

// KL(p || q) for two logit vectors (softmax taken inside), in nats.
double kl_from_logits(const float* p_logits, const float* q_logits, int n);

// Logits [n - prompt, vocab] of `toks` (n tokens) under one policy, teacher
// forced: toks[0, prompt) is prefilled as one request (plan(prompt, n - prompt),
// 512-token chunks), then each true next token is decoded. Row j predicts
// toks[prompt + j]. kv_bytes: the policy's bytes after the last token.
// Throws Error(InvalidInput) when prompt is not in [1, n).
std::vector<float> teacher_forced_logits(const Model& m, const std::vector<int32_t>& toks, int64_t prompt,
                                         const kv::PolicySpec& spec, int64_t ctx, size_t* kv_bytes);

// Next-token statistics of logits [n, vocab] against the true next tokens
// targets[n]; with `ref` (full's logits, same shape) also KL(ref || logits) and
// argmax agreement. All in nats.
struct ContinuationStats {
  double nll = 0;                  // sum of -log p(target)
  double kl_sum = 0, kl_max = 0;   // 0 without ref
  int64_t agree = 0;               // positions whose argmax equals ref's (all of them without ref)
  int64_t positions = 0;
};
ContinuationStats continuation_stats(const float* logits, const float* ref, const int32_t* targets, int64_t n, int vocab);

}  // namespace harmonia::eval
