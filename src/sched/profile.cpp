#include "sched/profile.h"

#include <algorithm>
#include <cmath>
#include <fstream>

#include "common/error.h"
#include "common/mapped_file.h"

namespace harmonia::sched {

using nlohmann::json;

namespace {

constexpr const char* kFormat = "harmonia.sd_profile";

const json& field(const json& j, const char* key, const std::string& src) {
  if (!j.is_object() || !j.contains(key)) fail(ErrorKind::InvalidInput, "{}: missing field '{}'", src, key);
  return j.at(key);
}

double number(const json& v, const std::string& where, const std::string& src) {
  if (!v.is_number()) fail(ErrorKind::InvalidInput, "{}: {} must be a number, got {}", src, where, v.dump());
  const double x = v.get<double>();
  if (!std::isfinite(x) || x < 0) fail(ErrorKind::InvalidInput, "{}: {} = {} must be finite and >= 0", src, where, x);
  return x;
}

std::vector<double> vec(const json& v, const std::string& where, const std::string& src, size_t want = 0) {
  if (!v.is_array()) fail(ErrorKind::InvalidInput, "{}: {} must be an array", src, where);
  if (want && v.size() != want)
    fail(ErrorKind::InvalidInput, "{}: {} has {} entries but its axis has {}", src, where, v.size(), want);
  std::vector<double> out;
  for (size_t i = 0; i < v.size(); ++i) out.push_back(number(v[i], fmt::format("{}[{}]", where, i), src));
  return out;
}

std::vector<double> axis(const json& j, const char* key, const std::string& src) {
  auto a = vec(field(j, key, src), key, src);
  if (a.empty()) fail(ErrorKind::InvalidInput, "{}: axis '{}' is empty", src, key);
  for (size_t i = 1; i < a.size(); ++i)
    if (!(a[i] > a[i - 1]))
      fail(ErrorKind::InvalidInput, "{}: axis '{}' must be strictly increasing ({}[{}] = {} after {})", src, key, key,
           i, a[i], a[i - 1]);
  return a;
}

}  // namespace

double interp1(const std::vector<double>& xs, const std::vector<double>& ys, double x) {
  const size_t n = xs.size();
  if (n == 1 || x <= xs[0]) return ys[0];
  if (x >= xs[n - 1]) {
    const double slope = (ys[n - 1] - ys[n - 2]) / (xs[n - 1] - xs[n - 2]);
    return std::max(ys[n - 1], ys[n - 1] + slope * (x - xs[n - 1]));
  }
  const size_t i = static_cast<size_t>(std::upper_bound(xs.begin(), xs.end(), x) - xs.begin());  // xs[i-1] <= x < xs[i]
  const double t = (x - xs[i - 1]) / (xs[i] - xs[i - 1]);
  return ys[i - 1] + t * (ys[i] - ys[i - 1]);
}

CostProfile CostProfile::load(const std::string& path) {
  const std::string text = read_file(path);
  json j;
  try {
    j = json::parse(text);
  } catch (const json::parse_error& e) {
    fail(ErrorKind::InvalidInput, "{}: not valid JSON: {}", path, e.what());
  }
  return from_json(j, path);
}

CostProfile CostProfile::from_json(const json& j, const std::string& src) {
  if (!j.is_object()) fail(ErrorKind::InvalidInput, "{}: a cost profile must be a JSON object", src);
  if (j.contains("format") && j["format"] != kFormat)
    fail(ErrorKind::InvalidInput, "{}: format is {}, expected \"{}\"", src, j["format"].dump(), kFormat);
  if (j.contains("version") && j["version"] != 1)
    fail(ErrorKind::InvalidInput, "{}: version {} is not supported (expected 1)", src, j["version"].dump());
  CostProfile p;
  auto str = [&](const char* k) { return j.contains(k) && j[k].is_string() ? j[k].get<std::string>() : std::string(); };
  p.target = str("target");
  p.draft = str("draft");
  p.device = str("device");
  p.note = str("note");
  p.batch_ = axis(j, "batch", src);
  p.draft_len_ = axis(j, "draft_len", src);
  p.context_ = axis(j, "context", src);
  const json& d = field(j, "draft_ms_per_token", src);
  if (!d.is_array() || d.size() != p.batch_.size())
    fail(ErrorKind::InvalidInput, "{}: draft_ms_per_token must be an array of {} rows (one per batch size)", src,
         p.batch_.size());
  for (size_t b = 0; b < d.size(); ++b)
    p.draft_.push_back(vec(d[b], fmt::format("draft_ms_per_token[{}]", b), src, p.context_.size()));
  const json& v = field(j, "verify_ms", src);
  if (!v.is_array() || v.size() != p.batch_.size())
    fail(ErrorKind::InvalidInput, "{}: verify_ms must be an array of {} entries (one per batch size)", src,
         p.batch_.size());
  for (size_t b = 0; b < v.size(); ++b) {
    if (!v[b].is_array() || v[b].size() != p.draft_len_.size())
      fail(ErrorKind::InvalidInput, "{}: verify_ms[{}] must have {} rows (one per draft_len)", src, b,
           p.draft_len_.size());
    std::vector<std::vector<double>> rows;
    for (size_t n = 0; n < v[b].size(); ++n)
      rows.push_back(vec(v[b][n], fmt::format("verify_ms[{}][{}]", b, n), src, p.context_.size()));
    p.verify_.push_back(std::move(rows));
  }
  const json& pf = field(j, "prefill", src);
  p.prefill_tokens_ = axis(pf, "tokens", src + " prefill");
  p.prefill_ms_ = vec(field(pf, "ms", src), "prefill.ms", src, p.prefill_tokens_.size());
  if (j.contains("preempt_ms")) p.preempt_ms_ = number(j["preempt_ms"], "preempt_ms", src);
  if (j.contains("step_overhead_ms"))
    p.step_overhead_ms_ = vec(j["step_overhead_ms"], "step_overhead_ms", src, p.batch_.size());
  if (j.contains("draft_prefill_ms"))
    p.draft_prefill_ms_ = vec(j["draft_prefill_ms"], "draft_prefill_ms", src, p.prefill_tokens_.size());
  p.validate(src);
  return p;
}

void CostProfile::validate(const std::string& src) const {
  if (batch_[0] < 1) fail(ErrorKind::InvalidInput, "{}: batch sizes must be >= 1 (batch[0] = {})", src, batch_[0]);
  for (size_t b = 0; b < batch_.size(); ++b)
    for (size_t n = 0; n < draft_len_.size(); ++n)
      for (size_t c = 0; c < context_.size(); ++c)
        if (!(verify_[b][n][c] > 0))
          fail(ErrorKind::InvalidInput, "{}: verify_ms[{}][{}][{}] must be > 0", src, b, n, c);
}

json CostProfile::to_json() const {
  json j;
  j["format"] = kFormat;
  j["version"] = 1;
  j["target"] = target;
  j["draft"] = draft;
  j["device"] = device;
  j["note"] = note;
  j["batch"] = batch_;
  j["draft_len"] = draft_len_;
  j["context"] = context_;
  j["draft_ms_per_token"] = draft_;
  j["verify_ms"] = verify_;
  j["prefill"] = {{"tokens", prefill_tokens_}, {"ms", prefill_ms_}};
  j["preempt_ms"] = preempt_ms_;
  if (!step_overhead_ms_.empty()) j["step_overhead_ms"] = step_overhead_ms_;
  if (!draft_prefill_ms_.empty()) j["draft_prefill_ms"] = draft_prefill_ms_;
  return j;
}

void CostProfile::save(const std::string& path) const {
  std::ofstream f(path, std::ios::trunc);
  if (!f) fail(ErrorKind::Io, "{}: cannot open for writing", path);
  f << to_json().dump(2) << "\n";
  if (!f) fail(ErrorKind::Io, "{}: write failed", path);
}

CostProfile CostProfile::synthetic_default() {
  CostProfile p;
  p.target = "synthetic 8B fp16 target";
  p.draft = "synthetic 1B fp16 draft";
  p.device = "H200-class GPU (synthetic)";
  p.note =
      "synthetic, not measured: draft_ms/token = 1.5*(1+0.02*(b-1)) + 0.02*b*ctx/1024; "
      "verify_ms = 7 + 0.04*b*(n+1) + 0.06*b*ctx/1024; prefill_ms = 5 + 0.045*tokens";
  p.batch_ = {1, 2, 4, 8, 16, 32, 64};
  p.draft_len_ = {0, 1, 2, 4, 6, 8};
  p.context_ = {256, 1024, 4096, 16384};
  for (double b : p.batch_) {
    std::vector<double> row;
    for (double c : p.context_) row.push_back(1.5 * (1 + 0.02 * (b - 1)) + 0.02 * b * c / 1024);
    p.draft_.push_back(row);
    std::vector<std::vector<double>> vr;
    for (double n : p.draft_len_) {
      std::vector<double> r;
      for (double c : p.context_) r.push_back(7.0 + 0.04 * b * (n + 1) + 0.06 * b * c / 1024);
      vr.push_back(r);
    }
    p.verify_.push_back(vr);
  }
  p.prefill_tokens_ = {1, 128, 512, 2048, 8192, 32768};
  for (double t : p.prefill_tokens_) p.prefill_ms_.push_back(5 + 0.045 * t);
  return p;
}

CostProfile CostProfile::constant(double draft_ms_per_token, double verify_ms, double prefill_ms_per_token,
                                  double preempt_ms) {
  CostProfile p;
  p.target = p.draft = "constant";
  p.device = "none";
  p.note = "flat costs";
  p.batch_ = {1};
  p.draft_len_ = {0};
  p.context_ = {1};
  p.draft_ = {{draft_ms_per_token}};
  p.verify_ = {{{verify_ms}}};
  p.prefill_tokens_ = {0, 1};
  p.prefill_ms_ = {0, prefill_ms_per_token};
  p.preempt_ms_ = preempt_ms;
  p.validate("constant profile");
  return p;
}

CostProfile CostProfile::scaled(double k) const {
  if (!(k > 0) || !std::isfinite(k)) fail(ErrorKind::InvalidInput, "profile scale {} must be finite and > 0", k);
  CostProfile p = *this;
  for (auto& row : p.draft_) for (double& x : row) x *= k;
  for (auto& rows : p.verify_) for (auto& row : rows) for (double& x : row) x *= k;
  for (double& x : p.prefill_ms_) x *= k;
  p.preempt_ms_ *= k;
  for (double& x : p.step_overhead_ms_) x *= k;
  for (double& x : p.draft_prefill_ms_) x *= k;
  p.note += fmt::format(" (times x{:.4f})", k);
  return p;
}

double CostProfile::draft_ms(int batch, double ctx) const {
  std::vector<double> by_batch;
  for (const auto& row : draft_) by_batch.push_back(interp1(context_, row, ctx));
  return interp1(batch_, by_batch, batch);
}

double CostProfile::verify_ms(int batch, double n, double ctx) const {
  std::vector<double> by_batch;
  for (const auto& rows : verify_) {
    std::vector<double> by_n;
    for (const auto& row : rows) by_n.push_back(interp1(context_, row, ctx));
    by_batch.push_back(interp1(draft_len_, by_n, n));
  }
  return interp1(batch_, by_batch, batch);
}

double CostProfile::step_overhead_ms(int batch) const {
  return step_overhead_ms_.empty() ? 0.0 : interp1(batch_, step_overhead_ms_, batch);
}

double CostProfile::draft_prefill_ms(int64_t tokens) const {
  return draft_prefill_ms_.empty() ? 0.0 : interp1(prefill_tokens_, draft_prefill_ms_, static_cast<double>(tokens));
}

double CostProfile::step_ms(int batch, double n, double ctx) const {
  return n * draft_ms(batch, ctx) + verify_ms(batch, n, ctx) + step_overhead_ms(batch);
}

double CostProfile::prefill_ms(int64_t tokens) const {
  return interp1(prefill_tokens_, prefill_ms_, static_cast<double>(tokens));
}

PolicyContext CostProfile::policy_context(int draft_len, int batch, double ctx_tokens) const {
  PolicyContext c;
  c.draft_len = draft_len;
  c.step_s = step_ms(batch, draft_len, ctx_tokens) / 1000.0;
  CostProfile copy = *this;
  c.prefill_s = [copy](int64_t t) { return copy.prefill_ms(t) / 1000.0; };
  return c;
}

}  // namespace harmonia::sched
