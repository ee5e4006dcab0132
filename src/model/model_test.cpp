// Model::alloc: owned weight buffers (zero-filled, 64-byte aligned, small ones
// packed into shared huge-page arenas without overlapping).
#include <gtest/gtest.h>

#include <algorithm>
#include <cstdint>
#include <utility>
#include <vector>

#include "common/huge_pages.h"
#include "model/model.h"

namespace harmonia {
namespace {

TEST(ModelAlloc, ZeroedAlignedAndDisjoint) {
  Model m;
  std::vector<std::pair<uint8_t*, size_t>> got;
  // the shapes of a llama-110m q8_0 layer, a norm, odd sizes, one above a huge page
  for (size_t n : {size_t{626688}, size_t{3072}, size_t{1}, size_t{63}, size_t{1671168}, size_t{65},
                   kHugePageBytes + 5, size_t{1671168}, size_t{1671168}, size_t{1671168}, size_t{1671168}}) {
    uint8_t* p = m.alloc(n);
    ASSERT_NE(p, nullptr);
    EXPECT_EQ(reinterpret_cast<uintptr_t>(p) % 64, 0u) << n;
    EXPECT_TRUE(std::all_of(p, p + n, [](uint8_t b) { return b == 0; })) << n;
    std::fill(p, p + n, uint8_t{0xCD});  // a later buffer overlapping this one would not read as zero
    got.emplace_back(p, n);
  }
  std::sort(got.begin(), got.end());
  for (size_t i = 1; i < got.size(); ++i) EXPECT_LE(got[i - 1].first + got[i - 1].second, got[i].first);
  EXPECT_LT(m.owned.size(), got.size());  // small buffers shared arenas
}

}  // namespace
}  // namespace harmonia
