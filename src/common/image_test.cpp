// The PNG writer against an independent inflater for fixed-Huffman DEFLATE.
#include <gtest/gtest.h>

#include <cstring>
#include <random>

#include "common/image.h"

using namespace harmonia;

namespace {

// Minimal inflate of one fixed-Huffman block (what deflate_fixed writes).
std::string inflate_fixed(const std::string& z) {
  size_t pos = 0;
  auto bit = [&]() -> int {
    const int b = (static_cast<unsigned char>(z.at(pos / 8)) >> (pos % 8)) & 1;
    ++pos;
    return b;
  };
  auto bits = [&](int n) {
    int v = 0;
    for (int i = 0; i < n; ++i) v |= bit() << i;
    return v;
  };
  auto code = [&](int n) {
    int v = 0;
    for (int i = 0; i < n; ++i) v = (v << 1) | bit();
    return v;
  };
  static const int lb[] = {3, 4, 5, 6, 7, 8, 9, 10, 11, 13, 15, 17, 19, 23, 27, 31, 35, 43, 51, 59, 67, 83, 99, 115, 131, 163, 195, 227, 258};
  static const int le[] = {0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 2, 2, 2, 2, 3, 3, 3, 3, 4, 4, 4, 4, 5, 5, 5, 5, 0};
  static const int db[] = {1, 2, 3, 4, 5, 7, 9, 13, 17, 25, 33, 49, 65, 97, 129, 193, 257, 385, 513, 769, 1025, 1537, 2049, 3073, 4097, 6145, 8193, 12289, 16385, 24577};
  static const int de[] = {0, 0, 0, 0, 1, 1, 2, 2, 3, 3, 4, 4, 5, 5, 6, 6, 7, 7, 8, 8, 9, 9, 10, 10, 11, 11, 12, 12, 13, 13};
  EXPECT_EQ(bit(), 1);      // final
  EXPECT_EQ(bits(2), 1);    // fixed Huffman
  std::string out;
  while (true) {
    int sym = code(7);
    if (sym <= 23) sym += 256;
    else {
      sym = (sym << 1) | bit();
      if (sym >= 0x30 && sym <= 0xBF) sym -= 0x30;
      else if (sym >= 0xC0 && sym <= 0xC7) sym = sym - 0xC0 + 280;
      else sym = ((sym << 1) | bit()) - 0x190 + 144;
    }
    if (sym < 256) out.push_back(static_cast<char>(sym));
    else if (sym == 256) break;
    else {
      const int li = sym - 257;
      const int len = lb[li] + bits(le[li]);
      const int di = code(5);
      const int dist = db[di] + bits(de[di]);
      for (int k = 0; k < len; ++k) out.push_back(out[out.size() - dist]);
    }
  }
  return out;
}

uint32_t be32(const std::string& s, size_t i) {
  return (uint32_t(uint8_t(s[i])) << 24) | (uint32_t(uint8_t(s[i + 1])) << 16) | (uint32_t(uint8_t(s[i + 2])) << 8) |
         uint8_t(s[i + 3]);
}

}  // namespace

TEST(Image, DeflateRoundTrip) {
  std::mt19937 rng(1);
  for (size_t n : {0u, 1u, 2u, 3u, 100u, 5000u, 70000u}) {
    std::string rnd(n, '\0'), rep(n, '\0');
    for (size_t i = 0; i < n; ++i) {
      rnd[i] = static_cast<char>(rng());
      rep[i] = "abcabcabd"[i % 9] + static_cast<char>((i / 4000) % 3);
    }
    EXPECT_EQ(inflate_fixed(deflate_fixed(rnd)), rnd) << n;
    const std::string z = deflate_fixed(rep);
    EXPECT_EQ(inflate_fixed(z), rep) << n;
    if (n >= 5000) {
      EXPECT_LT(z.size(), n / 20);
    }
  }
}

TEST(Image, PngStructure) {
  Image img(37, 11, {10, 20, 30});
  img.line(0, 0, 36, 10, {255, 0, 0}, 2);
  img.text(1, 2, "Hi 0.5", {0, 0, 0});
  EXPECT_EQ(img.get(0, 0), (Rgb{255, 0, 0}));
  EXPECT_EQ(img.get(36, 0), (Rgb{10, 20, 30}));
  const std::string png = encode_png(img);
  ASSERT_EQ(png.substr(0, 8), std::string("\x89PNG\r\n\x1a\n", 8));
  EXPECT_EQ(png.substr(12, 4), "IHDR");
  EXPECT_EQ(be32(png, 16), 37u);
  EXPECT_EQ(be32(png, 20), 11u);
  const size_t idat = 8 + 12 + 13;
  EXPECT_EQ(png.substr(idat + 4, 4), "IDAT");
  const uint32_t len = be32(png, idat);
  const std::string z = png.substr(idat + 8, len);
  const std::string raw = inflate_fixed(z.substr(2, z.size() - 6));
  ASSERT_EQ(raw.size(), 11u * (1 + 37 * 3));
  // Undo the row filters and compare with the pixels.
  std::vector<uint8_t> prev(37 * 3, 0), cur(37 * 3);
  for (int y = 0; y < 11; ++y) {
    const int f = static_cast<uint8_t>(raw[y * (1 + 111)]);
    for (int i = 0; i < 111; ++i) {
      const int x = static_cast<uint8_t>(raw[y * 112 + 1 + i]);
      const int a = i >= 3 ? cur[i - 3] : 0, b = prev[i], c = i >= 3 ? prev[i - 3] : 0;
      int pred = 0;
      if (f == 1) pred = a;
      else if (f == 2) pred = b;
      else if (f == 3) pred = (a + b) / 2;
      else if (f == 4) {
        const int p = a + b - c, pa = std::abs(p - a), pb = std::abs(p - b), pc = std::abs(p - c);
        pred = (pa <= pb && pa <= pc) ? a : (pb <= pc ? b : c);
      }
      cur[i] = static_cast<uint8_t>(x + pred);
    }
    for (int i = 0; i < 111; ++i) ASSERT_EQ(cur[i], img.rgb()[y * 111 + i]) << y << "," << i;
    prev = cur;
  }
  EXPECT_EQ(png.substr(png.size() - 8, 4), "IEND");
}

TEST(Image, Colormap) {
  EXPECT_EQ(colormap_viridis(0), (Rgb{68, 1, 84}));
  EXPECT_EQ(colormap_viridis(1), (Rgb{253, 231, 37}));
  EXPECT_EQ(colormap_viridis(-3), colormap_viridis(0));
}
