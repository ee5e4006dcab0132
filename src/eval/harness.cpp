#include "eval/harness.h"

#include <cmath>
#include <filesystem>

#include <fmt/format.h>

#include "common/error.h"
#include "engine/generate.h"
#include "eval/progress.h"
#include "eval/records.h"
#include "eval/text.h"
#include "model/forward.h"

namespace harmonia::eval {

using nlohmann::json;

ChatMode parse_chat_mode(const std::string& s) {
  if (s == "auto") return ChatMode::Auto;
  if (s == "on") return ChatMode::On;
  if (s == "off") return ChatMode::Off;
  fail(ErrorKind::InvalidInput, "--chat '{}': use auto, on or off", s);
}

int64_t context_size(const Model& m, const HarnessOptions& o) {
  if (o.ctx < 0) fail(ErrorKind::InvalidInput, "--ctx must be positive, got {}", o.ctx);
  return o.ctx > 0 ? o.ctx : m.config.ctx_len;
}

std::vector<int64_t> resolve_lengths(const std::string& grid, int64_t ctx) {
  std::vector<double> v;
  if (grid.empty()) v = {ctx / 4.0, ctx / 2.0, ctx * 3.0 / 4.0, static_cast<double>(ctx)};
  else v = parse_grid(grid, "--lengths");
  std::vector<int64_t> out;
  for (double x : v) {
    const int64_t l = static_cast<int64_t>(std::nearbyint(x));
    if (l < 16 || l > ctx)
      fail(ErrorKind::InvalidInput, "--lengths: {} is outside [16, {}] (the context; raise --ctx)", fmt_num(x), ctx);
    if (out.empty() || out.back() != l) out.push_back(l);
  }
  return out;
}

Prompter::Prompter(const Model& m, ChatMode mode, bool benchmark_uses_chat) : tok_(m.tokenizer.get()) {
  if (!tok_) fail(ErrorKind::InvalidInput, "{}: no tokenizer to build prompts (give --tokenizer)", m.path);
  format_ = detect_chat_format(tok_->chat_template());
  const bool has_template = format_ != ChatFormat::Raw;
  if (mode == ChatMode::On && !has_template)
    fail(ErrorKind::InvalidInput, "--chat on: {} has no chat template this build knows (Llama 2/3, ChatML)", m.path);
  chat_ = mode == ChatMode::On || (mode == ChatMode::Auto && benchmark_uses_chat && has_template);
}

std::string Prompter::chat_text(const std::vector<ChatMessage>& msgs, const std::string& answer_prefix) const {
  std::vector<ChatMessage> m = msgs;
  if (format_ == ChatFormat::Llama2) {
    // Llama 2's template needs alternating turns: consecutive user messages merge.
    std::vector<ChatMessage> merged;
    for (const auto& x : m) {
      if (!merged.empty() && merged.back().role == "user" && x.role == "user") merged.back().content += "\n\n" + x.content;
      else merged.push_back(x);
    }
    m = std::move(merged);
  }
  return apply_chat_template(format_, m, true) + answer_prefix;
}

std::vector<int32_t> Prompter::encode(const std::string& text) const {
  const bool bos = tok_->bos_id() >= 0 && (chat_ || tok_->add_bos_default());
  auto ids = tok_->encode(text, bos, chat_);
  if (ids.empty()) ids.push_back(tok_->bos_id() >= 0 ? tok_->bos_id() : 0);
  return ids;
}

json Sample::to_json() const {
  json j = {{"id", id},         {"group", group},   {"length", length},
            {"prompt", prompt}, {"prompt_tokens", tokens.size()}, {"expected", expected},
            {"max_new", max_new}};
  j["depth"] = depth >= 0 ? json(depth) : json(nullptr);
  if (!stop.empty()) j["stop"] = stop;
  for (const auto& [k, v] : extra.items()) j[k] = v;
  return j;
}

void validate_policies(const Model& m, const HarnessOptions& o, int64_t ctx) {
  if (o.policies.empty()) fail(ErrorKind::InvalidInput, "--kv: no policy given");
  for (const auto& p : o.policies) kv::make_policy(p.name, kv_shape(m.config, ctx), p.options);
}

std::string task_file(const HarnessOptions& o, const std::string& task, const std::string& suffix) {
  return (std::filesystem::path(o.out_dir) / (task + "." + suffix)).string();
}

std::vector<std::string> policy_labels(const HarnessOptions& o) {
  std::vector<std::string> v;
  for (const auto& p : o.policies) v.push_back(p.label());
  return v;
}

TaskRun run_generation_task(const Model& m, const std::string& task, const std::vector<Sample>& samples,
                            const Scorer& score, const HarnessOptions& o) {
  if (samples.empty()) fail(ErrorKind::InvalidInput, "{}: no samples to run (check the lengths and the data)", task);
  set_threads(o.threads);
  const int64_t ctx = context_size(m, o);
  validate_policies(m, o, ctx);
  TaskRun run;
  run.samples_path = task_file(o, task, "samples.jsonl");
  run.results_path = task_file(o, task, "results.jsonl");
  {
    std::string content;
    for (const auto& s : samples) content += jsonl_line(s.to_json());
    write_samples_file(run.samples_path, content, run.results_path);
  }
  for (const auto& s : samples)
    if (static_cast<int64_t>(s.tokens.size()) + s.max_new > ctx)
      fail(ErrorKind::InvalidInput, "{} sample {}: {} prompt tokens + {} to generate exceed the context {} (--ctx)", task,
           s.id, s.tokens.size(), s.max_new, ctx);
  ResultsFile results(run.results_path);
  const auto labels = policy_labels(o);

  int64_t todo = 0;
  for (const auto& s : samples)
    for (const auto& l : labels) todo += !results.has(l, s.id);
  run.resumed = static_cast<int64_t>(samples.size() * labels.size()) - todo;
  Progress bar(task, todo, run.resumed, o.progress);

  Forward fw(m);
  for (const auto& s : samples) {
    for (size_t p = 0; p < o.policies.size(); ++p) {
      if (results.has(labels[p], s.id)) continue;
      GenerateOptions g;
      g.max_tokens = s.max_new;
      g.sampling.temperature = 0;  // greedy (survey §2)
      g.stop = s.stop;
      g.ctx = ctx;
      g.kv_policy = o.policies[p].name;
      g.kv_options = o.policies[p].options;
      const GenerateResult r = generate(fw, s.tokens, g);
      const double sc = score(s, r.text);
      json rec = {{"task", task},
                  {"policy", labels[p]},
                  {"id", s.id},
                  {"group", s.group},
                  {"length", s.length},
                  {"prompt_tokens", s.tokens.size()},
                  {"output", r.text},
                  {"expected", s.expected},
                  {"score", sc},
                  {"kv_bytes", r.kv_bytes},
                  {"prefill_ms", r.prefill_ms},
                  {"decode_ms", r.decode_ms},
                  {"output_tokens", r.tokens.size()},
                  {"stop_reason", stop_reason_name(r.stop_reason)}};
      rec["depth"] = s.depth >= 0 ? json(s.depth) : json(nullptr);
      for (const auto& [k, v] : s.extra.items()) rec[k] = v;
      results.append(rec);
      ++run.ran;
      bar.step(fmt::format("{} {} score {:.2f}", labels[p], s.id, sc));
    }
  }
  bar.finish();

  std::map<std::pair<std::string, std::string>, const json*> by_key;
  for (const auto& r : results.records()) by_key[{r["policy"].get<std::string>(), r["id"].get<std::string>()}] = &r;
  for (const auto& s : samples)
    for (const auto& l : labels)
      if (auto it = by_key.find({l, s.id}); it != by_key.end()) run.records.push_back(*it->second);
  return run;
}

json Aggregate::to_json() const {
  return {{"n", n}, {"score", score}, {"kv_bytes", kv_bytes}, {"prefill_ms", prefill_ms}, {"decode_ms", decode_ms}};
}

std::map<std::string, Aggregate> aggregate(const std::vector<json>& records,
                                           const std::function<std::string(const json&)>& key_of) {
  std::map<std::string, Aggregate> out;
  for (const auto& r : records) {
    const std::string k = key_of(r);
    if (k.empty()) continue;
    Aggregate& a = out[k];
    ++a.n;
    a.score += r.value("score", 0.0) * 100;
    a.kv_bytes += r.value("kv_bytes", 0.0);
    a.prefill_ms += r.value("prefill_ms", 0.0);
    a.decode_ms += r.value("decode_ms", 0.0);
  }
  for (auto& [k, a] : out) {
    a.score /= a.n;
    a.kv_bytes /= a.n;
    a.prefill_ms /= a.n;
    a.decode_ms /= a.n;
  }
  return out;
}

std::string markdown_table(const std::vector<std::string>& header, const std::vector<std::vector<std::string>>& rows) {
  std::string s = "|";
  for (const auto& h : header) s += " " + h + " |";
  s += "\n|";
  for (size_t i = 0; i < header.size(); ++i) s += i == 0 ? "---|" : "---:|";
  s += "\n";
  for (const auto& r : rows) {
    s += "|";
    for (const auto& c : r) s += " " + c + " |";
    s += "\n";
  }
  return s;
}

std::string format_bytes(double b) {
  if (b < 1024) return fmt::format("{:.0f} B", b);
  if (b < 1024 * 1024) return fmt::format("{:.1f} KiB", b / 1024);
  if (b < 1024.0 * 1024 * 1024) return fmt::format("{:.2f} MiB", b / (1024 * 1024));
  return fmt::format("{:.2f} GiB", b / (1024.0 * 1024 * 1024));
}

std::string model_name(const Model& m) {
  std::filesystem::path p(m.path);
  std::string n = p.filename().string();
  if (n.empty()) n = p.parent_path().filename().string();
  return n.empty() ? m.path : n;
}

std::string policy_length_table(const std::vector<json>& records, const std::vector<std::string>& labels,
                                const std::vector<int64_t>& lengths, json* out) {
  const auto cell = aggregate(records, [](const json& r) {
    return r["policy"].get<std::string>() + "|" + std::to_string(r["length"].get<int64_t>());
  });
  const auto pol = aggregate(records, [](const json& r) { return r["policy"].get<std::string>(); });
  std::vector<std::string> hdr = {"policy"};
  for (int64_t L : lengths) hdr.push_back(fmt::format("L={}", L));
  hdr.push_back("mean");
  hdr.push_back(fmt::format("KV bytes at {}", lengths.back()));
  std::vector<std::vector<std::string>> rows;
  json arr = json::array();
  for (const auto& label : labels) {
    std::vector<std::string> row = {label};
    json per = json::object();
    for (int64_t L : lengths) {
      auto it = cell.find(label + "|" + std::to_string(L));
      row.push_back(it == cell.end() ? "-" : format_score(it->second.score));
      if (it != cell.end()) per[std::to_string(L)] = it->second.to_json();
    }
    auto pit = pol.find(label);
    row.push_back(pit == pol.end() ? "-" : format_score(pit->second.score));
    auto kit = cell.find(label + "|" + std::to_string(lengths.back()));
    row.push_back(kit == cell.end() ? "-" : format_bytes(kit->second.kv_bytes));
    rows.push_back(row);
    arr.push_back({{"policy", label},
                   {"mean", pit == pol.end() ? json(nullptr) : json(pit->second.score)},
                   {"kv_bytes_at_max_length", kit == cell.end() ? json(nullptr) : json(kit->second.kv_bytes)},
                   {"by_length", per}});
  }
  if (out) *out = arr;
  return markdown_table(hdr, rows);
}

std::string format_score(double v) { return std::isnan(v) ? "-" : fmt::format("{:.1f}", v); }

json summary_header(const Model& m, const std::string& task, const HarnessOptions& o, int64_t ctx) {
  return {{"task", task},
          {"model", m.path},
          {"ctx", ctx},
          {"seed", o.seed},
          {"chat", o.chat == ChatMode::Auto ? "auto" : o.chat == ChatMode::On ? "on" : "off"},
          {"policies", policy_labels(o)}};
}

void write_summary(const HarnessOptions& o, const std::string& task, TaskReport& report, const TaskRun* run) {
  const std::string md = task_file(o, task, "summary.md"), js = task_file(o, task, "summary.json");
  write_text_file(md, report.markdown);
  write_text_file(js, report.summary.dump(2, ' ', false, json::error_handler_t::replace) + "\n");
  if (run) {
    report.files.push_back(run->samples_path);
    report.files.push_back(run->results_path);
  }
  report.files.push_back(md);
  report.files.push_back(js);
}

}  // namespace harmonia::eval
