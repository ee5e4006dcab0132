#include "gguf/gguf.h"

#include <cstring>
#include <fstream>
#include <limits>

#include "common/error.h"

namespace harmonia::gguf {

namespace {

constexpr uint32_t kMagic = 0x46554747;  // "GGUF" little-endian
constexpr uint64_t kMaxString = 1ull << 30;
constexpr uint64_t kMaxArray = 1ull << 31;
constexpr int kMaxDims = 4;

// Bounds-checked little-endian cursor over the mapped file.
class Reader {
 public:
  Reader(const std::string& path, const uint8_t* data, size_t size)
      : path_(path), data_(data), size_(size) {}

  size_t pos() const { return pos_; }

  template <typename T>
  T read(const char* what) {
    need(sizeof(T), what);
    T v;
    std::memcpy(&v, data_ + pos_, sizeof(T));
    pos_ += sizeof(T);
    return v;
  }

  std::string read_string(const char* what) {
    const uint64_t n = read<uint64_t>(what);
    if (n > kMaxString) bad("{} has length {} (over the 1 GiB limit)", what, n);
    need(n, what);
    std::string s(reinterpret_cast<const char*>(data_ + pos_), n);
    pos_ += n;
    return s;
  }

  void need(uint64_t n, const char* what) const {
    if (n > size_ - pos_)
      fail(ErrorKind::InvalidInput, "{}: truncated at offset {}: need {} bytes for {}, file has {}",
           path_, pos_, n, what, size_);
  }

  template <typename... Args>
  [[noreturn]] void bad(fmt::format_string<Args...> f, Args&&... args) const {
    fail(ErrorKind::InvalidInput, "{}: at offset {}: {}", path_, pos_,
         fmt::format(f, std::forward<Args>(args)...));
  }

