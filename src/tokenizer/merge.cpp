#include "tokenizer/merge.h"

#include <queue>

namespace harmonia::tok {

namespace {
struct Candidate {
  int32_t rank;
  int32_t left;  // symbol index
  int32_t right;
  int32_t left_id;
  int32_t right_id;
  int32_t merged;
};
struct Later {  // priority_queue puts the "largest" first: lowest rank, then leftmost
  bool operator()(const Candidate& a, const Candidate& b) const {
    return a.rank != b.rank ? a.rank > b.rank : a.left > b.left;
  }
};
}  // namespace

void merge_by_rank(const MergeTable& merges, std::vector<int32_t>& syms) {
  const auto n = static_cast<int32_t>(syms.size());
  if (n < 2) return;
  std::vector<int32_t> prev(n), next(n);
  std::vector<char> alive(n, 1);
  for (int32_t i = 0; i < n; ++i) {
    prev[i] = i - 1;
    next[i] = i + 1 < n ? i + 1 : -1;
  }
  std::priority_queue<Candidate, std::vector<Candidate>, Later> queue;
  auto consider = [&](int32_t l, int32_t r) {
    if (l < 0 || r < 0) return;
    if (const MergeTable::Merge* m = merges.find(syms[l], syms[r]))
      queue.push({m->rank, l, r, syms[l], syms[r], m->merged});
  };
  for (int32_t i = 0; i + 1 < n; ++i) consider(i, i + 1);

  while (!queue.empty()) {
    const Candidate c = queue.top();
    queue.pop();
    // Stale entries: a symbol's id only changes when it absorbs its right
    // neighbour, so matching ids and adjacency mean the pair is still there.
    if (!alive[c.left] || !alive[c.right] || next[c.left] != c.right ||
        syms[c.left] != c.left_id || syms[c.right] != c.right_id)
      continue;
    syms[c.left] = c.merged;
    alive[c.right] = 0;
    next[c.left] = next[c.right];
    if (next[c.right] >= 0) prev[next[c.right]] = c.left;
    consider(prev[c.left], c.left);
    consider(c.left, next[c.left]);
  }
  int32_t w = 0;
  for (int32_t i = 0; i < n; ++i)
    if (alive[i]) syms[w++] = syms[i];
  syms.resize(static_cast<size_t>(w));
}

bool split_merge_rule(std::string_view rule, std::string_view* left, std::string_view* right) {
  const size_t sp = rule.find(' ', 1);
  if (sp == std::string_view::npos) return false;
  *left = rule.substr(0, sp);
  *right = rule.substr(sp + 1);
  return true;
}

}  // namespace harmonia::tok
