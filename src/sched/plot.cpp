#include "sched/plot.h"

#include <algorithm>
#include <cmath>
#include <fstream>

#include <fmt/format.h>

#include "common/error.h"

namespace harmonia::sched {

namespace {

constexpr Rgb kPalette[] = {{31, 119, 180}, {255, 127, 14}, {44, 160, 44},  {214, 39, 40},  {148, 103, 189},
                            {140, 86, 75},  {227, 119, 194}, {127, 127, 127}, {188, 189, 34}, {23, 190, 207}};
constexpr Rgb kBlack{0, 0, 0}, kGrid{225, 225, 225}, kAxis{60, 60, 60};

enum class Anchor { Left, Middle, Right };
enum class Size { Small, Normal, Title };

// Drawing primitives shared by the SVG and PNG back ends (coordinates in SVG units).
class Canvas {
 public:
  virtual ~Canvas() = default;
  virtual void line(double x0, double y0, double x1, double y1, Rgb c, double width) = 0;
  virtual void box(double x, double y, double w, double h, Rgb c) = 0;
  virtual void dot(double x, double y, Rgb c) = 0;
  // (x, y): the text's vertical middle at the anchor; vertical text reads bottom to top.
  virtual void text(double x, double y, const std::string& s, Rgb c, Anchor a, Size z, bool vertical = false) = 0;
};

std::string hex(Rgb c) { return fmt::format("#{:02x}{:02x}{:02x}", c.r, c.g, c.b); }

std::string xml_escape(const std::string& s) {
  std::string o;
  for (char ch : s) {
    if (ch == '&') o += "&amp;";
    else if (ch == '<') o += "&lt;";
    else if (ch == '>') o += "&gt;";
    else if (ch == '"') o += "&quot;";
    else o += ch;
  }
  return o;
}

class SvgCanvas final : public Canvas {
 public:
  SvgCanvas(int w, int h) {
    out_ = fmt::format(
        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{}\" height=\"{}\" viewBox=\"0 0 {} {}\" "
        "font-family=\"DejaVu Sans, Helvetica, Arial, sans-serif\">\n<rect width=\"100%\" height=\"100%\" fill=\"white\"/>\n",
        w, h, w, h);
  }
  void line(double x0, double y0, double x1, double y1, Rgb c, double width) override {
    out_ += fmt::format("<line x1=\"{:.1f}\" y1=\"{:.1f}\" x2=\"{:.1f}\" y2=\"{:.1f}\" stroke=\"{}\" stroke-width=\"{}\"/>\n",
                        x0, y0, x1, y1, hex(c), width);
  }
  void box(double x, double y, double w, double h, Rgb c) override {
    out_ += fmt::format("<rect x=\"{:.1f}\" y=\"{:.1f}\" width=\"{:.1f}\" height=\"{:.1f}\" fill=\"none\" stroke=\"{}\"/>\n",
                        x, y, w, h, hex(c));
  }
  void dot(double x, double y, Rgb c) override {
    out_ += fmt::format("<circle cx=\"{:.1f}\" cy=\"{:.1f}\" r=\"3\" fill=\"{}\"/>\n", x, y, hex(c));
  }
  void text(double x, double y, const std::string& s, Rgb c, Anchor a, Size z, bool vertical) override {
    const char* anchor = a == Anchor::Left ? "start" : a == Anchor::Middle ? "middle" : "end";
    const int size = z == Size::Small ? 11 : z == Size::Normal ? 13 : 16;
    const std::string rot = vertical ? fmt::format(" transform=\"rotate(-90 {:.1f} {:.1f})\"", x, y) : "";
    out_ += fmt::format("<text x=\"{:.1f}\" y=\"{:.1f}\" fill=\"{}\" font-size=\"{}\" text-anchor=\"{}\" "
                        "dominant-baseline=\"middle\"{}>{}</text>\n",
                        x, y, hex(c), size, anchor, rot, xml_escape(s));
  }
  std::string finish() { return out_ + "</svg>\n"; }

