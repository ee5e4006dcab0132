#pragma once
// GGUF v2/v3 reader and writer (format: ggml/docs/gguf.md).
//
// Layout: magic "GGUF", u32 version, u64 n_tensors, u64 n_kv, then n_kv
// key/value pairs, then n_tensors tensor infos (name, n_dims, ne[n_dims] u64,
// u32 type, u64 offset), then padding to `general.alignment` (default 32) and
// the tensor data. Every read is bounds-checked: a corrupt or truncated file
// throws Error(InvalidInput) whose message names the file, the byte offset and
// what was expected.
#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "common/mapped_file.h"
#include "tensor/tensor.h"

namespace harmonia::gguf {

enum class ValueType : uint32_t {
  UINT8 = 0, INT8 = 1, UINT16 = 2, INT16 = 3, UINT32 = 4, INT32 = 5, FLOAT32 = 6,
  BOOL = 7, STRING = 8, ARRAY = 9, UINT64 = 10, INT64 = 11, FLOAT64 = 12,
};

// One metadata value. Scalars: integer types in `i` (UINT64 values above
// INT64_MAX are clamped), floats in `f`, BOOL in `i` (0/1), STRING in `s`.
// Arrays: `elem` is the element type and exactly one of arr_i / arr_f / arr_s
// is filled (integers and bools -> arr_i, floats -> arr_f, strings -> arr_s).
struct Value {
  ValueType type = ValueType::UINT32;
  ValueType elem = ValueType::UINT32;
  int64_t i = 0;
  double f = 0.0;
  std::string s;
  std::vector<int64_t> arr_i;
  std::vector<double> arr_f;
  std::vector<std::string> arr_s;
  size_t arr_len() const { return arr_i.size() + arr_f.size() + arr_s.size(); }
};

struct TensorInfo {
  std::string name;
  DType type = DType::F32;
  int n_dims = 0;
  std::array<int64_t, 4> ne{1, 1, 1, 1};
  uint64_t offset = 0;  // bytes, relative to the start of the data section
  size_t nbytes = 0;
};

class File {
 public:
  // Opens and validates `path` (tensor ranges must lie inside the file; types
  // must be known GGML types; the data may be of a type without kernels, which
  // is reported only when that tensor is used).
  static std::unique_ptr<File> open(const std::string& path);

  const std::string& path() const { return map_->path(); }
  uint32_t version() const { return version_; }
  size_t alignment() const { return alignment_; }
  size_t data_offset() const { return data_offset_; }  // bytes from file start
  const std::map<std::string, Value>& metadata() const { return kv_; }
  const std::vector<TensorInfo>& tensor_infos() const { return tensors_; }

  const Value* find(const std::string& key) const;
  bool has(const std::string& key) const { return find(key) != nullptr; }
  // Typed getters: throw Error(InvalidInput) naming the file and key when the key is
  // missing (no default given) or has the wrong type.
  std::string get_string(const std::string& key) const;
  std::string get_string(const std::string& key, const std::string& def) const;
  int64_t get_int(const std::string& key) const;
  int64_t get_int(const std::string& key, int64_t def) const;
  double get_float(const std::string& key) const;  // accepts integer values too
  double get_float(const std::string& key, double def) const;
  bool get_bool(const std::string& key, bool def) const;
  // Array getters; nullptr when the key is missing; throw on wrong element type.
  const std::vector<std::string>* get_str_array(const std::string& key) const;
  const std::vector<double>* get_float_array(const std::string& key) const;
  const std::vector<int64_t>* get_int_array(const std::string& key) const;

  const TensorInfo* find_tensor(const std::string& name) const;
  // View into the mapped file. Throws Error(InvalidInput) if absent.
  Tensor tensor(const std::string& name) const;

 private:
  File() = default;
  std::unique_ptr<MappedFile> map_;
  uint32_t version_ = 0;
  size_t alignment_ = 32;
  size_t data_offset_ = 0;
  std::map<std::string, Value> kv_;
  std::vector<TensorInfo> tensors_;
  std::map<std::string, size_t> tensor_index_;
};

// GGUF v3 writer (used by `harmonia make-model` and by tests that build files).
class Writer {
 public:
  void set_string(const std::string& key, const std::string& v);
  void set_u32(const std::string& key, uint32_t v);
  void set_i32(const std::string& key, int32_t v);
  void set_f32(const std::string& key, float v);
  void set_bool(const std::string& key, bool v);
  void set_str_array(const std::string& key, const std::vector<std::string>& v);
  void set_f32_array(const std::string& key, const std::vector<float>& v);
  void set_i32_array(const std::string& key, const std::vector<int32_t>& v);
  // `data` holds row_bytes(type, ne[0]) * (ne[1]*ne[2]*ne[3]) bytes. Not copied:
  // it must stay valid until write() returns.
  void add_tensor(const std::string& name, DType type, const std::vector<int64_t>& ne,
                  const void* data, size_t nbytes);
  // Throws Error(Io) naming the path on failure.
  void write(const std::string& path) const;

 private:
  struct Kv {
    std::string key;
    std::string bytes;  // encoded type + value
  };
  struct T {
    std::string name;
    DType type;
    std::vector<int64_t> ne;
    const void* data;
    size_t nbytes;
  };
  std::vector<Kv> kv_;
  std::vector<T> tensors_;
  void put(const std::string& key, std::string bytes);
};

}  // namespace harmonia::gguf
