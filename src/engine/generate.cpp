#include "engine/generate.h"

#include <algorithm>

#include "common/env.h"
#include "common/error.h"

namespace harmonia {

int64_t resolve_ctx(const Model& m, int64_t requested, size_t prompt_tokens, int max_tokens) {
  if (requested < 0) fail(ErrorKind::InvalidInput, "--ctx must be positive, got {}", requested);
  const int64_t ctx = requested > 0 ? requested : m.config.ctx_len;
  if (static_cast<int64_t>(prompt_tokens) + (max_tokens > 0 ? 1 : 0) > ctx)
    fail(ErrorKind::InvalidInput, "prompt has {} tokens but the context is {}", prompt_tokens, ctx);
  return ctx;
}

namespace {
// The CPU runner: Forward over one kv::Policy.
class CpuRunner : public SequenceRunner {
 public:
  CpuRunner(Forward& fw, kv::Policy& kv) : fw_(fw), kv_(kv) {}
  void run(const int32_t* tokens, int64_t n, float* logits, int32_t*) override { fw_.run(tokens, n, kv_, logits); }
  int64_t n_tokens() const override { return kv_.n_tokens(); }
  size_t kv_bytes() const override { return kv_.total_bytes(); }

 private:
  Forward& fw_;
  kv::Policy& kv_;
};

// Greedy argmax of the raw logits: temperature 0 and no penalty in effect.
bool plain_greedy(const SamplingOptions& s) {
  return s.temperature == 0.0f && (s.repeat_last_n == 0 || (s.repeat_penalty == 1.0f && s.frequency_penalty == 0.0f &&
                                                             s.presence_penalty == 0.0f));
}

// Throws Error(InvalidInput) for an empty prompt, a negative max_tokens or bad sampling options
// (before anything is allocated).
void validate_request(const std::vector<int32_t>& prompt, const GenerateOptions& opts) {
  if (prompt.empty()) fail(ErrorKind::InvalidInput, "empty prompt: give at least one token (e.g. BOS)");
  if (opts.max_tokens < 0) fail(ErrorKind::InvalidInput, "max_tokens must be >= 0, got {}", opts.max_tokens);
  opts.sampling.validate();
}
}  // namespace

GenerateResult generate(Forward& fw, const std::vector<int32_t>& prompt, const GenerateOptions& opts,
                        const std::function<void(const std::string&)>& on_text) {
  const Model& m = fw.model();
  validate_request(prompt, opts);
  const int64_t ctx = resolve_ctx(m, opts.ctx, prompt.size(), opts.max_tokens);
  auto kv = kv::make_policy(opts.kv_policy, kv_shape(m.config, ctx), opts.kv_options);
  kv->plan(static_cast<int64_t>(prompt.size()), opts.max_tokens);
  CpuRunner seq(fw, *kv);
  return generate(seq, m, ctx, prompt, opts, on_text);
}

GenerateResult generate(SequenceRunner& seq, const Model& m, int64_t ctx, const std::vector<int32_t>& prompt,
                        const GenerateOptions& opts, const std::function<void(const std::string&)>& on_text) {
  validate_request(prompt, opts);
  GenerateResult res;
  res.prompt_tokens = prompt;
  res.ctx = ctx;
  Sampler sampler(opts.sampling, m.config.vocab_size);
  for (int32_t t : prompt) sampler.accept(t);
  std::vector<int32_t> stop_tokens;
  if (!opts.ignore_eos && m.tokenizer) stop_tokens = m.tokenizer->eog_ids();
  StopChecker stop(opts.stop, stop_tokens, opts.max_tokens > 0 ? opts.max_tokens : 1);
  std::unique_ptr<StreamDecoder> dec;
  if (m.tokenizer) {
    dec = std::make_unique<StreamDecoder>(*m.tokenizer);
    dec->continue_after(prompt.back());  // the SPM leading space is dropped only right after BOS
  }

  // Greedy on the device: only the id comes back (the sampler would pick the same one).
  const bool on_device = seq.device_argmax() && plain_greedy(opts.sampling);
  std::vector<float> logits(m.config.vocab_size);
  int32_t next = 0;
  auto forward = [&](const int32_t* t, int64_t n) {
    seq.run(t, n, on_device ? nullptr : logits.data(), on_device ? &next : nullptr);
  };
  const double t0 = now_ms();
  const int64_t chunk = std::max(1, opts.prefill_chunk);
  for (size_t i = 0; i < prompt.size(); i += chunk)
    forward(prompt.data() + i, std::min<int64_t>(chunk, static_cast<int64_t>(prompt.size() - i)));
  res.prefill_ms = now_ms() - t0;
  if (opts.max_tokens == 0) {
    res.stop_reason = StopReason::MaxTokens;
    res.kv_bytes = seq.kv_bytes();
    return res;
  }

  const double t1 = now_ms();
  while (true) {
    const int32_t tok = on_device ? next : sampler.sample(logits.data());
    sampler.accept(tok);
    const std::string piece = dec ? dec->push(tok) : std::string();
    StopStep step = stop.push(tok, piece);
    if (step.reason != StopReason::StopToken) res.tokens.push_back(tok);
    res.text += step.text;
    if (on_text && !step.text.empty()) on_text(step.text);
    if (step.stop()) {
      res.stop_reason = step.reason;
      // A character split across the last tokens is completed or replaced (U+FFFD).
      if (step.reason == StopReason::MaxTokens && dec) {
        const std::string rest = dec->flush();
        res.text += rest;
        if (on_text && !rest.empty()) on_text(rest);
      }
      break;
    }
    if (seq.n_tokens() >= res.ctx) {  // context full: end as if by length
      std::string rest = stop.flush() + (dec ? dec->flush() : "");
      res.text += rest;
      if (on_text && !rest.empty()) on_text(rest);
      res.stop_reason = StopReason::MaxTokens;
      break;
    }
    forward(&tok, 1);
  }
  res.decode_ms = now_ms() - t1;
  res.kv_bytes = seq.kv_bytes();
  return res;
}

}  // namespace harmonia
