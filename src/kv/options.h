#pragma once
// A KV policy's options, read through common/options.h: errors name
// "kv policy 'NAME'", the key and the accepted range.
#include <string>

#include "common/options.h"
#include "kv/policy.h"

namespace harmonia::kv {

class OptionReader : public harmonia::OptionReader {
 public:
  OptionReader(const std::string& policy, const Options& opts)
      : harmonia::OptionReader("kv policy '" + policy + "'", opts) {}
};

}  // namespace harmonia::kv
