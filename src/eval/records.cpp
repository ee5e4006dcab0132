#include "eval/records.h"

#include <filesystem>
#include <sstream>

#include "common/error.h"
#include "common/mapped_file.h"

namespace harmonia::eval {

namespace fs = std::filesystem;
using nlohmann::json;

namespace {
void make_parent(const std::string& path) {
  const fs::path parent = fs::path(path).parent_path();
  std::error_code ec;
  if (!parent.empty()) fs::create_directories(parent, ec);
  if (ec) fail(ErrorKind::Io, "{}: cannot create the folder ({})", parent.string(), ec.message());
}
}  // namespace

std::string jsonl_line(const json& j) { return j.dump(-1, ' ', false, json::error_handler_t::replace) + "\n"; }

void write_text_file(const std::string& path, const std::string& content) {
  make_parent(path);
  std::ofstream f(path, std::ios::binary | std::ios::trunc);
  f.write(content.data(), static_cast<std::streamsize>(content.size()));
  if (!f) fail(ErrorKind::Io, "{}: cannot write", path);
}

std::vector<json> read_jsonl(const std::string& path) {
  const std::string text = read_file(path);
  std::vector<json> out;
  std::istringstream in(text);
  std::string line;
  int64_t no = 0;
  while (std::getline(in, line)) {
    ++no;
    if (line.empty()) continue;
    try {
      out.push_back(json::parse(line));
    } catch (const json::exception& e) {
      fail(ErrorKind::InvalidInput, "{}:{}: not a JSON object ({})", path, no, e.what());
    }
  }
  return out;
}

ResultsFile::ResultsFile(std::string path) : path_(std::move(path)) {
  make_parent(path_);
  std::error_code ec;
  if (fs::exists(path_, ec)) {
    const std::string text = read_file(path_);
    // Everything after the last newline is a torn write of a killed run.
    const size_t end = text.rfind('\n') == std::string::npos ? 0 : text.rfind('\n') + 1;
    torn_ = text.size() - end;
    size_t start = 0;
    int64_t no = 0;
    while (start < end) {
      const size_t nl = text.find('\n', start);
      ++no;
      const std::string line = text.substr(start, nl - start);
      start = nl + 1;
      if (line.empty()) continue;
      json j;
      try {
        j = json::parse(line);
      } catch (const json::exception& e) {
        fail(ErrorKind::InvalidInput, "{}:{}: malformed record ({}); delete the line or the file to rerun it", path_, no,
             e.what());
      }
      if (!j.is_object() || !j.contains("policy") || !j.contains("id") || !j["policy"].is_string() || !j["id"].is_string())
        fail(ErrorKind::InvalidInput, "{}:{}: record without string fields 'policy' and 'id'", path_, no);
      keys_.insert({j["policy"].get<std::string>(), j["id"].get<std::string>()});
      records_.push_back(std::move(j));
    }
    if (torn_ > 0) fs::resize_file(path_, end, ec);
    if (ec) fail(ErrorKind::Io, "{}: cannot cut the torn last line ({})", path_, ec.message());
  }
  out_.open(path_, std::ios::binary | std::ios::app);
  if (!out_) fail(ErrorKind::Io, "{}: cannot open for appending", path_);
}

void ResultsFile::append(const json& record) {
  const std::string line = jsonl_line(record);
  out_.write(line.data(), static_cast<std::streamsize>(line.size()));
  out_.flush();
  if (!out_) fail(ErrorKind::Io, "{}: write failed", path_);
  keys_.insert({record.at("policy").get<std::string>(), record.at("id").get<std::string>()});
  records_.push_back(record);
}

void write_samples_file(const std::string& path, const std::string& content, const std::string& results_path) {
  std::error_code ec;
  if (fs::exists(path, ec)) {
    const std::string old = read_file(path);
    if (old == content) return;
    if (fs::exists(results_path, ec) && fs::file_size(results_path, ec) > 0)
      fail(ErrorKind::InvalidInput,
           "{} holds samples built with other settings or another --seed, and {} has results for them; "
           "use another --out or delete both files",
           path, results_path);
  }
  write_text_file(path, content);
}

}  // namespace harmonia::eval
