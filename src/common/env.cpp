#include "common/env.h"

#include <chrono>
#include <cstdlib>
#include <filesystem>

namespace harmonia {

std::string shared_dir() {
  if (const char* e = std::getenv("HARMONIA_SHARED"); e && *e) return e;
  // Walk up from the current directory looking for a sibling "shared" folder
  // beside a checkout (../shared from the repository root).
  std::filesystem::path p = std::filesystem::current_path();
  for (int i = 0; i < 6 && !p.empty(); ++i) {
    if (std::filesystem::exists(p / ".." / "shared" / "README.md"))
      return (p / ".." / "shared").lexically_normal().string();
    if (p == p.parent_path()) break;
    p = p.parent_path();
  }
  return "../shared";
}

std::string shared_path(const std::string& rel) { return shared_dir() + "/" + rel; }

bool file_exists(const std::string& path) {
  std::error_code ec;
  return std::filesystem::exists(path, ec);
}

double now_ms() {
  using namespace std::chrono;
  return duration<double, std::milli>(steady_clock::now().time_since_epoch()).count();
}

}  // namespace harmonia
