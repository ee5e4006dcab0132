#pragma once
// Read-only memory-mapped file. Model weights are used in place from the map
// wherever the on-disk layout is the compute layout (GGUF, safetensors, llama2.c).
#include <cstddef>
#include <cstdint>
#include <string>

namespace harmonia {

class MappedFile {
 public:
  // Throws Error(Io) naming `path` if it cannot be opened or mapped.
  explicit MappedFile(const std::string& path);
  ~MappedFile();
  MappedFile(const MappedFile&) = delete;
  MappedFile& operator=(const MappedFile&) = delete;

  const uint8_t* data() const { return data_; }
  size_t size() const { return size_; }  // bytes
  const std::string& path() const { return path_; }

 private:
  std::string path_;
  const uint8_t* data_ = nullptr;
  size_t size_ = 0;
};

// Whole file into a string; throws Error(Io) naming the path.
std::string read_file(const std::string& path);

}  // namespace harmonia
