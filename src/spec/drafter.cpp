#include "spec/drafter.h"

#include <algorithm>

#include "common/error.h"

namespace harmonia::spec {

void SpecOptions::validate() const {
  if (drafter != "none" && drafter != "draft" && drafter != "ngram" && drafter != "layerskip")
    fail(ErrorKind::InvalidInput, "speculative drafter '{}' is unknown (none, draft, ngram, layerskip)", drafter);
  if (n < 1 || n > 16) fail(ErrorKind::InvalidInput, "draft length n must be in [1, 16], got {}", n);
  if (ngram_min < 1 || ngram_max < ngram_min || ngram_max > 16)
    fail(ErrorKind::InvalidInput, "ngram sizes must satisfy 1 <= min <= max <= 16, got {}..{}", ngram_min, ngram_max);
  if (layers < 0) fail(ErrorKind::InvalidInput, "layerskip layers must be >= 0, got {}", layers);
}

void check_same_vocab(const Model& target, const Model& draft) {
  const int vt = target.config.vocab_size, vd = draft.config.vocab_size;
  if (vt != vd)
    fail(ErrorKind::InvalidInput, "draft model {} has vocabulary size {} but the target {} has {}", draft.path, vd,
         target.path, vt);
  if (target.tokenizer && draft.tokenizer) {
    // Compare what each token stands for (file formats spell control tokens differently).
    for (int32_t id = 0; id < vt; ++id) {
      if (target.tokenizer->is_special(id) || draft.tokenizer->is_special(id)) continue;
      if (target.tokenizer->token_bytes(id) != draft.tokenizer->token_bytes(id))
        fail(ErrorKind::InvalidInput, "draft model {} token {} is '{}' but the target's is '{}': vocabularies differ",
             draft.path, id, draft.tokenizer->piece(id), target.tokenizer->piece(id));
    }
  }
}

namespace {

// Runs a model (or its first k layers) over the context with its own full cache.
class ModelDrafter : public Drafter {
 public:
  ModelDrafter(const Model& m, int layers, int64_t ctx, std::string name)
      : m_(m), fw_(m), name_(std::move(name)) {
    if (layers > 0) fw_.set_layer_limit(layers);
    kv::Shape s = kv_shape(m.config, ctx + 32);
    if (layers > 0) s.n_layers = std::min(layers, m.config.n_layers);
    kv_ = kv::make_policy("full", s);
  }
  std::string name() const override { return name_; }

  std::vector<int32_t> propose(const std::vector<int32_t>& ctx, int n, Sampler* sampler,
                               std::vector<std::vector<float>>& q) override {
    const int V = m_.config.vocab_size;
    // Catch up: feed the context tokens the draft cache has not seen.
    const int64_t have = kv_->n_tokens();
    const int64_t need = static_cast<int64_t>(ctx.size());
    std::vector<float> logits(V);
    if (need > have) {
      for (int64_t i = have; i < need; i += 256) {
        const int64_t c = std::min<int64_t>(256, need - i);
        fw_.run(ctx.data() + i, c, *kv_, logits.data());
      }
    } else {
      // Context already fully in cache (cannot happen after accepted()); recompute last.
      kv_->truncate(need - 1);
      fw_.run(&ctx.back(), 1, *kv_, logits.data());
    }
    std::vector<int32_t> out;
    q.clear();
    for (int i = 0; i < n; ++i) {
      int32_t t;
      if (sampler && sampler->options().temperature > 0) {
        std::vector<float> p;
        sampler->probs(logits.data(), p);
        t = sampler->sample_from(p);
        q.push_back(std::move(p));
      } else {
        t = static_cast<int32_t>(std::max_element(logits.begin(), logits.end()) - logits.begin());
      }
      out.push_back(t);
      if (i + 1 < n) {
        if (kv_->n_tokens() + 1 > kv_->shape().max_tokens) break;
        fw_.run(&t, 1, *kv_, logits.data());
      }
    }
    return out;
  }

  void accepted(const std::vector<int32_t>& ctx_after) override {
    // The cache holds ctx + drafted tokens (minus the last drafted one); keep
    // the prefix that agrees with the accepted context.
    const int64_t keep = std::min<int64_t>(kv_->n_tokens(), static_cast<int64_t>(ctx_after.size()) - 1);
    if (keep < kv_->n_tokens()) kv_->truncate(keep);
  }

