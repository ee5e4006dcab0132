#include "common/image.h"

#include <algorithm>
#include <array>
#include <cmath>
#include <fstream>

#include "common/error.h"

namespace harmonia {

namespace {

// 5x7 glyphs for ASCII 32..126: seven rows, top first; bit 4 is the leftmost column.
constexpr uint8_t kFont[95][7] = {
    {0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00},  // ' '
    {0x04, 0x04, 0x04, 0x04, 0x04, 0x00, 0x04},  // !
    {0x0A, 0x0A, 0x0A, 0x00, 0x00, 0x00, 0x00},  // "
    {0x0A, 0x0A, 0x1F, 0x0A, 0x1F, 0x0A, 0x0A},  // #
    {0x04, 0x0F, 0x14, 0x0E, 0x05, 0x1E, 0x04},  // $
    {0x18, 0x19, 0x02, 0x04, 0x08, 0x13, 0x03},  // %
    {0x0C, 0x12, 0x14, 0x08, 0x15, 0x12, 0x0D},  // &
    {0x0C, 0x04, 0x08, 0x00, 0x00, 0x00, 0x00},  // '
    {0x02, 0x04, 0x08, 0x08, 0x08, 0x04, 0x02},  // (
    {0x08, 0x04, 0x02, 0x02, 0x02, 0x04, 0x08},  // )
    {0x00, 0x04, 0x15, 0x0E, 0x15, 0x04, 0x00},  // *
    {0x00, 0x04, 0x04, 0x1F, 0x04, 0x04, 0x00},  // +
    {0x00, 0x00, 0x00, 0x00, 0x0C, 0x04, 0x08},  // ,
    {0x00, 0x00, 0x00, 0x1F, 0x00, 0x00, 0x00},  // -
    {0x00, 0x00, 0x00, 0x00, 0x00, 0x0C, 0x0C},  // .
    {0x00, 0x01, 0x02, 0x04, 0x08, 0x10, 0x00},  // /
    {0x0E, 0x11, 0x13, 0x15, 0x19, 0x11, 0x0E},  // 0
    {0x04, 0x0C, 0x04, 0x04, 0x04, 0x04, 0x0E},  // 1
    {0x0E, 0x11, 0x01, 0x02, 0x04, 0x08, 0x1F},  // 2
    {0x1F, 0x02, 0x04, 0x02, 0x01, 0x11, 0x0E},  // 3
    {0x02, 0x06, 0x0A, 0x12, 0x1F, 0x02, 0x02},  // 4
    {0x1F, 0x10, 0x1E, 0x01, 0x01, 0x11, 0x0E},  // 5
    {0x06, 0x08, 0x10, 0x1E, 0x11, 0x11, 0x0E},  // 6
    {0x1F, 0x01, 0x02, 0x04, 0x08, 0x08, 0x08},  // 7
    {0x0E, 0x11, 0x11, 0x0E, 0x11, 0x11, 0x0E},  // 8
    {0x0E, 0x11, 0x11, 0x0F, 0x01, 0x02, 0x0C},  // 9
    {0x00, 0x0C, 0x0C, 0x00, 0x0C, 0x0C, 0x00},  // :
    {0x00, 0x0C, 0x0C, 0x00, 0x0C, 0x04, 0x08},  // ;
    {0x02, 0x04, 0x08, 0x10, 0x08, 0x04, 0x02},  // <
    {0x00, 0x00, 0x1F, 0x00, 0x1F, 0x00, 0x00},  // =
    {0x08, 0x04, 0x02, 0x01, 0x02, 0x04, 0x08},  // >
    {0x0E, 0x11, 0x01, 0x02, 0x04, 0x00, 0x04},  // ?
    {0x0E, 0x11, 0x01, 0x0D, 0x15, 0x15, 0x0E},  // @
    {0x0E, 0x11, 0x11, 0x11, 0x1F, 0x11, 0x11},  // A
    {0x1E, 0x11, 0x11, 0x1E, 0x11, 0x11, 0x1E},  // B
    {0x0E, 0x11, 0x10, 0x10, 0x10, 0x11, 0x0E},  // C
    {0x1C, 0x12, 0x11, 0x11, 0x11, 0x12, 0x1C},  // D
    {0x1F, 0x10, 0x10, 0x1E, 0x10, 0x10, 0x1F},  // E
    {0x1F, 0x10, 0x10, 0x1E, 0x10, 0x10, 0x10},  // F
    {0x0E, 0x11, 0x10, 0x17, 0x11, 0x11, 0x0F},  // G
    {0x11, 0x11, 0x11, 0x1F, 0x11, 0x11, 0x11},  // H
    {0x0E, 0x04, 0x04, 0x04, 0x04, 0x04, 0x0E},  // I
    {0x07, 0x02, 0x02, 0x02, 0x02, 0x12, 0x0C},  // J
    {0x11, 0x12, 0x14, 0x18, 0x14, 0x12, 0x11},  // K
    {0x10, 0x10, 0x10, 0x10, 0x10, 0x10, 0x1F},  // L
    {0x11, 0x1B, 0x15, 0x15, 0x11, 0x11, 0x11},  // M
    {0x11, 0x11, 0x19, 0x15, 0x13, 0x11, 0x11},  // N
    {0x0E, 0x11, 0x11, 0x11, 0x11, 0x11, 0x0E},  // O
    {0x1E, 0x11, 0x11, 0x1E, 0x10, 0x10, 0x10},  // P
    {0x0E, 0x11, 0x11, 0x11, 0x15, 0x12, 0x0D},  // Q
    {0x1E, 0x11, 0x11, 0x1E, 0x14, 0x12, 0x11},  // R
    {0x0F, 0x10, 0x10, 0x0E, 0x01, 0x01, 0x1E},  // S
    {0x1F, 0x04, 0x04, 0x04, 0x04, 0x04, 0x04},  // T
    {0x11, 0x11, 0x11, 0x11, 0x11, 0x11, 0x0E},  // U
    {0x11, 0x11, 0x11, 0x11, 0x11, 0x0A, 0x04},  // V
    {0x11, 0x11, 0x11, 0x15, 0x15, 0x15, 0x0A},  // W
    {0x11, 0x11, 0x0A, 0x04, 0x0A, 0x11, 0x11},  // X
    {0x11, 0x11, 0x11, 0x0A, 0x04, 0x04, 0x04},  // Y
    {0x1F, 0x01, 0x02, 0x04, 0x08, 0x10, 0x1F},  // Z
    {0x0E, 0x08, 0x08, 0x08, 0x08, 0x08, 0x0E},  // [
    {0x00, 0x10, 0x08, 0x04, 0x02, 0x01, 0x00},  // backslash
    {0x0E, 0x02, 0x02, 0x02, 0x02, 0x02, 0x0E},  // ]
    {0x04, 0x0A, 0x11, 0x00, 0x00, 0x00, 0x00},  // ^
    {0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x1F},  // _
    {0x08, 0x04, 0x02, 0x00, 0x00, 0x00, 0x00},  // `
    {0x00, 0x00, 0x0E, 0x01, 0x0F, 0x11, 0x0F},  // a
    {0x10, 0x10, 0x16, 0x19, 0x11, 0x11, 0x1E},  // b
    {0x00, 0x00, 0x0E, 0x10, 0x10, 0x11, 0x0E},  // c
    {0x01, 0x01, 0x0D, 0x13, 0x11, 0x11, 0x0F},  // d
    {0x00, 0x00, 0x0E, 0x11, 0x1F, 0x10, 0x0E},  // e
    {0x06, 0x09, 0x08, 0x1C, 0x08, 0x08, 0x08},  // f
    {0x00, 0x0F, 0x11, 0x11, 0x0F, 0x01, 0x0E},  // g
    {0x10, 0x10, 0x16, 0x19, 0x11, 0x11, 0x11},  // h
    {0x04, 0x00, 0x0C, 0x04, 0x04, 0x04, 0x0E},  // i
    {0x02, 0x00, 0x06, 0x02, 0x02, 0x12, 0x0C},  // j
    {0x10, 0x10, 0x12, 0x14, 0x18, 0x14, 0x12},  // k
    {0x0C, 0x04, 0x04, 0x04, 0x04, 0x04, 0x0E},  // l
    {0x00, 0x00, 0x1A, 0x15, 0x15, 0x11, 0x11},  // m
    {0x00, 0x00, 0x16, 0x19, 0x11, 0x11, 0x11},  // n
    {0x00, 0x00, 0x0E, 0x11, 0x11, 0x11, 0x0E},  // o
    {0x00, 0x00, 0x1E, 0x11, 0x1E, 0x10, 0x10},  // p
    {0x00, 0x00, 0x0D, 0x13, 0x0F, 0x01, 0x01},  // q
    {0x00, 0x00, 0x16, 0x19, 0x10, 0x10, 0x10},  // r
    {0x00, 0x00, 0x0E, 0x10, 0x0E, 0x01, 0x1E},  // s
    {0x08, 0x08, 0x1C, 0x08, 0x08, 0x09, 0x06},  // t
    {0x00, 0x00, 0x11, 0x11, 0x11, 0x13, 0x0D},  // u
    {0x00, 0x00, 0x11, 0x11, 0x11, 0x0A, 0x04},  // v
    {0x00, 0x00, 0x11, 0x11, 0x15, 0x15, 0x0A},  // w
    {0x00, 0x00, 0x11, 0x0A, 0x04, 0x0A, 0x11},  // x
    {0x00, 0x00, 0x11, 0x11, 0x0F, 0x01, 0x0E},  // y
    {0x00, 0x00, 0x1F, 0x02, 0x04, 0x08, 0x1F},  // z
    {0x02, 0x04, 0x04, 0x08, 0x04, 0x04, 0x02},  // {
    {0x04, 0x04, 0x04, 0x04, 0x04, 0x04, 0x04},  // |
    {0x08, 0x04, 0x04, 0x02, 0x04, 0x04, 0x08},  // }
    {0x00, 0x00, 0x08, 0x15, 0x02, 0x00, 0x00},  // ~
};

const uint8_t* glyph(char ch) {
  const int c = static_cast<unsigned char>(ch);
  return kFont[(c >= 32 && c <= 126) ? c - 32 : '?' - 32];
}

// ---- PNG / zlib plumbing ----------------------------------------------------------------

uint32_t crc32(const uint8_t* p, size_t n, uint32_t crc = 0) {
  static const std::array<uint32_t, 256> table = [] {
    std::array<uint32_t, 256> t{};
    for (uint32_t i = 0; i < 256; ++i) {
      uint32_t c = i;
      for (int k = 0; k < 8; ++k) c = (c & 1) ? 0xEDB88320u ^ (c >> 1) : c >> 1;
      t[i] = c;
    }
    return t;
  }();
  crc = ~crc;
  for (size_t i = 0; i < n; ++i) crc = table[(crc ^ p[i]) & 0xFF] ^ (crc >> 8);
  return ~crc;
}

uint32_t adler32(std::string_view d) {
  uint32_t a = 1, b = 0;
  for (unsigned char c : d) {
    a = (a + c) % 65521;
    b = (b + a) % 65521;
  }
  return (b << 16) | a;
}

void put_be32(std::string& s, uint32_t v) {
  for (int i = 3; i >= 0; --i) s.push_back(static_cast<char>((v >> (8 * i)) & 0xFF));
}

void put_chunk(std::string& out, const char* type, std::string_view data) {
  put_be32(out, static_cast<uint32_t>(data.size()));
  std::string body(type, 4);
  body.append(data);
  out.append(body);
  put_be32(out, crc32(reinterpret_cast<const uint8_t*>(body.data()), body.size()));
}

class BitWriter {
 public:
  // `n` bits of `v`, least significant first (DEFLATE's order for everything but Huffman codes).
  void bits(uint32_t v, int n) {
    for (int i = 0; i < n; ++i) bit((v >> i) & 1);
  }
  // A Huffman code of `n` bits, most significant first.
  void code(uint32_t v, int n) {
    for (int i = n - 1; i >= 0; --i) bit((v >> i) & 1);
  }
  std::string finish() {
    if (nbits_) out_.push_back(static_cast<char>(cur_));
    nbits_ = 0;
    cur_ = 0;
    return std::move(out_);
  }

