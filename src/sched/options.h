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

// Typed reading of one component's options with errors naming the component
// ("sched policy 'laps-sd'", "synthetic workload 'reference'"), the key and
// the accepted range. finish() rejects keys that were never read.
class OptionReader {
 public:
  OptionReader(std::string what, const Options& opts) : what_(std::move(what)), opts_(opts) {}
  bool has(const std::string& key) const { return opts_.count(key) > 0; }
  int64_t get_int(const std::string& key, int64_t def, int64_t min, int64_t max);
  // Accepts "inf" when max is +infinity.
  double get_double(const std::string& key, double def, double min, double max);
  bool get_bool(const std::string& key, bool def);
  std::string get_string(const std::string& key, const std::string& def);
  std::string get_choice(const std::string& key, const std::string& def, const std::set<std::string>& allowed);
  void finish() const;

 private:
  std::string what_;
  const Options& opts_;
  std::set<std::string> read_;
  const std::string* raw(const std::string& key);
};

}  // namespace harmonia::sched
