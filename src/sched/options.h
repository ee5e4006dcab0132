#pragma once
// Scheduler specs as users write them on the command line:
//   "fcfs,sjf:preemptive=true,laps-sd:predictor=noisy-oracle:sigma=0.3"
// Each entry is a policy name followed by ':'-separated key=value options, as
// for KV policies (kv/spec.h). List values inside an option use '/', e.g.
// "laps-sd:thresholds=8/24".
#include <cstdint>
#include <map>
#include <set>
#include <string>
#include <vector>

#include "common/options.h"

namespace harmonia::sched {

using Options = std::map<std::string, std::string>;

struct PolicySpec {
  std::string name;
  Options options;
  // "laps-sd(predictor=noisy-oracle,sigma=0.3)": how results, logs and plots name it.
  std::string label() const;
};

// "name[:k=v[:k=v...]]". Throws Error(InvalidInput) naming the entry.
PolicySpec parse_policy_spec(const std::string& entry);
// Comma-separated list of entries.
std::vector<PolicySpec> parse_policy_list(const std::string& list);
// "a/b/c" -> numbers; throws naming `what`.
std::vector<double> parse_number_list(const std::string& text, const std::string& what, char sep = '/');

using harmonia::OptionReader;  // common/options.h

}  // namespace harmonia::sched