 private:
  void bit(uint32_t b) {
    cur_ |= static_cast<uint8_t>(b << nbits_);
    if (++nbits_ == 8) {
      out_.push_back(static_cast<char>(cur_));
      cur_ = 0;
      nbits_ = 0;
    }
  }
  std::string out_;
  uint8_t cur_ = 0;
  int nbits_ = 0;
};

// Fixed literal/length code (RFC 1951 §3.2.6).
void put_litlen(BitWriter& bw, int sym) {
  if (sym < 144) bw.code(0x30 + sym, 8);
  else if (sym < 256) bw.code(0x190 + (sym - 144), 9);
  else if (sym < 280) bw.code(sym - 256, 7);
  else bw.code(0xC0 + (sym - 280), 8);
}

constexpr int kLenBase[29] = {3, 4, 5, 6, 7, 8, 9, 10, 11, 13, 15, 17, 19, 23, 27, 31,
                              35, 43, 51, 59, 67, 83, 99, 115, 131, 163, 195, 227, 258};
constexpr int kLenExtra[29] = {0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 2, 2, 2, 2, 3, 3, 3, 3, 4, 4, 4, 4, 5, 5, 5, 5, 0};
constexpr int kDistBase[30] = {1, 2, 3, 4, 5, 7, 9, 13, 17, 25, 33, 49, 65, 97, 129,
                               193, 257, 385, 513, 769, 1025, 1537, 2049, 3073, 4097, 6145, 8193, 12289, 16385, 24577};
constexpr int kDistExtra[30] = {0, 0, 0, 0, 1, 1, 2, 2, 3, 3, 4, 4, 5, 5, 6, 6, 7, 7, 8, 8, 9, 9, 10, 10, 11, 11, 12, 12, 13, 13};

void put_match(BitWriter& bw, int len, int dist) {
  int li = 28;
  while (kLenBase[li] > len) --li;
  put_litlen(bw, 257 + li);
  bw.bits(static_cast<uint32_t>(len - kLenBase[li]), kLenExtra[li]);
  int di = 29;
  while (kDistBase[di] > dist) --di;
  bw.code(static_cast<uint32_t>(di), 5);
  bw.bits(static_cast<uint32_t>(dist - kDistBase[di]), kDistExtra[di]);
}

}  // namespace

std::string deflate_fixed(std::string_view data) {
  constexpr int kWindow = 32768, kHashBits = 15, kMaxChain = 32, kMinMatch = 3, kMaxMatch = 258;
  const auto* d = reinterpret_cast<const uint8_t*>(data.data());
  const int n = static_cast<int>(data.size());
  std::vector<int> head(1 << kHashBits, -1), prev(static_cast<size_t>(n), -1);
  auto hash = [&](int i) {
    return ((static_cast<uint32_t>(d[i]) << 10) ^ (static_cast<uint32_t>(d[i + 1]) << 5) ^ d[i + 2]) &
           ((1u << kHashBits) - 1);
  };
  auto insert = [&](int i) {
    if (i + kMinMatch > n) return;
    const uint32_t h = hash(i);
    prev[i] = head[h];
    head[h] = i;
  };
  BitWriter bw;
  bw.bits(1, 1);  // BFINAL
  bw.bits(1, 2);  // BTYPE = 01, fixed Huffman
  int i = 0;
  while (i < n) {
    int best_len = 0, best_dist = 0;
    if (i + kMinMatch <= n) {
      int cand = head[hash(i)];
      for (int chain = 0; cand >= 0 && i - cand <= kWindow && chain < kMaxChain; ++chain, cand = prev[cand]) {
        const int limit = std::min(kMaxMatch, n - i);
        int len = 0;
        while (len < limit && d[cand + len] == d[i + len]) ++len;
        if (len > best_len) {
          best_len = len;
          best_dist = i - cand;
          if (len == limit) break;
        }
      }
    }
    if (best_len >= kMinMatch) {
      put_match(bw, best_len, best_dist);
      for (int k = 0; k < best_len; ++k) insert(i + k);
      i += best_len;
    } else {
      put_litlen(bw, d[i]);
      insert(i);
      ++i;
    }
  }
  put_litlen(bw, 256);  // end of block
  return bw.finish();
}

Rgb colormap_viridis(double t) {
  // Five anchors of matplotlib's viridis, linearly interpolated.
  static constexpr double a[5][3] = {{68, 1, 84}, {59, 82, 139}, {33, 145, 140}, {94, 201, 98}, {253, 231, 37}};
  if (!(t >= 0)) t = 0;
  if (t > 1) t = 1;
  const double x = t * 4;
  const int i = std::min(3, static_cast<int>(x));
  const double f = x - i;
  auto mix = [&](int k) { return static_cast<uint8_t>(std::lround(a[i][k] + (a[i + 1][k] - a[i][k]) * f)); };
  return {mix(0), mix(1), mix(2)};
}

Image::Image(int width, int height, Rgb bg) : w_(width), h_(height) {
  if (width < 1 || height < 1 || static_cast<int64_t>(width) * height > (int64_t{1} << 28))
    fail(ErrorKind::InvalidInput, "image size {}x{} must be at least 1x1 and at most 2^28 pixels", width, height);
  px_.resize(static_cast<size_t>(w_) * h_ * 3);
  for (size_t i = 0; i < px_.size(); i += 3) {
    px_[i] = bg.r;
    px_[i + 1] = bg.g;
    px_[i + 2] = bg.b;
  }
}

void Image::set(int x, int y, Rgb c) {
  if (x < 0 || y < 0 || x >= w_ || y >= h_) return;
  uint8_t* p = &px_[(static_cast<size_t>(y) * w_ + x) * 3];
  p[0] = c.r;
  p[1] = c.g;
  p[2] = c.b;
}

Rgb Image::get(int x, int y) const {
  if (x < 0 || y < 0 || x >= w_ || y >= h_) return {};
  const uint8_t* p = &px_[(static_cast<size_t>(y) * w_ + x) * 3];
  return {p[0], p[1], p[2]};
}

void Image::fill_rect(int x, int y, int w, int h, Rgb c) {
  for (int yy = std::max(0, y); yy < std::min(h_, y + h); ++yy)
    for (int xx = std::max(0, x); xx < std::min(w_, x + w); ++xx) set(xx, yy, c);
}

void Image::rect(int x, int y, int w, int h, Rgb c) {
  fill_rect(x, y, w, 1, c);
  fill_rect(x, y + h - 1, w, 1, c);
  fill_rect(x, y, 1, h, c);
  fill_rect(x + w - 1, y, 1, h, c);
}

void Image::line(double x0, double y0, double x1, double y1, Rgb c, int thickness) {
  const double len = std::max(std::abs(x1 - x0), std::abs(y1 - y0));
  const int steps = std::max(1, static_cast<int>(std::ceil(len * 2)));
  const int lo = -(thickness - 1) / 2, hi = thickness / 2;
  for (int s = 0; s <= steps; ++s) {
    const double t = static_cast<double>(s) / steps;
    const int x = static_cast<int>(std::lround(x0 + (x1 - x0) * t));
    const int y = static_cast<int>(std::lround(y0 + (y1 - y0) * t));
    for (int dy = lo; dy <= hi; ++dy)
      for (int dx = lo; dx <= hi; ++dx) set(x + dx, y + dy, c);
  }
}

void Image::text(int x, int y, std::string_view s, Rgb c, int scale) {
  for (size_t k = 0; k < s.size(); ++k) {
    const uint8_t* g = glyph(s[k]);
    const int gx = x + static_cast<int>(k) * 6 * scale;
    for (int row = 0; row < 7; ++row)
      for (int col = 0; col < 5; ++col)
        if (g[row] & (0x10 >> col)) fill_rect(gx + col * scale, y + row * scale, scale, scale, c);
  }
}

void Image::text_vertical(int x, int y, std::string_view s, Rgb c, int scale) {
  for (size_t k = 0; k < s.size(); ++k) {
    const uint8_t* g = glyph(s[k]);
    const int gy = y - static_cast<int>(k) * 6 * scale;  // baseline runs upwards
    for (int row = 0; row < 7; ++row)
      for (int col = 0; col < 5; ++col)
        if (g[row] & (0x10 >> col)) fill_rect(x + row * scale, gy - (col + 1) * scale, scale, scale, c);
  }
}

std::string encode_png(const Image& img) {
  const int w = img.width(), h = img.height();
  const size_t stride = static_cast<size_t>(w) * 3;
  const uint8_t* px = img.rgb().data();
  // Filtered scanlines: per row the filter (None, Sub, Up, Paeth) with the least sum of |residual|.
  std::string raw;
  raw.reserve((stride + 1) * h);
  std::string cand[4];
  for (int y = 0; y < h; ++y) {
    const uint8_t* row = px + y * stride;
    const uint8_t* up = y > 0 ? row - stride : nullptr;
    for (auto& c : cand) c.assign(stride, '\0');
    for (size_t i = 0; i < stride; ++i) {
      const int a = i >= 3 ? row[i - 3] : 0, b = up ? up[i] : 0, cc = (up && i >= 3) ? up[i - 3] : 0;
      const int p = a + b - cc, pa = std::abs(p - a), pb = std::abs(p - b), pc = std::abs(p - cc);
      const int pred = (pa <= pb && pa <= pc) ? a : (pb <= pc ? b : cc);
      cand[0][i] = static_cast<char>(row[i]);
      cand[1][i] = static_cast<char>(row[i] - a);
      cand[2][i] = static_cast<char>(row[i] - b);
      cand[3][i] = static_cast<char>(row[i] - pred);
    }
    int best = 0;
    long best_cost = -1;
    const int filter_type[4] = {0, 1, 2, 4};
    for (int f = 0; f < 4; ++f) {
      long cost = 0;
      for (char ch : cand[f]) cost += std::abs(static_cast<int>(static_cast<signed char>(ch)));
      if (best_cost < 0 || cost < best_cost) {
        best_cost = cost;
        best = f;
      }
    }
    raw.push_back(static_cast<char>(filter_type[best]));
    raw.append(cand[best]);
  }
  std::string z;
  z.push_back(static_cast<char>(0x78));  // zlib: deflate, 32K window
  z.push_back(static_cast<char>(0x01));  // (0x7801 % 31 == 0)
  z.append(deflate_fixed(raw));
  put_be32(z, adler32(raw));

  std::string out("\x89PNG\r\n\x1a\n", 8);
  std::string ihdr;
  put_be32(ihdr, static_cast<uint32_t>(w));
  put_be32(ihdr, static_cast<uint32_t>(h));
  ihdr += std::string("\x08\x02\x00\x00\x00", 5);  // 8-bit, RGB, deflate, adaptive filter, no interlace
  put_chunk(out, "IHDR", ihdr);
  put_chunk(out, "IDAT", z);
  put_chunk(out, "IEND", "");
  return out;
}

void write_png(const std::string& path, const Image& img) {
  const std::string bytes = encode_png(img);
  std::ofstream f(path, std::ios::binary | std::ios::trunc);
  if (!f) fail(ErrorKind::Io, "{}: cannot open for writing", path);
  f.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
  if (!f) fail(ErrorKind::Io, "{}: write failed", path);
}

}  // namespace harmonia
