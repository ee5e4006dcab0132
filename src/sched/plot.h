#pragma once
// Line charts of simulation sweeps (latency against arrival rate, one line
// per policy), written as SVG or PNG (common/image.h) from one layout.
#include <string>
#include <vector>

#include "common/image.h"

namespace harmonia::sched {

struct Series {
  std::string name;
  std::vector<double> x, y;  // same length; points with y <= 0 are skipped on a log axis
};

struct Panel {
  std::string title, xlabel, ylabel;
  std::vector<Series> series;
  bool log_y = false;
};

struct Figure {
  std::string title;
  std::vector<Panel> panels;  // side by side, sharing the legend (series names of the first panel)
  int panel_width = 520, panel_height = 380;  // SVG units (the PNG is drawn at twice this size)
};

std::string render_svg(const Figure& f);
Image render_png(const Figure& f);
// By extension: .svg or .png. Throws Error(InvalidInput) for another one, Error(Io) if unwritable.
void write_figure(const std::string& path, const Figure& f);

}  // namespace harmonia::sched
