#pragma once
// Linear-algebra kernels over (possibly quantised) weight rows.
//
// Every function has a plain fp32 reference version (suffix _ref) that the fast
// versions are tested against (tensor/*_test.cpp). Block layouts are those of
// the GGUF format description (ggml-common.h): Q8_0, Q4_0, Q4_K, Q5_K, Q6_K.
#include <cstdint>

#include "tensor/tensor.h"

namespace harmonia {

// ---- Row conversion ----------------------------------------------------------
// dst[n] <- src row of type t holding n elements. Throws Error(Unsupported) for
// types without kernels, Error(InvalidInput) if n is not a multiple of the block.
void dequantize_row(DType t, const void* src, float* dst, int64_t n);
// dst row of type t <- src[n] (round to nearest; llama.cpp's reference
// quantisers for q8_0/q4_0/q4_k/q5_k/q6_k). Throws like dequantize_row.
void quantize_row(DType t, const float* src, void* dst, int64_t n);

// ---- Dot products -------------------------------------------------------------
// sum_i row[i] * x[i] for one row of type t with n elements; x is fp32.
float dot_row_ref(DType t, const void* row, const float* x, int64_t n);
float dot_row(DType t, const void* row, const float* x, int64_t n);  // SIMD

// ---- Matrix-vector (decode) -----------------------------------------------------
// y[rows] = W[rows, cols] * x[cols]. Multi-threaded over rows (OpenMP, using
// the current omp_get_max_threads()).
void matvec_ref(const Tensor& W, const float* x, float* y);
void matvec(const Tensor& W, const float* x, float* y);

// ---- Matrix-matrix (prefill) ------------------------------------------------------
// Y[n, rows] = X[n, cols] * W^T. For float weights via BLAS sgemm; quantised
// weights are dequantised tile by tile and fed to sgemm.
void matmul_ref(const Tensor& W, const float* X, int64_t n, float* Y);
void matmul(const Tensor& W, const float* X, int64_t n, float* Y);

}  // namespace harmonia
