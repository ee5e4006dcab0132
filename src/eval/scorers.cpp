#include "eval/scorers.h"

#include <algorithm>
#include <cmath>
#include <map>
#include <set>

#include "eval/text.h"

namespace harmonia::eval {

namespace {

std::string norm_for_match(std::string_view s) { return lower_ascii(collapse_ws(s)); }

bool is_digit(char c) { return c >= '0' && c <= '9'; }

// Python's \w for str patterns, approximated: ASCII letters, digits, '_' and
// every non-ASCII byte (most non-ASCII code points that appear in text are letters).
bool is_word_byte(unsigned char c) {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_' || c >= 0x80;
}

bool is_ascii_punct(unsigned char c) { return (c >= 33 && c <= 47) || (c >= 58 && c <= 64) || (c >= 91 && c <= 96) || (c >= 123 && c <= 126); }

std::string strip_leading_zeros(const std::string& d) {
  size_t i = 0;
  while (i + 1 < d.size() && d[i] == '0') ++i;
  return d.substr(i);
}

// re.sub(r"\b(a|an|the)\b", " ", text)
std::string remove_articles(std::string_view t) {
  std::string out;
  size_t i = 0;
  while (i < t.size()) {
    const bool boundary_before = i == 0 || !is_word_byte(t[i - 1]);
    if (boundary_before) {
      size_t len = 0;
      for (std::string_view w : {"a", "an", "the"}) {
        if (t.substr(i, w.size()) == w && (i + w.size() == t.size() || !is_word_byte(t[i + w.size()]))) {
          len = w.size();
          break;
        }
      }
      if (len) {
        out += ' ';
        i += len;
        continue;
      }
    }
    out += t[i++];
  }
  return out;
}

double f1_tokens(const std::vector<std::string>& pred, const std::vector<std::string>& gold) {
  std::map<std::string, int> cp, cg;
  for (const auto& w : pred) ++cp[w];
  for (const auto& w : gold) ++cg[w];
  int same = 0;
  for (const auto& [w, n] : cp)
    if (auto it = cg.find(w); it != cg.end()) same += std::min(n, it->second);
  if (same == 0) return 0.0;
  const double p = static_cast<double>(same) / pred.size();
  const double r = static_cast<double>(same) / gold.size();
  return 2 * p * r / (p + r);
}

// Character-level stand-in for jieba.cut: ASCII letter/digit runs stay whole,
// whitespace runs are one token, every other code point is its own token.
std::vector<std::string> zh_segment(std::string_view s) {
  std::vector<std::string> out;
  const auto cps = utf8_decode(s);
  size_t i = 0;
  auto alnum = [](char32_t c) { return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9'); };
  auto space = [](char32_t c) { return c < 0x80 && is_py_space(static_cast<unsigned char>(c)); };
  while (i < cps.size()) {
    size_t j = i + 1;
    if (alnum(cps[i]))
      while (j < cps.size() && alnum(cps[j])) ++j;
    else if (space(cps[i]))
      while (j < cps.size() && space(cps[j])) ++j;
    out.push_back(utf8_encode(std::vector<char32_t>(cps.begin() + i, cps.begin() + j)));
    i = j;
  }
  return out;
}

// normalize_zh_answer: lower, drop ASCII and Chinese punctuation, drop whitespace.
std::string normalize_zh_answer(std::string_view s) {
  static const std::set<char32_t> cn_punct = [] {
    const std::string p =
        "！？｡。＂＃＄％＆＇（）＊＋，－／：；＜＝＞＠［＼］＾＿｀｛｜｝～｟｠｢｣､、〃》「」『』【】〔〕〖〗〘〙〚〛〜〝〞〟〰〾〿–—‘’‛“”„‟…‧﹏.";
    const auto cps = utf8_decode(p);
    return std::set<char32_t>(cps.begin(), cps.end());
  }();
  std::vector<char32_t> out;
  for (char32_t c : utf8_decode(lower_ascii(s))) {
    if (c < 0x80 && (is_ascii_punct(static_cast<unsigned char>(c)) || is_py_space(static_cast<unsigned char>(c)))) continue;
    if (cn_punct.count(c)) continue;
    out.push_back(c);
  }
  return utf8_encode(out);
}

// pltrdy rouge: Rouge._get_scores sentence split, then words by ' '.
std::vector<std::vector<std::string>> rouge_sentences(std::string_view text) {
  std::vector<std::vector<std::string>> out;
  for (const auto& piece : split_on(text, "."))
    if (!piece.empty()) out.push_back(split_on(collapse_ws(piece), " "));
  return out;
}

// rouge_score._recon_lcs(x, y): the words of one LCS of x and y, found by the
// reference's backtracking (diagonal on a match, else up when strictly better).
std::vector<std::string> recon_lcs(const std::vector<std::string>& x, const std::vector<std::string>& y) {
  const size_t n = x.size(), m = y.size();
  std::vector<uint32_t> t((n + 1) * (m + 1), 0);
  auto at = [&](size_t i, size_t j) -> uint32_t& { return t[i * (m + 1) + j]; };
  for (size_t i = 1; i <= n; ++i)
    for (size_t j = 1; j <= m; ++j) at(i, j) = x[i - 1] == y[j - 1] ? at(i - 1, j - 1) + 1 : std::max(at(i - 1, j), at(i, j - 1));
  std::vector<std::string> rev;
  size_t i = n, j = m;
  while (i > 0 && j > 0) {
    if (x[i - 1] == y[j - 1]) {
      rev.push_back(x[i - 1]);
      --i;
      --j;
    } else if (at(i - 1, j) > at(i, j - 1)) {
      --i;
    } else {
      --j;
    }
  }
  return {rev.rbegin(), rev.rend()};
}

double ratio_of_numbers(std::string_view pred, const std::string& gold_id) {
  const auto nums = find_integers(pred);
  if (nums.empty()) return 0.0;
  size_t right = 0;
  for (const auto& n : nums) right += n == gold_id;
  return static_cast<double>(right) / nums.size();
}

// The digits after the first occurrence of `prefix` followed by a digit, "" if none.
std::string id_after(std::string_view gold, std::string_view prefix) {
  size_t p = 0;
  while ((p = gold.find(prefix, p)) != std::string_view::npos) {
    size_t i = p + prefix.size(), j = i;
    while (j < gold.size() && is_digit(gold[j])) ++j;
    if (j > i) return std::string(gold.substr(i, j - i));
    p += 1;
  }
  return "";
}

}  // namespace

double keyword_recall(std::string_view output, const std::vector<std::string>& phrases) {
  if (phrases.empty()) return 0.0;
  const std::string o = norm_for_match(output);
  size_t found = 0;
  for (const auto& p : phrases) {
    const std::string q = norm_for_match(p);
    found += !q.empty() && o.find(q) != std::string::npos;
  }
  return static_cast<double>(found) / phrases.size();
}

double exact_containment(std::string_view output, std::string_view answer) {
  const std::string a = norm_for_match(answer);
  return !a.empty() && norm_for_match(output).find(a) != std::string::npos ? 1.0 : 0.0;
}

std::vector<std::string> find_integers(std::string_view text) {
  std::vector<std::string> out;
  size_t i = 0;
  while (i < text.size()) {
    if (is_digit(text[i])) {
      size_t j = i;
      while (j < text.size() && is_digit(text[j])) ++j;
      out.emplace_back(text.substr(i, j - i));
      i = j;
    } else {
      ++i;
    }
  }
  return out;
}

std::string first_integer(std::string_view text) {
  auto v = find_integers(text);
  return v.empty() ? "" : v[0];
}

double passkey_score(std::string_view output, int64_t key) {
  const std::string d = first_integer(output);
  if (d.empty()) return 0.0;
  return strip_leading_zeros(d) == std::to_string(key) ? 1.0 : 0.0;
}

std::string ruler_postprocess(std::string_view pred) {
  std::string s = strip(pred);
  for (char& c : s)
    if (static_cast<unsigned char>(c) <= 0x1f) c = '\n';
  return strip(s);
}

double string_match_all(std::string_view pred, const std::vector<std::string>& refs) {
  if (refs.empty()) return 0.0;
  const std::string p = lower_ascii(pred);
  size_t hit = 0;
  for (const auto& r : refs) hit += p.find(lower_ascii(r)) != std::string::npos;
  return static_cast<double>(hit) / refs.size();
}

double string_match_part(std::string_view pred, const std::vector<std::string>& refs) {
  const std::string p = lower_ascii(pred);
  for (const auto& r : refs)
    if (p.find(lower_ascii(r)) != std::string::npos) return 1.0;
  return 0.0;
}

std::string normalize_answer(std::string_view s) {
  std::string t = lower_ascii(s);
  std::string no_punc;
  for (char c : t)
    if (!is_ascii_punct(static_cast<unsigned char>(c))) no_punc += c;
  return collapse_ws(remove_articles(no_punc));
}

double qa_f1(std::string_view pred, std::string_view gold) {
  return f1_tokens(split_ws(normalize_answer(pred)), split_ws(normalize_answer(gold)));
}

double qa_f1_zh(std::string_view pred, std::string_view gold) {
  auto toks = [](std::string_view s) {
    std::vector<std::string> out;
    for (const auto& t : zh_segment(s)) {
      std::string n = normalize_zh_answer(t);
      if (!n.empty()) out.push_back(std::move(n));
    }
    return out;
  };
  return f1_tokens(toks(pred), toks(gold));
}

double rouge_l(std::string_view pred, std::string_view gold) {
  const auto hyp = rouge_sentences(pred);
  const auto ref = rouge_sentences(gold);
  if (hyp.empty() || ref.empty()) return 0.0;
  std::set<std::string> hyp_words, ref_words, lcs_union;
  for (const auto& s : hyp) hyp_words.insert(s.begin(), s.end());
  for (const auto& s : ref) ref_words.insert(s.begin(), s.end());
  for (const auto& r : ref)
    for (const auto& h : hyp)
      for (auto& w : recon_lcs(r, h)) lcs_union.insert(std::move(w));
  const double llcs = static_cast<double>(lcs_union.size());
  const double r = llcs / ref_words.size();
  const double p = llcs / hyp_words.size();
  return 2.0 * ((p * r) / (p + r + 1e-8));
}

double rouge_l_zh(std::string_view pred, std::string_view gold) {
  auto joined = [](std::string_view s) {
    std::string out;
    for (const auto& t : zh_segment(s)) out += (out.empty() ? "" : " ") + t;
    return out;
  };
  return rouge_l(joined(pred), joined(gold));
}

double classification_score(std::string_view pred, std::string_view gold, const std::vector<std::string>& all_classes) {
  std::vector<std::string> matches;
  for (const auto& c : all_classes)
    if (pred.find(c) != std::string_view::npos) matches.push_back(c);
  // `for match_term in em_match_list: ... em_match_list.remove(match_term)`: the
  // index advances past the element that slides into a removed slot.
  for (size_t i = 0; i < matches.size(); ++i) {
    const std::string term = matches[i];
    if (gold.find(term) != std::string_view::npos && term != gold)
      matches.erase(std::find(matches.begin(), matches.end(), term));
  }
  if (std::find(matches.begin(), matches.end(), gold) == matches.end()) return 0.0;
  return 1.0 / matches.size();
}

double retrieval_score(std::string_view pred, std::string_view gold) {
  const std::string id = id_after(gold, "Paragraph ");
  return id.empty() ? 0.0 : ratio_of_numbers(pred, id);
}

double retrieval_zh_score(std::string_view pred, std::string_view gold) {
  const std::string id = id_after(gold, "段落");
  return id.empty() ? 0.0 : ratio_of_numbers(pred, id);
}

double count_score(std::string_view pred, std::string_view gold) { return ratio_of_numbers(pred, std::string(gold)); }

double code_sim_score(std::string_view pred, std::string_view gold) {
  size_t b = 0;
  while (b < pred.size() && pred[b] == '\n') ++b;
  std::string line;
  for (const auto& l : split_on(pred.substr(b), "\n")) {
    if (l.find('`') == std::string::npos && l.find('#') == std::string::npos && l.find("//") == std::string::npos) {
      line = l;
      break;
    }
  }
  return fuzz_ratio(line, gold) / 100.0;
}

double levenshtein_ratio(std::string_view a, std::string_view b) {
  const auto x = utf8_decode(a), y = utf8_decode(b);
  const size_t n = x.size(), m = y.size();
  if (n + m == 0) return 1.0;
  std::vector<size_t> prev(m + 1), cur(m + 1);
  for (size_t j = 0; j <= m; ++j) prev[j] = j;
  for (size_t i = 1; i <= n; ++i) {
    cur[0] = i;
    for (size_t j = 1; j <= m; ++j)
      cur[j] = std::min({prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + (x[i - 1] == y[j - 1] ? 0 : 2)});
    std::swap(prev, cur);
  }
  return static_cast<double>(n + m - prev[m]) / (n + m);
}

int fuzz_ratio(std::string_view a, std::string_view b) {
  if (a == b) return 100;
  if (a.empty() || b.empty()) return 0;
  return static_cast<int>(std::nearbyint(100.0 * levenshtein_ratio(a, b)));
}

}  // namespace harmonia::eval
