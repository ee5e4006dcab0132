#pragma once
// The files a benchmark run leaves in --out:
//   <task>.samples.jsonl   the constructed samples, one per line: a pure function
//                          of the model's tokenizer, the settings and --seed, so
//                          the same seed gives the same bytes;
//   <task>.results.jsonl   one record per (sample, policy), appended and flushed
//                          as each finishes. A run that finds this file skips the
//                          (policy, sample id) pairs it already holds (resume).
// A run killed while writing leaves at most one torn last line; it is cut off
// when the file is opened again.
#include <cstdint>
#include <fstream>
#include <set>
#include <string>
#include <utility>
#include <vector>

#include <nlohmann/json.hpp>

namespace harmonia::eval {

class ResultsFile {
 public:
  // Reads the records already in `path` (creating its folder) and opens it for
  // appending. Throws Error(InvalidInput) naming the file and line for a
  // malformed complete line, Error(Io) when it cannot be written.
  explicit ResultsFile(std::string path);
  bool has(const std::string& policy, const std::string& id) const { return keys_.count({policy, id}) > 0; }
  // Appends one record (needs string fields "policy" and "id") and flushes.
  void append(const nlohmann::json& record);
  const std::vector<nlohmann::json>& records() const { return records_; }
  const std::string& path() const { return path_; }
  size_t torn_bytes_dropped() const { return torn_; }

 private:
  std::string path_;
  std::vector<nlohmann::json> records_;
  std::set<std::pair<std::string, std::string>> keys_;
  std::ofstream out_;
  size_t torn_ = 0;
};

// One JSON object per line (keys sorted, compact, invalid UTF-8 replaced).
std::string jsonl_line(const nlohmann::json& j);

// Writes the samples file. When `path` exists with different content and
// `results_path` already holds records, throws Error(InvalidInput) naming both:
// the results were made from other samples (other settings or seed).
void write_samples_file(const std::string& path, const std::string& content, const std::string& results_path);

// Reads every line of a JSON-lines file; throws naming file and line.
std::vector<nlohmann::json> read_jsonl(const std::string& path);

// Writes `content` to `path` (creating folders); throws Error(Io) naming it.
void write_text_file(const std::string& path, const std::string& content);

}  // namespace harmonia::eval
