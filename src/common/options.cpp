#include "common/options.h"

#include <cerrno>
#include <cmath>
#include <cstdlib>
#include <limits>

#include "common/error.h"

namespace harmonia {

const std::string* OptionReader::raw(const std::string& key) {
  read_.insert(key);
  auto it = opts_.find(key);
  return it == opts_.end() ? nullptr : &it->second;
}

int64_t OptionReader::get_int(const std::string& key, int64_t def, int64_t min, int64_t max) {
  const std::string* v = raw(key);
  if (!v) return def;
  char* end = nullptr;
  errno = 0;
  const long long x = std::strtoll(v->c_str(), &end, 10);
  if (v->empty() || *end != '\0' || errno == ERANGE || x < min || x > max)
    fail(ErrorKind::InvalidInput, "{}: option {}={} must be an integer in [{}, {}]", what_, key, *v, min, max);
  return x;
}

double OptionReader::get_double(const std::string& key, double def, double min, double max) {
  const std::string* v = raw(key);
  if (!v) return def;
  const double inf = std::numeric_limits<double>::infinity();
  if ((*v == "inf" || *v == "off") && max == inf) return inf;
  char* end = nullptr;
  errno = 0;
  const double x = std::strtod(v->c_str(), &end);
  if (v->empty() || *end != '\0' || errno == ERANGE || !(x >= min && x <= max) || std::isnan(x))
    fail(ErrorKind::InvalidInput, "{}: option {}={} must be a number in [{}, {}]", what_, key, *v, min, max);
  return x;
}

bool OptionReader::get_bool(const std::string& key, bool def) {
  const std::string* v = raw(key);
  if (!v) return def;
  if (*v == "1" || *v == "true" || *v == "on" || *v == "yes") return true;
  if (*v == "0" || *v == "false" || *v == "off" || *v == "no") return false;
  fail(ErrorKind::InvalidInput, "{}: option {}={} must be true or false", what_, key, *v);
}

std::string OptionReader::get_string(const std::string& key, const std::string& def) {
  const std::string* v = raw(key);
  return v ? *v : def;
}

std::string OptionReader::get_choice(const std::string& key, const std::string& def,
                                     const std::set<std::string>& allowed) {
  const std::string* v = raw(key);
  if (!v) return def;
  if (!allowed.count(*v)) {
    std::string list;
    for (const auto& a : allowed) list += (list.empty() ? "" : ", ") + a;
    fail(ErrorKind::InvalidInput, "{}: option {}={} must be one of: {}", what_, key, *v, list);
  }
  return *v;
}

void OptionReader::finish() const {
  for (const auto& [k, v] : opts_)
    if (!read_.count(k)) {
      std::string list;
      for (const auto& r : read_) list += (list.empty() ? "" : ", ") + r;
      fail(ErrorKind::InvalidInput, "{} has no option '{}' (options: {})", what_, k, list.empty() ? "none" : list);
    }
}

}  // namespace harmonia
