#include "tensor/dtype.h"

#include <algorithm>
#include <cctype>

#include "common/error.h"

namespace harmonia {

namespace {
struct Entry {
  DType t;
  DTypeInfo info;
};
// Block sizes from the GGUF format description (ggml-common.h block_* structs).
constexpr Entry kTable[] = {
    {DType::F32, {"f32", 1, 4, true}},       {DType::F16, {"f16", 1, 2, true}},
    {DType::Q4_0, {"q4_0", 32, 18, true}},   {DType::Q4_1, {"q4_1", 32, 20, false}},
    {DType::Q5_0, {"q5_0", 32, 22, false}},  {DType::Q5_1, {"q5_1", 32, 24, false}},
    {DType::Q8_0, {"q8_0", 32, 34, true}},   {DType::Q8_1, {"q8_1", 32, 36, false}},
    {DType::Q2_K, {"q2_k", 256, 84, false}}, {DType::Q3_K, {"q3_k", 256, 110, false}},
    {DType::Q4_K, {"q4_k", 256, 144, true}}, {DType::Q5_K, {"q5_k", 256, 176, true}},
    {DType::Q6_K, {"q6_k", 256, 210, true}}, {DType::Q8_K, {"q8_k", 256, 292, false}},
    {DType::BF16, {"bf16", 1, 2, true}},
};
}  // namespace

const DTypeInfo& dtype_info(DType t) {
  for (const auto& e : kTable)
    if (e.t == t) return e.info;
  fail(ErrorKind::InvalidInput, "unknown tensor type id {}", static_cast<uint32_t>(t));
}

std::optional<DType> dtype_from_ggml_id(uint32_t id) {
  for (const auto& e : kTable)
    if (static_cast<uint32_t>(e.t) == id) return e.t;
  return std::nullopt;
}

std::optional<DType> dtype_from_name(const std::string& name) {
  std::string n = name;
  std::transform(n.begin(), n.end(), n.begin(), [](unsigned char c) { return std::tolower(c); });
  for (const auto& e : kTable)
    if (n == e.info.name) return e.t;
  return std::nullopt;
}

const char* dtype_name(DType t) { return dtype_info(t).name; }

size_t row_bytes(DType t, int64_t n) {
  const auto& i = dtype_info(t);
  if (n < 0 || n % i.block_elems != 0)
    fail(ErrorKind::InvalidInput, "row of {} elements is not a multiple of the {} block size {}", n,
         i.name, i.block_elems);
  return static_cast<size_t>(n / i.block_elems) * static_cast<size_t>(i.block_bytes);
}

}  // namespace harmonia
