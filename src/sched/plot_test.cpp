#include <gtest/gtest.h>

#include "sched/plot.h"

using namespace harmonia;
using namespace harmonia::sched;

TEST(SchedPlot, SvgAndPng) {
  Figure f;
  f.title = "latency vs rate";
  Panel p;
  p.title = "mean";
  p.xlabel = "arrival rate (req/s)";
  p.ylabel = "latency (s)";
  p.log_y = true;
  p.series.push_back({"fcfs", {1, 2, 3}, {0.5, 1.5, 9}});
  p.series.push_back({"laps-sd <a&b>", {1, 2, 3}, {0.4, 0.9, 3}});
  f.panels = {p, p};
  const std::string svg = render_svg(f);
  EXPECT_NE(svg.find("<svg"), std::string::npos);
  EXPECT_NE(svg.find("laps-sd &lt;a&amp;b&gt;"), std::string::npos);
  EXPECT_NE(svg.find("</svg>"), std::string::npos);
  const Image img = render_png(f);
  EXPECT_EQ(img.width(), 2 * 2 * f.panel_width);
  // Some pixels carry the series colours.
  int blue = 0;
  for (int y = 0; y < img.height(); ++y)
    for (int x = 0; x < img.width(); ++x) blue += img.get(x, y) == Rgb{31, 119, 180};
  EXPECT_GT(blue, 100);
}
