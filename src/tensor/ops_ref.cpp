// Plain reference kernels: dequantise the row (tensor/quants.cpp), then an
// obviously-correct loop. Slow; the oracle for every fast path.
#include <cmath>
#include <vector>

#include "tensor/ops.h"

namespace harmonia {

namespace {
// Accumulates in double so the oracle's own rounding (<= 1e-16 relative per
// term) is far below every tolerance the fast kernels are held to.
float dot_dequantized(const float* w, const float* x, int64_t n) {
  double s = 0.0;
  for (int64_t i = 0; i < n; ++i) s += static_cast<double>(w[i]) * x[i];
  return static_cast<float>(s);
}
}  // namespace

float dot_row_ref(DType t, const void* row, const float* x, int64_t n) {
  std::vector<float> w(static_cast<size_t>(n));
  dequantize_row(t, row, w.data(), n);
  return dot_dequantized(w.data(), x, n);
}

void matvec_ref(const Tensor& W, const float* x, float* y) {
  const int64_t rows = W.rows(), cols = W.cols();
  std::vector<float> w(static_cast<size_t>(cols));
  for (int64_t r = 0; r < rows; ++r) {
    dequantize_row(W.type, W.row(r), w.data(), cols);
    y[r] = dot_dequantized(w.data(), x, cols);
  }
}

void matmul_ref(const Tensor& W, const float* X, int64_t n, float* Y) {
  const int64_t rows = W.rows(), cols = W.cols();
  for (int64_t i = 0; i < n; ++i) matvec_ref(W, X + i * cols, Y + i * rows);
}

void swiglu_ref(float* h, const float* g, int64_t n) {
  for (int64_t i = 0; i < n; ++i) h[i] = h[i] / (1.0f + std::exp(-h[i])) * g[i];
}

}  // namespace harmonia
