#include "common/error.h"
#include "kv/full.h"
#include "kv/policy.h"

namespace harmonia::kv {

std::vector<std::string> policy_names() { return {"full"}; }

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
