#include "eval/fidelity.h"

#include <algorithm>
#include <cmath>

#include "common/env.h"
#include "common/error.h"
#include "model/forward.h"

namespace harmonia::eval {

namespace {

void log_softmax(const float* x, int n, std::vector<double>& out) {
  out.resize(n);
  double mx = -INFINITY;
  for (int i = 0; i < n; ++i) mx = std::max(mx, static_cast<double>(x[i]));
  double s = 0;
  for (int i = 0; i < n; ++i) s += std::exp(x[i] - mx);
  const double lse = mx + std::log(s);
  for (int i = 0; i < n; ++i) out[i] = x[i] - lse;
}

}  // namespace

std::vector<float> teacher_forced_logits(const Model& m, const std::vector<int32_t>& toks, int64_t prompt,
                                         const kv::PolicySpec& spec, int64_t ctx, size_t* kv_bytes) {
  const int64_t n = static_cast<int64_t>(toks.size());
  if (prompt < 1 || prompt >= n)
    fail(ErrorKind::InvalidInput, "teacher forcing: prompt of {} tokens must leave at least 1 of {} to predict", prompt, n);
  Forward fw(m);
  auto kv = kv::make_policy(spec.name, kv_shape(m.config, ctx), spec.options);
  const int64_t n_cont = n - prompt;
  kv->plan(prompt, n_cont);
  const int V = m.config.vocab_size;
  std::vector<float> out(static_cast<size_t>(n_cont) * V);
  // Logits after the prompt predict toks[prompt]; then decode toks[prompt..n-2].
  for (int64_t i = 0; i < prompt; i += 512) {
    const int64_t c = std::min<int64_t>(512, prompt - i);
    fw.run(toks.data() + i, c, *kv, out.data());
  }
  for (int64_t j = 1; j < n_cont; ++j) fw.run(&toks[prompt + j - 1], 1, *kv, out.data() + j * V);
  *kv_bytes = kv->total_bytes();
  return out;
}

ContinuationStats continuation_stats(const float* logits, const float* ref, const int32_t* targets, int64_t n, int V) {
  ContinuationStats st;
  std::vector<double> lp;
  for (int64_t j = 0; j < n; ++j) {
    const float* x = logits + j * V;
    log_softmax(x, V, lp);
    st.nll -= lp[targets[j]];
    if (ref) {
      const float* r = ref + j * V;
      const double kl = kl_from_logits(r, x, V);
      st.kl_sum += kl;
      st.kl_max = std::max(st.kl_max, kl);
      st.agree += (std::max_element(r, r + V) - r) == (std::max_element(x, x + V) - x);
    } else {
      ++st.agree;
    }
  }
  st.positions = n;
  return st;
}

double kl_from_logits(const float* p, const float* q, int n) {
  std::vector<double> lp, lq;
  log_softmax(p, n, lp);
  log_softmax(q, n, lq);
  double kl = 0;
  for (int i = 0; i < n; ++i) kl += std::exp(lp[i]) * (lp[i] - lq[i]);
  return std::max(0.0, kl);
}

FidelityReport run_fidelity(const Model& m, const std::vector<int32_t>& tokens,
                            const std::vector<kv::PolicySpec>& policies, const FidelityOptions& o) {
  set_threads(o.threads);
  const int64_t ctx = o.ctx > 0 ? o.ctx : m.config.ctx_len;
  std::vector<int32_t> toks(tokens.begin(), tokens.begin() + std::min<int64_t>(ctx, tokens.size()));
  const int64_t n = static_cast<int64_t>(toks.size());
  int64_t prompt = o.prompt_tokens > 0 ? o.prompt_tokens : static_cast<int64_t>(std::llround(n * o.prompt_frac));
  if (n < 3 || prompt < 1 || prompt >= n - 1)
    fail(ErrorKind::InvalidInput,
         "fidelity: text has {} tokens (after cutting to the context {}); the prompt of {} must leave at least 2 to decode",
         n, ctx, prompt);
  FidelityReport rep;
  rep.prompt_tokens = prompt;
  rep.continuation_tokens = n - prompt;
  const int V = m.config.vocab_size;

  std::vector<kv::PolicySpec> all;
  all.push_back({"full", {}});
  for (const auto& p : policies)
    if (!(p.name == "full" && p.options.empty())) all.push_back(p);

  std::vector<float> ref;
  double ref_ppl = 0;
  size_t ref_bytes = 0;
  for (size_t k = 0; k < all.size(); ++k) {
    FidelityRow row;
    row.policy = all[k].label();
    const double t0 = now_ms();
    std::vector<float> lg = teacher_forced_logits(m, toks, prompt, all[k], ctx, &row.kv_bytes);
    row.ms = now_ms() - t0;
    const int64_t n_cont = n - prompt;
    const ContinuationStats st =
        continuation_stats(lg.data(), k > 0 ? ref.data() : nullptr, toks.data() + prompt, n_cont, V);
    row.positions = n_cont;
    row.kl_mean = st.kl_sum / n_cont;
    row.kl_max = st.kl_max;
    row.top1_agreement = static_cast<double>(st.agree) / n_cont;
    row.ppl = std::exp(st.nll / n_cont);
    if (k == 0) {
      ref = std::move(lg);
      ref_ppl = row.ppl;
      ref_bytes = row.kv_bytes;
    }
    row.ppl_delta = row.ppl - ref_ppl;
    row.kv_ratio = ref_bytes ? static_cast<double>(row.kv_bytes) / ref_bytes : 0;
    rep.rows.push_back(row);
  }
  return rep;
}

}  // namespace harmonia::eval
