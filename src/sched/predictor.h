#pragma once
// Output-length predictors (LAPS-SD spec §1.5). The paper's predictor is
// unknown; these bracket it: the true length (a bound), the true length with
// log-normal noise, and the conditional mean of an empirical length
// distribution (needs no prompt features, improves as the request grows).
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "sched/policy.h"

namespace harmonia::sched {

class LengthPredictor {
 public:
  virtual ~LengthPredictor() = default;
  virtual std::string name() const = 0;
  // Predicted total output tokens of `r` (>= 1), given its progress so far
  // (r.generated). Deterministic: the same request gets the same answer.
  // Callers guard against predictions at or below r.generated (spec A17).
  virtual double predict(const RequestState& r) const = 0;
};

struct PredictorOptions {
  std::string kind = "oracle";  // oracle | noisy-oracle | cond-mean
  double sigma = 0.3;           // noisy-oracle: L · exp(σ·z), z ~ N(0,1) fixed per request
  uint64_t seed = 1;            // noisy-oracle noise stream
  std::vector<int64_t> samples; // cond-mean: the empirical output lengths (tokens)
};

// Throws Error(InvalidInput) for an unknown kind, σ < 0, or cond-mean without samples.
std::unique_ptr<LengthPredictor> make_predictor(const PredictorOptions& o);
std::vector<std::string> predictor_names();

// E[L | L > g] over an empirical distribution, by binary search over sorted
// samples and suffix sums: O(log n) per query.
class ConditionalMean {
 public:
  explicit ConditionalMean(std::vector<int64_t> samples);
  // Mean of the samples > g; g + 1 when none is.
  double mean_above(int64_t g) const;

 private:
  std::vector<int64_t> sorted_;
  std::vector<double> suffix_;  // suffix_[i] = Σ sorted_[i..]
};

}  // namespace harmonia::sched
