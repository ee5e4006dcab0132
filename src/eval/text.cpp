#include "eval/text.h"

#include <algorithm>
#include <cmath>
#include <fstream>
#include <set>

#include <fmt/format.h>

#include "common/error.h"

namespace harmonia::eval {

bool is_py_space(unsigned char c) { return c == ' ' || (c >= 0x09 && c <= 0x0d) || (c >= 0x1c && c <= 0x1f); }

std::vector<std::string> split_ws(std::string_view s) {
  std::vector<std::string> out;
  size_t i = 0;
  while (i < s.size()) {
    while (i < s.size() && is_py_space(s[i])) ++i;
    const size_t b = i;
    while (i < s.size() && !is_py_space(s[i])) ++i;
    if (i > b) out.emplace_back(s.substr(b, i - b));
  }
  return out;
}

std::string collapse_ws(std::string_view s) {
  std::string out;
  for (const auto& w : split_ws(s)) {
    if (!out.empty()) out += ' ';
    out += w;
  }
  return out;
}

std::string strip(std::string_view s) {
  size_t b = 0, e = s.size();
  while (b < e && is_py_space(s[b])) ++b;
  while (e > b && is_py_space(s[e - 1])) --e;
  return std::string(s.substr(b, e - b));
}

std::vector<std::string> split_on(std::string_view s, std::string_view sep) {
  std::vector<std::string> out;
  size_t start = 0;
  while (true) {
    const size_t p = s.find(sep, start);
    if (p == std::string_view::npos) {
      out.emplace_back(s.substr(start));
      return out;
    }
    out.emplace_back(s.substr(start, p - start));
    start = p + sep.size();
  }
}

std::string lower_ascii(std::string_view s) {
  std::string out(s);
  for (char& c : out)
    if (c >= 'A' && c <= 'Z') c = static_cast<char>(c - 'A' + 'a');
  return out;
}

std::string replace_all(std::string_view s, std::string_view from, std::string_view to) {
  std::string out;
  size_t start = 0;
  while (true) {
    const size_t p = s.find(from, start);
    if (p == std::string_view::npos) break;
    out.append(s.substr(start, p - start));
    out.append(to);
    start = p + from.size();
  }
  out.append(s.substr(start));
  return out;
}

std::string fill_template(std::string_view tpl, const std::map<std::string, std::string>& vars, std::string_view what) {
  std::string out;
  size_t i = 0;
  while (i < tpl.size()) {
    if (tpl[i] == '{') {
      const size_t close = tpl.find('}', i + 1);
      if (close != std::string_view::npos) {
        const std::string name(tpl.substr(i + 1, close - i - 1));
        const bool ident = !name.empty() && std::all_of(name.begin(), name.end(), [](char c) {
          return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_';
        });
        if (ident) {
          auto it = vars.find(name);
          if (it == vars.end()) fail(ErrorKind::InvalidInput, "{}: no value for the slot {{{}}}", what, name);
          out += it->second;
          i = close + 1;
          continue;
        }
      }
    }
    out += tpl[i++];
  }
  return out;
}

std::vector<std::string> split_sentences(std::string_view text) {
  std::vector<std::string> out;
  size_t b = 0, i = 0;
  const size_t n = text.size();
  auto closing = [](char c) { return c == '"' || c == '\'' || c == ')' || c == ']'; };
  while (i < n) {
    const char c = text[i];
    if (c == '.' || c == '!' || c == '?') {
      size_t e = i + 1;
      while (e < n && (text[e] == '.' || text[e] == '!' || text[e] == '?')) ++e;
      while (e < n && closing(text[e])) ++e;
      if (e == n || is_py_space(text[e])) {
        std::string s = strip(text.substr(b, e - b));
        if (!s.empty()) out.push_back(std::move(s));
        b = e;
      }
      i = e;
      continue;
    }
    ++i;
  }
  std::string rest = strip(text.substr(b));
  if (!rest.empty()) out.push_back(std::move(rest));
  return out;
}

std::vector<char32_t> utf8_decode(std::string_view s) {
  std::vector<char32_t> out;
  out.reserve(s.size());
  size_t i = 0;
  while (i < s.size()) {
    const unsigned char c = s[i];
    int len = c < 0x80 ? 1 : (c >> 5) == 6 ? 2 : (c >> 4) == 14 ? 3 : (c >> 3) == 30 ? 4 : 0;
    if (len == 0 || i + len > s.size()) {
      out.push_back(0xFFFD);
      ++i;
      continue;
    }
    char32_t cp = len == 1 ? c : len == 2 ? (c & 0x1F) : len == 3 ? (c & 0x0F) : (c & 0x07);
    bool ok = true;
    for (int k = 1; k < len; ++k) {
      const unsigned char d = s[i + k];
      if ((d >> 6) != 2) {
        ok = false;
        break;
      }
      cp = (cp << 6) | (d & 0x3F);
    }
    if (!ok) {
      out.push_back(0xFFFD);
      ++i;
      continue;
    }
    out.push_back(cp);
    i += len;
  }
  return out;
}

std::string utf8_encode(const std::vector<char32_t>& cps) {
  std::string out;
  for (char32_t cp : cps) {
    if (cp < 0x80) {
      out += static_cast<char>(cp);
    } else if (cp < 0x800) {
      out += static_cast<char>(0xC0 | (cp >> 6));
      out += static_cast<char>(0x80 | (cp & 0x3F));
    } else if (cp < 0x10000) {
      out += static_cast<char>(0xE0 | (cp >> 12));
      out += static_cast<char>(0x80 | ((cp >> 6) & 0x3F));
      out += static_cast<char>(0x80 | (cp & 0x3F));
    } else {
      out += static_cast<char>(0xF0 | (cp >> 18));
      out += static_cast<char>(0x80 | ((cp >> 12) & 0x3F));
      out += static_cast<char>(0x80 | ((cp >> 6) & 0x3F));
      out += static_cast<char>(0x80 | (cp & 0x3F));
    }
  }
  return out;
}

std::vector<std::string> load_word_list(const std::string& path, size_t min_len, size_t max_len) {
  std::ifstream f(path);
  if (!f) fail(ErrorKind::Io, "{}: cannot read the word list (install Debian's wamerican, or give --words FILE)", path);
  std::set<std::string> words;
  std::string line;
  while (std::getline(f, line)) {
    const std::string w = strip(line);
    if (w.size() < min_len || w.size() > max_len) continue;
    if (std::all_of(w.begin(), w.end(), [](char c) { return c >= 'a' && c <= 'z'; })) words.insert(w);
  }
  if (words.size() < 100)
    fail(ErrorKind::InvalidInput, "{}: only {} lower-case words of {}-{} letters (need at least 100)", path,
         words.size(), min_len, max_len);
  return {words.begin(), words.end()};
}

std::vector<int64_t> linspace_round(double lo, double hi, int n) {
  std::vector<int64_t> out;
  for (int i = 0; i < n; ++i) {
    // numpy.linspace: lo + i * step, with the last point exactly hi.
    const double v = n == 1 ? lo : (i == n - 1 ? hi : lo + i * ((hi - lo) / (n - 1)));
    out.push_back(static_cast<int64_t>(std::nearbyint(v)));  // round half to even, as numpy.round
  }
  return out;
}

namespace {
double round_to(double v, int decimals) {
  const double s = std::pow(10.0, decimals);
  return std::nearbyint(v * s) / s;
}
}  // namespace

std::vector<double> parse_grid(const std::string& text, const std::string& flag, int decimals) {
  auto num = [&](const std::string& s) {
    try {
      size_t used = 0;
      const double v = std::stod(s, &used);
      if (used != s.size() || !std::isfinite(v)) throw std::invalid_argument(s);
      return v;
    } catch (const std::exception&) {
      fail(ErrorKind::InvalidInput, "{} '{}': '{}' is not a number (give a,b,c or min:max:n)", flag, text, s);
    }
  };
  std::vector<double> out;
  if (text.find(':') != std::string::npos) {
    const auto parts = split_on(text, ":");
    if (parts.size() != 3) fail(ErrorKind::InvalidInput, "{} '{}': expected min:max:n", flag, text);
    const double lo = num(parts[0]), hi = num(parts[1]), nd = num(parts[2]);
    if (nd < 1 || nd != std::floor(nd) || nd > 10000)
      fail(ErrorKind::InvalidInput, "{} '{}': n must be an integer in [1, 10000]", flag, text);
    const int n = static_cast<int>(nd);
    for (int i = 0; i < n; ++i) {
      const double v = n == 1 ? lo : (i == n - 1 ? hi : lo + i * ((hi - lo) / (n - 1)));
      out.push_back(round_to(v, decimals));
    }
  } else {
    for (const auto& p : split_on(text, ",")) out.push_back(num(strip(p)));
  }
  if (out.empty()) fail(ErrorKind::InvalidInput, "{} is empty", flag);
  return out;
}

double sigmoid_depth(double x) {
  if (x == 0 || x == 100) return x;
  return round_to(100.0 / (1.0 + std::exp(0.1 * (x - 50.0))), 3);
}

std::string fmt_num(double v) {
  if (v == std::floor(v) && std::fabs(v) < 1e15) return fmt::format("{}", static_cast<int64_t>(v));
  return fmt::format("{}", v);
}

}  // namespace harmonia::eval
