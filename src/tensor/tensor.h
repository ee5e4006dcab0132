#pragma once
// A read-only view of a weight tensor: element type, shape, and bytes that live
// elsewhere (a memory-mapped file or a buffer owned by the Model).
#include <array>
#include <cstdint>
#include <string>

#include "tensor/dtype.h"

namespace harmonia {

struct Tensor {
  std::string name;
  DType type = DType::F32;
  // GGML order: ne[0] is the contiguous (innermost) dimension. A weight matrix
  // W of a linear layer y = W x has ne = {in_features, out_features}: row r of W
  // is out-feature r, stored contiguously as ne[0] elements.
  std::array<int64_t, 4> ne{1, 1, 1, 1};
  int n_dims = 0;
  const void* data = nullptr;  // nbytes bytes
  size_t nbytes = 0;

  int64_t cols() const { return ne[0]; }                     // in_features
  int64_t rows() const { return ne[1] * ne[2] * ne[3]; }     // out_features
  int64_t numel() const { return ne[0] * ne[1] * ne[2] * ne[3]; }
  size_t row_stride() const { return row_bytes(type, ne[0]); }  // bytes per row
  const uint8_t* row(int64_t r) const {
    return static_cast<const uint8_t*>(data) + static_cast<size_t>(r) * row_stride();
  }
  bool empty() const { return data == nullptr; }
};

}  // namespace harmonia