 private:
  const Model& m_;
  Forward fw_;
  std::unique_ptr<kv::Policy> kv_;
  std::string name_;
};

// Prompt lookup decoding: the continuation of the most recent earlier
// occurrence of the context's last k tokens, k from max down to min.
class NgramDrafter : public Drafter {
 public:
  NgramDrafter(int kmin, int kmax) : kmin_(kmin), kmax_(kmax) {}
  std::string name() const override { return "ngram"; }
  std::vector<int32_t> propose(const std::vector<int32_t>& ctx, int n, Sampler*,
                               std::vector<std::vector<float>>& q) override {
    q.clear();
    const int64_t L = static_cast<int64_t>(ctx.size());
    for (int k = kmax_; k >= kmin_; --k) {
      if (L <= k) continue;
      for (int64_t s = L - k - 1; s >= 0; --s) {
        if (!std::equal(ctx.begin() + s, ctx.begin() + s + k, ctx.end() - k)) continue;
        std::vector<int32_t> out;
        for (int64_t j = s + k; j < L && static_cast<int>(out.size()) < n; ++j) out.push_back(ctx[j]);
        if (!out.empty()) return out;
      }
    }
    return {};
  }
  void accepted(const std::vector<int32_t>&) override {}

 private:
  int kmin_, kmax_;
};

}  // namespace

std::unique_ptr<Drafter> make_drafter(const SpecOptions& o, const Model& target, const Model* draft, int64_t ctx) {
  o.validate();
  if (o.drafter == "none") return nullptr;
  if (o.drafter == "ngram") return std::make_unique<NgramDrafter>(o.ngram_min, o.ngram_max);
  if (o.drafter == "layerskip") {
    const int k = o.layers > 0 ? std::min(o.layers, target.config.n_layers) : std::max(1, target.config.n_layers / 2);
    return std::make_unique<ModelDrafter>(target, k, ctx, "layerskip");
  }
  if (!draft) fail(ErrorKind::InvalidInput, "speculative drafter 'draft' needs a draft model (--draft MODEL)");
  check_same_vocab(target, *draft);
  return std::make_unique<ModelDrafter>(*draft, 0, ctx, "draft");
}

bool verify_greedy_step(const std::vector<int32_t>& draft, size_t i, const float* row, int V, Verdict& v) {
  const int32_t best = static_cast<int32_t>(std::max_element(row, row + V) - row);
  v.tokens.push_back(best);  // the accepted draft, or the correction at the first mismatch, or the bonus
  if (i < draft.size() && best == draft[i]) {
    ++v.accepted;
    return true;
  }
  return false;
}

Verdict verify_greedy(const std::vector<int32_t>& draft, const float* p, int V) {
  Verdict v;
  for (size_t i = 0; i <= draft.size() && verify_greedy_step(draft, i, p + i * V, V, v); ++i) {
  }
  return v;
}

bool verify_stochastic_step(const std::vector<int32_t>& draft, size_t i, const std::vector<float>& p,
                            const std::vector<std::vector<float>>& q, Sampler& sampler, Verdict& v) {
  if (i == draft.size()) {  // all accepted: the bonus token
    v.tokens.push_back(sampler.sample_from(p));
    return false;
  }
  const int32_t d = draft[i];
  const float pd = p[d];
  const float qd = q.empty() ? 1.0f : q[i][d];
  if (qd > 0 && sampler.uniform() < std::min(1.0, static_cast<double>(pd) / qd)) {
    v.tokens.push_back(d);
    ++v.accepted;
    return true;
  }
  // Residual distribution norm(max(0, p - q)).
  std::vector<float> r(p.size());
  double mass = 0;
  for (size_t t = 0; t < r.size(); ++t) {
    const float qt = q.empty() ? (static_cast<int32_t>(t) == d ? 1.0f : 0.0f) : q[i][t];
    r[t] = std::max(0.0f, p[t] - qt);
    mass += r[t];
  }
  // p == q exactly leaves no residual mass; then p itself is the right law.
  v.tokens.push_back(mass > 0 ? sampler.sample_from(r) : sampler.sample_from(p));
  return false;
}

Verdict verify_stochastic(const std::vector<int32_t>& draft, const std::vector<std::vector<float>>& p,
                          const std::vector<std::vector<float>>& q, Sampler& sampler) {
  Verdict v;
  for (size_t i = 0; i <= draft.size() && verify_stochastic_step(draft, i, p[i], q, sampler, v); ++i) {
  }
  return v;
}

}  // namespace harmonia::spec
