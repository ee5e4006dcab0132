#pragma once
// Deterministic scorers of the long-context benchmarks (survey §2). Every
// function returns a per-sample score in [0, 1]; benchmarks report 100 x mean.
// Where a reference implementation exists the function reproduces it, quirks
// included, and says which file it follows.
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace harmonia::eval {

// ---- NIAH (survey §2.1: deterministic replacement for the LLM judge) -------------

// Share of `phrases` found in `output`, case-insensitive, after collapsing
// whitespace in both (so "Dolores\n  park" matches "Dolores Park"). Wording
// around the phrases does not matter. Empty `phrases` -> 0.
double keyword_recall(std::string_view output, const std::vector<std::string>& phrases);
// 1 when `answer` occurs in `output` under the same normalisation, else 0.
double exact_containment(std::string_view output, std::string_view answer);

// ---- Passkey (LandmarkAttention run_test.py) ------------------------------------

// The first run of ASCII digits in `text`, "" when none (re.search(r"\d+")).
std::string first_integer(std::string_view text);
// 1 when the first integer of `output` equals `key` as a number (int(...) == key).
double passkey_score(std::string_view output, int64_t key);

// ---- RULER (scripts/eval/synthetic/constants.py) ------------------------------

// postprocess_pred: strip, control characters [\x00-\x1f] -> '\n', strip.
std::string ruler_postprocess(std::string_view pred);
// string_match_all for one sample: share of refs contained in pred (case-insensitive).
double string_match_all(std::string_view pred, const std::vector<std::string>& refs);
// string_match_part for one sample: 1 if any ref is contained in pred.
double string_match_part(std::string_view pred, const std::vector<std::string>& refs);

// ---- LongBench v1 (LongBench/metrics.py) --------------------------------------

// SQuAD normalisation: lower, drop ASCII punctuation, drop the words a/an/the,
// collapse whitespace. NOTE: lower-cases ASCII only (Python lowers all scripts).
std::string normalize_answer(std::string_view s);
// qa_f1_score: bag-of-words F1 of the normalised texts.
double qa_f1(std::string_view pred, std::string_view gold);
// qa_f1_zh_score. NOTE: LongBench segments with jieba; we split CJK text into
// single characters and keep ASCII letter/digit runs whole, so Chinese scores are
// character-level and differ from the official ones.
double qa_f1_zh(std::string_view pred, std::string_view gold);
// rouge_score: ROUGE-L F of the `rouge` package (pltrdy, rouge_l_summary_level,
// exclusive): texts split into sentences on '.', words on ' '; union LCS over
// unique words. 0 when either text has no sentence (the package raises).
double rouge_l(std::string_view pred, std::string_view gold);
// rouge_zh_score: both texts segmented (see qa_f1_zh) and joined with spaces first.
double rouge_l_zh(std::string_view pred, std::string_view gold);
// classification_score: 1 / (number of class names found in pred) when the gold
// class is among them, after dropping found names that are proper substrings of
// the gold (iterating while removing, as the Python loop does).
double classification_score(std::string_view pred, std::string_view gold, const std::vector<std::string>& all_classes);
// retrieval_score: gold id from "Paragraph N" in gold; share of the numbers in pred
// equal to it (0 when pred has no number or gold has no id).
double retrieval_score(std::string_view pred, std::string_view gold);
// retrieval_zh_score: the same with "段落N".
double retrieval_zh_score(std::string_view pred, std::string_view gold);
// count_score: share of the numbers in pred equal to gold.
double count_score(std::string_view pred, std::string_view gold);
// code_sim_score: first line of pred (after leading newlines) without '`', '#' or
// "//", compared with fuzz.ratio / 100.
double code_sim_score(std::string_view pred, std::string_view gold);

// python-Levenshtein ratio: (|a| + |b| - d) / (|a| + |b|), d the edit distance with
// substitution cost 2, over Unicode code points. Both empty -> 1.
double levenshtein_ratio(std::string_view a, std::string_view b);
// fuzzywuzzy fuzz.ratio: 100 when equal, 0 when either is empty, else
// round(100 * levenshtein_ratio) (round half to even).
int fuzz_ratio(std::string_view a, std::string_view b);

// All ASCII digit runs of `text` (re.findall(r"\d+")).
std::vector<std::string> find_integers(std::string_view text);

}  // namespace harmonia::eval
