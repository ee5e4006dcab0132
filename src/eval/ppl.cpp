// `harmonia eval ppl`: perplexity of a text with a sliding window (survey §2.5),
// per KV policy, with KL(full || policy) of the next-token distributions.
#include <algorithm>
#include <cmath>

#include <fmt/format.h>

#include "common/env.h"
#include "common/error.h"
#include "common/mapped_file.h"
#include "eval/fidelity.h"
#include "eval/progress.h"
#include "eval/records.h"
#include "eval/tasks.h"
#include "model/forward.h"

namespace harmonia::eval {

using nlohmann::json;

std::vector<Window> sliding_windows(int64_t n, int64_t window, int64_t stride) {
  if (n < 2) fail(ErrorKind::InvalidInput, "ppl: the text has {} tokens; need at least 2", n);
  if (window < 2) fail(ErrorKind::InvalidInput, "ppl: the window (--ctx) must be >= 2, got {}", window);
  if (stride < 1 || stride > window)
    fail(ErrorKind::InvalidInput, "--stride {} must be in [1, {}] (the window)", stride, window);
  std::vector<Window> out;
  int64_t prev_end = 0;
  for (int64_t begin = 0; begin < n; begin += stride) {
    const int64_t end = std::min(begin + window, n);
    const int64_t trg = end - prev_end;  // tokens not scored by an earlier window
    Window w;
    w.begin = begin;
    w.end = end;
    w.prompt = std::max<int64_t>(1, (end - begin) - trg);  // the first token of the text has no prediction
    out.push_back(w);
    prev_end = end;
    if (end == n) break;
  }
  return out;
}

TaskReport run_ppl(const Model& m, const PplOptions& o, const HarnessOptions& h) {
  if (o.file.empty()) fail(ErrorKind::InvalidInput, "ppl: give the text with -f/--file");
  if (!m.tokenizer) fail(ErrorKind::InvalidInput, "{}: no tokenizer to encode the text (give --tokenizer)", m.path);
  set_threads(h.threads);
  const int64_t window = context_size(m, h);
  const int64_t stride = o.stride > 0 ? o.stride : window / 2;
  auto toks = m.tokenizer->encode(read_file(o.file), m.tokenizer->bos_id() >= 0);
  if (o.max_tokens > 0 && static_cast<int64_t>(toks.size()) > o.max_tokens) toks.resize(static_cast<size_t>(o.max_tokens));
  const auto windows = sliding_windows(static_cast<int64_t>(toks.size()), window, stride);

  // full is the KL reference: always computed first and always reported.
  std::vector<kv::PolicySpec> pols = {{"full", {}}};
  for (const auto& p : h.policies)
    if (!(p.name == "full" && p.options.empty())) pols.push_back(p);
  std::vector<std::string> labels;
  for (const auto& p : pols) labels.push_back(p.label());
  validate_policies(m, h, window);

  TaskRun run;
  run.samples_path = task_file(h, "ppl", "samples.jsonl");
  run.results_path = task_file(h, "ppl", "results.jsonl");
  {
    std::string content;
    for (size_t i = 0; i < windows.size(); ++i) {
      const auto& w = windows[i];
      content += jsonl_line({{"id", fmt::format("w{}", i)},
                             {"file", o.file},
                             {"begin", w.begin},
                             {"end", w.end},
                             {"prompt_tokens", w.prompt},
                             {"scored", w.scored()}});
    }
    write_samples_file(run.samples_path, content, run.results_path);
  }
  ResultsFile results(run.results_path);
  int64_t todo = 0;
  for (size_t i = 0; i < windows.size(); ++i)
    for (const auto& l : labels) todo += !results.has(l, fmt::format("w{}", i));
  run.resumed = static_cast<int64_t>(windows.size() * labels.size()) - todo;
  Progress bar("ppl", todo, run.resumed, h.progress);
  const int V = m.config.vocab_size;

  for (size_t i = 0; i < windows.size(); ++i) {
    const std::string id = fmt::format("w{}", i);
    bool missing = false;
    for (const auto& l : labels) missing |= !results.has(l, id);
    if (!missing) continue;
    const Window& w = windows[i];
    const std::vector<int32_t> wt(toks.begin() + w.begin, toks.begin() + w.end);
    const int32_t* targets = wt.data() + w.prompt;
    std::vector<float> ref;
    for (size_t p = 0; p < pols.size(); ++p) {
      if (p > 0 && results.has(labels[p], id)) continue;
      size_t kv_bytes = 0;
      const double t0 = now_ms();
      std::vector<float> lg = teacher_forced_logits(m, wt, w.prompt, pols[p], window, &kv_bytes);
      const double ms = now_ms() - t0;
      const ContinuationStats st = continuation_stats(lg.data(), p == 0 ? nullptr : ref.data(), targets, w.scored(), V);
      if (p == 0) ref = std::move(lg);
      if (results.has(labels[p], id)) continue;  // full recomputed only as the reference
      results.append({{"task", "ppl"},
                      {"policy", labels[p]},
                      {"id", id},
                      {"length", w.end - w.begin},
                      {"begin", w.begin},
                      {"end", w.end},
                      {"prompt_tokens", w.prompt},
                      {"scored", st.positions},
                      {"nll", st.nll},
                      {"ppl", std::exp(st.nll / st.positions)},
                      {"kl_sum", st.kl_sum},
                      {"kl_mean", st.kl_sum / st.positions},
                      {"kl_max", st.kl_max},
                      {"top1_agree", st.agree},
                      {"kv_bytes", kv_bytes},
                      {"ms", ms}});
      ++run.ran;
      bar.step(fmt::format("{} {} ppl {:.3f}", labels[p], id, std::exp(st.nll / st.positions)));
    }
  }
  bar.finish();

  // Totals per policy over this run's windows.
  struct Tot {
    double nll = 0, kl = 0, kl_max = 0, kv = 0, ms = 0;
    int64_t n = 0, agree = 0, windows = 0;
  };
  std::map<std::string, Tot> tot;
  for (const auto& r : results.records()) {
    const std::string id = r["id"].get<std::string>();
    const size_t wi = id.size() > 1 ? std::stoul(id.substr(1)) : 0;
    if (wi >= windows.size()) continue;
    run.records.push_back(r);
    Tot& t = tot[r["policy"].get<std::string>()];
    t.nll += r["nll"].get<double>();
    t.kl += r["kl_sum"].get<double>();
    t.kl_max = std::max(t.kl_max, r["kl_max"].get<double>());
    t.kv += r["kv_bytes"].get<double>();
    t.ms += r["ms"].get<double>();
    t.n += r["scored"].get<int64_t>();
    t.agree += r["top1_agree"].get<int64_t>();
    ++t.windows;
  }
  const double ref_ppl = tot.count("full") && tot["full"].n ? std::exp(tot["full"].nll / tot["full"].n) : NAN;
  std::vector<std::vector<std::string>> rows;
  json arr = json::array();
  for (const auto& l : labels) {
    if (!tot.count(l)) continue;
    const Tot& t = tot[l];
    const double ppl = std::exp(t.nll / t.n);
    rows.push_back({l, std::to_string(t.n), fmt::format("{:.4f}", ppl), fmt::format("{:+.4f}", ppl - ref_ppl),
                    fmt::format("{:.5f}", t.kl / t.n), fmt::format("{:.5f}", t.kl_max),
                    fmt::format("{:.3f}", static_cast<double>(t.agree) / t.n), format_bytes(t.kv / t.windows)});
    arr.push_back({{"policy", l},
                   {"scored_tokens", t.n},
                   {"ppl", ppl},
                   {"ppl_delta", ppl - ref_ppl},
                   {"kl_mean", t.kl / t.n},
                   {"kl_max", t.kl_max},
                   {"top1_agreement", static_cast<double>(t.agree) / t.n},
                   {"kv_bytes_mean", t.kv / t.windows},
                   {"ms", t.ms}});
  }
  TaskReport rep;
  rep.markdown = fmt::format("## ppl: {} on {} ({} tokens, window {}, stride {}, {} windows)\n\n", model_name(m), o.file,
                             toks.size(), window, stride, windows.size()) +
                 markdown_table({"policy", "scored tokens", "ppl", "Δppl vs full", "KL mean (nats)", "KL max", "top-1 agree",
                                 "KV bytes (mean)"},
                                rows);
  rep.summary = summary_header(m, "ppl", h, window);
  rep.summary["policies"] = labels;
  rep.summary["file"] = o.file;
  rep.summary["tokens"] = toks.size();
  rep.summary["window"] = window;
  rep.summary["stride"] = stride;
  rep.summary["results"] = arr;
  write_summary(h, "ppl", rep, &run);
  return rep;
}

}  // namespace harmonia::eval
