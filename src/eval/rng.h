#pragma once
// Deterministic randomness for benchmark construction. Every sample draws from
// its own generator seeded from (run seed, task, length, index), so a dataset is
// reproducible byte for byte and does not depend on the order samples are built
// in (survey §2, "one seeded RNG per (task, length, sample)").
//
// NOTE: std::uniform_int_distribution and std::shuffle are implementation
// defined; the draws below are spelled out so files are identical across
// standard libraries.
#include <cstdint>
#include <string_view>
#include <utility>
#include <vector>

namespace harmonia::eval {

// SplitMix64 (Steele, Lea, Flood 2014): one 64-bit state, full period.
class Rng {
 public:
  explicit Rng(uint64_t seed) : s_(seed) {}
  uint64_t next() {
    uint64_t z = (s_ += 0x9E3779B97F4A7C15ULL);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ULL;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBULL;
    return z ^ (z >> 31);
  }
  // Uniform in [0, n) by rejection (no modulo bias); n >= 1.
  uint64_t below(uint64_t n) {
    const uint64_t limit = UINT64_MAX - UINT64_MAX % n;
    uint64_t x;
    do x = next();
    while (x >= limit);
    return x % n;
  }
  // Uniform integer in [lo, hi] (inclusive, like Python's random.randint).
  int64_t range(int64_t lo, int64_t hi) {
    return lo + static_cast<int64_t>(below(static_cast<uint64_t>(hi - lo) + 1));
  }
  // Uniform in [0, 1) with 53 random bits.
  double uniform() { return static_cast<double>(next() >> 11) * 0x1.0p-53; }
  // Fisher-Yates.
  template <typename T>
  void shuffle(std::vector<T>& v) {
    for (size_t i = v.size(); i > 1; --i) std::swap(v[i - 1], v[below(i)]);
  }
  // k distinct indices of [0, n) in draw order (Python's random.sample(range(n), k)).
  std::vector<size_t> sample(size_t n, size_t k) {
    std::vector<size_t> pool(n);
    for (size_t i = 0; i < n; ++i) pool[i] = i;
    std::vector<size_t> out;
    for (size_t i = 0; i < k && i < n; ++i) {
      const size_t j = i + below(n - i);
      std::swap(pool[i], pool[j]);
      out.push_back(pool[i]);
    }
    return out;
  }
  template <typename T>
  const T& choice(const std::vector<T>& v) { return v[below(v.size())]; }

 private:
  uint64_t s_;
};

// Seed for one sample: FNV-1a of `tag` mixed with the run seed.
inline uint64_t derive_seed(uint64_t seed, std::string_view tag) {
  uint64_t h = 0xCBF29CE484222325ULL;
  for (unsigned char c : tag) h = (h ^ c) * 0x100000001B3ULL;
  Rng r(seed ^ h);
  return r.next();
}

}  // namespace harmonia::eval
