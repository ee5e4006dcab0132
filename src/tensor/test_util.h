#pragma once
// Test-only helpers for tensor/*_test.cpp: random rows and quantised weight
// matrices built with the reference quantisers.
#include <cstdint>
#include <ostream>
#include <random>
#include <vector>

#include "tensor/ops.h"

namespace harmonia {
// Test names and failure messages show "q4_k" rather than the enum's bytes.
inline void PrintTo(DType t, std::ostream* os) { *os << dtype_name(t); }
}  // namespace harmonia

namespace harmonia::testing {

// n values ~ N(0, scale^2), with a few 8-sigma outliers as real weights have.
inline std::vector<float> random_floats(std::mt19937& rng, int64_t n, float scale = 1.0f) {
  std::normal_distribution<float> nd(0.0f, scale);
  std::uniform_int_distribution<int> pick(0, 199);
  std::vector<float> v(static_cast<size_t>(n));
  for (auto& x : v) x = pick(rng) == 0 ? 8 * nd(rng) : nd(rng);
  return v;
}

// A [rows, cols] weight matrix of type t quantised from random fp32 values; each
// row gets its own scale so rows differ in magnitude.
struct RandomWeights {
  std::vector<uint8_t> bytes;
  Tensor t;
};

inline RandomWeights random_weights(std::mt19937& rng, DType type, int64_t rows, int64_t cols) {
  RandomWeights w;
  const size_t stride = row_bytes(type, cols);
  w.bytes.resize(stride * static_cast<size_t>(rows));
  std::uniform_real_distribution<float> row_scale(0.01f, 2.0f);
  for (int64_t r = 0; r < rows; ++r) {
    const auto v = random_floats(rng, cols, row_scale(rng));
    quantize_row(type, v.data(), w.bytes.data() + r * stride, cols);
  }
  w.t.name = "test.weight";
  w.t.type = type;
  w.t.ne = {cols, rows, 1, 1};
  w.t.n_dims = 2;
  w.t.data = w.bytes.data();
  w.t.nbytes = w.bytes.size();
  return w;
}

}  // namespace harmonia::testing
