#pragma once
// Element types of weights and KV entries. Numeric ids equal GGML's type ids
// (ggml.h `enum ggml_type`) so GGUF tensor infos map directly.
#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>

namespace harmonia {

enum class DType : uint32_t {
  F32 = 0,
  F16 = 1,
  Q4_0 = 2,
  Q4_1 = 3,
  Q5_0 = 6,
  Q5_1 = 7,
  Q8_0 = 8,
  Q8_1 = 9,
  Q2_K = 10,
  Q3_K = 11,
  Q4_K = 12,
  Q5_K = 13,
  Q6_K = 14,
  Q8_K = 15,
  BF16 = 30,
};

struct DTypeInfo {
  const char* name;     // "f32", "q8_0", ... (llama.cpp spelling, lower case)
  int block_elems;      // elements per block (1 for f32/f16/bf16, 32 for q8_0, 256 for k-quants)
  int block_bytes;      // bytes per block
  bool supported;       // Harmonia has kernels for it
};

// Throws Error(InvalidInput) for an id that is not a known GGML type.
const DTypeInfo& dtype_info(DType t);
// Known GGML id (supported or not) -> DType; nullopt for ids GGML does not define.
std::optional<DType> dtype_from_ggml_id(uint32_t id);
// "f32", "F16", "q4_k", "Q8_0" ... (case-insensitive) -> DType.
std::optional<DType> dtype_from_name(const std::string& name);
const char* dtype_name(DType t);

// Bytes of a row of n elements. Throws Error(InvalidInput) if n is not a
// multiple of the block size.
size_t row_bytes(DType t, int64_t n);

}  // namespace harmonia