 private:
  const std::string& path_;
  const uint8_t* data_;
  size_t size_;
  size_t pos_ = 0;
};

bool is_int_type(ValueType t) {
  switch (t) {
    case ValueType::UINT8: case ValueType::INT8: case ValueType::UINT16: case ValueType::INT16:
    case ValueType::UINT32: case ValueType::INT32: case ValueType::UINT64: case ValueType::INT64:
    case ValueType::BOOL:
      return true;
    default:
      return false;
  }
}

int64_t read_int(Reader& r, ValueType t) {
  switch (t) {
    case ValueType::UINT8: return r.read<uint8_t>("u8 value");
    case ValueType::INT8: return r.read<int8_t>("i8 value");
    case ValueType::UINT16: return r.read<uint16_t>("u16 value");
    case ValueType::INT16: return r.read<int16_t>("i16 value");
    case ValueType::UINT32: return r.read<uint32_t>("u32 value");
    case ValueType::INT32: return r.read<int32_t>("i32 value");
    case ValueType::INT64: return r.read<int64_t>("i64 value");
    case ValueType::UINT64: {
      const uint64_t u = r.read<uint64_t>("u64 value");
      return u > static_cast<uint64_t>(std::numeric_limits<int64_t>::max())
                 ? std::numeric_limits<int64_t>::max()
                 : static_cast<int64_t>(u);
    }
    case ValueType::BOOL: {
      const uint8_t b = r.read<uint8_t>("bool value");
      if (b > 1) r.bad("bool value {} is not 0 or 1", b);
      return b;
    }
    default:
      r.bad("internal: not an integer type");
  }
}

const char* type_name(ValueType t) {
  static const char* names[] = {"u8",  "i8",    "u16",  "i16", "u32", "i32", "f32",
                                "bool", "string", "array", "u64", "i64", "f64"};
  const auto i = static_cast<uint32_t>(t);
  return i < 13 ? names[i] : "?";
}

Value read_value(Reader& r, ValueType t, int depth) {
  Value v;
  v.type = t;
  switch (t) {
    case ValueType::FLOAT32: v.f = r.read<float>("f32 value"); break;
    case ValueType::FLOAT64: v.f = r.read<double>("f64 value"); break;
    case ValueType::STRING: v.s = r.read_string("string value"); break;
    case ValueType::ARRAY: {
      if (depth > 0) r.bad("nested arrays are not supported");
      const uint32_t et = r.read<uint32_t>("array element type");
      if (et > 12) r.bad("unknown array element type {}", et);
      v.elem = static_cast<ValueType>(et);
      if (v.elem == ValueType::ARRAY) r.bad("nested arrays are not supported");
      const uint64_t n = r.read<uint64_t>("array length");
      if (n > kMaxArray) r.bad("array length {} is too large", n);
      // Each element takes at least one byte: a length past the file's end is corrupt.
      r.need(n, "array elements");
      if (v.elem == ValueType::STRING) {
        v.arr_s.reserve(n);
        for (uint64_t i = 0; i < n; ++i) v.arr_s.push_back(r.read_string("array string"));
      } else if (v.elem == ValueType::FLOAT32 || v.elem == ValueType::FLOAT64) {
        v.arr_f.reserve(n);
        for (uint64_t i = 0; i < n; ++i)
          v.arr_f.push_back(v.elem == ValueType::FLOAT32 ? r.read<float>("array f32")
                                                         : r.read<double>("array f64"));
      } else {
        v.arr_i.reserve(n);
        for (uint64_t i = 0; i < n; ++i) v.arr_i.push_back(read_int(r, v.elem));
      }
      break;
    }
    default:
      if (!is_int_type(t)) r.bad("unknown value type {}", static_cast<uint32_t>(t));
      v.i = read_int(r, t);
  }
  return v;
}

}  // namespace

std::unique_ptr<File> File::open(const std::string& path) {
  std::unique_ptr<File> f(new File());
  f->map_ = std::make_unique<MappedFile>(path);
  Reader r(path, f->map_->data(), f->map_->size());
  const uint32_t magic = r.read<uint32_t>("magic");
  if (magic != kMagic) fail(ErrorKind::InvalidInput, "{}: not a GGUF file (bad magic at offset 0)", path);
  f->version_ = r.read<uint32_t>("version");
  if (f->version_ != 2 && f->version_ != 3)
    fail(ErrorKind::InvalidInput, "{}: GGUF version {} is not supported (expected 2 or 3)", path,
         f->version_);
  const uint64_t n_tensors = r.read<uint64_t>("tensor count");
  const uint64_t n_kv = r.read<uint64_t>("metadata count");
  // Every entry takes well over 8 bytes: counts beyond the file size are corrupt.
  if (n_tensors > f->map_->size() / 8 || n_kv > f->map_->size() / 8)
    r.bad("tensor count {} / metadata count {} cannot fit in a {}-byte file", n_tensors, n_kv,
          f->map_->size());

  for (uint64_t i = 0; i < n_kv; ++i) {
    std::string key = r.read_string("metadata key");
    const uint32_t t = r.read<uint32_t>("metadata value type");
    if (t > 12) r.bad("metadata key '{}' has unknown value type {}", key, t);
    Value v = read_value(r, static_cast<ValueType>(t), 0);
    f->kv_[key] = std::move(v);
  }

  const int64_t align = f->get_int("general.alignment", 32);
  if (align <= 0 || (align & (align - 1)) != 0)
    fail(ErrorKind::InvalidInput, "{}: general.alignment {} is not a power of two", path, align);
  f->alignment_ = static_cast<size_t>(align);

  for (uint64_t i = 0; i < n_tensors; ++i) {
    TensorInfo ti;
    ti.name = r.read_string("tensor name");
    const uint32_t nd = r.read<uint32_t>("tensor n_dims");
    if (nd == 0 || nd > kMaxDims) r.bad("tensor '{}' has {} dimensions (1..4 supported)", ti.name, nd);
    ti.n_dims = static_cast<int>(nd);
    for (uint32_t d = 0; d < nd; ++d) {
      const uint64_t n = r.read<uint64_t>("tensor dimension");
      if (n == 0 || n > (1ull << 40)) r.bad("tensor '{}' dimension {} is {}", ti.name, d, n);
      ti.ne[d] = static_cast<int64_t>(n);
    }
    const uint32_t tid = r.read<uint32_t>("tensor type");
    auto dt = dtype_from_ggml_id(tid);
    if (!dt) r.bad("tensor '{}' has unknown type id {}", ti.name, tid);
    ti.type = *dt;
    ti.offset = r.read<uint64_t>("tensor offset");
    const auto& info = dtype_info(ti.type);
    if (ti.ne[0] % info.block_elems != 0)
      r.bad("tensor '{}' row length {} is not a multiple of the {} block size {}", ti.name, ti.ne[0],
            info.name, info.block_elems);
    const uint64_t nrows = static_cast<uint64_t>(ti.ne[1] * ti.ne[2] * ti.ne[3]);
    const uint64_t rb = row_bytes(ti.type, ti.ne[0]);
    if (nrows > 0 && rb > (1ull << 62) / nrows) r.bad("tensor '{}' is impossibly large", ti.name);
    ti.nbytes = rb * nrows;
    if (f->tensor_index_.count(ti.name)) r.bad("duplicate tensor name '{}'", ti.name);
    f->tensor_index_[ti.name] = f->tensors_.size();
    f->tensors_.push_back(std::move(ti));
  }

  size_t off = r.pos();
  off = (off + f->alignment_ - 1) / f->alignment_ * f->alignment_;
  f->data_offset_ = off;
  const size_t fsize = f->map_->size();
  for (const auto& ti : f->tensors_) {
    if (ti.offset % f->alignment_ != 0)
      fail(ErrorKind::InvalidInput, "{}: tensor '{}' offset {} is not aligned to {}", path, ti.name,
           ti.offset, f->alignment_);
    if (off > fsize || ti.offset > fsize - off || ti.nbytes > fsize - off - ti.offset)
      fail(ErrorKind::InvalidInput,
           "{}: tensor '{}' ({} bytes at data offset {}) extends past the end of the file ({} bytes)",
           path, ti.name, ti.nbytes, ti.offset, fsize);
  }
  return f;
}

const Value* File::find(const std::string& key) const {
  auto it = kv_.find(key);
  return it == kv_.end() ? nullptr : &it->second;
}

std::string File::get_string(const std::string& key) const {
  const Value* v = find(key);
  if (!v) fail(ErrorKind::InvalidInput, "{}: metadata key '{}' is missing", path(), key);
  if (v->type != ValueType::STRING)
    fail(ErrorKind::InvalidInput, "{}: metadata key '{}' is {}, expected string", path(), key,
         type_name(v->type));
  return v->s;
}

std::string File::get_string(const std::string& key, const std::string& def) const {
  return has(key) ? get_string(key) : def;
}

int64_t File::get_int(const std::string& key) const {
  const Value* v = find(key);
  if (!v) fail(ErrorKind::InvalidInput, "{}: metadata key '{}' is missing", path(), key);
  if (!is_int_type(v->type))
    fail(ErrorKind::InvalidInput, "{}: metadata key '{}' is {}, expected an integer", path(), key,
         type_name(v->type));
  return v->i;
}

int64_t File::get_int(const std::string& key, int64_t def) const { return has(key) ? get_int(key) : def; }

double File::get_float(const std::string& key) const {
  const Value* v = find(key);
  if (!v) fail(ErrorKind::InvalidInput, "{}: metadata key '{}' is missing", path(), key);
  if (v->type == ValueType::FLOAT32 || v->type == ValueType::FLOAT64) return v->f;
  if (is_int_type(v->type)) return static_cast<double>(v->i);
  fail(ErrorKind::InvalidInput, "{}: metadata key '{}' is {}, expected a number", path(), key,
       type_name(v->type));
}

double File::get_float(const std::string& key, double def) const { return has(key) ? get_float(key) : def; }

bool File::get_bool(const std::string& key, bool def) const {
  return has(key) ? get_int(key) != 0 : def;
}

const std::vector<std::string>* File::get_str_array(const std::string& key) const {
  const Value* v = find(key);
  if (!v) return nullptr;
  if (v->type != ValueType::ARRAY || v->elem != ValueType::STRING)
    fail(ErrorKind::InvalidInput, "{}: metadata key '{}' is not an array of strings", path(), key);
  return &v->arr_s;
}

const std::vector<double>* File::get_float_array(const std::string& key) const {
  const Value* v = find(key);
  if (!v) return nullptr;
  if (v->type != ValueType::ARRAY || (v->elem != ValueType::FLOAT32 && v->elem != ValueType::FLOAT64))
    fail(ErrorKind::InvalidInput, "{}: metadata key '{}' is not an array of floats", path(), key);
  return &v->arr_f;
}

const std::vector<int64_t>* File::get_int_array(const std::string& key) const {
  const Value* v = find(key);
  if (!v) return nullptr;
  if (v->type != ValueType::ARRAY || !is_int_type(v->elem))
    fail(ErrorKind::InvalidInput, "{}: metadata key '{}' is not an array of integers", path(), key);
  return &v->arr_i;
}

const TensorInfo* File::find_tensor(const std::string& name) const {
  auto it = tensor_index_.find(name);
  return it == tensor_index_.end() ? nullptr : &tensors_[it->second];
}

Tensor File::tensor(const std::string& name) const {
  const TensorInfo* ti = find_tensor(name);
  if (!ti) fail(ErrorKind::InvalidInput, "{}: tensor '{}' is missing", path(), name);
  Tensor t;
  t.name = ti->name;
  t.type = ti->type;
  t.ne = ti->ne;
  t.n_dims = ti->n_dims;
  t.data = map_->data() + data_offset_ + ti->offset;
  t.nbytes = ti->nbytes;
  return t;
}

// ---- Writer -----------------------------------------------------------------------

namespace {
template <typename T>
void put_raw(std::string& out, const T& v) {
  out.append(reinterpret_cast<const char*>(&v), sizeof(T));
}
void put_str(std::string& out, const std::string& s) {
  put_raw<uint64_t>(out, s.size());
  out += s;
}
}  // namespace

void Writer::put(const std::string& key, std::string bytes) {
  for (auto& kv : kv_)
    if (kv.key == key) {
      kv.bytes = std::move(bytes);
      return;
    }
  kv_.push_back({key, std::move(bytes)});
}

void Writer::set_string(const std::string& key, const std::string& v) {
  std::string b;
  put_raw<uint32_t>(b, static_cast<uint32_t>(ValueType::STRING));
  put_str(b, v);
  put(key, std::move(b));
}
void Writer::set_u32(const std::string& key, uint32_t v) {
  std::string b;
  put_raw<uint32_t>(b, static_cast<uint32_t>(ValueType::UINT32));
  put_raw(b, v);
  put(key, std::move(b));
}
void Writer::set_i32(const std::string& key, int32_t v) {
  std::string b;
  put_raw<uint32_t>(b, static_cast<uint32_t>(ValueType::INT32));
  put_raw(b, v);
  put(key, std::move(b));
}
void Writer::set_f32(const std::string& key, float v) {
  std::string b;
  put_raw<uint32_t>(b, static_cast<uint32_t>(ValueType::FLOAT32));
  put_raw(b, v);
  put(key, std::move(b));
}
void Writer::set_bool(const std::string& key, bool v) {
  std::string b;
  put_raw<uint32_t>(b, static_cast<uint32_t>(ValueType::BOOL));
  put_raw<uint8_t>(b, v ? 1 : 0);
  put(key, std::move(b));
}
void Writer::set_str_array(const std::string& key, const std::vector<std::string>& v) {
  std::string b;
  put_raw<uint32_t>(b, static_cast<uint32_t>(ValueType::ARRAY));
  put_raw<uint32_t>(b, static_cast<uint32_t>(ValueType::STRING));
  put_raw<uint64_t>(b, v.size());
  for (const auto& s : v) put_str(b, s);
  put(key, std::move(b));
}
void Writer::set_f32_array(const std::string& key, const std::vector<float>& v) {
  std::string b;
  put_raw<uint32_t>(b, static_cast<uint32_t>(ValueType::ARRAY));
  put_raw<uint32_t>(b, static_cast<uint32_t>(ValueType::FLOAT32));
  put_raw<uint64_t>(b, v.size());
  for (float x : v) put_raw(b, x);
  put(key, std::move(b));
}
void Writer::set_i32_array(const std::string& key, const std::vector<int32_t>& v) {
  std::string b;
  put_raw<uint32_t>(b, static_cast<uint32_t>(ValueType::ARRAY));
  put_raw<uint32_t>(b, static_cast<uint32_t>(ValueType::INT32));
  put_raw<uint64_t>(b, v.size());
  for (int32_t x : v) put_raw(b, x);
  put(key, std::move(b));
}

void Writer::add_tensor(const std::string& name, DType type, const std::vector<int64_t>& ne,
                        const void* data, size_t nbytes) {
  if (ne.empty() || ne.size() > 4) fail(ErrorKind::InvalidInput, "tensor '{}': 1..4 dims", name);
  int64_t rows = 1;
  for (size_t i = 1; i < ne.size(); ++i) rows *= ne[i];
  const size_t want = row_bytes(type, ne[0]) * static_cast<size_t>(rows);
  if (want != nbytes)
    fail(ErrorKind::InvalidInput, "tensor '{}': {} bytes given, shape needs {}", name, nbytes, want);
  tensors_.push_back({name, type, ne, data, nbytes});
}

void Writer::write(const std::string& path) const {
  constexpr size_t kAlign = 32;
  std::string head;
  put_raw<uint32_t>(head, kMagic);
  put_raw<uint32_t>(head, 3);
  put_raw<uint64_t>(head, tensors_.size());
  put_raw<uint64_t>(head, kv_.size());
  for (const auto& kv : kv_) {
    put_str(head, kv.key);
    head += kv.bytes;
  }
  uint64_t off = 0;
  std::vector<uint64_t> offsets;
  for (const auto& t : tensors_) {
    put_str(head, t.name);
    put_raw<uint32_t>(head, static_cast<uint32_t>(t.ne.size()));
    for (int64_t n : t.ne) put_raw<uint64_t>(head, static_cast<uint64_t>(n));
    put_raw<uint32_t>(head, static_cast<uint32_t>(t.type));
    put_raw<uint64_t>(head, off);
    offsets.push_back(off);
    off += (t.nbytes + kAlign - 1) / kAlign * kAlign;
  }
  head.resize((head.size() + kAlign - 1) / kAlign * kAlign, '\0');
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  if (!out) fail(ErrorKind::Io, "{}: cannot open for writing", path);
  out.write(head.data(), static_cast<std::streamsize>(head.size()));
  for (const auto& t : tensors_) {
    out.write(static_cast<const char*>(t.data), static_cast<std::streamsize>(t.nbytes));
    const size_t pad = (kAlign - t.nbytes % kAlign) % kAlign;
    static const char zeros[kAlign] = {};
    out.write(zeros, static_cast<std::streamsize>(pad));
  }
  if (!out) fail(ErrorKind::Io, "{}: write failed", path);
}

}  // namespace harmonia::gguf
