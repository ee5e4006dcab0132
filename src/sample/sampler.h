#pragma once
// Token sampling: repetition/frequency/presence penalties, top-k, temperature,
// top-p (nucleus), min-p, and a seeded draw. One Sampler per sequence.
//
// Filter order (fixed, applied by sample() and probs() alike):
//   1. penalties      on the raw logits, over the last repeat_last_n accepted tokens
//   2. top-k          keep the k largest penalised logits
//   3. temperature    softmax((logit - max) / temperature) over the survivors
//   4. top-p          keep the smallest highest-probability prefix with mass >= top_p
//   5. min-p          keep tokens with p >= min_p * p_max
//   6. draw           renormalise the survivors and draw one with the PRNG
// NOTE: this is vLLM's order (temperature before top-p/min-p). llama.cpp's default
// chain applies temperature last, so its top-p/min-p see the temperature-1
// distribution; with temperature 1 the two agree.
// top-p's mass is measured on the distribution renormalised over the top-k
// survivors (as HF and llama.cpp do). temperature == 0 is greedy: argmax of the
// penalised logits (ties -> lowest id), and probs() is one-hot there.
// Cost per token for vocab V: O(V) (copy, penalties, selection, exp) plus a
// sort of the top-p nucleus only; no full sort of the vocabulary.
// Determinism: the same seed, options, logits and accept() history give the
// same tokens (with one build; the PRNG is std::mt19937_64 and the [0,1) draw
// uses its top 53 bits).
#include <cstdint>
#include <deque>
#include <random>
#include <span>
#include <unordered_map>
#include <vector>

namespace harmonia {

struct SamplingOptions {
  // seed value meaning "draw a seed from std::random_device" (uint64 of -1).
  static constexpr uint64_t kRandomSeed = UINT64_MAX;
  static constexpr uint64_t kDefaultSeed = 0xDEADBEEFCAFEF00DULL;

  float temperature = 0.8f;        // >= 0; 0 = greedy argmax
  int32_t top_k = 40;              // >= 0; 0 = off (whole vocabulary)
  float top_p = 0.95f;             // (0, 1]; 1 = off
  float min_p = 0.05f;             // [0, 1]; 0 = off; relative to the most likely token
  float repeat_penalty = 1.0f;     // > 0; 1 = off. llama.cpp/CTRL (arXiv 1909.05858):
                                   // penalised logit l -> l / penalty if l > 0, l * penalty if l <= 0
  int32_t repeat_last_n = 64;      // penalty window in accepted tokens; 0 = penalties off,
                                   // -1 = every accepted token
  float frequency_penalty = 0.0f;  // [-2, 2]; OpenAI: l -= count * frequency_penalty
  float presence_penalty = 0.0f;   // [-2, 2]; OpenAI: l -= (count > 0) * presence_penalty
  // PRNG seed for std::mt19937_64. Fixed by default so runs are reproducible;
  // kRandomSeed (-1) asks for a random one (Sampler::seed() reports it).
  uint64_t seed = kDefaultSeed;

  // Throws Error(InvalidInput) naming the first field out of range and its
  // value, e.g. "top_p must be in (0, 1], got 1.5".
  void validate() const;
};

// One entry of OpenAI's top_logprobs: natural-log probability of a token.
struct TokenLogprob {
  int32_t token = -1;
  float logprob = 0.0f;
};

class Sampler {
 public:
  // Validates opts (see SamplingOptions::validate) and vocab_size > 0.
  Sampler(const SamplingOptions& opts, int32_t vocab_size);

  // Draws the next token from logits[vocab_size] (raw model output for the last
  // position) after all filters. Does not record it: call accept() with the
  // token actually appended to the sequence. Consumes exactly one PRNG draw
  // unless temperature == 0 (greedy consumes none). Throws Error(Internal) when a logit
  // is NaN, and Error(InvalidInput) when every logit is -inf after penalties.
  int32_t sample(const float* logits);

  // The distribution sample() draws from, written to out[vocab_size] (zeros
  // for filtered-out tokens, sums to 1). Does not advance the PRNG. Draft and
  // target distributions for speculative sampling (arXiv 2211.17192) come from here.
  void probs(const float* logits, std::vector<float>& out);

  // Draws a token from an explicit distribution p[n] (non-negative weights,
  // normalised or not) with this sampler's PRNG: speculative sampling's
  // residual draw from norm(max(0, p_target - p_draft)). Throws
  // Error(InvalidInput) when the weights sum to 0 or contain a negative/NaN.
  int32_t sample_from(std::span<const float> p);
  // A uniform double in [0, 1) from this sampler's PRNG (acceptance tests).
  double uniform();

  // Records a token appended to the sequence (generated, or a prompt token when
  // the caller wants the prompt inside the penalty window, as llama.cpp does;
  // OpenAI counts generated tokens only). Throws InvalidInput when token is
  // outside [0, vocab_size).
  void accept(int32_t token);
  // Forgets the penalty history and restarts the PRNG from seed(): a reset
  // sampler repeats its draws exactly.
  void reset();

  // The n most likely tokens under log_softmax(logits) of the raw logits (no
  // penalties, no temperature, no filters: what the model said), sorted by
  // logprob descending, ties by lower id. n is clamped to vocab_size; n < 0
  // throws InvalidInput.
  std::vector<TokenLogprob> top_logprobs(const float* logits, int n) const;
  // log_softmax(logits)[token] of the raw logits.
  float logprob(const float* logits, int32_t token) const;

  const SamplingOptions& options() const { return opts_; }
  int32_t vocab_size() const { return vocab_size_; }
  uint64_t seed() const { return seed_; }  // the seed in use (resolved when kRandomSeed)

 private:
  struct Candidate {
    int32_t id;
    float logit;  // penalised logit
    float w;      // unnormalised probability exp((logit - max) / temperature)
  };
  // Runs filters 1-5 on logits; leaves the survivors in cand_ (w > 0) and
  // their total weight in cand_mass_.
  void filter(const float* logits);
  void apply_penalties(float* logits) const;

  SamplingOptions opts_;
  int32_t vocab_size_;
  uint64_t seed_;
  std::mt19937_64 rng_;

  std::deque<int32_t> window_;                  // last repeat_last_n accepted tokens
  std::unordered_map<int32_t, int32_t> counts_;  // token -> occurrences in window_

  std::vector<float> work_;       // [vocab_size] penalised logits (scratch)
  std::vector<Candidate> cand_;   // surviving candidates (scratch)
  double cand_mass_ = 0.0;
};

}  // namespace harmonia
