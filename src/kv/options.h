#pragma once
// Typed reading of a policy's key=value options with errors that name the
// policy, the key and the accepted range. Every key must be read: finish()
// rejects unknown ones.
#include <cstdint>
#include <set>
#include <string>

#include "kv/policy.h"

namespace harmonia::kv {

class OptionReader {
 public:
  OptionReader(std::string policy, const Options& opts) : policy_(std::move(policy)), opts_(opts) {}
  bool has(const std::string& key) const { return opts_.count(key) > 0; }
  int64_t get_int(const std::string& key, int64_t def, int64_t min, int64_t max);
  double get_double(const std::string& key, double def, double min, double max);
  bool get_bool(const std::string& key, bool def);
  std::string get_string(const std::string& key, const std::string& def);
  // One of `allowed` (the message lists them).
  std::string get_choice(const std::string& key, const std::string& def, const std::set<std::string>& allowed);
  // Throws Error(InvalidInput) "kv policy 'P' has no option 'k' (options: a, b)" for any key not read.
  void finish() const;

 private:
  std::string policy_;
  const Options& opts_;
  std::set<std::string> read_;
  const std::string* raw(const std::string& key);
};

}  // namespace harmonia::kv
