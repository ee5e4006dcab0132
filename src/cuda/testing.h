#pragma once
// Helpers shared by the GPU tests (src/cuda/*_test.cpp).
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <vector>

#include "cuda/runtime.h"

// Skips the current test with a message where no CUDA device is present (CI).
#define REQUIRE_GPU()                                                                          \
  do {                                                                                         \
    if (::harmonia::cuda::device_count() == 0)                                                 \
      GTEST_SKIP() << "no CUDA device (cudaGetDeviceCount found none): GPU test not run here"; \
  } while (0)

namespace harmonia::cuda::testing {

// max |a - b| / max |b|; NaN anywhere gives NaN (fails every <= check).
inline double rel_err(const std::vector<float>& a, const std::vector<float>& b) {
  double d = 0, m = 1e-30;
  for (size_t i = 0; i < a.size(); ++i) {
    const double e = std::abs(static_cast<double>(a[i]) - b[i]);
    if (std::isnan(e)) return NAN;
    d = std::max(d, e);
    m = std::max(m, std::abs(static_cast<double>(b[i])));
  }
  return d / m;
}

}  // namespace harmonia::cuda::testing
