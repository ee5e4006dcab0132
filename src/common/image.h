#pragma once
// Small RGB raster images and a PNG writer (stb_image_write), for plots and
// heatmaps in reports.
// Shared by sched/ (latency-vs-load plots) and eval/ (heatmaps).
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace harmonia {

struct Rgb {
  uint8_t r = 0, g = 0, b = 0;
  bool operator==(const Rgb&) const = default;
};

// A colour map for heatmaps: viridis-like, t in [0, 1] (clamped) from dark purple to yellow.
Rgb colormap_viridis(double t);

class Image {
 public:
  // width, height in pixels (>= 1; throws Error(InvalidInput) otherwise).
  Image(int width, int height, Rgb background = {255, 255, 255});
  int width() const { return w_; }
  int height() const { return h_; }
  // Pixels as [height][width][3] bytes, rows top to bottom.
  const std::vector<uint8_t>& rgb() const { return px_; }

  // Drawing clips silently at the borders.
  void set(int x, int y, Rgb c);
  Rgb get(int x, int y) const;  // (0,0,0) outside
  void fill_rect(int x, int y, int w, int h, Rgb c);
  void rect(int x, int y, int w, int h, Rgb c);  // 1-pixel outline
  // A straight line from (x0,y0) to (x1,y1) (pixel centres), `thickness` pixels wide.
  void line(double x0, double y0, double x1, double y1, Rgb c, int thickness = 1);
  // Text in a built-in 5x7 bitmap font (printable ASCII; others draw as '?'),
  // each glyph scaled by `scale` and 6*scale pixels apart. (x, y) is the top-left corner;
  // g, j, p, q, y descend 2*scale pixels below the 7*scale cell.
  void text(int x, int y, std::string_view s, Rgb c, int scale = 1);
  // Text rotated 90 degrees counter-clockwise (reads bottom to top); (x, y) is the bottom-left corner.
  void text_vertical(int x, int y, std::string_view s, Rgb c, int scale = 1);
  static int text_width(std::string_view s, int scale = 1) { return static_cast<int>(s.size()) * 6 * scale; }
  static int text_height(int scale = 1) { return 7 * scale; }

 private:
  int w_, h_;
  std::vector<uint8_t> px_;
};

// 8-bit RGB PNG bytes of the image; throws Error(Internal) if the encoder fails.
std::string encode_png(const Image& img);
// Writes encode_png(img) to `path`; throws Error(Io) naming the path.
void write_png(const std::string& path, const Image& img);

}  // namespace harmonia
