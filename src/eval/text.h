#pragma once
// Text helpers shared by the benchmarks: the Python string semantics their
// reference implementations rely on (str.split(), str.strip(), str.lower() on
// ASCII), sentence splitting, word lists, templates and grids.
#include <cstdint>
#include <map>
#include <string>
#include <string_view>
#include <vector>

namespace harmonia::eval {

// Python str.isspace() for one byte: ASCII whitespace plus \x1c-\x1f.
// NOTE: Unicode spaces (U+00A0, U+2000...) are not treated as whitespace.
bool is_py_space(unsigned char c);
// Python str.split() with no argument: runs of whitespace separate, no empty items.
std::vector<std::string> split_ws(std::string_view s);
// " ".join(s.split()).
std::string collapse_ws(std::string_view s);
// Python str.strip() / lstrip() / rstrip() (whitespace as is_py_space).
std::string strip(std::string_view s);
// Python s.split(sep) with a non-empty separator (keeps empty items).
std::vector<std::string> split_on(std::string_view s, std::string_view sep);
// ASCII lower-casing (bytes >= 0x80 are left as they are).
std::string lower_ascii(std::string_view s);
// Every occurrence of `from` (non-empty) replaced by `to`, left to right (Python str.replace).
std::string replace_all(std::string_view s, std::string_view from, std::string_view to);
// Fills "{name}" slots from `vars`; other braces are kept. Throws Error(InvalidInput)
// naming `what` and the slot when a slot has no value.
std::string fill_template(std::string_view tpl, const std::map<std::string, std::string>& vars,
                          std::string_view what = "template");

// Sentences of `text`: a sentence ends at '.', '!' or '?' (plus closing quotes or
// brackets) followed by whitespace or the end. Sentences keep their punctuation and
// lose the separating whitespace. NOTE: stands in for NLTK's Punkt sent_tokenize
// (RULER); abbreviations such as "Mr." end a sentence here.
std::vector<std::string> split_sentences(std::string_view text);

// Unicode code points of UTF-8 text; invalid bytes map to U+FFFD one byte at a time.
std::vector<char32_t> utf8_decode(std::string_view s);
std::string utf8_encode(const std::vector<char32_t>& cps);

// Lower-case ASCII words [a-z]+ of length [min_len, max_len] from a word-per-line
// file (Debian's wamerican /usr/share/dict/american-english), sorted and unique.
// Throws Error(Io) naming the file when it is missing, Error(InvalidInput) when it
// holds fewer than 100 such words.
std::vector<std::string> load_word_list(const std::string& path, size_t min_len = 3, size_t max_len = 10);
// Default word list path.
inline constexpr const char* kDefaultWordList = "/usr/share/dict/american-english";

// numpy.round(numpy.linspace(lo, hi, n)) as integers (round half to even); n >= 1.
std::vector<int64_t> linspace_round(double lo, double hi, int n);
// A grid given as "a,b,c" (explicit) or "lo:hi:n" (numpy linspace, rounded to
// `decimals` places with round-half-even). Throws Error(InvalidInput) naming `flag`.
std::vector<double> parse_grid(const std::string& text, const std::string& flag, int decimals = 0);
// Kamradt's "sigmoid" depth option: 0 and 100 stay, any other x maps to
// round(100 / (1 + exp(0.1 (x - 50))), 3).
double sigmoid_depth(double x);

// Compact number text for ids and tables: "50", "33.333".
std::string fmt_num(double v);

}  // namespace harmonia::eval
