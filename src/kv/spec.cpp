#include "kv/spec.h"

#include "common/error.h"

namespace harmonia::kv {

std::pair<std::string, std::string> parse_key_value(const std::string& kv) {
  const auto eq = kv.find('=');
  if (eq == std::string::npos || eq == 0) fail(ErrorKind::InvalidInput, "kv option '{}' is not key=value", kv);
  return {kv.substr(0, eq), kv.substr(eq + 1)};
}

std::string PolicySpec::label() const {
  std::string s = name;
  if (!options.empty()) {
    s += "(";
    bool first = true;
    for (const auto& [k, v] : options) {
      s += (first ? "" : ",") + k + "=" + v;
      first = false;
    }
    s += ")";
  }
  return s;
}

PolicySpec parse_policy_spec(const std::string& entry) {
  PolicySpec p;
  size_t start = 0;
  size_t colon = entry.find(':');
  p.name = entry.substr(0, colon);
  if (p.name.empty()) fail(ErrorKind::InvalidInput, "kv policy entry '{}' has no policy name", entry);
  while (colon != std::string::npos) {
    start = colon + 1;
    colon = entry.find(':', start);
    const std::string kv = entry.substr(start, colon == std::string::npos ? std::string::npos : colon - start);
    auto [k, v] = parse_key_value(kv);
    p.options[k] = v;
  }
  return p;
}

std::vector<PolicySpec> parse_policy_list(const std::string& list, const std::vector<std::string>& common) {
  std::vector<PolicySpec> out;
  size_t start = 0;
  while (start <= list.size()) {
    size_t comma = list.find(',', start);
    const std::string entry = list.substr(start, comma == std::string::npos ? std::string::npos : comma - start);
    if (entry.empty()) fail(ErrorKind::InvalidInput, "empty entry in kv policy list '{}'", list);
    PolicySpec p = parse_policy_spec(entry);
    for (const auto& c : common) {
      auto [k, v] = parse_key_value(c);
      p.options.emplace(k, v);  // inline options win
    }
    out.push_back(std::move(p));
    if (comma == std::string::npos) break;
    start = comma + 1;
  }
  return out;
}

}  // namespace harmonia::kv
