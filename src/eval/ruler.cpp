// `harmonia eval ruler`: the synthetic tasks of RULER (Hsieh et al. 2024,
// NVIDIA/RULER scripts/data/synthetic/{niah,variable_tracking,
// common_words_extraction,freq_words_extraction,constants}.py and
// scripts/synthetic.yaml), survey §2.3. QA (SQuAD/HotpotQA) needs their data
// sets and is not included.
//
// NOTE deviations, each because the original does not fit short contexts or a
// C++ build:
//  - Lengths are fitted per sample by binary search over the haystack size (the
//    sample's random draws do not depend on the size); RULER searches once per
//    task and shrinks each sample by a fixed step.
//  - Word keys are two random words of Debian's wamerican list joined by '-'
//    (RULER: a wonderwords adjective and noun); CWE draws from the same list.
//  - The essay haystack is --haystack (default: the built-in synthetic filler),
//    split into sentences by eval/text.h's rule instead of NLTK Punkt.
//  - VT's one-shot example is fitted to min(500, length / 4) tokens (RULER: 500),
//    falling back to its smallest size (5 noise lines) as RULER does.
//  - A sample that cannot fit the length even with the smallest haystack is
//    reported as not applicable at that length (RULER targets >= 4k tokens).
#include <algorithm>
#include <cmath>
#include <numbers>
#include <set>

#include <fmt/format.h>

#include "common/error.h"
#include "eval/filler.h"
#include "eval/records.h"
#include "eval/rng.h"
#include "eval/scorers.h"
#include "eval/tasks.h"
#include "eval/text.h"

