#pragma once
// Storage for large buffers that decode streams through every step (weights, the
// KV cache). Allocations of at least kHugePageBytes are 2 MiB-aligned and marked
// madvise(MADV_HUGEPAGE), so that Linux backs them with transparent huge pages
// when THP is in its "madvise" mode (Debian's default) as well as "always".
// Reading memory through 2 MiB instead of 4 KiB pages saves the TLB misses
// that a streaming read otherwise takes every 4 KiB (expensive in a VM with
// nested paging): measured +20-25% decode tokens/s for llama-110m f32 on the
// 2-core development VM (docs/perf/cpu.md). Smaller allocations and systems
// without THP fall back to the ordinary allocator behaviour.
#include <sys/mman.h>

#include <cstddef>
#include <cstdlib>
#include <new>
#include <vector>

namespace harmonia {

inline constexpr size_t kHugePageBytes = size_t{2} << 20;

// Raw allocation: n bytes, 2 MiB-aligned and advised for huge pages when
// n >= kHugePageBytes. Throws std::bad_alloc. Free with free_huge(p, n).
inline void* alloc_huge(size_t n) {
  if (n < kHugePageBytes) return ::operator new(n);
  const size_t rounded = (n + kHugePageBytes - 1) / kHugePageBytes * kHugePageBytes;
  void* p = std::aligned_alloc(kHugePageBytes, rounded);
  if (!p) throw std::bad_alloc();
#ifdef MADV_HUGEPAGE
  ::madvise(p, rounded, MADV_HUGEPAGE);  // advice only: failure (no THP) changes nothing
#endif
  return p;
}
inline void free_huge(void* p, size_t n) noexcept {
  if (!p) return;
  if (n < kHugePageBytes)
    ::operator delete(p);
  else
    std::free(p);
}

// std::allocator-compatible allocator over alloc_huge.
template <class T>
struct HugePageAllocator {
  using value_type = T;
  HugePageAllocator() noexcept = default;
  template <class U>
  HugePageAllocator(const HugePageAllocator<U>&) noexcept {}
  T* allocate(size_t n) {
    if (n > static_cast<size_t>(-1) / sizeof(T)) throw std::bad_alloc();
    return static_cast<T*>(alloc_huge(n * sizeof(T)));
  }
  void deallocate(T* p, size_t n) noexcept { free_huge(p, n * sizeof(T)); }
  template <class U>
  bool operator==(const HugePageAllocator<U>&) const noexcept {
    return true;
  }
};

// A vector whose large storage sits on huge pages.
template <class T>
using HugeVector = std::vector<T, HugePageAllocator<T>>;

}  // namespace harmonia
