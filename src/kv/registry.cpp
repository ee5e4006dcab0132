#include "common/error.h"
#include "kv/full.h"
#include "kv/policy.h"

namespace harmonia::kv {

std::vector<std::string> policy_names() { return {"full"}; }

size_t Policy::total_bytes() const { return ledger_total(bytes()); }

size_t ledger_total(const ByteLedger& l) {
  size_t s = 0;
  for (const auto& [k, v] : l) s += v;
  return s;
}

std::unique_ptr<Policy> make_policy(const std::string& name, const Shape& shape, const Options& opts) {
  if (name == "full") {
    for (const auto& [k, v] : opts)
      fail(ErrorKind::InvalidInput, "kv policy 'full' has no option '{}'", k);
    return std::make_unique<FullCache>(shape);
  }
  std::string known;
  for (const auto& n : policy_names()) known += (known.empty() ? "" : ", ") + n;
  fail(ErrorKind::InvalidInput, "unknown kv policy '{}' (known: {})", name, known);
}

}  // namespace harmonia::kv