namespace harmonia::eval {

using nlohmann::json;

namespace {

// scripts/data/synthetic/constants.py
const char* kNiahTemplate =
    "Some special magic {type_needle_v} are hidden within the following text. Make sure to memorize it. I will quiz you "
    "about the {type_needle_v} afterwards.\n{context}\nWhat are all the special magic {type_needle_v} for {query} "
    "mentioned in the provided text?";
const char* kNiahPrefix = " The special magic {type_needle_v} for {query} mentioned in the provided text are";
const char* kVtTemplate =
    "Memorize and track the chain(s) of variable assignment hidden in the following text.\n\n{context}\nQuestion: Find "
    "all variables that are assigned the value {query} in the text above.";
const char* kVtPrefix =
    " Answer: According to the chain(s) of variable assignment in the text above, {num_v} variables are assigned the "
    "value {query}, they are: ";
const char* kCweTemplate =
    "Below is a numbered list of words. In these words, some appear more often than others. Memorize the ones that "
    "appear most often.\n{context}\nQuestion: What are the 10 most common words in the above list?";
const char* kCwePrefix = " Answer: The top 10 words that appear most often in the list are:";
const char* kFweTemplate =
    "Read the following coded text and track the frequency of each coded word. Find the three most frequently appeared "
    "coded words. {context}\nQuestion: Do not provide any explanation. Please ignore the dots '....'. What are the "
    "three most frequently appeared words in the above coded text?";
const char* kFwePrefix = " Answer: According to the coded text above, the three most frequently appeared words are:";
const char* kNoise = "The grass is green. The sky is blue. The sun is yellow. Here we go. There and back again.";
const char* kNeedle = "One of the special magic {type_needle_v} for {key} is: {value}.";

// scripts/synthetic.yaml
struct NiahCfg {
  const char* name;
  const char* haystack;  // noise | essay | needle
  const char* k;         // key type: words | numbers | uuids
  const char* v;         // value type
  int nk, nv, nq;        // needles: keys, values per key, queried keys (nk = max(nk, nq))
};
const NiahCfg kNiahTasks[] = {
    {"niah_single_1", "noise", "words", "numbers", 1, 1, 1},  {"niah_single_2", "essay", "words", "numbers", 1, 1, 1},
    {"niah_single_3", "essay", "words", "uuids", 1, 1, 1},    {"niah_multikey_1", "essay", "words", "numbers", 4, 1, 1},
    {"niah_multikey_2", "needle", "words", "numbers", 1, 1, 1}, {"niah_multikey_3", "needle", "uuids", "uuids", 1, 1, 1},
    {"niah_multivalue", "essay", "words", "numbers", 1, 4, 1}, {"niah_multiquery", "essay", "words", "numbers", 4, 1, 4},
};
constexpr int kVtHops = 4, kVtChains = 1, kCwNum = 10, kFweWordLen = 6;
constexpr double kFweAlpha = 2.0;
constexpr double kEffectiveThreshold = 85.6;  // Llama-2-7B-chat at 4k (RULER)

const NiahCfg* niah_cfg(const std::string& task) {
  for (const auto& c : kNiahTasks)
    if (task == c.name) return &c;
  return nullptr;
}

std::string upper_letters(Rng& r, size_t k) {
  std::string s;
  for (size_t i = 0; i < k; ++i) s += static_cast<char>('A' + r.below(26));
  return s;
}

std::string uuid4(Rng& r) {
  uint64_t hi = r.next(), lo = r.next();
  hi = (hi & ~0xF000ULL) | 0x4000ULL;                                    // version 4
  lo = (lo & ~(0xC000000000000000ULL)) | 0x8000000000000000ULL;         // RFC 4122 variant
  return fmt::format("{:08x}-{:04x}-{:04x}-{:04x}-{:012x}", hi >> 32, (hi >> 16) & 0xFFFF, hi & 0xFFFF, lo >> 48,
                     lo & 0xFFFFFFFFFFFFULL);
}

std::vector<int64_t> depths40() { return linspace_round(0, 100, 40); }

}  // namespace

std::vector<std::string> ruler_task_names() {
  std::vector<std::string> v;
  for (const auto& c : kNiahTasks) v.push_back(c.name);
  v.push_back("vt");
  v.push_back("cwe");
  v.push_back("fwe");
  return v;
}

RulerBuilder::RulerBuilder(const Model& m, const RulerOptions& o, ChatMode chat, uint64_t seed, int64_t max_length)
    : o_(o), prompter_(m, chat, /*benchmark_uses_chat=*/true), seed_(seed) {
  words_ = load_word_list(o.words);
  // re.sub(r'\s+', " ", essay).split(" ") of a haystack long enough for max_length.
  essay_words_ = split_ws(haystack_text(o.haystack_dir, static_cast<size_t>(max_length) * 8 + 4096));
}

int RulerBuilder::budget(const std::string& task) const {
  if (o_.max_new > 0) return o_.max_new;
  if (niah_cfg(task)) return 128;
  if (task == "vt") return 30;
  if (task == "cwe") return 120;
  return 50;  // fwe
}

int64_t RulerBuilder::min_size(const std::string& task) const {
  if (const NiahCfg* c = niah_cfg(task)) return std::string(c->haystack) == "essay" ? 1 : std::max(c->nk, c->nq) * c->nv;
  if (task == "vt") return kVtHops + 1;
  if (task == "cwe") return kCwNum;
  return 1;
}

std::string RulerBuilder::vt_icl_example(int64_t length) const {
  // sys_vartrack_w_noise_random(num_samples=1, max_seq_length=500, tokens_to_generate=0), is_icl: 3-letter names,
  // value 12345, the task template without the model template.
  if (auto it = icl_cache_.find(length); it != icl_cache_.end()) return it->second;
  const uint64_t seed = derive_seed(seed_, fmt::format("ruler/vt/icl/L{}", length));
  auto make = [&](int64_t n) {
    Rng r(seed);
    std::vector<std::string> vars;
    for (int i = 0; i < kVtHops + 1; ++i) vars.push_back(upper_letters(r, 3));
    std::set<std::string> uniq(vars.begin(), vars.end());
    while (uniq.size() < vars.size()) {
      vars.push_back(upper_letters(r, 3));
      uniq.insert(vars.back());
    }
    std::vector<std::string> chain = {"VAR " + vars[0] + " = 12345"};
    for (int j = 0; j < kVtHops; ++j) chain.push_back("VAR " + vars[j + 1] + " = VAR " + vars[j] + " ");
    std::vector<std::string> sent(static_cast<size_t>(n), kNoise);
    auto pos = r.sample(sent.size(), chain.size());
    std::sort(pos.begin(), pos.end());
    for (size_t j = 0; j < chain.size(); ++j) sent.insert(sent.begin() + pos[j] + j, chain[j]);
    std::string context;
    for (size_t i = 0; i < sent.size(); ++i) context += (i ? "\n" : "") + sent[i];
    context = replace_all(context, ". \n", ".\n");
    std::string text = fill_template(std::string(kVtTemplate) + kVtPrefix,
                                     {{"context", context}, {"query", "12345"}, {"num_v", std::to_string(kVtHops + 1)}});
    std::string answer;
    for (int j = 0; j < kVtHops + 1; ++j) answer += (j ? " " : "") + vars[j];
    return text + " " + answer + "\n";
  };
  const int64_t target = std::min<int64_t>(500, length / 4);
  const int64_t n = fit_largest(kVtHops + 1, 4 * target + 64, [&](int64_t k) {
    return static_cast<int64_t>(prompter_.encode_plain(make(k)).size()) <= target;
  });
  return icl_cache_[length] = make(std::max<int64_t>(n, kVtHops + 1));
}

Sample RulerBuilder::build(const std::string& task, int64_t length, int index, int64_t n) const {
  Sample s;
  s.id = fmt::format("{}/L{}/i{}", task, length, index);
  s.group = task;
  s.length = length;
  s.max_new = budget(task);
  Rng r(derive_seed(seed_, "ruler/" + s.id));
  auto wrap = [&](const std::string& task_text, const std::string& prefix) {
    return prompter_.chat() ? prompter_.chat_text({{"user", task_text}}, prefix) : task_text + prefix;
  };

  if (const NiahCfg* c = niah_cfg(task)) {
    const int nk = std::max(c->nk, c->nq);
    auto gen = [&](const std::string& type) -> std::string {
      if (type == "numbers") return std::to_string(r.range(1000000, 9999999));
      if (type == "uuids") return uuid4(r);
      return r.choice(words_) + "-" + r.choice(words_);
    };
    std::vector<std::string> keys, needles;
    std::vector<std::vector<std::string>> values;
    for (int i = 0; i < nk; ++i) {
      keys.push_back(gen(c->k));
      values.emplace_back();
      for (int j = 0; j < c->nv; ++j) {
        values.back().push_back(gen(c->v));
        needles.push_back(fill_template(kNeedle, {{"type_needle_v", c->v}, {"key", keys.back()}, {"value", values.back().back()}}));
      }
    }
    r.shuffle(needles);
    std::string context;
    const std::string hay = c->haystack;
    if (hay == "essay") {
      std::string text;
      for (int64_t i = 0; i < n; ++i) text += (i ? " " : "") + essay_words_[static_cast<size_t>(i) % essay_words_.size()];
      const auto sents = split_sentences(strip(text));
      const auto d40 = depths40();
      std::vector<int64_t> ins = {0};
      for (size_t k : r.sample(d40.size(), needles.size()))
        ins.push_back(static_cast<int64_t>(static_cast<double>(sents.size()) * (d40[k] / 100.0)));
      std::sort(ins.begin() + 1, ins.end());
      ins.push_back(static_cast<int64_t>(sents.size()));
      std::vector<std::string> parts;
      for (size_t i = 1; i < ins.size(); ++i) {
        std::string chunk;
        for (int64_t k = ins[i - 1]; k < ins[i]; ++k) chunk += (k > ins[i - 1] ? " " : "") + sents[k];
        parts.push_back(chunk);
        if (i - 1 < needles.size()) parts.push_back(needles[i - 1]);
      }
      for (size_t i = 0; i < parts.size(); ++i) context += (i ? " " : "") + parts[i];
    } else {
      std::vector<std::string> lines;
      for (int64_t i = 0; i < n; ++i)
        lines.push_back(hay == "noise" ? std::string(kNoise)
                                       : fill_template(kNeedle, {{"type_needle_v", c->v}, {"key", gen(c->k)}, {"value", gen(c->v)}}));
      auto idx = r.sample(lines.size(), needles.size());
      std::sort(idx.rbegin(), idx.rend());
      for (size_t i = 0; i < idx.size(); ++i) lines.insert(lines.begin() + idx[i], needles[i]);
      for (size_t i = 0; i < lines.size(); ++i) context += (i ? "\n" : "") + lines[i];
    }
    std::vector<std::string> queries, answers;
    for (size_t i : r.sample(static_cast<size_t>(nk), static_cast<size_t>(c->nq))) {
      queries.push_back(keys[i]);
      for (const auto& v : values[i]) answers.push_back(v);
    }
    std::string query = queries[0];
    if (queries.size() > 1) {
      query.clear();
      for (size_t i = 0; i + 1 < queries.size(); ++i) query += (i ? ", " : "") + queries[i];
      query += ", and " + queries.back();
    }
    std::string tpl = kNiahTemplate, pre = kNiahPrefix, type_v = c->v;
    if (c->nq * c->nv == 1) {  // singular wording for a single answer
      for (std::string* t : {&tpl, &pre}) {
        *t = replace_all(*t, "Some", "A");
        *t = replace_all(*t, "are all", "is");
        *t = replace_all(*t, "are", "is");
        *t = replace_all(*t, "answers", "answer");
      }
      type_v.pop_back();
    }
    const std::map<std::string, std::string> vars = {{"type_needle_v", type_v}, {"context", context}, {"query", query}};
    s.prompt = wrap(fill_template(tpl, vars), fill_template(pre, vars));
    s.expected = answers;
  } else if (task == "vt") {
    std::vector<std::string> vars;
    for (int i = 0; i < (kVtHops + 1) * kVtChains; ++i) vars.push_back(upper_letters(r, 5));
    std::set<std::string> uniq(vars.begin(), vars.end());
    while (uniq.size() < static_cast<size_t>((kVtHops + 1) * kVtChains)) {
      vars.push_back(upper_letters(r, 5));
      uniq.insert(vars.back());
    }
    const std::string value = std::to_string(r.range(10000, 99998));  // np.random.randint(10000, 99999)
    std::vector<std::string> chain = {"VAR " + vars[0] + " = " + value};
    for (int j = 0; j < kVtHops; ++j) chain.push_back("VAR " + vars[j + 1] + " = VAR " + vars[j] + " ");
    std::vector<std::string> sent(static_cast<size_t>(n), kNoise);
    auto pos = r.sample(sent.size(), chain.size());
    std::sort(pos.begin(), pos.end());
    for (size_t j = 0; j < chain.size(); ++j) sent.insert(sent.begin() + pos[j] + j, chain[j]);
    std::string context;
    for (size_t i = 0; i < sent.size(); ++i) context += (i ? "\n" : "") + sent[i];
    context = replace_all(context, ". \n", ".\n");
    // randomize_icl: fresh names for the example's answer, a fresh value for 12345.
    std::string icl = vt_icl_example(length);
    const auto icl_words = split_ws(strip(icl));
    for (size_t k = icl_words.size() - (kVtHops + 1); k < icl_words.size(); ++k)
      icl = replace_all(icl, icl_words[k], upper_letters(r, icl_words[k].size()));
    icl = replace_all(icl, "12345", std::to_string(r.range(10000, 99998)));
    const std::map<std::string, std::string> v = {{"context", context}, {"query", value}, {"num_v", std::to_string(kVtHops + 1)}};
    s.prompt = wrap(icl + "\n" + fill_template(kVtTemplate, v), fill_template(kVtPrefix, v));
    s.expected.assign(vars.begin(), vars.begin() + kVtHops + 1);
  } else if (task == "cwe") {
    auto example = [&](int64_t num_words, int cr, int ur, std::vector<std::string>* common) {
      std::vector<std::string> full;
      for (size_t k : r.sample(words_.size(), static_cast<size_t>(num_words))) full.push_back(words_[k]);
      common->assign(full.begin(), full.begin() + std::min<size_t>(kCwNum, full.size()));
      std::vector<std::string> list;
      for (int k = 0; k < cr; ++k) list.insert(list.end(), common->begin(), common->end());
      for (int k = 0; k < ur; ++k) list.insert(list.end(), full.begin() + common->size(), full.end());
      r.shuffle(list);
      std::string ctx;
      for (size_t i = 0; i < list.size(); ++i) ctx += fmt::format("{}{}. {}", i ? " " : "", i + 1, list[i]);
      return ctx;
    };
    const bool short_ctx = length < 4096;
    std::vector<std::string> ex_answer, answer;
    const std::string ex_ctx = short_ctx ? example(20, 3, 1, &ex_answer) : example(40, 10, 3, &ex_answer);
    const std::string ctx = short_ctx ? example(n, 6, 1, &answer) : example(n, 30, 3, &answer);
    std::string ex_list;
    for (size_t i = 0; i < ex_answer.size(); ++i) ex_list += fmt::format("{}{}. {}", i ? " " : "", i + 1, ex_answer[i]);
    s.prompt = wrap(fill_template(kCweTemplate, {{"context", ex_ctx}}), kCwePrefix) + " " + ex_list + "\n" +
               wrap(fill_template(kCweTemplate, {{"context", ctx}}), kCwePrefix);
    s.expected = answer;
  } else if (task == "fwe") {
    const int64_t vocab_size = (length - s.max_new) / 50;
    std::set<std::string> uniq;
    while (static_cast<int64_t>(uniq.size()) < vocab_size) {
      std::string w;
      for (int k = 0; k < kFweWordLen; ++k) w += static_cast<char>('a' + r.below(26));
      uniq.insert(w);
    }
    std::vector<std::string> vocab(uniq.begin(), uniq.end());
    r.shuffle(vocab);
    vocab[0] = "...";  // the top rank is noise
    const double zeta2 = std::numbers::pi * std::numbers::pi / 6;  // scipy.special.zeta(2.0)
    std::vector<std::string> words;
    for (size_t k = 0; k < vocab.size(); ++k) {
      const auto cnt = static_cast<int64_t>(n * std::pow(static_cast<double>(k + 1), -kFweAlpha) / zeta2);
      for (int64_t c = 0; c < cnt; ++c) words.push_back(vocab[k]);
    }
    r.shuffle(words);
    std::string ctx;
    for (size_t i = 0; i < words.size(); ++i) ctx += (i ? " " : "") + words[i];
    s.prompt = wrap(fill_template(kFweTemplate, {{"context", ctx}}), kFwePrefix);
    s.expected.assign(vocab.begin() + 1, vocab.begin() + 4);
  } else {
    std::string known;
    for (const auto& t : ruler_task_names()) known += (known.empty() ? "" : ", ") + t;
    fail(ErrorKind::InvalidInput, "--tasks: unknown RULER task '{}' (known: {})", task, known);
  }
  s.tokens = prompter_.encode(s.prompt);
  s.extra = {{"haystack_size", n}};
  return s;
}

std::optional<Sample> RulerBuilder::make(const std::string& task, int64_t length, int index, int64_t* needed) const {
  const int max_new = budget(task);
  if (task == "fwe" && (length - max_new) / 50 < 4) {  // vocabulary of (length - budget) / 50 words needs ranks 1..4
    if (needed) *needed = 4 * 50 + max_new;
    return std::nullopt;
  }
  const int64_t lo = min_size(task);
  auto fits = [&](int64_t n) { return static_cast<int64_t>(build(task, length, index, n).tokens.size()) + max_new <= length; };
  const int64_t n = fit_largest(lo, 4 * length + 64, fits);
  if (n < lo) {
    if (needed) *needed = static_cast<int64_t>(build(task, length, index, lo).tokens.size()) + max_new;
    return std::nullopt;
  }
  return build(task, length, index, n);
}

TaskReport run_ruler(const Model& m, const RulerOptions& o, const HarnessOptions& h) {
  const int64_t ctx = context_size(m, h);
  const auto lengths = resolve_lengths(o.lengths, ctx);
  if (o.samples < 1) fail(ErrorKind::InvalidInput, "--samples must be >= 1, got {}", o.samples);
  std::vector<std::string> tasks;
  const auto known = ruler_task_names();
  if (o.tasks == "all") tasks = known;
  else
    for (const auto& t : split_on(o.tasks, ",")) {
      const std::string name = strip(t);
      if (std::find(known.begin(), known.end(), name) == known.end()) {
        std::string k;
        for (const auto& x : known) k += (k.empty() ? "" : ", ") + x;
        fail(ErrorKind::InvalidInput, "--tasks: unknown RULER task '{}' (known: {})", name, k);
      }
      tasks.push_back(name);
    }
  RulerBuilder b(m, o, h.chat, h.seed, lengths.back());
  std::vector<Sample> samples;
  std::map<std::string, int64_t> skipped;  // "task|L" -> tokens its smallest sample needs
  for (const auto& t : tasks)
    for (int64_t L : lengths)
      for (int i = 0; i < o.samples; ++i) {
        int64_t need = 0;
        auto s = b.make(t, L, i, &need);
        if (!s) {
          skipped[t + "|" + std::to_string(L)] = need;
          break;  // the other samples of this cell do not fit either
        }
        samples.push_back(std::move(*s));
      }
  if (samples.empty())
    fail(ErrorKind::InvalidInput, "ruler: no task fits the lengths (the smallest sample of {} needs {} tokens)",
         skipped.begin()->first, skipped.begin()->second);
  const TaskRun run = run_generation_task(
      m, "ruler", samples,
      [](const Sample& s, const std::string& out) { return string_match_all(ruler_postprocess(out), s.expected); }, h);

  const auto labels = policy_labels(h);
  const auto cell = aggregate(run.records, [](const json& r) {
    return fmt::format("{}|{}|{}", r["policy"].get<std::string>(), r["group"].get<std::string>(), r["length"].get<int64_t>());
  });
  TaskReport rep;
  json sj = summary_header(m, "ruler", h, ctx);
  sj["lengths"] = lengths;
  sj["tasks"] = tasks;
  sj["samples_per_task_and_length"] = o.samples;
  sj["metric"] = "string_match_all x 100";
  json na = json::object();
  for (const auto& [k, need] : skipped) na[k] = need;
  sj["not_applicable_needs_tokens"] = na;

  std::vector<std::vector<std::string>> overview;
  std::string detail;
  json pols = json::array();
  for (const auto& label : labels) {
    std::vector<std::vector<std::string>> rows;
    std::vector<double> sum(lengths.size(), 0);
    std::vector<int> cnt(lengths.size(), 0);
    json per_task = json::object();
    for (const auto& t : tasks) {
      std::vector<std::string> row = {t};
      for (size_t c = 0; c < lengths.size(); ++c) {
        auto it = cell.find(fmt::format("{}|{}|{}", label, t, lengths[c]));
        if (it != cell.end()) {
          row.push_back(format_score(it->second.score));
          sum[c] += it->second.score;
          ++cnt[c];
          per_task[t][std::to_string(lengths[c])] = it->second.to_json();
        } else if (auto sk = skipped.find(t + "|" + std::to_string(lengths[c])); sk != skipped.end()) {
          row.push_back(fmt::format("n/a (needs {})", sk->second));
        } else {
          row.push_back("-");
        }
      }
      rows.push_back(row);
    }
    std::vector<std::string> avg_row = {"**average of tasks run**"}, orow = {label};
    int64_t effective = 0;
    json avg = json::object();
    for (size_t c = 0; c < lengths.size(); ++c) {
      const double a = cnt[c] ? sum[c] / cnt[c] : NAN;
      const std::string cellv = cnt[c] ? fmt::format("{} ({} tasks)", format_score(a), cnt[c]) : "-";
      avg_row.push_back(cellv);
      orow.push_back(cellv);
      if (cnt[c]) avg[std::to_string(lengths[c])] = {{"score", a}, {"tasks", cnt[c]}};
      if (cnt[c] && a >= kEffectiveThreshold) effective = lengths[c];
    }
    rows.push_back(avg_row);
    auto kv = aggregate(run.records, [&](const json& r) {
      return r["policy"] == label && r["length"] == lengths.back() ? std::string("x") : std::string();
    });
    orow.push_back(effective ? std::to_string(effective) : "none");
    orow.push_back(kv.count("x") ? format_bytes(kv["x"].kv_bytes) : "-");
    overview.push_back(orow);
    std::vector<std::string> hdr = {"task"};
    for (int64_t L : lengths) hdr.push_back(fmt::format("L={}", L));
    detail += "\n### " + label + "\n\n" + markdown_table(hdr, rows);
    pols.push_back({{"policy", label},
                    {"by_task", per_task},
                    {"average", avg},
                    {"effective_length", effective},
                    {"kv_bytes_at_max_length", kv.count("x") ? json(kv["x"].kv_bytes) : json(nullptr)}});
  }
  sj["results"] = pols;
  std::vector<std::string> hdr = {"policy"};
  for (int64_t L : lengths) hdr.push_back(fmt::format("L={}", L));
  hdr.push_back("effective length (avg >= 85.6)");
  hdr.push_back(fmt::format("KV bytes at {}", lengths.back()));
  rep.markdown = fmt::format("## ruler: {} (string_match_all %, {} samples per task and length)\n\n", model_name(m),
                             o.samples) +
                 markdown_table(hdr, overview) + detail;
  rep.summary = sj;
  write_summary(h, "ruler", rep, &run);
  return rep;
}

}  // namespace harmonia::eval
