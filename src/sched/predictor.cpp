#include "sched/predictor.h"

#include <algorithm>
#include <cmath>

#include "common/error.h"
#include "sched/random.h"

namespace harmonia::sched {

namespace {

int64_t true_length(const RequestState& r, const char* who) {
  if (r.req.true_output_tokens < 1)
    fail(ErrorKind::InvalidInput,
         "length predictor '{}' needs the true output length of request {} (known only in simulation or trace "
         "replay); use predictor=cond-mean in the engine",
         who, r.req.id);
  return r.req.true_output_tokens;
}

class Oracle final : public LengthPredictor {
 public:
  std::string name() const override { return "oracle"; }
  double predict(const RequestState& r) const override { return static_cast<double>(true_length(r, "oracle")); }
};

// L · exp(σ·z) with z ~ N(0, 1) drawn once per request id: the same request
// gets the same prediction under every policy and at every step.
class NoisyOracle final : public LengthPredictor {
 public:
  NoisyOracle(double sigma, uint64_t seed) : sigma_(sigma), seed_(seed) {}
  std::string name() const override { return "noisy-oracle"; }
  double predict(const RequestState& r) const override {
    const double L = static_cast<double>(true_length(r, "noisy-oracle"));
    Rng rng(derive_seed(seed_, static_cast<uint64_t>(r.req.id)));
    return std::max(1.0, L * std::exp(sigma_ * rng.normal()));
  }

 private:
  double sigma_;
  uint64_t seed_;
};

class CondMean final : public LengthPredictor {
 public:
  explicit CondMean(std::vector<int64_t> s) : cm_(std::move(s)) {}
  std::string name() const override { return "cond-mean"; }
  double predict(const RequestState& r) const override { return cm_.mean_above(r.generated); }

 private:
  ConditionalMean cm_;
};

}  // namespace

ConditionalMean::ConditionalMean(std::vector<int64_t> samples) : sorted_(std::move(samples)) {
  if (sorted_.empty()) fail(ErrorKind::InvalidInput, "length predictor 'cond-mean' needs at least one sample length");
  for (int64_t x : sorted_)
    if (x < 1) fail(ErrorKind::InvalidInput, "length predictor 'cond-mean': sample length {} < 1", x);
  std::sort(sorted_.begin(), sorted_.end());
  suffix_.assign(sorted_.size() + 1, 0.0);
  for (size_t i = sorted_.size(); i-- > 0;) suffix_[i] = suffix_[i + 1] + static_cast<double>(sorted_[i]);
}

double ConditionalMean::mean_above(int64_t g) const {
  const size_t i = static_cast<size_t>(std::upper_bound(sorted_.begin(), sorted_.end(), g) - sorted_.begin());
  if (i == sorted_.size()) return static_cast<double>(g + 1);
  return suffix_[i] / static_cast<double>(sorted_.size() - i);
}

std::vector<std::string> predictor_names() { return {"oracle", "noisy-oracle", "cond-mean"}; }

std::unique_ptr<LengthPredictor> make_predictor(const PredictorOptions& o) {
  if (o.kind == "oracle") return std::make_unique<Oracle>();
  if (o.kind == "noisy-oracle") {
    if (!(o.sigma >= 0) || !std::isfinite(o.sigma))
      fail(ErrorKind::InvalidInput, "length predictor 'noisy-oracle': sigma {} must be >= 0", o.sigma);
    return std::make_unique<NoisyOracle>(o.sigma, o.seed);
  }
  if (o.kind == "cond-mean") return std::make_unique<CondMean>(o.samples);
  fail(ErrorKind::InvalidInput, "unknown length predictor '{}' (known: oracle, noisy-oracle, cond-mean)", o.kind);
}

}  // namespace harmonia::sched
