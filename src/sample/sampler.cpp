#include "sample/sampler.h"

#include <algorithm>
#include <cmath>

#include "common/error.h"

namespace harmonia {

void SamplingOptions::validate() const {
  if (!(temperature >= 0.0f) || !std::isfinite(temperature))
    fail(ErrorKind::InvalidInput, "temperature must be >= 0 (0 = greedy), got {}", temperature);
  if (top_k < 0) fail(ErrorKind::InvalidInput, "top_k must be >= 0 (0 = off), got {}", top_k);
  if (!(top_p > 0.0f && top_p <= 1.0f))
    fail(ErrorKind::InvalidInput, "top_p must be in (0, 1], got {}", top_p);
  if (!(min_p >= 0.0f && min_p <= 1.0f))
    fail(ErrorKind::InvalidInput, "min_p must be in [0, 1], got {}", min_p);
  if (!(repeat_penalty > 0.0f) || !std::isfinite(repeat_penalty))
    fail(ErrorKind::InvalidInput, "repeat_penalty must be > 0 (1 = off), got {}", repeat_penalty);
  if (repeat_last_n < -1)
    fail(ErrorKind::InvalidInput, "repeat_last_n must be >= -1 (-1 = all, 0 = off), got {}",
         repeat_last_n);
  if (!(frequency_penalty >= -2.0f && frequency_penalty <= 2.0f))
    fail(ErrorKind::InvalidInput, "frequency_penalty must be in [-2, 2], got {}", frequency_penalty);
  if (!(presence_penalty >= -2.0f && presence_penalty <= 2.0f))
    fail(ErrorKind::InvalidInput, "presence_penalty must be in [-2, 2], got {}", presence_penalty);
}

namespace {

uint64_t resolve_seed(uint64_t seed) {
  if (seed != SamplingOptions::kRandomSeed) return seed;
  std::random_device rd;
  return (uint64_t(rd()) << 32) ^ uint64_t(rd());
}

// Uniform in [0, 1) from the top 53 bits: unlike std::uniform_real_distribution,
// the mapping is fixed, so a seed gives the same draws with any standard library.
double uniform01(std::mt19937_64& rng) { return double(rng() >> 11) * 0x1.0p-53; }

void check_logits(const float* logits, int32_t n) {
  // Branch-free pass (vectorises); find the culprit only when there is one.
  bool bad = false;
  for (int32_t i = 0; i < n; ++i) bad |= !(logits[i] < INFINITY);  // NaN or +inf
  if (!bad) return;
  for (int32_t i = 0; i < n; ++i) {
    if (!(logits[i] < INFINITY))
      fail(ErrorKind::Internal, "logit of token {} (vocab {}) is {}", i, n, logits[i]);
  }
}

// max(x[0..n)), -inf when n == 0. x has no NaN (check_logits). Eight
// independent lanes: a single running max is latency-bound and GCC does not
// vectorise float max reductions without -ffast-math.
float max_of(const float* x, int32_t n) {
  float m[8];
  std::fill(m, m + 8, -INFINITY);
  int32_t i = 0;
  for (; i + 8 <= n; i += 8)
    for (int j = 0; j < 8; ++j) m[j] = x[i + j] > m[j] ? x[i + j] : m[j];
  for (; i < n; ++i) m[0] = x[i] > m[0] ? x[i] : m[0];
  return *std::max_element(m, m + 8);
}

// log(sum(exp(logits[0..n)))) in double.
double log_sum_exp(const float* logits, int32_t n) {
  const float mx = max_of(logits, n);
  if (mx == -INFINITY) fail(ErrorKind::InvalidInput, "all {} logits are -inf", n);
  double s = 0.0;
  for (int32_t i = 0; i < n; ++i) s += std::exp(double(logits[i]) - double(mx));
  return double(mx) + std::log(s);
}

}  // namespace

Sampler::Sampler(const SamplingOptions& opts, int32_t vocab_size)
    : opts_(opts), vocab_size_(vocab_size), seed_(resolve_seed(opts.seed)), rng_(seed_) {
  opts_.validate();
  if (vocab_size <= 0) fail(ErrorKind::InvalidInput, "vocab_size must be > 0, got {}", vocab_size);
}

void Sampler::reset() {
  window_.clear();
  counts_.clear();
  rng_.seed(seed_);
}

void Sampler::accept(int32_t token) {
  if (token < 0 || token >= vocab_size_)
    fail(ErrorKind::InvalidInput, "accepted token {} is outside the vocabulary [0, {})", token,
         vocab_size_);
  if (opts_.repeat_last_n == 0) return;
  ++counts_[token];
  if (opts_.repeat_last_n < 0) return;  // whole history: counts alone suffice
  window_.push_back(token);
  if (int64_t(window_.size()) > opts_.repeat_last_n) {
    auto it = counts_.find(window_.front());
    if (--it->second == 0) counts_.erase(it);
    window_.pop_front();
  }
}

void Sampler::apply_penalties(float* logits) const {
  const float rp = opts_.repeat_penalty;
  const float fp = opts_.frequency_penalty;
  const float pp = opts_.presence_penalty;
  if (rp == 1.0f && fp == 0.0f && pp == 0.0f) return;
  for (const auto& [tok, count] : counts_) {
    float& l = logits[tok];
    if (rp != 1.0f) l = l > 0.0f ? l / rp : l * rp;
    l -= float(count) * fp + (count > 0 ? pp : 0.0f);
  }
}

void Sampler::filter(const float* logits) {
  const int32_t V = vocab_size_;
  check_logits(logits, V);
  work_.assign(logits, logits + V);
  apply_penalties(work_.data());
  cand_.clear();

  // Total order: higher logit first, ties broken by lower id, so every
  // partial sort below is deterministic.
  auto better = [](const Candidate& a, const Candidate& b) {
    return a.logit > b.logit || (a.logit == b.logit && a.id < b.id);
  };

  if (opts_.temperature == 0.0f) {
    const float mx = max_of(work_.data(), V);
    if (mx == -INFINITY) fail(ErrorKind::InvalidInput, "all {} logits are -inf after penalties", V);
    const int32_t best = int32_t(std::find(work_.begin(), work_.end(), mx) - work_.begin());
    cand_.push_back({best, mx, 1.0f});
    cand_mass_ = 1.0;
    return;
  }

  // 2. top-k: O(V) selection, no sort.
  const int32_t k = opts_.top_k;
  if (k > 0 && k <= V / 16) {
    // Bounded heap (front = worst kept): one comparison per token for the
    // usual small k, and no V-sized candidate array.
    cand_.reserve(size_t(k));
    for (int32_t i = 0; i < V; ++i) {
      if (int32_t(cand_.size()) < k) {
        cand_.push_back({i, work_[i], 0.0f});
        std::push_heap(cand_.begin(), cand_.end(), better);
      } else if (work_[i] > cand_.front().logit) {  // ids ascend, so ties never win
        std::pop_heap(cand_.begin(), cand_.end(), better);
        cand_.back() = {i, work_[i], 0.0f};
        std::push_heap(cand_.begin(), cand_.end(), better);
      }
    }
  } else {
    cand_.resize(size_t(V));
    for (int32_t i = 0; i < V; ++i) cand_[i] = {i, work_[i], 0.0f};
    if (k > 0 && k < V) {
      std::nth_element(cand_.begin(), cand_.begin() + (k - 1), cand_.end(), better);
      cand_.resize(size_t(k));
    }
  }

  // 3. temperature-scaled softmax (unnormalised: the max has weight exactly 1).
  float lmax = -INFINITY;
  for (const auto& c : cand_) lmax = std::max(lmax, c.logit);
  if (lmax == -INFINITY) fail(ErrorKind::InvalidInput, "all {} logits are -inf after penalties", V);
  // Divide rather than multiply by 1/T: a tiny T would make 1/T inf and 0 * inf NaN.
  const float t = opts_.temperature;
  double z = 0.0;
  for (auto& c : cand_) {
    c.w = std::exp((c.logit - lmax) / t);
    z += c.w;
  }

  // 4 + 5. Both top-p and min-p keep a prefix of the candidates in `better`
  // order (the weight is monotone in the logit), and min-p's threshold
  // min_p * p_max is the same before and after top-p because top-p keeps the
  // max. So "top-p, then min-p" keeps the shorter of the two prefixes. Apply
  // the O(n) min-p cut first, then sort only as much as top-p needs.
  double kept = z;
  if (opts_.min_p > 0.0f) {
    const float thr = opts_.min_p;  // p >= min_p * p_max  <=>  w >= min_p * 1
    kept = 0.0;
    size_t n = 0;
    for (const auto& c : cand_) {
      if (c.w >= thr) {
        cand_[n++] = c;
        kept += c.w;
      }
    }
    cand_.resize(n);
  }
  const double target = double(opts_.top_p) * z;
  if (opts_.top_p < 1.0f && kept >= target) {
    // Smallest prefix with mass >= top_p, found by sorting growing chunks
    // (select the next chunk in O(n), sort only it): a peaked distribution
    // sorts a few dozen of a 128k vocabulary, a flat one O(n log nucleus).
    const size_t n = cand_.size();
    size_t done = 0, chunk = 64;
    double cum = 0.0;
    while (done < n) {
      const size_t end = std::min(n, done + chunk);
      if (end < n) std::nth_element(cand_.begin() + done, cand_.begin() + end, cand_.end(), better);
      std::sort(cand_.begin() + done, cand_.begin() + end, better);
      for (size_t i = done; i < end; ++i) {
        cum += cand_[i].w;
        if (cum >= target) {
          cand_.resize(i + 1);
          done = n;
          break;
        }
      }
      if (done != n) done = end;
      chunk *= 4;
    }
  }

  cand_mass_ = 0.0;
  for (const auto& c : cand_) cand_mass_ += c.w;
}

int32_t Sampler::sample(const float* logits) {
  filter(logits);
  if (opts_.temperature == 0.0f) return cand_[0].id;  // greedy: no PRNG draw
  const double u = uniform01(rng_) * cand_mass_;
  double cum = 0.0;
  int32_t last = cand_[0].id;
  for (const auto& c : cand_) {
    if (c.w <= 0.0f) continue;
    cum += c.w;
    last = c.id;
    if (u < cum) return c.id;
  }
  return last;  // u within rounding of the total mass
}

void Sampler::probs(const float* logits, std::vector<float>& out) {
  filter(logits);
  out.assign(size_t(vocab_size_), 0.0f);
  for (const auto& c : cand_) out[c.id] = float(c.w / cand_mass_);
}

int32_t Sampler::sample_from(std::span<const float> p) {
  double total = 0.0;
  for (size_t i = 0; i < p.size(); ++i) {
    if (!(p[i] >= 0.0f) || !std::isfinite(p[i]))
      fail(ErrorKind::InvalidInput, "sample_from: weight {} is {}, expected finite >= 0", i, p[i]);
    total += p[i];
  }
  if (!(total > 0.0))
    fail(ErrorKind::InvalidInput, "sample_from: {} weights sum to 0", p.size());
  const double u = uniform01(rng_) * total;
  double cum = 0.0;
  int32_t last = 0;
  for (size_t i = 0; i < p.size(); ++i) {
    if (p[i] <= 0.0f) continue;
    cum += p[i];
    last = int32_t(i);
    if (u < cum) return int32_t(i);
  }
  return last;
}

double Sampler::uniform() { return uniform01(rng_); }

std::vector<TokenLogprob> Sampler::top_logprobs(const float* logits, int n) const {
  if (n < 0) fail(ErrorKind::InvalidInput, "top_logprobs n must be >= 0, got {}", n);
  check_logits(logits, vocab_size_);
  const size_t k = std::min<size_t>(size_t(n), size_t(vocab_size_));
  std::vector<TokenLogprob> heap;
  if (k == 0) return heap;
  const double lse = log_sum_exp(logits, vocab_size_);
  // Bounded heap of the k best (front = worst kept): O(V log k), no V-sized buffer.
  auto better = [](const TokenLogprob& a, const TokenLogprob& b) {
    return a.logprob > b.logprob || (a.logprob == b.logprob && a.token < b.token);
  };
  heap.reserve(k);
  for (int32_t i = 0; i < vocab_size_; ++i) {
    TokenLogprob t{i, logits[i]};  // rank by raw logit; convert to logprob at the end
    if (heap.size() < k) {
      heap.push_back(t);
      std::push_heap(heap.begin(), heap.end(), better);
    } else if (better(t, heap.front())) {
      std::pop_heap(heap.begin(), heap.end(), better);
      heap.back() = t;
      std::push_heap(heap.begin(), heap.end(), better);
    }
  }
  std::sort_heap(heap.begin(), heap.end(), better);
  for (auto& t : heap) t.logprob = float(double(t.logprob) - lse);
  return heap;
}

float Sampler::logprob(const float* logits, int32_t token) const {
  if (token < 0 || token >= vocab_size_)
    fail(ErrorKind::InvalidInput, "logprob: token {} is outside the vocabulary [0, {})", token,
         vocab_size_);
  check_logits(logits, vocab_size_);
  return float(double(logits[token]) - log_sum_exp(logits, vocab_size_));
}

}  // namespace harmonia
