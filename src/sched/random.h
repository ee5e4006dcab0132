#pragma once
// Deterministic random numbers for the simulator and the noisy predictor:
// our own distributions over splitmix64/xoshiro256**, so a seed gives the
// same workload on every platform and standard library (spec §6.12).
#include <cmath>
#include <cstdint>

namespace harmonia::sched {

inline uint64_t splitmix64(uint64_t& s) {
  uint64_t z = (s += 0x9E3779B97F4A7C15ull);
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
  return z ^ (z >> 31);
}

// A seed for stream `k` of `seed` (independent per request, per purpose).
inline uint64_t derive_seed(uint64_t seed, uint64_t k) {
  uint64_t s = seed ^ (k * 0xD1B54A32D192ED03ull + 0x632BE59BD9B4E019ull);
  return splitmix64(s);
}

class Rng {
 public:
  explicit Rng(uint64_t seed) {
    for (auto& x : s_) x = splitmix64(seed);
  }
  uint64_t next() {
    const uint64_t r = rotl(s_[1] * 5, 7) * 9, t = s_[1] << 17;
    s_[2] ^= s_[0];
    s_[3] ^= s_[1];
    s_[1] ^= s_[2];
    s_[0] ^= s_[3];
    s_[2] ^= t;
    s_[3] = rotl(s_[3], 45);
    return r;
  }
  // Uniform in [0, 1).
  double uniform() { return static_cast<double>(next() >> 11) * 0x1.0p-53; }
  // Uniform in (0, 1).
  double uniform_pos() {
    double u;
    do u = uniform();
    while (u <= 0.0);
    return u;
  }
  double normal() {  // Box–Muller, one value per call
    const double u1 = uniform_pos(), u2 = uniform();
    return std::sqrt(-2.0 * std::log(u1)) * std::cos(6.283185307179586 * u2);
  }
  double exponential(double rate) { return -std::log(uniform_pos()) / rate; }
  // Gamma(shape, 1) by Marsaglia–Tsang.
  double gamma(double shape) {
    if (shape < 1) return gamma(shape + 1) * std::pow(uniform_pos(), 1.0 / shape);
    const double d = shape - 1.0 / 3, c = 1 / std::sqrt(9 * d);
    while (true) {
      double x, v;
      do {
        x = normal();
        v = 1 + c * x;
      } while (v <= 0);
      v = v * v * v;
      const double u = uniform_pos();
      if (std::log(u) < 0.5 * x * x + d - d * v + d * std::log(v)) return d * v;
    }
  }
  // Beta with the given mean and concentration (a + b).
  double beta_mean(double mean, double concentration) {
    const double a = gamma(mean * concentration), b = gamma((1 - mean) * concentration);
    return a / (a + b);
  }
  // Log-normal with the given median and σ of the log.
  double lognormal(double median, double sigma) { return median * std::exp(sigma * normal()); }

 private:
  static uint64_t rotl(uint64_t x, int k) { return (x << k) | (x >> (64 - k)); }
  uint64_t s_[4];
};

}  // namespace harmonia::sched
