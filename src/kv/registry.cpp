#include "common/error.h"
#include "kv/fourier.h"
#include "kv/full.h"
#include "kv/h2o.h"
#include "kv/kivi.h"
#include "kv/snapkv.h"
#include "kv/streaming.h"
#include "kv/policy.h"

namespace harmonia::kv {

std::vector<std::string> policy_names() { return {"full", "streaming", "snapkv", "pyramidkv", "h2o", "kivi", "fourier"}; }

size_t Policy::total_bytes() const { return ledger_total(bytes()); }

std::vector<ByteLedger> Policy::layer_bytes_at(int64_t n_tokens) const {
  const ByteLedger all = bytes_at(n_tokens);
  const int L = shape().n_layers;
  std::vector<ByteLedger> out(static_cast<size_t>(L));
  for (const auto& [k, v] : all)
    for (int l = 0; l < L; ++l) out[l][k] = v / L + (static_cast<size_t>(l) < v % L ? 1 : 0);
  return out;
}

size_t ledger_total(const ByteLedger& l) {
  size_t s = 0;
  for (const auto& [k, v] : l) s += v;
  return s;
}

std::unique_ptr<Policy> make_policy(const std::string& name, const Shape& shape, const Options& opts) {
  if (name == "full") return make_full(shape, opts);
  if (name == "streaming") return make_streaming(shape, opts);
  if (name == "snapkv") return make_snapkv(shape, opts);
  if (name == "pyramidkv") return make_pyramidkv(shape, opts);
  if (name == "h2o") return make_h2o(shape, opts);
  if (name == "kivi") return make_kivi(shape, opts);
  if (name == "fourier") return make_fourier(shape, opts);
  std::string known;
  for (const auto& n : policy_names()) known += (known.empty() ? "" : ", ") + n;
  fail(ErrorKind::InvalidInput, "unknown kv policy '{}' (known: {})", name, known);
}

}  // namespace harmonia::kv
