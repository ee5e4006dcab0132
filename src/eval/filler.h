#pragma once
// Haystack text for NIAH and RULER's "essay" haystacks.
//
// The built-in filler is synthetic and ours: simple story sentences generated
// from small word lists and templates written for Harmonia (no copyrighted or
// downloaded text), deterministic, in the register of the TinyStories models.
// It never contains digits, "sandwich", "Dolores", "park", "San Francisco",
// "pass key", "magic" or "VAR", so the needles of the benchmarks are the only
// places those occur.
#include <cstddef>
#include <cstdint>
#include <string>

namespace harmonia::eval {

// Seed of the built-in filler. Fixed, not --seed: like the original test's
// essay folder, the haystack is the same in every run.
inline constexpr uint64_t kFillerSeed = 0x48415953ULL;  // "HAYS"

// At least min_chars of filler: paragraphs of 4-7 sentences separated by blank
// lines. Longer requests extend shorter ones (same prefix).
std::string synthetic_filler(size_t min_chars, uint64_t seed = kFillerSeed);

// The haystack: the *.txt files of `dir` in name order, concatenated and
// repeated as a whole until there are at least min_chars (Kamradt's
// read_context_files), or the synthetic filler when `dir` is empty. Throws
// Error(Io) naming `dir` when it is not a folder or has no non-empty .txt file.
std::string haystack_text(const std::string& dir, size_t min_chars);

}  // namespace harmonia::eval