 private:
  std::string out_;
};

class PngCanvas final : public Canvas {
 public:
  PngCanvas(int w, int h) : img_(w * kZoom, h * kZoom) {}
  void line(double x0, double y0, double x1, double y1, Rgb c, double width) override {
    img_.line(x0 * kZoom, y0 * kZoom, x1 * kZoom, y1 * kZoom, c, std::max(1, static_cast<int>(std::lround(width * kZoom))));
  }
  void box(double x, double y, double w, double h, Rgb c) override {
    img_.rect(static_cast<int>(x * kZoom), static_cast<int>(y * kZoom), static_cast<int>(w * kZoom) + 1,
              static_cast<int>(h * kZoom) + 1, c);
  }
  void dot(double x, double y, Rgb c) override {
    img_.fill_rect(static_cast<int>(x * kZoom) - 3, static_cast<int>(y * kZoom) - 3, 7, 7, c);
  }
  void text(double x, double y, const std::string& s, Rgb c, Anchor a, Size z, bool vertical) override {
    const int scale = z == Size::Title ? 3 : 2;
    const int w = Image::text_width(s, scale), h = Image::text_height(scale);
    const int off = a == Anchor::Left ? 0 : a == Anchor::Middle ? w / 2 : w;
    const int px = static_cast<int>(x * kZoom), py = static_cast<int>(y * kZoom);
    if (vertical) img_.text_vertical(px - h / 2, py + off, s, c, scale);
    else img_.text(px - off, py - h / 2, s, c, scale);
  }
  Image take() { return std::move(img_); }

