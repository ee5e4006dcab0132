#pragma once
// Private to src/tokenizer/: rank-ordered BPE merging (the algorithm of HF
// tokenizers' BPE model and of llama.cpp's byte-level BPE session).
#include <cstdint>
#include <string_view>
#include <unordered_map>
#include <vector>

namespace harmonia::tok {

class MergeTable {
 public:
  struct Merge {
    int32_t rank;    // position in the merges list: lower merges first
    int32_t merged;  // id of the concatenation
  };
  // Adds merge rule number `rank` (left + right -> merged). The first rule for a
  // pair wins, as in HF tokenizers.
  void add(int32_t left, int32_t right, int32_t rank, int32_t merged) {
    map_.emplace(key(left, right), Merge{rank, merged});
  }
  const Merge* find(int32_t left, int32_t right) const {
    auto it = map_.find(key(left, right));
    return it == map_.end() ? nullptr : &it->second;
  }
  size_t size() const { return map_.size(); }
  bool empty() const { return map_.empty(); }
  void reserve(size_t n) { map_.reserve(n); }

 private:
  static uint64_t key(int32_t l, int32_t r) {
    return (static_cast<uint64_t>(static_cast<uint32_t>(l)) << 32) | static_cast<uint32_t>(r);
  }
  std::unordered_map<uint64_t, Merge> map_;
};

// Merges adjacent ids of `syms` in place: repeatedly the pair with the lowest
// rank, leftmost first on ties, until no pair has a rule. O(n log n) in the
// number of symbols, so one long "word" (SPM-style vocabs without a
// pre-tokenizer see the whole text as one word) stays fast.
void merge_by_rank(const MergeTable& merges, std::vector<int32_t>& syms);

// Splits a merge rule as stored in GGUF `tokenizer.ggml.merges` and HF
// tokenizer.json ("left right"; the separator is the first space after the
// first byte, as llama.cpp does). Returns false when there is no separator.
bool split_merge_rule(std::string_view rule, std::string_view* left, std::string_view* right);

}  // namespace harmonia::tok
