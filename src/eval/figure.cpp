#include "eval/figure.h"

#include <algorithm>
#include <cmath>

#include <fmt/format.h>

#include "common/error.h"

namespace harmonia::eval {

namespace {

std::string xml_escape(std::string_view s) {
  std::string out;
  for (char c : s) {
    switch (c) {
      case '&': out += "&amp;"; break;
      case '<': out += "&lt;"; break;
      case '>': out += "&gt;"; break;
      case '"': out += "&quot;"; break;
      default: out += c;
    }
  }
  return out;
}

std::string hex(uint32_t c) { return fmt::format("#{:06x}", c & 0xFFFFFF); }

int anchor_x(const Figure::Label& l) {
  const int w = Figure::text_width(l.text, l.scale);
  return l.anchor == Anchor::Start ? l.x : l.anchor == Anchor::Middle ? l.x - w / 2 : l.x - w;
}

}  // namespace

std::string Figure::to_svg() const {
  std::string s = fmt::format(
      "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{0}\" height=\"{1}\" viewBox=\"0 0 {0} {1}\">\n"
      "<rect x=\"0\" y=\"0\" width=\"{0}\" height=\"{1}\" fill=\"{2}\"/>\n",
      width, height, hex(background));
  for (const auto& r : rects) {
    s += fmt::format("<rect x=\"{}\" y=\"{}\" width=\"{}\" height=\"{}\" fill=\"{}\"", r.x, r.y, r.w, r.h, hex(r.fill));
    if (r.stroke >= 0) s += fmt::format(" stroke=\"{}\" stroke-width=\"1\"", hex(static_cast<uint32_t>(r.stroke)));
    s += "/>\n";
  }
  // Monospace text sized like the bitmap font: cap height 7*scale, advance 6*scale.
  for (const auto& l : labels) {
    const char* anchor = l.anchor == Anchor::Start ? "start" : l.anchor == Anchor::Middle ? "middle" : "end";
    s += fmt::format(
        "<text x=\"{}\" y=\"{}\" font-family=\"DejaVu Sans Mono, Menlo, Consolas, monospace\" font-size=\"{}\" "
        "fill=\"{}\" text-anchor=\"{}\">{}</text>\n",
        l.x, l.y + 7 * l.scale, 10 * l.scale, hex(l.color), anchor, xml_escape(l.text));
  }
  s += "</svg>\n";
  return s;
}

Image Figure::rasterize() const {
  auto rgb = [](uint32_t c) { return Rgb{uint8_t(c >> 16), uint8_t(c >> 8), uint8_t(c)}; };
  Image img(width, height, rgb(background));
  for (const auto& r : rects) {
    img.fill_rect(r.x, r.y, r.w, r.h, rgb(r.fill));
    if (r.stroke >= 0) img.rect(r.x, r.y, r.w, r.h, rgb(static_cast<uint32_t>(r.stroke)));
  }
  for (const auto& l : labels) img.text(anchor_x(l), l.y, l.text, rgb(l.color), l.scale);
  return img;
}

std::string Figure::to_png() const { return encode_png(rasterize()); }

uint32_t score_colour(double v) {
  // Kamradt's colormap: #F0496E (0) -> #EBB839 (0.5) -> #0CD79F (1).
  static const double stops[3][3] = {{0xF0, 0x49, 0x6E}, {0xEB, 0xB8, 0x39}, {0x0C, 0xD7, 0x9F}};
  v = std::clamp(v, 0.0, 1.0);
  const int seg = v < 0.5 ? 0 : 1;
  const double t = (v - 0.5 * seg) / 0.5;
  uint32_t c = 0;
  for (int k = 0; k < 3; ++k) {
    const double x = stops[seg][k] + (stops[seg + 1][k] - stops[seg][k]) * t;
    c = (c << 8) | static_cast<uint32_t>(std::lround(x));
  }
  return c;
}

Figure heatmap_figure(const HeatmapSpec& spec) {
  const int S = 2;                // text scale
  const int ch = 7 * S;           // capital height
  const int margin = 20;
  const size_t rows = spec.y_ticks.size(), cols = spec.x_ticks.size();
  size_t xt = 1, yt = 1;
  for (const auto& t : spec.x_ticks) xt = std::max(xt, t.size());
  for (const auto& t : spec.y_ticks) yt = std::max(yt, t.size());
  const bool values = cols <= 16 && rows <= 30;
  const int cell_w = std::max(values ? 48 : 20, Figure::text_width(std::string(xt, '0'), S) + 10);
  const int cell_h = values ? 24 : 14;
  const int ytick_w = Figure::text_width(std::string(yt, '0'), S) + 10;
  const int grid_w = static_cast<int>(cols) * cell_w, grid_h = static_cast<int>(rows) * cell_h;

  int title_w = 0;
  for (const auto& p : spec.panels)
    title_w = std::max({title_w, Figure::text_width(p.title, S), Figure::text_width(p.subtitle, S)});
  title_w = std::max(title_w, Figure::text_width(spec.x_label, S));
  const int panel_w = std::max(ytick_w + grid_w, title_w) + margin;
  const int panel_top = 2 * ch + 24 + ch + 10;  // title, subtitle, y label
  const int panel_h = panel_top + grid_h + 8 + ch + 10 + ch + margin;  // x ticks, x label
  const size_t n = std::max<size_t>(1, spec.panels.size());
  const size_t ncols = n <= 3 ? n : static_cast<size_t>(std::ceil(std::sqrt(static_cast<double>(n))));
  const size_t nrows = (n + ncols - 1) / ncols;

  Figure f;
  const int header = margin + ch + 16;
  const int legend_h = ch + 12 + 16 + 8 + ch + margin;
  f.width = std::max(margin * 2 + static_cast<int>(ncols) * panel_w, margin * 2 + Figure::text_width(spec.title, S));
  f.height = header + static_cast<int>(nrows) * panel_h + legend_h;
  f.labels.push_back({margin, margin, spec.title, S, 0x101010, Anchor::Start});

  for (size_t p = 0; p < spec.panels.size(); ++p) {
    const auto& panel = spec.panels[p];
    const int ox = margin + static_cast<int>(p % ncols) * panel_w;
    const int oy = header + static_cast<int>(p / ncols) * panel_h;
    f.labels.push_back({ox, oy, panel.title, S, 0x101010, Anchor::Start});
    f.labels.push_back({ox, oy + ch + 8, panel.subtitle, S, 0x505050, Anchor::Start});
    f.labels.push_back({ox, oy + 2 * ch + 24, spec.y_label, S, 0x303030, Anchor::Start});
    const int gx = ox + ytick_w, gy = oy + panel_top;
    for (size_t r = 0; r < rows; ++r) {
      const int y = gy + static_cast<int>(r) * cell_h;
      f.labels.push_back({gx - 8, y + (cell_h - ch) / 2, spec.y_ticks[r], S, 0x303030, Anchor::End});
      for (size_t c = 0; c < cols; ++c) {
        const int x = gx + static_cast<int>(c) * cell_w;
        const double v = r < panel.cells.size() && c < panel.cells[r].size() ? panel.cells[r][c] : NAN;
        const bool has = !std::isnan(v);
        f.rects.push_back({x, y, cell_w, cell_h, has ? score_colour(v) : 0xDDDDDD, 0xFFFFFF});
        if (values)
          f.labels.push_back({x + cell_w / 2, y + (cell_h - ch) / 2, has ? fmt::format("{:.0f}", v * 100) : "-", S,
                              0x101010, Anchor::Middle});
      }
    }
    for (size_t c = 0; c < cols; ++c)
      f.labels.push_back({gx + static_cast<int>(c) * cell_w + cell_w / 2, gy + grid_h + 8, spec.x_ticks[c], S, 0x303030,
                          Anchor::Middle});
    f.labels.push_back({gx + grid_w / 2, gy + grid_h + 8 + ch + 10, spec.x_label, S, 0x303030, Anchor::Middle});
  }

  // Colour bar: the shared scale.
  const int ly = header + static_cast<int>(nrows) * panel_h;
  f.labels.push_back({margin, ly, spec.legend, S, 0x303030, Anchor::Start});
  const int bar_w = 300, bar_y = ly + ch + 12;
  for (int i = 0; i < bar_w; i += 2) f.rects.push_back({margin + i, bar_y, 2, 16, score_colour(i / double(bar_w - 2)), -1});
  for (int k = 0; k <= 4; ++k) {
    const int x = margin + k * (bar_w - 1) / 4;
    f.rects.push_back({x, bar_y + 16, 1, 5, 0x606060, -1});
    f.labels.push_back({x, bar_y + 24, fmt::format("{}", k * 25), S, 0x303030, Anchor::Middle});
  }
  return f;
}

}  // namespace harmonia::eval
