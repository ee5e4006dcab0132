#pragma once
// Helpers for tests that run the real `harmonia` binary: scratch files, one run
// with stdout/stderr captured, and the bad-input contract (exit code 2, one line
// on stderr). The binary is $HARMONIA_BIN (CTest sets it) or the `harmonia`
// beside the test executable.
#include <gtest/gtest.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <string>

namespace harmonia::cli_testing {

struct CliRun {
  int code = -1;         // exit status; 128 + signal if killed
  std::string out, err;  // stdout, stderr
};

// Whole file as bytes ("" if unreadable).
inline std::string slurp(const std::string& p) {
  std::ifstream f(p, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(f), {});
}
inline void spit(const std::string& p, const std::string& s) {
  std::ofstream f(p, std::ios::binary | std::ios::trunc);
  f.write(s.data(), static_cast<std::streamsize>(s.size()));
}

// <temp dir>/harmonia_<tag>_<pid>/<name>, the folder created.
inline std::string scratch_path(const std::string& tag, const std::string& name) {
  const std::filesystem::path d =
      std::filesystem::temp_directory_path() / ("harmonia_" + tag + "_" + std::to_string(::getpid()));
  std::filesystem::create_directories(d);
  return (d / name).string();
}

inline std::string harmonia_bin() {
  const char* env = std::getenv("HARMONIA_BIN");
  return env ? env : (std::filesystem::read_symlink("/proc/self/exe").parent_path() / "harmonia").string();
}

// `harmonia ARGS` with stdin from /dev/null; its output goes through scratch files of `tag`.
inline CliRun run_harmonia(const std::string& args, const std::string& tag) {
  const std::string o = scratch_path(tag, "stdout"), e = scratch_path(tag, "stderr");
  const int st = std::system((harmonia_bin() + " " + args + " >" + o + " 2>" + e + " </dev/null").c_str());
  CliRun r;
  r.code = WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
  r.out = slurp(o);
  r.err = slurp(e);
  return r;
}

// The contract for bad input: exit 2 and exactly one line on stderr, "harmonia: error: ..." naming `needle`.
inline void expect_clean_error(const CliRun& r, const std::string& needle, const std::string& what = "") {
  EXPECT_EQ(r.code, 2) << what << "\nstderr: " << r.err;
  EXPECT_NE(r.err.find("harmonia: error: "), std::string::npos) << what << ": " << r.err;
  EXPECT_NE(r.err.find(needle), std::string::npos) << what << ": expected '" << needle << "' in: " << r.err;
  EXPECT_EQ(std::count(r.err.begin(), r.err.end(), '\n'), 1) << what << ": not one line: " << r.err;
}

}  // namespace harmonia::cli_testing
