#pragma once
// Figures for benchmark reports: a list of filled rectangles and text labels,
// rendered to SVG (vector text) and to PNG (through common/image.h: its 5x7
// bitmap font and PNG writer). One description, two identical layouts.
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "common/image.h"

namespace harmonia::eval {

enum class Anchor { Start, Middle, End };

struct Figure {
  struct Rect {
    int x = 0, y = 0, w = 0, h = 0;  // pixels, origin top-left
    uint32_t fill = 0xFFFFFF;        // 0xRRGGBB
    int64_t stroke = -1;             // 0xRRGGBB outline, -1 = none
  };
  struct Label {
    int x = 0, y = 0;  // anchor point; y is the top of the capitals
    std::string text;  // ASCII; other bytes draw as '?' in the PNG
    int scale = 2;     // glyph pixels: 5*scale wide, 7*scale tall, advance 6*scale
    uint32_t color = 0x202020;
    Anchor anchor = Anchor::Start;
  };

  int width = 0, height = 0;
  uint32_t background = 0xFFFFFF;
  std::vector<Rect> rects;    // drawn in order, then every label
  std::vector<Label> labels;

  static int text_width(std::string_view s, int scale) {
    return s.empty() ? 0 : static_cast<int>(s.size()) * 6 * scale - scale;
  }
  std::string to_svg() const;
  Image rasterize() const;
  std::string to_png() const;  // encode_png(rasterize())
};

// One heatmap panel per KV policy, all on the same colour scale [0, 1]
// (red -> yellow -> green, the colours of Kamradt's NIAH plots).
struct HeatmapPanel {
  std::string title;     // e.g. "full"
  std::string subtitle;  // e.g. "mean 42  KV 80.0 KiB"
  // cells[row][col] in [0, 1]; NaN = not measured (drawn grey).
  std::vector<std::vector<double>> cells;
};
struct HeatmapSpec {
  std::string title;
  std::string x_label, y_label;
  std::vector<std::string> x_ticks, y_ticks;  // columns, rows (top to bottom)
  std::string legend;                         // colour bar caption
  std::vector<HeatmapPanel> panels;
};
Figure heatmap_figure(const HeatmapSpec& spec);
// Colour of a score in [0, 1] (clamped).
uint32_t score_colour(double v);

}  // namespace harmonia::eval
