// `harmonia eval niah`: Kamradt's needle in a haystack (LLMTest_NeedleInAHaystack,
// needlehaystack/llm_needle_haystack_tester.py), survey §2.1.
#include <algorithm>
#include <cmath>

#include <fmt/format.h>

#include "common/error.h"
#include "eval/figure.h"
#include "eval/filler.h"
#include "eval/records.h"
#include "eval/scorers.h"
#include "eval/tasks.h"
#include "eval/text.h"

namespace harmonia::eval {

using nlohmann::json;

std::vector<bool> period_tokens(const Tokenizer& tok) {
  std::vector<bool> p(static_cast<size_t>(tok.vocab_size()), false);
  for (int32_t id = 0; id < tok.vocab_size(); ++id) {
    if (tok.is_special(id)) continue;
    // Trailing whitespace is ignored: some vocabularies merge the space after a
    // period into its token (TinyStories-656K's ".▁").
    const std::string b = strip(tok.token_bytes(id));
    p[id] = !b.empty() && b.back() == '.';
  }
  return p;
}

std::vector<int32_t> insert_needle(const std::vector<int32_t>& haystack, const std::vector<int32_t>& needle, double depth,
                                   const std::vector<bool>& is_period, int64_t* pos) {
  std::vector<int32_t> out;
  int64_t p = static_cast<int64_t>(haystack.size());
  if (depth < 100) {
    p = static_cast<int64_t>(std::floor(static_cast<double>(haystack.size()) * (depth / 100.0)));
    // "iterate backwards until we find the first period" (the token before p).
    while (p > 0 && !(haystack[p - 1] >= 0 && static_cast<size_t>(haystack[p - 1]) < is_period.size() &&
                      is_period[haystack[p - 1]]))
      --p;
  }
  out.insert(out.end(), haystack.begin(), haystack.begin() + p);
  out.insert(out.end(), needle.begin(), needle.end());
  out.insert(out.end(), haystack.begin() + p, haystack.end());
  if (pos) *pos = p;
  return out;
}

std::vector<double> niah_depths(const NiahOptions& o) {
  if (o.depth_spacing != "linear" && o.depth_spacing != "sigmoid")
    fail(ErrorKind::InvalidInput, "--depth-spacing '{}': use linear or sigmoid", o.depth_spacing);
  std::vector<double> d;
  if (o.depths.find(':') != std::string::npos) {
    for (double x : parse_grid(o.depths, "--depths", 12))
      d.push_back(o.depth_spacing == "linear" ? std::nearbyint(x) : sigmoid_depth(x));
  } else {
    d = parse_grid(o.depths, "--depths");
  }
  for (double x : d)
    if (x < 0 || x > 100) fail(ErrorKind::InvalidInput, "--depths: {} is outside [0, 100]", fmt_num(x));
  std::sort(d.begin(), d.end());
  d.erase(std::unique(d.begin(), d.end()), d.end());
  return d;
}

NiahBuilder::NiahBuilder(const Model& m, const NiahOptions& o, ChatMode chat, int64_t max_length)
    : o_(o), prompter_(m, chat, /*benchmark_uses_chat=*/true) {
  style_ = o.prompt == "auto" ? (prompter_.chat() ? "messages" : "compact") : o.prompt;
  if (style_ != "messages" && style_ != "anthropic" && style_ != "compact")
    fail(ErrorKind::InvalidInput, "--prompt '{}': use auto, messages, anthropic or compact", o.prompt);
  if (o.match != "recall" && o.match != "contains")
    fail(ErrorKind::InvalidInput, "--match '{}': use recall or contains", o.match);
  if (o.match == "recall" && o.keywords.empty())
    fail(ErrorKind::InvalidInput, "--keywords: give at least one key phrase of the answer (or --match contains)");
  if (o.max_new < 1) fail(ErrorKind::InvalidInput, "--max-new must be >= 1, got {}", o.max_new);
  if (strip(o.needle).empty()) fail(ErrorKind::InvalidInput, "--needle is empty");
  if (o_.answer.empty()) o_.answer = strip(o.needle);
  needle_ = prompter_.encode_plain(o.needle);
  period_ = period_tokens(prompter_.tok());
  // Kamradt's read_context_files: repeat the folder until the haystack has at
  // least the largest length in tokens.
  size_t chars = static_cast<size_t>(max_length) * 4 + 1024;
  while (true) {
    const std::string text = haystack_text(o.haystack_dir, chars);
    hay_ = prompter_.encode_plain(text);
    if (static_cast<int64_t>(hay_.size()) >= max_length) break;
    chars = text.size() * 2;
  }
}

std::string NiahBuilder::prompt_text(const std::string& context) const {
  const std::string ask = o_.question + " " + kNiahInstruction;
  if (style_ == "messages")
    return prompter_.chat_text({{"system", kNiahSystem}, {"user", context}, {"user", ask}});
  if (style_ == "anthropic")
    return std::string(kNiahSystem) + "\n\nHuman: <context>\n" + context + "\n</context>\n\n" + ask +
           "\n\nAssistant: Here is the most relevant sentence in the context:";
  return context + "\n\nQuestion: " + o_.question + "\nAnswer:";
}

Sample NiahBuilder::make(int64_t length, double depth) const {
  const int64_t overhead = prompter_.count(prompt_text(""));
  const int64_t nn = static_cast<int64_t>(needle_.size());
  int64_t budget = length - overhead - o_.max_new;  // context tokens (haystack + needle)
  if (budget < nn + 1)
    fail(ErrorKind::InvalidInput,
         "niah: length {} cannot hold the prompt ({} tokens), the needle ({}) and --max-new {} plus any haystack; "
         "use longer --lengths, a shorter --prompt style or a smaller --max-new",
         length, overhead, nn, o_.max_new);
  for (int attempt = 0; attempt < 64; ++attempt) {
    int64_t hay_len = std::min<int64_t>(budget - nn, static_cast<int64_t>(hay_.size()));
    // NOTE: Kamradt's haystack ends wherever the token budget cuts it, so at
    // depth 100 the needle follows half a sentence. We end it at its last
    // period (when it has one), so the needle lands on a sentence boundary at
    // every depth; this gives up less than one sentence of the budget.
    int64_t cut = hay_len;
    while (cut > 0 && !(hay_[cut - 1] >= 0 && static_cast<size_t>(hay_[cut - 1]) < period_.size() && period_[hay_[cut - 1]])) --cut;
    if (cut > 0) hay_len = cut;
    std::vector<int32_t> hay(hay_.begin(), hay_.begin() + hay_len);
    int64_t pos = 0;
    const auto ctx_tokens = insert_needle(hay, needle_, depth, period_, &pos);
    const std::string context = prompter_.tok().decode(ctx_tokens, true);
    Sample s;
    s.prompt = prompt_text(context);
    s.tokens = prompter_.encode(s.prompt);
    const int64_t over = static_cast<int64_t>(s.tokens.size()) + o_.max_new - length;
    if (over > 0) {  // re-tokenising the spliced text merged differently: shrink and retry
      budget -= over;
      if (budget < nn + 1) break;
      continue;
    }
    s.id = fmt::format("L{}/d{}", length, fmt_num(depth));
    s.length = length;
    s.depth = depth;
    s.max_new = o_.max_new;
    s.expected = o_.match == "recall" ? o_.keywords : std::vector<std::string>{o_.answer};
    s.extra = {{"needle_pos", pos}, {"haystack_tokens", hay_len}};
    return s;
  }
  fail(ErrorKind::InvalidInput, "niah: could not fit length {} at depth {} (the tokenizer re-merges the spliced text)",
       length, fmt_num(depth));
}

TaskReport run_niah(const Model& m, const NiahOptions& o, const HarnessOptions& h) {
  const int64_t ctx = context_size(m, h);
  const auto lengths = resolve_lengths(o.lengths, ctx);
  const auto depths = niah_depths(o);
  NiahBuilder b(m, o, h.chat, lengths.back());
  std::vector<Sample> samples;
  for (int64_t L : lengths)
    for (double d : depths) samples.push_back(b.make(L, d));
  const std::string answer = o.answer.empty() ? strip(o.needle) : o.answer;
  const bool recall = o.match == "recall";
  const TaskRun run = run_generation_task(
      m, "niah", samples,
      [&](const Sample&, const std::string& out) {
        return recall ? keyword_recall(out, o.keywords) : exact_containment(out, answer);
      },
      h);

  // Per policy: mean score per (depth, length), per length, overall; effective length.
  const auto labels = policy_labels(h);
  auto cell_key = [](const json& r) {
    return fmt::format("{}|{}|{}", r["policy"].get<std::string>(), r["length"].get<int64_t>(), fmt_num(r["depth"].get<double>()));
  };
  const auto cells = aggregate(run.records, cell_key);
  const auto by_len = aggregate(run.records, [](const json& r) {
    return fmt::format("{}|{}", r["policy"].get<std::string>(), r["length"].get<int64_t>());
  });
  const auto by_pol = aggregate(run.records, [](const json& r) { return r["policy"].get<std::string>(); });

  TaskReport rep;
  json sj = summary_header(m, "niah", h, ctx);
  sj["lengths"] = lengths;
  sj["depths"] = depths;
  sj["match"] = o.match;
  sj["keywords"] = o.keywords;
  sj["threshold"] = o.threshold;
  sj["max_new"] = o.max_new;
  sj["haystack"] = o.haystack_dir.empty() ? "built-in synthetic filler" : o.haystack_dir;
  json pols = json::array();
  HeatmapSpec hm;
  hm.title = fmt::format("NIAH  {}  (cell = score %, {})", model_name(m),
                         recall ? "key-phrase recall" : "answer containment");
  hm.x_label = "context length (tokens)";
  hm.y_label = "needle depth %";
  hm.legend = "score % (same scale in every panel)";
  for (int64_t L : lengths) hm.x_ticks.push_back(std::to_string(L));
  for (double d : depths) hm.y_ticks.push_back(fmt_num(d));

  std::vector<std::vector<std::string>> overview;
  std::string detail;
  for (const auto& label : labels) {
    HeatmapPanel panel;
    panel.title = label;
    json grid = json::array();
    std::vector<std::vector<std::string>> rows;
    int64_t effective = 0;
    std::vector<bool> all_pass(lengths.size(), true);
    for (double d : depths) {
      std::vector<double> prow;
      std::vector<std::string> trow = {fmt_num(d)};
      for (size_t c = 0; c < lengths.size(); ++c) {
        auto it = cells.find(fmt::format("{}|{}|{}", label, lengths[c], fmt_num(d)));
        const double v = it == cells.end() ? NAN : it->second.score / 100;
        prow.push_back(v);
        trow.push_back(format_score(std::isnan(v) ? NAN : v * 100));
        if (std::isnan(v) || v < o.threshold) all_pass[c] = false;
      }
      panel.cells.push_back(prow);
      grid.push_back(prow);
      rows.push_back(trow);
    }
    for (size_t c = 0; c < lengths.size(); ++c)
      if (all_pass[c]) effective = lengths[c];
    const auto pit = by_pol.find(label);
    const double mean = pit == by_pol.end() ? NAN : pit->second.score;
    const auto lit = by_len.find(fmt::format("{}|{}", label, lengths.back()));
    const double kv = lit == by_len.end() ? NAN : lit->second.kv_bytes;
    panel.subtitle = fmt::format("mean {}  KV {} at {}", format_score(mean), std::isnan(kv) ? "-" : format_bytes(kv),
                                 lengths.back());
    hm.panels.push_back(panel);

    std::vector<std::string> orow = {label, format_score(mean)};
    json per_len = json::object();
    for (int64_t L : lengths) {
      auto it = by_len.find(fmt::format("{}|{}", label, L));
      orow.push_back(it == by_len.end() ? "-" : format_score(it->second.score));
      if (it != by_len.end()) per_len[std::to_string(L)] = it->second.to_json();
    }
    orow.push_back(effective ? std::to_string(effective) : "none");
    orow.push_back(std::isnan(kv) ? "-" : format_bytes(kv));
    overview.push_back(orow);
    pols.push_back({{"policy", label},
                    {"mean", mean},
                    {"effective_length", effective},
                    {"kv_bytes_at_max_length", kv},
                    {"by_length", per_len},
                    {"grid", grid}});

    std::vector<std::string> hdr = {"depth % \\ length"};
    for (int64_t L : lengths) hdr.push_back(std::to_string(L));
    detail += "\n### " + label + "\n\n" + markdown_table(hdr, rows);
  }
  sj["results"] = pols;
  std::vector<std::string> hdr = {"policy", "mean"};
  for (int64_t L : lengths) hdr.push_back(fmt::format("L={}", L));
  hdr.push_back(fmt::format("effective length (all depths >= {})", format_score(o.threshold * 100)));
  hdr.push_back(fmt::format("KV bytes at {}", lengths.back()));
  rep.markdown = fmt::format("## niah: {} (score % = {}; {} samples x {} policies)\n\n", model_name(m),
                             recall ? "key-phrase recall" : "answer containment", samples.size(), labels.size()) +
                 markdown_table(hdr, overview) + detail;
  rep.summary = sj;

  const Figure fig = heatmap_figure(hm);
  const std::string svg = task_file(h, "niah", "heatmap.svg"), png = task_file(h, "niah", "heatmap.png");
  write_text_file(svg, fig.to_svg());
  write_text_file(png, fig.to_png());
  write_summary(h, "niah", rep, &run);
  rep.files.push_back(png);
  rep.files.push_back(svg);
  return rep;
}

}  // namespace harmonia::eval
