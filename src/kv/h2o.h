#pragma once
// `h2o`: Heavy-Hitter Oracle (Zhang et al., "H2O: Heavy-Hitter Oracle for
// Efficient Generative Inference of Large Language Models", arXiv 2306.14048,
// §3-4 and H2OKVCache_LayerWise in the authors' real-drop code).
//
// Each kv head keeps `recent` most recent tokens plus `heavy` heavy hitters:
// the tokens with the largest accumulated attention score, the sum of the
// softmax probabilities every query so far (prefill included) gave them. With
// GQA the group's query heads' probabilities are summed into their kv head's
// score. When a commit leaves more than heavy + recent tokens, the ones outside
// the recent window with the lowest accumulated scores are evicted (one per
// decode step; the prompt is cut back in one go when it completes, which is
// the top-`heavy` selection of the reference's prefill). Scores of evicted
// tokens are discarded; those of kept tokens keep accumulating. Ties evict the
// later token.
//
// The prompt is kept exact until complete (plan()), so chunked prefill attends
// exactly and the first generated token equals full's; prefill attention still
// accumulates scores.
//
// Budgets are absolute (heavy=, recent=) or fractions of the prompt length
// (heavy_ratio=, recent_ratio=, the reference's simulation mode; default 0.1
// each, the paper's 20% cache): floor(ratio * prompt), fixed when planned (or
// at the first commit without plan()).
// NOTE: scores are fp32 (the reference keeps them in the model's dtype).
// NOTE: truncate() keeps, in the retained tokens' scores, the attention mass
// that rolled-back queries gave them (undoing it would need those queries).
#include <memory>
#include <vector>

#include "kv/full.h"
#include "kv/policy.h"

namespace harmonia::kv {

struct H2OOptions {
  int64_t heavy = -1;          // heavy hitters kept per kv head; < 0: heavy_ratio * prompt
  int64_t recent = -1;         // most recent tokens kept; < 0: recent_ratio * prompt
  double heavy_ratio = 0.1;
  double recent_ratio = 0.1;
};

class H2OCache : public Policy {
 public:
  // Throws Error(InvalidInput) for an invalid shape or ratios outside [0, 1].
  H2OCache(const Shape& s, const H2OOptions& o);
  std::string name() const override { return "h2o"; }
  const Shape& shape() const override { return s_; }
  void plan(int64_t prompt_tokens, int64_t max_new_tokens) override;
  void append(int layer, int64_t n, const float* k, const float* v) override;
  void attend(int layer, int64_t n, const float* q, float* out) override;
  void commit(int64_t n) override;
  int64_t n_tokens() const override { return n_tokens_; }
  int64_t n_stored() const override { return store_.rows(0); }
  // Supported back to the length at which tokens were last evicted; below it
  // throws Error(Unsupported).
  void truncate(int64_t n) override;
  // False: a token is evicted at every step once over budget and cannot be restored.
  bool reserve_rollback(int64_t) override { return false; }
  // False: each commit evicts by the scores of the queries so far.
  bool exact_multi_token_decode() const override { return false; }
  void clear() override;
  // {"keys", "values"}: fp32 rows, n_layers * n_kv_heads * rows * head_dim * 4
  // each; "scores": one fp32 accumulated score per retained row.
  ByteLedger bytes() const override;
  ByteLedger bytes_at(int64_t n_tokens) const override;

  // Budgets {heavy, recent} for a prompt of n tokens.
  std::pair<int64_t, int64_t> budgets(int64_t prompt_tokens) const;
  const RowStore& store() const { return store_; }  // tests: the retained rows
  // Accumulated score of row r of kv head h in `layer`.
  float score(int layer, int h, int64_t r) const { return scores_[layer][h][r]; }

 private:
  Shape s_;
  H2OOptions o_;
  RowStore store_;
  PromptClock clock_;
  int64_t n_tokens_ = 0;
  int64_t evicted_at_ = 0;
  bool resolved_ = false;       // heavy_/recent_ fixed
  int64_t heavy_ = 0, recent_ = 0;
  std::vector<int64_t> pending_;
  std::vector<std::vector<std::vector<float>>> scores_;  // [n_layers][n_kv_heads][rows]
  std::vector<float> step_scores_;                       // scratch [n_kv_heads][rows]
  bool evict(int layer);
};

// Options: heavy / recent (tokens) or heavy_ratio / recent_ratio (of the prompt, default 0.1 each).
std::unique_ptr<Policy> make_h2o(const Shape& s, const Options& opts);

}  // namespace harmonia::kv
