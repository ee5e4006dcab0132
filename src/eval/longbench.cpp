// `harmonia eval longbench`: LongBench v1 (Bai et al. 2023; THUDM/LongBench
// LongBench/pred.py, eval.py, metrics.py, config/dataset2prompt.json,
// config/dataset2maxlen.json), survey §2.4, on the official JSON-lines files.
#include <algorithm>
#include <cmath>
#include <filesystem>

#include <fmt/format.h>

#include "common/error.h"
#include "eval/records.h"
#include "eval/scorers.h"
#include "eval/tasks.h"
#include "eval/text.h"

namespace harmonia::eval {

using nlohmann::json;
namespace fs = std::filesystem;

namespace {

enum class Metric { QaF1, QaF1Zh, Rouge, RougeZh, Classification, Retrieval, RetrievalZh, Count, CodeSim };

struct Dataset {
  const char* name;
  const char* category;
  Metric metric;
  int max_new;         // dataset2maxlen.json
  const char* prompt;  // dataset2prompt.json
};

// pred.py: these are fed without the chat template ("chat models are better off
// without build prompts on these tasks").
bool raw_dataset(const std::string& d) {
  return d == "trec" || d == "triviaqa" || d == "samsum" || d == "lsht" || d == "lcc" || d == "repobench-p";
}
// eval.py: only the first line of the prediction is scored.
bool first_line_dataset(const std::string& d) { return d == "trec" || d == "triviaqa" || d == "samsum" || d == "lsht"; }

const char* kSingle = "Single-Document QA";
const char* kMulti = "Multi-Document QA";
const char* kSumm = "Summarization";
const char* kFew = "Few-shot Learning";
const char* kSynth = "Synthetic Tasks";
const char* kCode = "Code Completion";

const Dataset kDatasets[] = {
    {"narrativeqa", kSingle, Metric::QaF1, 128,
     "You are given a story, which can be either a novel or a movie script, and a question. Answer the question asconcisely "
     "as you can, using a single phrase if possible. Do not provide any explanation.\n\nStory: {context}\n\nNow, answer the "
     "question based on the story asconcisely as you can, using a single phrase if possible. Do not provide any "
     "explanation.\n\nQuestion: {input}\n\nAnswer:"},
    {"qasper", kSingle, Metric::QaF1, 128,
     "You are given a scientific article and a question. Answer the question as concisely as you can, using a single "
     "phrase or sentence if possible. If the question cannot be answered based on the information in the article, write "
     "\"unanswerable\". If the question is a yes/no question, answer \"yes\", \"no\", or \"unanswerable\". Do not provide "
     "any explanation.\n\nArticle: {context}\n\n Answer the question based on the above article as concisely as you can, "
     "using a single phrase or sentence if possible. If the question cannot be answered based on the information in the "
     "article, write \"unanswerable\". If the question is a yes/no question, answer \"yes\", \"no\", or \"unanswerable\". "
     "Do not provide any explanation.\n\nQuestion: {input}\n\nAnswer:"},
    {"multifieldqa_en", kSingle, Metric::QaF1, 64,
     "Read the following text and answer briefly.\n\n{context}\n\nNow, answer the following question based on the above "
     "text, only give me the answer and do not output any other words.\n\nQuestion: {input}\nAnswer:"},
    {"multifieldqa_zh", kSingle, Metric::QaF1Zh, 64,
     "阅读以下文字并用中文简短回答：\n\n{context}\n\n现在请基于上面的文章回答下面的问题，只告诉我答案，不要输出任何其他字词。\n\n问题：{input}\n回答："},
    {"hotpotqa", kMulti, Metric::QaF1, 32,
     "Answer the question based on the given passages. Only give me the answer and do not output any other words.\n\nThe "
     "following are given passages.\n{context}\n\nAnswer the question based on the given passages. Only give me the "
     "answer and do not output any other words.\n\nQuestion: {input}\nAnswer:"},
    {"2wikimqa", kMulti, Metric::QaF1, 32,
     "Answer the question based on the given passages. Only give me the answer and do not output any other words.\n\nThe "
     "following are given passages.\n{context}\n\nAnswer the question based on the given passages. Only give me the "
     "answer and do not output any other words.\n\nQuestion: {input}\nAnswer:"},
    {"musique", kMulti, Metric::QaF1, 32,
     "Answer the question based on the given passages. Only give me the answer and do not output any other words.\n\nThe "
     "following are given passages.\n{context}\n\nAnswer the question based on the given passages. Only give me the "
     "answer and do not output any other words.\n\nQuestion: {input}\nAnswer:"},
    {"dureader", kMulti, Metric::RougeZh, 128,
     "请基于给定的文章回答下述问题。\n\n文章：{context}\n\n请基于上述文章回答下面的问题。\n\n问题：{input}\n回答："},
    {"gov_report", kSumm, Metric::Rouge, 512,
     "You are given a report by a government agency. Write a one-page summary of the report.\n\nReport:\n{context}\n\nNow, "
     "write a one-page summary of the report.\n\nSummary:"},
    {"qmsum", kSumm, Metric::Rouge, 512,
     "You are given a meeting transcript and a query containing a question or instruction. Answer the query in one or "
     "more sentences.\n\nTranscript:\n{context}\n\nNow, answer the query based on the above meeting transcript in one or "
     "more sentences.\n\nQuery: {input}\nAnswer:"},
    {"multi_news", kSumm, Metric::Rouge, 512,
     "You are given several news passages. Write a one-page summary of all news. \n\nNews:\n{context}\n\nNow, write a "
     "one-page summary of all the news.\n\nSummary:"},
    {"vcsum", kSumm, Metric::RougeZh, 512, "下面有一段会议记录，请你阅读后，写一段总结，总结会议的内容。\n会议记录：\n{context}\n\n会议总结："},
    {"trec", kFew, Metric::Classification, 64,
     "Please determine the type of the question below. Here are some examples of questions.\n\n{context}\n{input}"},
    {"triviaqa", kFew, Metric::QaF1, 32,
     "Answer the question based on the given passage. Only give me the answer and do not output any other words. The "
     "following are some examples.\n\n{context}\n\n{input}"},
    {"samsum", kFew, Metric::Rouge, 128,
     "Summarize the dialogue into a few short sentences. The following are some examples.\n\n{context}\n\n{input}"},
    {"lsht", kFew, Metric::Classification, 64, "请判断给定新闻的类别，下面是一些例子。\n\n{context}\n{input}"},
    {"passage_count", kSynth, Metric::Count, 32,
     "There are some paragraphs below sourced from Wikipedia. Some of them may be duplicates. Please carefully read these "
     "paragraphs and determine how many unique paragraphs there are after removing duplicates. In other words, how many "
     "non-repeating paragraphs are there in total?\n\n{context}\n\nPlease enter the final count of unique paragraphs "
     "after removing duplicates. The output format should only contain the number, such as 1, 2, 3, and so on.\n\nThe "
     "final answer is: "},
    {"passage_retrieval_en", kSynth, Metric::Retrieval, 32,
     "Here are 30 paragraphs from Wikipedia, along with an abstract. Please determine which paragraph the abstract is "
     "from.\n\n{context}\n\nThe following is an abstract.\n\n{input}\n\nPlease enter the number of the paragraph that the "
     "abstract is from. The answer format must be like \"Paragraph 1\", \"Paragraph 2\", etc.\n\nThe answer is: "},
    {"passage_retrieval_zh", kSynth, Metric::RetrievalZh, 32,
     "以下是若干段落文字，以及其中一个段落的摘要。请确定给定的摘要出自哪一段。\n\n{context}\n\n下面是一个摘要\n\n{input}\n\n请输入摘要所属段落的编号。答案格式必须是\"段落1\"，\"段落2\"等格式\n\n答案是："},
    {"lcc", kCode, Metric::CodeSim, 64, "Please complete the code given below. \n{context}Next line of code:\n"},
    {"repobench-p", kCode, Metric::CodeSim, 64, "Please complete the code given below. \n{context}{input}Next line of code:\n"},
};

const Dataset* find_dataset(const std::string& name) {
  for (const auto& d : kDatasets)
    if (name == d.name) return &d;
  return nullptr;
}

const std::vector<std::string>& category_order() {
  static const std::vector<std::string> v = {kSingle, kMulti, kSumm, kFew, kSynth, kCode};
  return v;
}

std::vector<std::string> string_list(const json& j, const std::string& where, const char* field, bool allow_null) {
  std::vector<std::string> out;
  if (j.is_null() && allow_null) return out;
  if (!j.is_array()) fail(ErrorKind::InvalidInput, "{}: field '{}' must be a list of strings", where, field);
  for (const auto& x : j) {
    if (!x.is_string()) fail(ErrorKind::InvalidInput, "{}: field '{}' must be a list of strings", where, field);
    out.push_back(x.get<std::string>());
  }
  return out;
}

}  // namespace

std::vector<std::string> longbench_datasets() {
  std::vector<std::string> v;
  for (const auto& d : kDatasets) v.push_back(d.name);
  return v;
}

std::string longbench_category(const std::string& dataset) {
  const Dataset* d = find_dataset(dataset);
  return d ? d->category : "";
}

std::string truncate_middle(const Tokenizer& tok, const std::string& prompt, int64_t max_tokens, int64_t* tokens_before) {
  const auto ids = tok.encode(prompt, false, false);
  if (tokens_before) *tokens_before = static_cast<int64_t>(ids.size());
  if (static_cast<int64_t>(ids.size()) <= max_tokens) return prompt;
  const size_t half = static_cast<size_t>(max_tokens / 2);
  const std::vector<int32_t> head(ids.begin(), ids.begin() + half), tail(ids.end() - half, ids.end());
  return tok.decode(head, true) + tok.decode(tail, true);
}

double longbench_score(const std::string& dataset, const std::string& pred_in, const std::vector<std::string>& answers,
                       const std::vector<std::string>& all_classes) {
  const Dataset* d = find_dataset(dataset);
  if (!d) fail(ErrorKind::InvalidInput, "longbench: unknown dataset '{}'", dataset);
  std::string pred = pred_in;
  if (first_line_dataset(dataset)) {
    size_t b = 0;
    while (b < pred.size() && pred[b] == '\n') ++b;
    pred = split_on(std::string_view(pred).substr(b), "\n")[0];
  }
  double best = 0;
  for (const auto& gt : answers) {
    double s = 0;
    switch (d->metric) {
      case Metric::QaF1: s = qa_f1(pred, gt); break;
      case Metric::QaF1Zh: s = qa_f1_zh(pred, gt); break;
      case Metric::Rouge: s = rouge_l(pred, gt); break;
      case Metric::RougeZh: s = rouge_l_zh(pred, gt); break;
      case Metric::Classification: s = classification_score(pred, gt, all_classes); break;
      case Metric::Retrieval: s = retrieval_score(pred, gt); break;
      case Metric::RetrievalZh: s = retrieval_zh_score(pred, gt); break;
      case Metric::Count: s = count_score(pred, gt); break;
      case Metric::CodeSim: s = code_sim_score(pred, gt); break;
    }
    best = std::max(best, s);
  }
  return best;
}

TaskReport run_longbench(const Model& m, const LongBenchOptions& o, const HarnessOptions& h) {
  const int64_t ctx = context_size(m, h);
  if (o.data_dir.empty()) fail(ErrorKind::InvalidInput, "longbench: give --data DIR (a folder of <dataset>.jsonl files)");
  std::error_code ec;
  if (!fs::is_directory(o.data_dir, ec)) fail(ErrorKind::Io, "--data {}: not a folder", o.data_dir);
  if (o.samples < 0) fail(ErrorKind::InvalidInput, "--samples must be >= 0, got {}", o.samples);
  auto file_of = [&](const std::string& name) {
    for (const std::string& f : {name + ".jsonl", name + "_e.jsonl"}) {
      const fs::path p = fs::path(o.data_dir) / f;
      if (fs::exists(p, ec)) return p.string();
    }
    return std::string();
  };
  std::vector<std::string> names;
  if (o.datasets.empty()) {
    for (const auto& d : kDatasets)
      if (!file_of(d.name).empty()) names.push_back(d.name);
    if (names.empty()) fail(ErrorKind::InvalidInput, "--data {}: no <dataset>.jsonl file of LongBench v1 in it", o.data_dir);
  } else {
    for (const auto& t : split_on(o.datasets, ",")) {
      const std::string n = strip(t);
      if (!find_dataset(n)) {
        std::string k;
        for (const auto& d : kDatasets) k += (k.empty() ? "" : ", ") + std::string(d.name);
        fail(ErrorKind::InvalidInput, "--datasets: unknown LongBench dataset '{}' (known: {})", n, k);
      }
      if (file_of(n).empty()) fail(ErrorKind::Io, "--data {}: no {}.jsonl", o.data_dir, n);
      names.push_back(n);
    }
  }

  const Prompter chat_pr(m, h.chat, true), raw_pr(m, h.chat, false);
  std::vector<Sample> samples;
  for (const auto& name : names) {
    const Dataset& d = *find_dataset(name);
    const std::string path = file_of(name);
    const Prompter& pr = raw_dataset(name) ? raw_pr : chat_pr;
    const auto rows = read_jsonl(path);
    for (size_t i = 0; i < rows.size() && (o.samples == 0 || static_cast<int>(i) < o.samples); ++i) {
      const json& r = rows[i];
      const std::string where = fmt::format("{}:{}", path, i + 1);
      for (const char* f : {"input", "context"})
        if (!r.contains(f) || !r[f].is_string()) fail(ErrorKind::InvalidInput, "{}: field '{}' must be a string", where, f);
      if (!r.contains("answers")) fail(ErrorKind::InvalidInput, "{}: no field 'answers'", where);
      const auto answers = string_list(r["answers"], where, "answers", false);
      const auto classes = string_list(r.value("all_classes", json(nullptr)), where, "all_classes", true);
      if (d.metric == Metric::Classification && classes.empty())
        fail(ErrorKind::InvalidInput, "{}: {} needs 'all_classes'", where, name);
      const std::string raw = fill_template(d.prompt, {{"context", r["context"].get<std::string>()}, {"input", r["input"].get<std::string>()}},
                                            name + " prompt");
      auto wrap = [&](const std::string& t) { return pr.chat() ? pr.chat_text({{"user", t}}) : t; };
      // NOTE: a generation budget above a quarter of the context (the summaries'
      // 512 in a 512-token model) is capped to ctx / 4 so a prompt still fits;
      // the sample records it.
      const int max_new = static_cast<int>(std::min<int64_t>(d.max_new, std::max<int64_t>(1, ctx / 4)));
      // The model's maximum minus the generation budget and the template is what
      // pred.py's model2maxlen leaves for the prompt.
      int64_t max_prompt = ctx - max_new - pr.count(wrap(""));
      Sample s;
      int64_t before = 0;
      for (int attempt = 0; attempt < 16; ++attempt) {
        if (max_prompt < 2) fail(ErrorKind::InvalidInput, "longbench {}: the context {} leaves no room for the prompt", name, ctx);
        s.prompt = wrap(truncate_middle(pr.tok(), raw, max_prompt, &before));
        s.tokens = pr.encode(s.prompt);
        const int64_t over = static_cast<int64_t>(s.tokens.size()) + max_new - ctx;
        if (over <= 0) break;
        max_prompt -= over;
      }
      const std::string sid = r.contains("_id") && r["_id"].is_string() ? r["_id"].get<std::string>() : std::to_string(i);
      s.id = name + "/" + sid;
      s.group = name;
      s.length = ctx;
      s.expected = answers;
      s.max_new = max_new;
      if (name == "samsum") s.stop = {"\n"};  // pred.py stops samsum at a newline
      s.extra = {{"category", d.category}, {"prompt_tokens_before_truncation", before}, {"all_classes", classes}};
      if (r.contains("length")) s.extra["words"] = r["length"];
      if (max_new < d.max_new) s.extra["max_new_capped_from"] = d.max_new;
      samples.push_back(std::move(s));
    }
  }
  const TaskRun run = run_generation_task(
      m, "longbench", samples,
      [](const Sample& s, const std::string& out) {
        return longbench_score(s.group, out, s.expected, s.extra["all_classes"].get<std::vector<std::string>>());
      },
      h);

  const auto labels = policy_labels(h);
  const auto cell = aggregate(run.records, [](const json& r) {
    return r["policy"].get<std::string>() + "|" + r["group"].get<std::string>();
  });
  std::vector<std::string> hdr = {"category", "dataset", "n"};
  for (const auto& l : labels) hdr.push_back(l);
  std::vector<std::vector<std::string>> rows;
  json per = json::object();
  std::map<std::string, std::map<std::string, std::vector<double>>> cat;  // policy -> category -> dataset scores
  for (const auto& name : names) {
    const Dataset& d = *find_dataset(name);
    std::vector<std::string> row = {d.category, name, "0"};
    for (const auto& l : labels) {
      auto it = cell.find(l + "|" + name);
      if (it == cell.end()) {
        row.push_back("-");
        continue;
      }
      row[2] = std::to_string(it->second.n);
      // eval.py: round(100 * mean, 2) per dataset.
      const double score = std::round(it->second.score * 100) / 100;
      row.push_back(fmt::format("{:.2f}", score));
      per[l][name] = it->second.to_json();
      cat[l][d.category].push_back(score);
    }
    rows.push_back(row);
  }
  json cats = json::object();
  std::vector<std::vector<std::string>> crows;
  for (const auto& c : category_order()) {
    std::vector<std::string> row = {c};
    bool any = false;
    for (const auto& l : labels) {
      auto it = cat[l].find(c);
      if (it == cat[l].end()) {
        row.push_back("-");
        continue;
      }
      any = true;
      double s = 0;
      for (double x : it->second) s += x;
      s /= it->second.size();
      row.push_back(fmt::format("{:.2f}", s));
      cats[l][c] = s;
    }
    if (any) crows.push_back(row);
  }
  std::vector<std::string> avg = {"**Avg (mean of categories)**"};
  json avgs = json::object();
  for (const auto& l : labels) {
    if (!cats.contains(l)) {
      avg.push_back("-");
      continue;
    }
    double s = 0;
    for (const auto& [k, v] : cats[l].items()) s += v.get<double>();
    s /= cats[l].size();
    avgs[l] = s;
    avg.push_back(fmt::format("{:.2f}", s));
  }
  crows.push_back(avg);
  std::vector<std::string> chdr = {"category"};
  for (const auto& l : labels) chdr.push_back(l);

  TaskReport rep;
  rep.markdown = fmt::format("## longbench: {} (official metrics x 100; prompts middle-truncated to the context {})\n\n",
                             model_name(m), ctx) +
                 markdown_table(hdr, rows) + "\n" + markdown_table(chdr, crows);
  rep.summary = summary_header(m, "longbench", h, ctx);
  rep.summary["data"] = o.data_dir;
  rep.summary["datasets"] = names;
  rep.summary["by_dataset"] = per;
  rep.summary["by_category"] = cats;
  rep.summary["average"] = avgs;
  write_summary(h, "longbench", rep, &run);
  return rep;
}

}  // namespace harmonia::eval
