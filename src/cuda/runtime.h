#pragma once
// The CUDA runtime as the rest of Harmonia sees it: device discovery, errors,
// device buffers and copies. No CUDA header leaks out of src/cuda: streams and
// device pointers cross this boundary as void* / typed pointers.
#include <cstddef>
#include <cstdint>
#include <string>

namespace harmonia::cuda {

// Number of CUDA devices; 0 when there is no driver, no device or the runtime
// fails to start (never throws). GPU tests skip when it is 0.
int device_count();

// One line about device 0: "NVIDIA H200, sm_90, 132 SMs, 139.8 GiB, L2 60.0 MiB".
// Throws Error(Unsupported) without a device.
std::string device_summary();

// Throws Error(Internal) "CUDA <what>: <name>: <description>" unless err is cudaSuccess (0).
void check(int err, const char* what);
// check() of cudaGetLastError() after a kernel launch.
void check_launch(const char* what);
// Throws Error(Internal) "cuFFT <what>: error <err>" unless err is CUFFT_SUCCESS (0).
void check_cufft(int err, const char* what);
// Error(Unsupported) / Error(InvalidInput) with `msg`, for code compiled by nvcc (no fmt there).
[[noreturn]] void fail_unsupported(const std::string& msg);
[[noreturn]] void fail_invalid(const std::string& msg);
// Multiprocessors of device 0 (sizes split-KV grids).
int sm_count();

// Device memory (cudaMalloc), freed on destruction; contents undefined until written.
class DeviceBuffer {
 public:
  DeviceBuffer() = default;
  explicit DeviceBuffer(size_t bytes) { reserve(bytes); }
  DeviceBuffer(const DeviceBuffer&) = delete;
  DeviceBuffer& operator=(const DeviceBuffer&) = delete;
  DeviceBuffer(DeviceBuffer&& o) noexcept : p_(o.p_), n_(o.n_) { o.p_ = nullptr, o.n_ = 0; }
  DeviceBuffer& operator=(DeviceBuffer&& o) noexcept;
  ~DeviceBuffer();
  // Grows to at least `bytes` (contents are not kept when it grows).
  void reserve(size_t bytes);
  void* get() const { return p_; }
  template <typename T>
  T* as() const {
    return static_cast<T*>(p_);
  }
  size_t bytes() const { return n_; }

 private:
  void* p_ = nullptr;
  size_t n_ = 0;
};

void to_device(void* dst, const void* src, size_t bytes);
void to_host(void* dst, const void* src, size_t bytes);
void copy_device(void* dst, const void* src, size_t bytes);
void fill_zero(void* dst, size_t bytes);
void synchronize();

// Wall time of GPU work between two points of the default stream, by CUDA events.
class EventTimer {
 public:
  EventTimer();
  ~EventTimer();
  EventTimer(const EventTimer&) = delete;
  EventTimer& operator=(const EventTimer&) = delete;
  void start();
  // Records the stop event, waits for it and returns the milliseconds since start().
  float stop_ms();

 private:
  void* a_ = nullptr;
  void* b_ = nullptr;
};

}  // namespace harmonia::cuda