 private:
  static constexpr int kZoom = 2;
  Image img_;
};

std::string tick_label(double v) {
  if (v == 0) return "0";
  const double a = std::abs(v);
  if (a >= 1e4 || a < 1e-3) return fmt::format("{:.0e}", v);
  if (a >= 100) return fmt::format("{:.0f}", v);
  std::string s = fmt::format("{:.3f}", v);
  while (s.back() == '0') s.pop_back();
  if (s.back() == '.') s.pop_back();
  return s;
}

std::vector<double> linear_ticks(double lo, double hi) {
  const double span = hi - lo;
  const double raw = span / 5, mag = std::pow(10, std::floor(std::log10(raw)));
  double step = mag;
  for (double m : {1.0, 2.0, 5.0, 10.0})
    if (m * mag >= raw) {
      step = m * mag;
      break;
    }
  std::vector<double> t;
  for (double v = std::ceil(lo / step) * step; v <= hi + step * 1e-9; v += step) t.push_back(std::abs(v) < step * 1e-9 ? 0 : v);
  return t;
}

std::vector<double> log_ticks(double lo, double hi) {
  std::vector<double> t;
  for (int e = static_cast<int>(std::floor(std::log10(lo))); e <= static_cast<int>(std::ceil(std::log10(hi))); ++e)
    for (double m : {1.0, 2.0, 5.0}) {
      const double v = m * std::pow(10, e);
      if (v >= lo * (1 - 1e-9) && v <= hi * (1 + 1e-9)) t.push_back(v);
    }
  return t;
}

void draw_panel(Canvas& c, const Panel& p, double ox, double oy, double W, double H) {
  const double L = 64, R = 14, T = 30, B = 46;
  const double px = ox + L, py = oy + T, pw = W - L - R, ph = H - T - B;
  double xlo = INFINITY, xhi = -INFINITY, ylo = INFINITY, yhi = -INFINITY;
  for (const auto& s : p.series)
    for (size_t i = 0; i < s.x.size() && i < s.y.size(); ++i) {
      if (!std::isfinite(s.y[i]) || (p.log_y && s.y[i] <= 0)) continue;
      xlo = std::min(xlo, s.x[i]), xhi = std::max(xhi, s.x[i]);
      ylo = std::min(ylo, s.y[i]), yhi = std::max(yhi, s.y[i]);
    }
  c.text(ox + W / 2, oy + 14, p.title, kBlack, Anchor::Middle, Size::Normal);
  c.box(px, py, pw, ph, kAxis);
  if (!(xlo <= xhi)) return;  // no data
  if (xhi == xlo) xlo -= 0.5, xhi += 0.5;
  const double xpad = (xhi - xlo) * 0.04;
  xlo -= xpad, xhi += xpad;
  if (p.log_y) {
    if (yhi == ylo) ylo /= 2, yhi *= 2;
    ylo = std::pow(10, std::floor(std::log10(ylo) * 4) / 4), yhi = std::pow(10, std::ceil(std::log10(yhi) * 4) / 4);
  } else {
    if (yhi == ylo) yhi = ylo + 1;
    ylo = std::min(0.0, ylo);
    yhi += (yhi - ylo) * 0.05;
  }
  auto X = [&](double x) { return px + (x - xlo) / (xhi - xlo) * pw; };
  auto Y = [&](double y) {
    const double f = p.log_y ? (std::log10(y) - std::log10(ylo)) / (std::log10(yhi) - std::log10(ylo))
                             : (y - ylo) / (yhi - ylo);
    return py + ph - f * ph;
  };
  for (double t : p.log_y ? log_ticks(ylo, yhi) : linear_ticks(ylo, yhi)) {
    c.line(px, Y(t), px + pw, Y(t), kGrid, 1);
    c.text(px - 5, Y(t), tick_label(t), kAxis, Anchor::Right, Size::Small);
  }
  for (double t : linear_ticks(xlo, xhi)) {
    c.line(X(t), py + ph, X(t), py + ph + 4, kAxis, 1);
    c.text(X(t), py + ph + 13, tick_label(t), kAxis, Anchor::Middle, Size::Small);
  }
  c.box(px, py, pw, ph, kAxis);
  c.text(px + pw / 2, oy + H - 12, p.xlabel, kBlack, Anchor::Middle, Size::Normal);
  c.text(ox + 14, py + ph / 2, p.ylabel, kBlack, Anchor::Middle, Size::Normal, true);
  for (size_t k = 0; k < p.series.size(); ++k) {
    const auto& s = p.series[k];
    const Rgb col = kPalette[k % std::size(kPalette)];
    bool have = false;
    double lx = 0, ly = 0;
    for (size_t i = 0; i < s.x.size() && i < s.y.size(); ++i) {
      if (!std::isfinite(s.y[i]) || (p.log_y && s.y[i] <= 0)) {
        have = false;
        continue;
      }
      const double x = X(s.x[i]), y = Y(s.y[i]);
      if (have) c.line(lx, ly, x, y, col, 2);
      c.dot(x, y, col);
      have = true, lx = x, ly = y;
    }
  }
}

void draw(Canvas& c, const Figure& f, int width, int legend_rows, int per_row) {
  c.text(width / 2.0, 16, f.title, kBlack, Anchor::Middle, Size::Title);
  if (!f.panels.empty()) {
    const auto& ss = f.panels[0].series;
    const double col_w = static_cast<double>(width) / per_row;
    for (size_t k = 0; k < ss.size(); ++k) {
      const double x = 12 + col_w * static_cast<double>(k % per_row), y = 40 + 18.0 * static_cast<double>(k / per_row);
      const Rgb col = kPalette[k % std::size(kPalette)];
      c.line(x, y, x + 22, y, col, 2);
      c.dot(x + 11, y, col);
      c.text(x + 28, y, ss[k].name, kBlack, Anchor::Left, Size::Small);
    }
  }
  const double top = 32 + 18.0 * legend_rows;
  for (size_t i = 0; i < f.panels.size(); ++i)
    draw_panel(c, f.panels[i], static_cast<double>(i) * f.panel_width, top, f.panel_width, f.panel_height);
}

struct Layout {
  int width, height, rows, per_row;
};

Layout layout(const Figure& f) {
  Layout l;
  l.width = f.panel_width * std::max<int>(1, static_cast<int>(f.panels.size()));
  size_t longest = 1;
  if (!f.panels.empty())
    for (const auto& s : f.panels[0].series) longest = std::max(longest, s.name.size());
  l.per_row = std::max(1, static_cast<int>(l.width / (40 + 7.0 * static_cast<double>(longest))));
  const int n = f.panels.empty() ? 0 : static_cast<int>(f.panels[0].series.size());
  l.rows = std::max(1, (n + l.per_row - 1) / l.per_row);
  l.height = 32 + 18 * l.rows + f.panel_height;
  return l;
}

}  // namespace

std::string render_svg(const Figure& f) {
  const Layout l = layout(f);
  SvgCanvas c(l.width, l.height);
  draw(c, f, l.width, l.rows, l.per_row);
  return c.finish();
}

Image render_png(const Figure& f) {
  const Layout l = layout(f);
  PngCanvas c(l.width, l.height);
  draw(c, f, l.width, l.rows, l.per_row);
  return c.take();
}

void write_figure(const std::string& path, const Figure& f) {
  auto ends = [&](const char* ext) {
    const std::string e(ext);
    return path.size() >= e.size() && path.compare(path.size() - e.size(), e.size(), e) == 0;
  };
  if (ends(".png")) {
    write_png(path, render_png(f));
  } else if (ends(".svg")) {
    std::ofstream o(path, std::ios::trunc);
    if (!o) fail(ErrorKind::Io, "{}: cannot open for writing", path);
    o << render_svg(f);
    if (!o) fail(ErrorKind::Io, "{}: write failed", path);
  } else {
    fail(ErrorKind::InvalidInput, "plot file '{}' must end in .svg or .png", path);
  }
}

}  // namespace harmonia::sched
