#pragma once
// Locations of shared data and small process-wide helpers.
#include <string>

namespace harmonia {

// Folder of shared models/data: $HARMONIA_SHARED, else "../shared" relative to
// the current directory's repository root guess (the folder holding this checkout).
std::string shared_dir();

// shared_dir() + "/" + rel.
std::string shared_path(const std::string& rel);

bool file_exists(const std::string& path);

// Monotonic wall clock in milliseconds.
double now_ms();

}  // namespace harmonia
