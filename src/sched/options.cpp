#include "sched/options.h"

#include <cerrno>
#include <cmath>
#include <cstdlib>
#include <limits>

#include "common/error.h"

namespace harmonia::sched {

namespace {

std::vector<std::string> split(const std::string& s, char sep) {
  std::vector<std::string> out;
  size_t start = 0;
  while (true) {
    const size_t p = s.find(sep, start);
    out.push_back(s.substr(start, p == std::string::npos ? std::string::npos : p - start));
    if (p == std::string::npos) break;
    start = p + 1;
  }
  return out;
}

std::string trim(const std::string& s) {
  const size_t a = s.find_first_not_of(" \t");
  if (a == std::string::npos) return "";
  const size_t b = s.find_last_not_of(" \t");
  return s.substr(a, b - a + 1);
}

}  // namespace

std::string PolicySpec::label() const {
  if (options.empty()) return name;
  std::string s = name + "(";
  bool first = true;
  for (const auto& [k, v] : options) {
    s += (first ? "" : ",") + k + "=" + v;
    first = false;
  }
  return s + ")";
}

PolicySpec parse_policy_spec(const std::string& entry) {
  const auto parts = split(trim(entry), ':');
  PolicySpec spec;
  spec.name = trim(parts[0]);
  if (spec.name.empty()) fail(ErrorKind::InvalidInput, "scheduler entry '{}' has no policy name", entry);
  for (size_t i = 1; i < parts.size(); ++i) {
    const std::string kv = trim(parts[i]);
    const size_t eq = kv.find('=');
    if (eq == std::string::npos || eq == 0)
      fail(ErrorKind::InvalidInput, "scheduler entry '{}': option '{}' is not key=value", entry, kv);
    const std::string key = trim(kv.substr(0, eq));
    if (spec.options.count(key)) fail(ErrorKind::InvalidInput, "scheduler entry '{}': option '{}' given twice", entry, key);
    spec.options[key] = trim(kv.substr(eq + 1));
  }
  return spec;
}

std::vector<PolicySpec> parse_policy_list(const std::string& list) {
  std::vector<PolicySpec> out;
  for (const auto& e : split(list, ','))
    if (!trim(e).empty()) out.push_back(parse_policy_spec(e));
  if (out.empty()) fail(ErrorKind::InvalidInput, "empty scheduler list '{}'", list);
  return out;
}

std::vector<double> parse_number_list(const std::string& text, const std::string& what, char sep) {
  std::vector<double> out;
  for (const auto& p : split(text, sep)) {
    const std::string t = trim(p);
    char* end = nullptr;
    errno = 0;
    const double x = std::strtod(t.c_str(), &end);
    if (t.empty() || *end != '\0' || errno == ERANGE || !std::isfinite(x))
      fail(ErrorKind::InvalidInput, "{}: '{}' is not a number (in '{}')", what, t, text);
    out.push_back(x);
  }
  return out;
}

}  // namespace harmonia::sched
