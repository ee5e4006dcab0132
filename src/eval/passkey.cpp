// `harmonia eval passkey`: passkey retrieval (Mohtashami & Jaggi 2023,
// landmark-attention llama/run_test.py), survey §2.2.
#include <algorithm>
#include <cmath>

#include <fmt/format.h>

#include "common/error.h"
#include "eval/rng.h"
#include "eval/scorers.h"
#include "eval/tasks.h"
#include "eval/text.h"

namespace harmonia::eval {

using nlohmann::json;

namespace {

const char* kTask =
    "There is an important info hidden inside a lot of irrelevant text. Find it and memorize them. I will quiz you about "
    "the important information there.";
const char* kGarbage = "The grass is green. The sky is blue. The sun is yellow. Here we go. There and back again.";
const char* kQuestion = "What is the pass key?";
const char* kAnswerCue = "The pass key is";

// The first n characters of " ".join([garbage] * reps) for large enough reps.
std::string garbage_prefix(int64_t n) {
  std::string s;
  while (static_cast<int64_t>(s.size()) < n) s += (s.empty() ? "" : " ") + std::string(kGarbage);
  s.resize(static_cast<size_t>(std::max<int64_t>(0, n)));
  return s;
}

}  // namespace

std::string passkey_text(int64_t n_garbage, int64_t prefix_chars, int64_t key) {
  const std::string info = fmt::format("The pass key is {0}. Remember it. {0} is the pass key.", key);
  return std::string(kTask) + "\n" + garbage_prefix(prefix_chars) + "\n" + info + "\n" +
         garbage_prefix(n_garbage - prefix_chars) + "\n" + kQuestion + " " + kAnswerCue;
}

int64_t fit_largest(int64_t lo, int64_t hi, const std::function<bool(int64_t)>& fits) {
  if (hi < lo || !fits(lo)) return lo - 1;
  // Exponential search for a failing size, then bisection between the last
  // fitting and the first failing one.
  int64_t good = lo, step = 1, bad = hi + 1;
  while (good < hi) {
    const int64_t probe = std::min(hi, good + step);
    if (fits(probe)) {
      good = probe;
      step *= 2;
    } else {
      bad = probe;
      break;
    }
  }
  while (bad - good > 1) {
    const int64_t mid = good + (bad - good) / 2;
    if (fits(mid)) good = mid;
    else bad = mid;
  }
  return good;
}

std::vector<Sample> build_passkey_samples(const Model& m, const PasskeyOptions& o, const HarnessOptions& h) {
  const int64_t ctx = context_size(m, h);
  const auto lengths = resolve_lengths(o.lengths, ctx);
  if (o.samples < 1) fail(ErrorKind::InvalidInput, "--samples must be >= 1, got {}", o.samples);
  if (o.max_new < 1) fail(ErrorKind::InvalidInput, "--max-new must be >= 1, got {}", o.max_new);
  std::vector<double> depths;  // empty: random split, as the original
  if (!o.depths.empty()) {
    depths = parse_grid(o.depths, "--depths");
    for (double d : depths)
      if (d < 0 || d > 100) fail(ErrorKind::InvalidInput, "--depths: {} is outside [0, 100]", fmt_num(d));
  }
  const Prompter pr(m, h.chat, /*benchmark_uses_chat=*/false);
  auto prompt_of = [&](int64_t n, int64_t prefix, int64_t key) {
    const std::string text = passkey_text(n, prefix, key);
    if (!pr.chat()) return text;
    // Chat: the question as the user turn, the completion cue as the answer prefix.
    const std::string user = text.substr(0, text.size() - std::string(kAnswerCue).size() - 1);
    return pr.chat_text({{"user", user}}, kAnswerCue);
  };

  std::vector<Sample> out;
  const std::vector<double> dgrid = depths.empty() ? std::vector<double>{-1} : depths;
  for (int64_t L : lengths) {
    for (double d : dgrid) {
      for (int i = 0; i < o.samples; ++i) {
        const std::string id = d < 0 ? fmt::format("L{}/i{}", L, i) : fmt::format("L{}/d{}/i{}", L, fmt_num(d), i);
        Rng rng(derive_seed(h.seed, "passkey/" + id));
        const int64_t key = rng.range(1, 50000);
        const double u = rng.uniform();
        auto prefix_of = [&](int64_t n) {
          return d < 0 ? std::min<int64_t>(n, static_cast<int64_t>(std::floor(u * (n + 1))))  // random.randint(0, n)
                       : static_cast<int64_t>(std::floor(n * d / 100.0));
        };
        auto fits = [&](int64_t n) { return pr.count(prompt_of(n, prefix_of(n), key)) + o.max_new <= L; };
        const int64_t n = fit_largest(0, 64 * L + 1024, fits);
        if (n < 0)
          fail(ErrorKind::InvalidInput, "passkey: length {} cannot hold the prompt without filler ({} tokens) + --max-new {}",
               L, pr.count(prompt_of(0, 0, key)), o.max_new);
        Sample s;
        s.id = id;
        s.length = L;
        const int64_t prefix = prefix_of(n);
        s.depth = n > 0 ? std::round(1000.0 * prefix / n) / 10 : 0.0;
        s.prompt = prompt_of(n, prefix, key);
        s.tokens = pr.encode(s.prompt);
        s.expected = {std::to_string(key)};
        s.max_new = o.max_new;
        s.extra = {{"key", key}, {"garbage_chars", n}, {"prefix_chars", prefix}};
        out.push_back(std::move(s));
      }
    }
  }
  return out;
}

TaskReport run_passkey(const Model& m, const PasskeyOptions& o, const HarnessOptions& h) {
  const int64_t ctx = context_size(m, h);
  const auto lengths = resolve_lengths(o.lengths, ctx);
  const auto samples = build_passkey_samples(m, o, h);
  const TaskRun run = run_generation_task(
      m, "passkey", samples,
      [](const Sample& s, const std::string& out) { return passkey_score(out, s.extra["key"].get<int64_t>()); }, h);
  TaskReport rep;
  json table;
  const std::string md = policy_length_table(run.records, policy_labels(h), lengths, &table);
  rep.markdown = fmt::format("## passkey: {} (accuracy %, {} trials per length, key in 1..50000, first integer of at "
                             "most {} generated tokens)\n\n",
                             model_name(m), samples.size() / lengths.size(), o.max_new) +
                 md;
  rep.summary = summary_header(m, "passkey", h, ctx);
  rep.summary["lengths"] = lengths;
  rep.summary["samples_per_length"] = samples.size() / lengths.size();
  rep.summary["depths"] = o.depths.empty() ? json("random") : json(o.depths);
  rep.summary["results"] = table;
  write_summary(h, "passkey", rep, &run);
  return rep;
}

}  // namespace harmonia::eval
