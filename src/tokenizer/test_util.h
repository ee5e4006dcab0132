#pragma once
// Helpers for the tokenizer tests: shared tokenizers loaded once per test
// binary (the Llama 3 and Qwen tokenizer.json files take a while to parse) and
// llama.cpp's .inp/.out vocabulary test vectors.
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "common/env.h"
#include "common/mapped_file.h"
#include "gguf/gguf.h"
#include "tokenizer/tokenizer.h"

namespace harmonia::testing {

// load_tokenizer(shared_path(rel)), cached by path.
inline const Tokenizer& shared_tokenizer(const std::string& rel) {
  static std::mutex mu;
  static std::map<std::string, std::unique_ptr<Tokenizer>> cache;
  std::lock_guard<std::mutex> lock(mu);
  auto& slot = cache[rel];
  if (!slot) slot = load_tokenizer(shared_path(rel));
  return *slot;
}

struct VocabCase {
  std::string text;
  std::vector<int32_t> ids;  // without BOS
};

// llama.cpp models/ggml-vocab-*.gguf.inp/.out: inputs separated by
// "\n__ggml_vocab_test__\n" (the file ends with one, leaving an empty last
// piece), one line of ids per input.
inline std::vector<VocabCase> read_vocab_cases(const std::string& inp_rel, const std::string& out_rel) {
  const std::string inp = read_file(shared_path(inp_rel));
  const std::string out = read_file(shared_path(out_rel));
  const std::string sep = "\n__ggml_vocab_test__\n";
  std::vector<VocabCase> cases;
  size_t pos = 0;
  while (pos <= inp.size()) {
    size_t next = inp.find(sep, pos);
    if (next == std::string::npos) next = inp.size();
    cases.push_back({inp.substr(pos, next - pos), {}});
    pos = next + sep.size();
  }
  if (!cases.empty() && cases.back().text.empty()) cases.pop_back();
  size_t line_start = 0;
  for (auto& c : cases) {
    size_t e = out.find('\n', line_start);
    if (e == std::string::npos) e = out.size();
    const std::string line = out.substr(line_start, e - line_start);
    line_start = e + 1;
    size_t p = 0;
    while (p < line.size()) {
      while (p < line.size() && line[p] == ' ') ++p;
      if (p >= line.size()) break;
      size_t q = p;
      while (q < line.size() && line[q] != ' ') ++q;
      c.ids.push_back(std::stoi(line.substr(p, q - p)));
      p = q;
    }
  }
  return cases;
}

inline std::string show_ids(const std::vector<int32_t>& ids) {
  std::string s;
  for (int32_t id : ids) {
    if (!s.empty()) s += ' ';
    s += std::to_string(id);
  }
  return s;
}

}  // namespace harmonia::testing
