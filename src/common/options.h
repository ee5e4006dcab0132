#pragma once
// Typed reading of one component's key=value options (KV policies, schedulers,
// workload generators) with errors naming the component ("kv policy 'fourier'",
// "sched policy 'laps-sd'"), the key and the accepted range. Every key must be
// read: finish() rejects unknown ones, listing the known.
#include <cstdint>
#include <map>
#include <set>
#include <string>

namespace harmonia {

class OptionReader {
 public:
  OptionReader(std::string what, const std::map<std::string, std::string>& opts)
      : what_(std::move(what)), opts_(opts) {}
  bool has(const std::string& key) const { return opts_.count(key) > 0; }
  int64_t get_int(const std::string& key, int64_t def, int64_t min, int64_t max);
  // Accepts "inf" (and "off") when max is +infinity; never NaN.
  double get_double(const std::string& key, double def, double min, double max);
  bool get_bool(const std::string& key, bool def);
  std::string get_string(const std::string& key, const std::string& def);
  // One of `allowed` (the message lists them).
  std::string get_choice(const std::string& key, const std::string& def, const std::set<std::string>& allowed);
  // Throws Error(InvalidInput) "WHAT has no option 'k' (options: a, b)" for any key not read.
  void finish() const;

 private:
  std::string what_;
  const std::map<std::string, std::string>& opts_;
  std::set<std::string> read_;
  const std::string* raw(const std::string& key);
};

}  // namespace harmonia
