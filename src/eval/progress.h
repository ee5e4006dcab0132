#pragma once
// A progress bar with an ETA on stderr. On a terminal it redraws one line in
// place; otherwise (CI logs, pipes) it prints a line at every 10% and at the end.
#include <cstdint>
#include <cstdio>
#include <string>

namespace harmonia::eval {

class Progress {
 public:
  // total: units this run will do (resumed ones excluded); skipped: units found
  // done already (shown, not timed). enabled = false prints nothing.
  Progress(std::string label, int64_t total, int64_t skipped, bool enabled, std::FILE* out = stderr);
  // One unit finished; `note` describes it (e.g. "full L=256 d=50 score 1").
  void step(const std::string& note = "");
  // Final line (newline on a terminal).
  void finish();
  // "[#####.....] 12/40 30% 1.2s elapsed ETA 2.8s" for done of total units after
  // elapsed_ms (ETA from the mean time per unit).
  static std::string render(int64_t done, int64_t total, double elapsed_ms, int width = 24);

 private:
  std::string label_;
  int64_t total_, skipped_, done_ = 0;
  bool enabled_, tty_;
  std::FILE* out_;
  double t0_ms_;
  int64_t last_decile_ = -1;
  bool finished_ = false;
};

// "850ms", "12.3s", "4m05s", "1h02m".
std::string format_duration(double ms);

}  // namespace harmonia::eval
