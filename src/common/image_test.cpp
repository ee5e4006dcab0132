// The PNG writer against an independent decoder (stb_image); drawing; colour map.
#include <gtest/gtest.h>

#include <cstring>
#include <random>

#include <stb_image.h>

#include "common/image.h"

using namespace harmonia;

namespace {

uint32_t be32(const std::string& s, size_t i) {
  return (uint32_t(uint8_t(s[i])) << 24) | (uint32_t(uint8_t(s[i + 1])) << 16) | (uint32_t(uint8_t(s[i + 2])) << 8) |
         uint8_t(s[i + 3]);
}

// Decodes PNG bytes with stb_image (an independent decoder) into [h][w][3].
std::vector<uint8_t> decode(const std::string& png, int* w, int* h) {
  int comp = 0;
  uint8_t* px = stbi_load_from_memory(reinterpret_cast<const stbi_uc*>(png.data()), static_cast<int>(png.size()), w,
                                      h, &comp, 3);
  EXPECT_NE(px, nullptr) << stbi_failure_reason();
  if (!px) return {};
  std::vector<uint8_t> out(px, px + static_cast<size_t>(*w) * *h * 3);
  stbi_image_free(px);
  return out;
}

}  // namespace

TEST(Image, PngDecodesToThePixels) {
  std::mt19937 rng(1);
  for (auto [w, h] : {std::pair{1, 1}, {37, 11}, {300, 200}}) {
    Image img(w, h, {10, 20, 30});
    img.line(0, 0, w - 1, h - 1, {255, 0, 0}, 2);
    img.text(1, 2, "Hi 0.5", {0, 0, 0});
    for (int i = 0; i < w * h / 10; ++i)
      img.set(static_cast<int>(rng() % w), static_cast<int>(rng() % h),
              {static_cast<uint8_t>(rng()), static_cast<uint8_t>(rng()), static_cast<uint8_t>(rng())});
    const std::string png = encode_png(img);
    ASSERT_EQ(png.substr(0, 8), std::string("\x89PNG\r\n\x1a\n", 8));
    EXPECT_EQ(png.substr(12, 4), "IHDR");
    EXPECT_EQ(be32(png, 16), static_cast<uint32_t>(w));
    EXPECT_EQ(be32(png, 20), static_cast<uint32_t>(h));
    int dw = 0, dh = 0;
    EXPECT_EQ(decode(png, &dw, &dh), img.rgb()) << w << "x" << h;
    EXPECT_EQ(dw, w);
    EXPECT_EQ(dh, h);
  }
  // A mostly flat plot compresses.
  Image flat(400, 300);
  flat.line(0, 0, 399, 299, {0, 0, 255});
  EXPECT_LT(encode_png(flat).size(), 400u * 300 * 3 / 20);
}

TEST(Image, Drawing) {
  Image img(37, 11, {10, 20, 30});
  img.line(0, 0, 36, 10, {255, 0, 0}, 2);
  EXPECT_EQ(img.get(0, 0), (Rgb{255, 0, 0}));
  EXPECT_EQ(img.get(36, 0), (Rgb{10, 20, 30}));
  EXPECT_EQ(img.get(-1, 0), (Rgb{0, 0, 0}));
}

TEST(Image, DescendersGoBelowTheBaseline) {
  // 'p' and 'o' share the x-height; only 'p' reaches rows 7-8 of the cell, and 'g' is no '9'.
  auto ink_rows = [](const std::string& s) {
    Image img(8, 12);
    img.text(1, 1, s, {0, 0, 0});
    std::vector<int> rows;
    for (int y = 0; y < 12; ++y)
      for (int x = 0; x < 8; ++x)
        if (img.get(x, y) == Rgb{0, 0, 0}) {
          rows.push_back(y - 1);
          break;
        }
    return rows;
  };
  EXPECT_EQ(ink_rows("o").back(), 6);
  EXPECT_EQ(ink_rows("p").back(), 8);
  EXPECT_EQ(ink_rows("g").back(), 8);
  EXPECT_EQ(ink_rows("9").back(), 6);
  EXPECT_EQ(ink_rows("p").front(), 2);
}

TEST(Image, Colormap) {
  EXPECT_EQ(colormap_viridis(0), (Rgb{68, 1, 84}));
  EXPECT_EQ(colormap_viridis(1), (Rgb{253, 231, 37}));
  EXPECT_EQ(colormap_viridis(-3), colormap_viridis(0));
}
