// Model::alloc: owned weight buffers (zero-filled, 64-byte aligned, small ones
// packed into shared huge-page arenas without overlapping).
#include <gtest/gtest.h>

#include <algorithm>
#include <cstdint>
#include <utility>
#include <vector>

#include "common/huge_pages.h"
#include "common/testing.h"
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

// A GGUF's decode matrices are copied out of the file mapping by default (LoadOptions::mmap_weights
// false) and stay views into it with mmap_weights: same bytes either way, the copies not inside the
// mapping, a tied output still the embedding table.
TEST(ModelLoad, GgufDecodeMatricesCopiedOrMapped) {
  HARMONIA_REQUIRE_SHARED("models/stories260K/stories260K.gguf");
  const std::string path = shared_path("models/stories260K/stories260K.gguf");
  LoadOptions mapped_opts;
  mapped_opts.mmap_weights = true;
  auto mapped = load_gguf(path, mapped_opts);
  auto copied = load_gguf(path, {});
  const ModelWeights &a = mapped->weights, &b = copied->weights;
  auto same_bytes = [](const Tensor& x, const Tensor& y) {
    return x.nbytes == y.nbytes && std::equal(static_cast<const uint8_t*>(x.data),
                                              static_cast<const uint8_t*>(x.data) + x.nbytes,
                                              static_cast<const uint8_t*>(y.data));
  };
  ASSERT_EQ(a.layers.size(), b.layers.size());
  for (size_t i = 0; i < a.layers.size(); ++i) {
    const LayerWeights &la = a.layers[i], &lb = b.layers[i];
    const std::vector<std::pair<const Tensor*, const Tensor*>> pairs = {
        {&la.wq, &lb.wq}, {&la.wk, &lb.wk}, {&la.wv, &lb.wv}, {&la.wo, &lb.wo},
        {&la.w_gate, &lb.w_gate}, {&la.w_up, &lb.w_up}, {&la.w_down, &lb.w_down}};
    for (const auto& [x, y] : pairs) {
      EXPECT_TRUE(same_bytes(*x, *y)) << "layer " << i << " " << x->name;
      EXPECT_NE(x->data, y->data) << "layer " << i << " " << x->name << " was not copied";
      EXPECT_EQ(reinterpret_cast<uintptr_t>(y->data) % 64, 0u);
    }
  }
  EXPECT_TRUE(same_bytes(a.output, b.output));
  EXPECT_NE(a.output.data, b.output.data);
  EXPECT_TRUE(same_bytes(a.tok_embd, b.tok_embd));
  EXPECT_EQ(copied->config.tied_embeddings, b.output.data == b.tok_embd.data);
}

// The same for a llama2.c file (f32 views into its mapping; shared classifier) and a Hugging Face
// safetensors folder.
TEST(ModelLoad, Llama2cAndHfDecodeMatricesCopiedOrMapped) {
  HARMONIA_REQUIRE_SHARED("models/stories260K/stories260K.bin");
  HARMONIA_REQUIRE_SHARED("models/TinyStories-656K/model.safetensors");
  for (const std::string rel : {"models/stories260K/stories260K.bin", "models/TinyStories-656K"}) {
    SCOPED_TRACE(rel);
    LoadOptions mapped_opts;
    mapped_opts.mmap_weights = true;
    auto mapped = load_model(shared_path(rel), mapped_opts);
    auto copied = load_model(shared_path(rel), {});
    const Tensor &x = mapped->weights.layers.at(0).w_down, &y = copied->weights.layers.at(0).w_down;
    ASSERT_EQ(x.nbytes, y.nbytes);
    EXPECT_TRUE(std::equal(static_cast<const uint8_t*>(x.data), static_cast<const uint8_t*>(x.data) + x.nbytes,
                           static_cast<const uint8_t*>(y.data)));
    EXPECT_EQ(reinterpret_cast<uintptr_t>(y.data) % 64, 0u);
    EXPECT_EQ(copied->config.tied_embeddings, copied->weights.output.data == copied->weights.tok_embd.data);
  }
}

}  // namespace
}  // namespace harmonia
