#include "eval/progress.h"

#include <unistd.h>

#include <cmath>

#include <fmt/format.h>

#include "common/env.h"

namespace harmonia::eval {

std::string format_duration(double ms) {
  if (ms < 1000) return fmt::format("{:.0f}ms", ms);
  const double s = ms / 1000;
  if (s < 60) return fmt::format("{:.1f}s", s);
  const int64_t total = static_cast<int64_t>(std::llround(s));
  if (total < 3600) return fmt::format("{}m{:02d}s", total / 60, static_cast<int>(total % 60));
  return fmt::format("{}h{:02d}m", total / 3600, static_cast<int>((total % 3600) / 60));
}

std::string Progress::render(int64_t done, int64_t total, double elapsed_ms, int width) {
  const double frac = total > 0 ? static_cast<double>(done) / total : 1.0;
  const int fill = static_cast<int>(std::floor(frac * width));
  std::string bar = fmt::format("[{}{}]", std::string(fill, '#'), std::string(width - fill, '.'));
  std::string eta = "ETA --";
  if (done >= total) eta = "done";
  else if (done > 0) eta = fmt::format("ETA {}", format_duration(elapsed_ms / done * (total - done)));
  return fmt::format("{} {}/{} {:3.0f}% {} elapsed {}", bar, done, total, frac * 100, format_duration(elapsed_ms), eta);
}

Progress::Progress(std::string label, int64_t total, int64_t skipped, bool enabled, std::FILE* out)
    : label_(std::move(label)), total_(total), skipped_(skipped), enabled_(enabled), out_(out), t0_ms_(now_ms()) {
  tty_ = enabled_ && ::isatty(::fileno(out_));
  if (enabled_ && skipped_ > 0)
    std::fprintf(out_, "%s: %lld done already (resumed), %lld to run\n", label_.c_str(), static_cast<long long>(skipped_),
                 static_cast<long long>(total_));
}

void Progress::step(const std::string& note) {
  ++done_;
  if (!enabled_) return;
  const std::string line = label_ + " " + render(done_, total_, now_ms() - t0_ms_);
  if (tty_) {
    std::string shown = line + (note.empty() ? "" : "  " + note);
    if (shown.size() > 160) shown.resize(160);
    std::fprintf(out_, "\r\033[K%s", shown.c_str());
  } else {
    const int64_t decile = total_ > 0 ? done_ * 10 / total_ : 10;
    if (decile == last_decile_ && done_ != total_) return;
    last_decile_ = decile;
    std::fprintf(out_, "%s\n", line.c_str());
  }
  std::fflush(out_);
}

void Progress::finish() {
  if (!enabled_ || finished_) return;
  finished_ = true;
  if (tty_ && done_ > 0) std::fprintf(out_, "\n");
  else if (done_ == 0) std::fprintf(out_, "%s: nothing to run\n", label_.c_str());
  std::fflush(out_);
}

}  // namespace harmonia::eval
