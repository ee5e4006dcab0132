#pragma once
// Policy lists as users write them on the command line and in requests:
//   "full,fourier:sink=4:window=32:coeffs=32,streaming:window=64"
// Each entry is a policy name followed by ':'-separated key=value options.
#include <string>
#include <vector>

#include "kv/policy.h"

namespace harmonia::kv {

struct PolicySpec {
  std::string name;
  Options options;
  // "fourier(sink=4,window=32)" — how results and logs name this configuration.
  std::string label() const;
};

// Parses one entry "name[:k=v[:k=v...]]". Throws Error(InvalidInput) naming the entry.
PolicySpec parse_policy_spec(const std::string& entry);
// Parses a comma-separated list; `common` ("k=v" strings, e.g. from --kv-opt)
// is added to every entry without overriding its inline options.
std::vector<PolicySpec> parse_policy_list(const std::string& list, const std::vector<std::string>& common = {});
// "k=v" -> (k, v); throws naming the text when there is no '=' or no key.
std::pair<std::string, std::string> parse_key_value(const std::string& kv);

}  // namespace harmonia::kv
