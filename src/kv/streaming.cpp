#include "kv/streaming.h"

#include <algorithm>

#include "common/error.h"
#include "kv/options.h"

namespace harmonia::kv {

StreamingCache::StreamingCache(const Shape& s, const StreamingOptions& o)
    : s_(s), o_(o), store_(s), pending_(s.n_layers, 0) {
  check_shape("streaming", s);
  if (o.sink < 0 || o.window < 0 || o.sink + o.window < 1)
    fail(ErrorKind::InvalidInput, "kv policy 'streaming': sink={} window={} must be >= 0 and keep at least one token",
         o.sink, o.window);
}

void StreamingCache::plan(int64_t prompt_tokens, int64_t) { clock_.plan(n_tokens_, prompt_tokens); }

void StreamingCache::append(int layer, int64_t n, const float* k, const float* v) {
  if (layer < 0 || layer >= s_.n_layers) fail(ErrorKind::Internal, "kv append: layer {} out of range", layer);
  if (n_tokens_ + pending_[layer] + n > s_.max_tokens)
    fail(ErrorKind::InvalidInput, "context full: {} tokens seen + {} new exceeds the context size {}",
         n_tokens_ + pending_[layer], n, s_.max_tokens);
  store_.append(layer, n, k, v);
  pending_[layer] += n;
}

void StreamingCache::attend(int layer, int64_t n, const float* q, float* out) {
  // Rows [0, head) are the sink positions 0..head-1; rows [head, rows) hold
  // consecutive positions ending at n_tokens_ + n - 1 (this step's tokens last).
  const int64_t rows = store_.rows(layer), head = std::min(o_.sink, rows);
  const int64_t oldest = n_tokens_ + n - (rows - head);  // position of row `head`
  // Retained non-sink rows older than query i's window [max(sink, p - window), p].
  auto hidden = [&](int64_t i) { return std::max<int64_t>(0, std::max(o_.sink, n_tokens_ + i - o_.window) - oldest); };
  if (clock_.in_prompt(n_tokens_, n) || rows <= o_.sink || hidden(n - 1) == 0) return store_.attend(layer, n, q, out);
  std::vector<int64_t> first(static_cast<size_t>(n));
  for (int64_t i = 0; i < n; ++i) first[i] = head + hidden(i);
  store_.attend_window(layer, n, q, out, head, first.data());
}

bool StreamingCache::reserve_rollback(int64_t tokens) {
  margin_ = std::max<int64_t>(0, tokens);
  return true;
}

void StreamingCache::commit(int64_t n) {
  for (int l = 0; l < s_.n_layers; ++l)
    if (pending_[l] != n)
      fail(ErrorKind::Internal, "kv ledger: layer {} got {} tokens in a step of {}", l, pending_[l], n);
  std::fill(pending_.begin(), pending_.end(), 0);
  n_tokens_ += n;
  if (!clock_.done(n_tokens_)) return;  // the prompt stays exact until complete
  const int64_t cap = o_.sink + o_.window + margin_;
  bool evicted = false;
  for (int l = 0; l < s_.n_layers; ++l) {
    const int64_t rows = store_.rows(l);
    if (rows <= cap) continue;
    store_.drop_after(l, o_.sink, rows - cap);  // rows [sink, rows - window - margin)
    evicted = true;
  }
  if (evicted) {
    evicted_at_ = n_tokens_;
    oldest_ = n_tokens_ - (o_.window + margin_);
  }
}

void StreamingCache::truncate(int64_t n) {
  if (n < 0 || n > n_tokens_) fail(ErrorKind::Internal, "kv truncate to {} of {}", n, n_tokens_);
  // The window a query at position n would need: [max(sink, n - window), n).
  const int64_t lowest = oldest_ + o_.window;  // smallest n whose window is retained (sink excepted)
  if (evicted_at_ > 0 && std::max(o_.sink, n - o_.window) < oldest_)
    fail(ErrorKind::Unsupported,
         "kv policy 'streaming' cannot roll back to {} tokens: tokens were evicted when the sequence reached {} "
         "(it can roll back to lengths {}..{})",
         n, evicted_at_, std::min(lowest, n_tokens_), n_tokens_);
  // Tokens after the last eviction are all retained, as the last rows.
  for (int l = 0; l < s_.n_layers; ++l) store_.truncate(l, store_.rows(l) - pending_[l] - (n_tokens_ - n));
  std::fill(pending_.begin(), pending_.end(), 0);
  n_tokens_ = n;
}

void StreamingCache::clear() {
  store_.clear();
  clock_.reset();
  std::fill(pending_.begin(), pending_.end(), 0);
  n_tokens_ = 0;
  evicted_at_ = 0;
  oldest_ = 0;
}

ByteLedger StreamingCache::ledger(int64_t stored) const {
  const size_t per_token = static_cast<size_t>(s_.n_layers) * s_.n_kv_heads * s_.head_dim * sizeof(float) * 2;
  const int64_t sinks = std::min(stored, o_.sink);
  return {{"sinks", per_token * sinks}, {"local", per_token * (stored - sinks)}};
}

ByteLedger StreamingCache::bytes() const { return ledger(store_.rows(0)); }

ByteLedger StreamingCache::bytes_at(int64_t n_tokens) const {
  return ledger(std::min(n_tokens, o_.sink + o_.window + margin_));
}

std::unique_ptr<Policy> make_streaming(const Shape& s, const Options& opts) {
  check_shape("streaming", s);
  OptionReader r("streaming", opts);
  StreamingOptions o;
  o.sink = r.get_int("sink", o.sink, 0, s.max_tokens);
  o.window = r.get_int("window", o.window, 0, s.max_tokens);
  r.finish();
  return std::make_unique<StreamingCache>(s, o);
}

}  // namespace harmonia::kv
