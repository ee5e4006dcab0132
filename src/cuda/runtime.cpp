#include "cuda/runtime.h"

#include <cuda_runtime.h>

#include "common/error.h"

namespace harmonia::cuda {

int device_count() {
  int n = 0;
  if (cudaGetDeviceCount(&n) != cudaSuccess) {
    cudaGetLastError();  // clear the sticky "no driver" error
    return 0;
  }
  return n;
}

std::string device_summary() {
  if (device_count() == 0) fail(ErrorKind::Unsupported, "no CUDA device");
  cudaDeviceProp p{};
  check(cudaGetDeviceProperties(&p, 0), "cudaGetDeviceProperties");
  return fmt::format("{}, sm_{}{}, {} SMs, {:.1f} GiB, L2 {:.1f} MiB", p.name, p.major, p.minor, p.multiProcessorCount,
                     static_cast<double>(p.totalGlobalMem) / (1 << 30), static_cast<double>(p.l2CacheSize) / (1 << 20));
}

void check(int err, const char* what) {
  if (err == cudaSuccess) return;
  const auto e = static_cast<cudaError_t>(err);
  fail(ErrorKind::Internal, "CUDA {}: {}: {}", what, cudaGetErrorName(e), cudaGetErrorString(e));
}

void check_launch(const char* what) { check(cudaGetLastError(), what); }

void check_cufft(int err, const char* what) {
  if (err != 0) fail(ErrorKind::Internal, "cuFFT {}: error {}", what, err);
}

void fail_unsupported(const std::string& msg) { throw Error(ErrorKind::Unsupported, msg); }
void fail_invalid(const std::string& msg) { throw Error(ErrorKind::InvalidInput, msg); }

int sm_count() {
  static const int n = [] {
    int v = 0;
    check(cudaDeviceGetAttribute(&v, cudaDevAttrMultiProcessorCount, 0), "cudaDeviceGetAttribute");
    return v;
  }();
  return n;
}

DeviceBuffer& DeviceBuffer::operator=(DeviceBuffer&& o) noexcept {
  if (this != &o) {
    if (p_) cudaFree(p_);
    p_ = o.p_;
    n_ = o.n_;
    o.p_ = nullptr;
    o.n_ = 0;
  }
  return *this;
}

DeviceBuffer::~DeviceBuffer() {
  if (p_) cudaFree(p_);
}

void DeviceBuffer::reserve(size_t bytes) {
  if (bytes <= n_) return;
  if (p_) check(cudaFree(p_), "cudaFree");
  p_ = nullptr;
  n_ = 0;
  const cudaError_t e = cudaMalloc(&p_, bytes);
  if (e != cudaSuccess)
    fail(ErrorKind::Internal, "CUDA cudaMalloc of {} bytes: {}", bytes, cudaGetErrorString(e));
  n_ = bytes;
}

void to_device(void* dst, const void* src, size_t bytes) {
  check(cudaMemcpy(dst, src, bytes, cudaMemcpyHostToDevice), "cudaMemcpy H2D");
}
void to_host(void* dst, const void* src, size_t bytes) {
  check(cudaMemcpy(dst, src, bytes, cudaMemcpyDeviceToHost), "cudaMemcpy D2H");
}
void copy_device(void* dst, const void* src, size_t bytes) {
  check(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyDeviceToDevice, 0), "cudaMemcpy D2D");
}
void fill_zero(void* dst, size_t bytes) { check(cudaMemsetAsync(dst, 0, bytes, 0), "cudaMemset"); }
void synchronize() { check(cudaDeviceSynchronize(), "cudaDeviceSynchronize"); }

EventTimer::EventTimer() {
  cudaEvent_t a, b;
  check(cudaEventCreate(&a), "cudaEventCreate");
  check(cudaEventCreate(&b), "cudaEventCreate");
  a_ = a;
  b_ = b;
}
EventTimer::~EventTimer() {
  cudaEventDestroy(static_cast<cudaEvent_t>(a_));
  cudaEventDestroy(static_cast<cudaEvent_t>(b_));
}
void EventTimer::start() { check(cudaEventRecord(static_cast<cudaEvent_t>(a_), 0), "cudaEventRecord"); }
float EventTimer::stop_ms() {
  check(cudaEventRecord(static_cast<cudaEvent_t>(b_), 0), "cudaEventRecord");
  check(cudaEventSynchronize(static_cast<cudaEvent_t>(b_)), "cudaEventSynchronize");
  float ms = 0;
  check(cudaEventElapsedTime(&ms, static_cast<cudaEvent_t>(a_), static_cast<cudaEvent_t>(b_)), "cudaEventElapsedTime");
  return ms;
}

}  // namespace harmonia::cuda
