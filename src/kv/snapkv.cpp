#include "kv/snapkv.h"

#include <omp.h>

#include <algorithm>
#include <cmath>
#include <numeric>

#include "common/error.h"
#include "kv/options.h"

namespace harmonia::kv {

std::vector<int64_t> pyramid_budgets(int n_layers, int64_t budget, int64_t window, int64_t prompt, int64_t beta) {
  const int64_t L = n_layers, B = budget;
  // Short prompts (left whole, or the reference's uniform middle branch) and one layer: uniform.
  if (prompt < B + window || prompt < 2 * B || L == 1) return std::vector<int64_t>(L, B);
  int64_t mn = B / beta, mx = 2 * B - mn;
  if (mx >= prompt - window) {
    mx = prompt - window;
    mn = 2 * B - mx;
  }
  // b*_l = (mx (L-1) - (mx - mn) l) / (L-1): floors, then +1 by largest remainder.
  std::vector<int64_t> b(L), rem(L);
  int64_t total = 0;
  for (int64_t l = 0; l < L; ++l) {
    const int64_t num = mx * (L - 1) - (mx - mn) * l;
    b[l] = num / (L - 1);
    rem[l] = num % (L - 1);
    total += b[l];
  }
  std::vector<int64_t> order(L);
  std::iota(order.begin(), order.end(), 0);
  std::stable_sort(order.begin(), order.end(), [&](int64_t a, int64_t c) { return rem[a] > rem[c]; });
  for (int64_t j = 0; j < L * B - total; ++j) ++b[order[j]];
  return b;
}

SnapKVCache::SnapKVCache(const Shape& s, const SnapKVOptions& o)
    : s_(s), o_(o), store_(s), pending_(s.n_layers, 0), qbuf_(s.n_layers), q_lo_(s.n_layers, 0),
      q_hi_(s.n_layers, 0) {
  check_shape(name(), s);
  if (o.window < 1 || o.kernel < 1 || o.kernel % 2 == 0 || o.budget < 0 || o.beta < 1 || o.ratio < 0 || o.ratio > 1)
    fail(ErrorKind::InvalidInput,
         "kv policy '{}': window={} must be >= 1, kernel={} odd, budget={} >= 0, beta={} >= 1, ratio={} in [0, 1]",
         name(), o.window, o.kernel, o.budget, o.beta, o.ratio);
}

std::vector<int64_t> SnapKVCache::layer_budgets(int64_t prompt_tokens) const {
  int64_t B = o_.budget;
  if (o_.ratio > 0)
    B = std::max<int64_t>(0, static_cast<int64_t>(std::floor(o_.ratio * static_cast<double>(prompt_tokens))) -
                                 o_.window);
  if (!o_.pyramid) return std::vector<int64_t>(s_.n_layers, B);
  return pyramid_budgets(s_.n_layers, B, o_.window, prompt_tokens, o_.beta);
}

void SnapKVCache::plan(int64_t prompt_tokens, int64_t) {
  clock_.plan(n_tokens_, prompt_tokens);
  planned_prompt_ = prompt_tokens;
}

void SnapKVCache::append(int layer, int64_t n, const float* k, const float* v) {
  if (layer < 0 || layer >= s_.n_layers) fail(ErrorKind::Internal, "kv append: layer {} out of range", layer);
  if (n_tokens_ + pending_[layer] + n > s_.max_tokens)
    fail(ErrorKind::InvalidInput, "context full: {} tokens seen + {} new exceeds the context size {}",
         n_tokens_ + pending_[layer], n, s_.max_tokens);
  store_.append(layer, n, k, v);
  pending_[layer] += n;
}

void SnapKVCache::attend(int layer, int64_t n, const float* q, float* out) {
  store_.attend(layer, n, q, out);
  const int64_t pos0 = n_tokens_;
  if (!clock_.in_prompt(pos0, n)) return;
  // Buffer the last `window` queries of the prompt so far.
  const int64_t W = o_.window, qd = static_cast<int64_t>(s_.n_heads) * s_.head_dim;
  auto& buf = qbuf_[layer];
  if (buf.empty()) buf.resize(static_cast<size_t>(W * qd));
  if (!clock_.planned() || q_hi_[layer] != pos0) q_lo_[layer] = q_hi_[layer] = pos0;  // a new prompt
  for (int64_t pos = std::max(pos0, pos0 + n - W); pos < pos0 + n; ++pos)
    std::copy_n(q + (pos - pos0) * qd, qd, buf.data() + (pos % W) * qd);
  q_hi_[layer] = pos0 + n;
  q_lo_[layer] = std::max(q_lo_[layer], q_hi_[layer] - W);
}

bool SnapKVCache::select(int layer, int64_t budget) {
  const int64_t rows = store_.rows(layer);
  const int64_t Wq = q_hi_[layer] - q_lo_[layer];  // window queries: the last Wq rows
  const int64_t prefix = rows - Wq;
  if (prefix <= budget) return false;
  const int hd = s_.head_dim, group = s_.n_heads / s_.n_kv_heads;
  const int64_t W = o_.window, qd = static_cast<int64_t>(s_.n_heads) * hd, half = o_.kernel / 2;
  const float scale = 1.0f / std::sqrt(static_cast<float>(hd));
  std::vector<std::vector<int64_t>> keep(s_.n_kv_heads);
#pragma omp parallel for schedule(dynamic, 1)
  for (int h = 0; h < s_.n_kv_heads; ++h) {
    std::vector<float> acc(prefix, 0.0f), p(rows), pooled(prefix);
    // 1-2. Softmax of each window query over the keys it sees, summed over the prefix.
    for (int64_t j = 0; j < Wq; ++j) {
      const int64_t n_see = prefix + j + 1;
      const float* qj = qbuf_[layer].data() + ((q_lo_[layer] + j) % W) * qd;
      for (int g = 0; g < group; ++g) {
        const float* qh = qj + (h * group + g) * hd;
        float mx = -INFINITY;
        for (int64_t t = 0; t < n_see; ++t) {
          const float* kt = store_.key(layer, h, t);
          float d = 0.0f;
#pragma omp simd reduction(+ : d)
          for (int c = 0; c < hd; ++c) d += qh[c] * kt[c];
          p[t] = d * scale;
          mx = std::max(mx, p[t]);
        }
        float sum = 0.0f;
        for (int64_t t = 0; t < n_see; ++t) {
          p[t] = std::exp(p[t] - mx);
          sum += p[t];
        }
        const float inv = 1.0f / sum;
        for (int64_t t = 0; t < prefix; ++t) acc[t] += p[t] * inv;
      }
    }
    // 3. Pooling along the prefix (stride 1, padding kernel/2).
    for (int64_t t = 0; t < prefix; ++t) {
      const int64_t a = std::max<int64_t>(0, t - half), b = std::min(prefix, t + half + 1);
      if (o_.max_pool) {
        pooled[t] = *std::max_element(acc.begin() + a, acc.begin() + b);
      } else {
        float sum = 0.0f;
        for (int64_t u = a; u < b; ++u) sum += acc[u];
        pooled[t] = sum / static_cast<float>(o_.kernel);  // zero padding counted, as avg_pool1d
      }
    }
    // 4. Top-budget prefix positions (ties: earlier first), in order, then the window.
    std::vector<int64_t> idx(prefix);
    std::iota(idx.begin(), idx.end(), 0);
    std::partial_sort(idx.begin(), idx.begin() + budget, idx.end(), [&](int64_t a, int64_t b) {
      return pooled[a] > pooled[b] || (pooled[a] == pooled[b] && a < b);
    });
    idx.resize(budget);
    std::sort(idx.begin(), idx.end());
    for (int64_t t = prefix; t < rows; ++t) idx.push_back(t);
    keep[h] = std::move(idx);
  }
  store_.keep(layer, keep);
  return true;
}

void SnapKVCache::commit(int64_t n) {
  for (int l = 0; l < s_.n_layers; ++l)
    if (pending_[l] != n)
      fail(ErrorKind::Internal, "kv ledger: layer {} got {} tokens in a step of {}", l, pending_[l], n);
  std::fill(pending_.begin(), pending_.end(), 0);
  const int64_t pos0 = n_tokens_;
  n_tokens_ += n;
  if (!clock_.completes(pos0, n)) {
    if (!clock_.in_prompt(pos0, n))  // decode step: nothing buffered
      for (int l = 0; l < s_.n_layers; ++l) q_lo_[l] = q_hi_[l] = 0;
    return;
  }
  const auto budgets = layer_budgets(clock_.planned() ? planned_prompt_ : n);
  bool dropped = false;
  for (int l = 0; l < s_.n_layers; ++l) {
    dropped |= select(l, budgets[l]);
    std::vector<float>().swap(qbuf_[l]);  // the window's queries are no longer needed
    q_lo_[l] = q_hi_[l] = 0;
  }
  if (dropped) compressed_at_ = n_tokens_;
}

int64_t SnapKVCache::n_stored() const {
  int64_t sum = 0;
  for (int l = 0; l < s_.n_layers; ++l) sum += store_.rows(l);
  return sum / s_.n_layers;
}

void SnapKVCache::truncate(int64_t n) {
  if (n < 0 || n > n_tokens_) fail(ErrorKind::Internal, "kv truncate to {} of {}", n, n_tokens_);
  if (n < compressed_at_)
    fail(ErrorKind::Unsupported,
         "kv policy '{}' cannot roll back to {} tokens: the prompt was compressed when the sequence reached {} "
         "(it can roll back to lengths {}..{})",
         name(), n, compressed_at_, compressed_at_, n_tokens_);
  for (int l = 0; l < s_.n_layers; ++l) {
    store_.truncate(l, store_.rows(l) - pending_[l] - (n_tokens_ - n));
    // Buffered window queries of dropped positions go too; the prompt's
    // remaining tokens will bring them again.
    q_hi_[l] = std::min(q_hi_[l], n);
    q_lo_[l] = std::min(q_lo_[l], q_hi_[l]);
  }
  std::fill(pending_.begin(), pending_.end(), 0);
  n_tokens_ = n;
}

void SnapKVCache::clear() {
  store_.clear();
  clock_.reset();
  planned_prompt_ = 0;
  n_tokens_ = 0;
  compressed_at_ = 0;
  std::fill(pending_.begin(), pending_.end(), 0);
  for (int l = 0; l < s_.n_layers; ++l) {
    std::vector<float>().swap(qbuf_[l]);
    q_lo_[l] = q_hi_[l] = 0;
  }
}

ByteLedger SnapKVCache::bytes() const {
  size_t kv = 0, queries = 0;
  for (int l = 0; l < s_.n_layers; ++l) {
    kv += store_.layer_bytes(l);
    queries += qbuf_[l].size() * sizeof(float);
  }
  ByteLedger b{{"keys", kv / 2}, {"values", kv / 2}};
  if (queries) b["queries"] = queries;
  return b;
}

std::vector<ByteLedger> SnapKVCache::layer_bytes_at(int64_t n_tokens) const {
  const auto budgets = layer_budgets(n_tokens);
  const int64_t Wq = std::min(o_.window, n_tokens);
  std::vector<ByteLedger> out(s_.n_layers);
  for (int l = 0; l < s_.n_layers; ++l) {
    const size_t rows = n_tokens - Wq <= budgets[l] ? n_tokens : budgets[l] + Wq;
    const size_t half = rows * s_.n_kv_heads * s_.head_dim * sizeof(float);
    out[l] = {{"keys", half}, {"values", half}};
  }
  return out;
}

ByteLedger SnapKVCache::bytes_at(int64_t n_tokens) const {
  ByteLedger total;
  for (const auto& layer : layer_bytes_at(n_tokens))
    for (const auto& [k, v] : layer) total[k] += v;
  return total;
}

namespace {

std::unique_ptr<Policy> make(const std::string& policy, bool pyramid, const Shape& s, const Options& opts) {
  check_shape(policy, s);
  OptionReader r(policy, opts);
  SnapKVOptions o;
  o.pyramid = pyramid;
  if (r.has("budget") && r.has("ratio"))
    fail(ErrorKind::InvalidInput, "kv policy '{}': give budget or ratio, not both", policy);
  o.budget = r.get_int("budget", o.budget, 0, s.max_tokens);
  o.ratio = r.get_double("ratio", 0.0, 0.0, 1.0);
  if (r.has("ratio") && o.ratio <= 0)
    fail(ErrorKind::InvalidInput, "kv policy '{}': option ratio={} must be in (0, 1]", policy, o.ratio);
  o.window = r.get_int("window", o.window, 1, s.max_tokens);
  o.kernel = r.get_int("kernel", o.kernel, 1, 1025);
  if (o.kernel % 2 == 0)
    fail(ErrorKind::InvalidInput, "kv policy '{}': option kernel={} must be odd (pooling pads kernel/2 each side)",
         policy, o.kernel);
  o.max_pool = r.get_choice("pool", "max", {"max", "avg"}) == "max";
  if (pyramid) o.beta = r.get_int("beta", o.beta, 1, 1000000);
  r.finish();
  return std::make_unique<SnapKVCache>(s, o);
}

}  // namespace

std::unique_ptr<Policy> make_snapkv(const Shape& s, const Options& opts) { return make("snapkv", false, s, opts); }
std::unique_ptr<Policy> make_pyramidkv(const Shape& s, const Options& opts) {
  return make("pyramidkv", true, s, opts);
}

}  // namespace harmonia::kv
