#include "kv/h2o.h"

#include <algorithm>
#include <cmath>
#include <numeric>

#include "common/error.h"
#include "kv/options.h"

namespace harmonia::kv {

H2OCache::H2OCache(const Shape& s, const H2OOptions& o)
    : s_(s), o_(o), store_(s), pending_(s.n_layers, 0),
      scores_(s.n_layers, std::vector<std::vector<float>>(s.n_kv_heads)) {
  check_shape("h2o", s);
  if (!(o.heavy_ratio >= 0 && o.heavy_ratio <= 1 && o.recent_ratio >= 0 && o.recent_ratio <= 1))
    fail(ErrorKind::InvalidInput, "kv policy 'h2o': heavy_ratio={} and recent_ratio={} must be in [0, 1]",
         o.heavy_ratio, o.recent_ratio);
}

std::pair<int64_t, int64_t> H2OCache::budgets(int64_t prompt_tokens) const {
  const double p = static_cast<double>(prompt_tokens);
  return {o_.heavy >= 0 ? o_.heavy : static_cast<int64_t>(std::floor(o_.heavy_ratio * p)),
          o_.recent >= 0 ? o_.recent : static_cast<int64_t>(std::floor(o_.recent_ratio * p))};
}

void H2OCache::plan(int64_t prompt_tokens, int64_t) {
  clock_.plan(n_tokens_, prompt_tokens);
  std::tie(heavy_, recent_) = budgets(prompt_tokens);
  resolved_ = true;
}

void H2OCache::append(int layer, int64_t n, const float* k, const float* v) {
  if (layer < 0 || layer >= s_.n_layers) fail(ErrorKind::Internal, "kv append: layer {} out of range", layer);
  if (n_tokens_ + pending_[layer] + n > s_.max_tokens)
    fail(ErrorKind::InvalidInput, "context full: {} tokens seen + {} new exceeds the context size {}",
         n_tokens_ + pending_[layer], n, s_.max_tokens);
  store_.append(layer, n, k, v);
  pending_[layer] += n;
  for (auto& sc : scores_[layer]) sc.resize(store_.rows(layer), 0.0f);
}

void H2OCache::attend(int layer, int64_t n, const float* q, float* out) {
  const int64_t rows = store_.rows(layer);
  step_scores_.resize(static_cast<size_t>(s_.n_kv_heads) * rows);
  store_.attend(layer, n, q, out, step_scores_.data());
  for (int h = 0; h < s_.n_kv_heads; ++h) {
    float* sc = scores_[layer][h].data();
    const float* add = step_scores_.data() + static_cast<size_t>(h) * rows;
    for (int64_t t = 0; t < rows; ++t) sc[t] += add[t];
  }
}

bool H2OCache::evict(int layer) {
  const int64_t rows = store_.rows(layer);
  if (rows <= heavy_ + recent_) return false;
  const int64_t cand = rows - recent_;  // rows [0, cand) are outside the recent window
  std::vector<std::vector<int64_t>> keep(s_.n_kv_heads);
  for (int h = 0; h < s_.n_kv_heads; ++h) {
    const auto& sc = scores_[layer][h];
    // Larger score first; ties: earlier first (so the later one is evicted).
    auto before = [&](int64_t a, int64_t b) { return sc[a] > sc[b] || (sc[a] == sc[b] && a < b); };
    std::vector<int64_t>& k = keep[h];
    if (cand == heavy_ + 1) {  // the decode step's single eviction
      int64_t worst = 0;
      for (int64_t t = 1; t < cand; ++t)
        if (before(worst, t)) worst = t;
      for (int64_t t = 0; t < rows; ++t)
        if (t != worst) k.push_back(t);
    } else {
      k.resize(cand);
      std::iota(k.begin(), k.end(), 0);
      std::nth_element(k.begin(), k.begin() + heavy_, k.end(), before);
      k.resize(heavy_);
      std::sort(k.begin(), k.end());
      for (int64_t t = cand; t < rows; ++t) k.push_back(t);
    }
  }
  store_.keep(layer, keep);
  for (int h = 0; h < s_.n_kv_heads; ++h) {
    auto& sc = scores_[layer][h];
    for (size_t j = 0; j < keep[h].size(); ++j) sc[j] = sc[keep[h][j]];
    sc.resize(keep[h].size());
  }
  return true;
}

void H2OCache::commit(int64_t n) {
  for (int l = 0; l < s_.n_layers; ++l)
    if (pending_[l] != n)
      fail(ErrorKind::Internal, "kv ledger: layer {} got {} tokens in a step of {}", l, pending_[l], n);
  std::fill(pending_.begin(), pending_.end(), 0);
  n_tokens_ += n;
  if (!resolved_) {  // no plan(): the first step is the prompt
    std::tie(heavy_, recent_) = budgets(n);
    resolved_ = true;
  }
  if (!clock_.done(n_tokens_)) return;
  bool evicted = false;
  for (int l = 0; l < s_.n_layers; ++l) evicted |= evict(l);
  if (evicted) evicted_at_ = n_tokens_;
}

void H2OCache::truncate(int64_t n) {
  if (n < 0 || n > n_tokens_) fail(ErrorKind::Internal, "kv truncate to {} of {}", n, n_tokens_);
  if (n < evicted_at_)
    fail(ErrorKind::Unsupported,
         "kv policy 'h2o' cannot roll back to {} tokens: tokens were evicted when the sequence reached {} "
         "(it can roll back to lengths {}..{})",
         n, evicted_at_, evicted_at_, n_tokens_);
  for (int l = 0; l < s_.n_layers; ++l) {
    const int64_t rows = store_.rows(l) - pending_[l] - (n_tokens_ - n);
    store_.truncate(l, rows);
    for (auto& sc : scores_[l]) sc.resize(rows);
  }
  std::fill(pending_.begin(), pending_.end(), 0);
  n_tokens_ = n;
}

void H2OCache::clear() {
  store_.clear();
  clock_.reset();
  for (auto& layer : scores_)
    for (auto& sc : layer) std::vector<float>().swap(sc);
  std::fill(pending_.begin(), pending_.end(), 0);
  n_tokens_ = 0;
  evicted_at_ = 0;
  resolved_ = false;
}

ByteLedger H2OCache::bytes() const {
  size_t kv = 0, rows = 0;
  for (int l = 0; l < s_.n_layers; ++l) {
    kv += store_.layer_bytes(l);
    rows += store_.rows(l);
  }
  return {{"keys", kv / 2}, {"values", kv / 2}, {"scores", rows * s_.n_kv_heads * sizeof(float)}};
}

ByteLedger H2OCache::bytes_at(int64_t n_tokens) const {
  const auto [heavy, recent] = budgets(n_tokens);
  const size_t rows = static_cast<size_t>(s_.n_layers) * s_.n_kv_heads * std::min(n_tokens, heavy + recent);
  const size_t half = rows * s_.head_dim * sizeof(float);
  return {{"keys", half}, {"values", half}, {"scores", rows * sizeof(float)}};
}

std::unique_ptr<Policy> make_h2o(const Shape& s, const Options& opts) {
  check_shape("h2o", s);
  OptionReader r("h2o", opts);
  H2OOptions o;
  for (const char* k : {"heavy", "recent"})
    if (r.has(k) && r.has(std::string(k) + "_ratio"))
      fail(ErrorKind::InvalidInput, "kv policy 'h2o': give {} or {}_ratio, not both", k, k);
  o.heavy = r.get_int("heavy", -1, 0, s.max_tokens);
  o.recent = r.get_int("recent", -1, 0, s.max_tokens);
  o.heavy_ratio = r.get_double("heavy_ratio", o.heavy_ratio, 0.0, 1.0);
  o.recent_ratio = r.get_double("recent_ratio", o.recent_ratio, 0.0, 1.0);
  r.finish();
  return std::make_unique<H2OCache>(s, o);
}

}  // namespace harmonia::kv
