#pragma once
// Speculative decoding (Leviathan et al. 2023, arXiv 2211.17192; Chen et al.
// 2023, arXiv 2302.01318): a cheap drafter proposes tokens, the target model
// verifies them all in one forward pass.
//
// Drafters, behind one interface, chosen by name:
//  - "draft":     a smaller model sharing the target's vocabulary (checked at load)
//  - "ngram":     prompt lookup: the continuation of the latest earlier match of
//                 the context's last n-gram (no second model)
//  - "layerskip": self-speculation: the target's first k layers, then its output head
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "kv/policy.h"
#include "model/forward.h"
#include "sample/sampler.h"

namespace harmonia::spec {

struct SpecOptions {
  std::string drafter = "none";  // none | draft | ngram | layerskip
  int n = 4;                     // draft tokens per step (1..16)
  bool adaptive = false;         // stop drafting while it does not pay (see Drafter use in engine)
  int ngram_max = 3;             // ngram: longest suffix to match (tries max..ngram_min)
  int ngram_min = 1;
  int layers = 0;                // layerskip: draft depth k (0 = n_layers / 2)
  // Throws Error(InvalidInput) naming the field.
  void validate() const;
};

// One sequence's drafter state.
class Drafter {
 public:
  virtual ~Drafter() = default;
  virtual std::string name() const = 0;
  // Up to n proposed tokens following `context` (prompt + generated so far; its
  // last token has not been through the target yet). q[i] receives the draft
  // distribution of token i ([vocab] probabilities) when the drafter has one,
  // else stays empty (deterministic proposal = one-hot).
  virtual std::vector<int32_t> propose(const std::vector<int32_t>& context, int n, Sampler* sampler,
                                       std::vector<std::vector<float>>& q) = 0;
  // The target accepted `n_accepted` of the last proposal; the drafter's own
  // state (its KV cache) rolls back to context + accepted tokens.
  virtual void accepted(const std::vector<int32_t>& context_after) = 0;
};

// Draft model: must share the target's vocabulary (size and token pieces).
// Throws Error(InvalidInput) naming both models when it does not.
void check_same_vocab(const Model& target, const Model& draft);

std::unique_ptr<Drafter> make_drafter(const SpecOptions& o, const Model& target, const Model* draft,
                                      int64_t ctx);

// Outcome of verifying one proposal.
struct Verdict {
  int accepted = 0;             // drafted tokens accepted
  std::vector<int32_t> tokens;  // accepted drafts + one token from the target (correction or bonus)
};

// Greedy verification: accept while the target's argmax equals the draft.
// p_logits: [n+1, vocab] target logits at [last, d1..dn].
Verdict verify_greedy(const std::vector<int32_t>& draft, const float* p_logits, int vocab);

// Speculative sampling (Leviathan et al. Alg. 1): accept d_i with probability
// min(1, p(d_i)/q(d_i)); at the first rejection sample from norm(max(0, p - q));
// if all are accepted, sample a bonus token from p_{n+1}. The output is
// distributed exactly as sampling from the target alone. p is the target's
// filtered distribution (Sampler::probs) per position; q as from propose()
// (empty = one-hot on the drafted token).
Verdict verify_stochastic(const std::vector<int32_t>& draft, const std::vector<std::vector<float>>& p,
                          const std::vector<std::vector<float>>& q, Sampler& sampler);

// One position of each verification, for a target that computes position i's logits only after
// draft[i - 1] was accepted (the engine's one-token verify for KV policies whose multi-token steps
// are not exact or cannot roll back). Position i < n judges draft[i] against the target's row i;
// i == n draws the bonus token. Appends to v.tokens; returns true when draft[i] was accepted (go on
// with row i + 1), false when v is complete. verify_greedy / verify_stochastic are these in a loop,
// so both ways draw the same random numbers in the same order.
bool verify_greedy_step(const std::vector<int32_t>& draft, size_t i, const float* row, int vocab, Verdict& v);
bool verify_stochastic_step(const std::vector<int32_t>& draft, size_t i, const std::vector<float>& p_i,
                            const std::vector<std::vector<float>>& q, Sampler& sampler, Verdict& v);

}  // namespace harmonia::spec
