#include "server/load.h"

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cmath>
#include <mutex>
#include <random>
#include <thread>
#include <vector>

#include <fmt/format.h>
#include <httplib.h>

#include "common/env.h"
#include "common/error.h"
#include "sched/simulator.h"
#include "sched/workload.h"

namespace harmonia::server {

using nlohmann::json;

namespace {

struct Item {
  double at_s = 0;  // scheduled arrival, seconds from the start
  json body;
  int64_t prompt_tokens = 0;
};

struct Outcome {
  bool ok = false;
  std::string error;  // kind, when !ok
  double latency_s = 0, ttft_s = -1;
  int64_t prompt_tokens = 0, output_tokens = 0;
  double start_s = 0, end_s = 0;
};

httplib::Headers headers_for(const LoadGenOptions& o) {
  httplib::Headers h;
  if (!o.api_key.empty()) h.emplace("Authorization", "Bearer " + o.api_key);
  return h;
}

json get_json(httplib::Client& cli, const std::string& path, const LoadGenOptions& o) {
  auto r = cli.Get(path.c_str(), headers_for(o));
  if (!r) fail(ErrorKind::Io, "load: cannot reach the server at {}{}: {}", o.url, path, httplib::to_string(r.error()));
  if (r->status != 200) fail(ErrorKind::Io, "load: GET {} answered {}: {}", path, r->status, r->body);
  return json::parse(r->body, nullptr, false);
}

// One streamed request; times relative to `t0_ms` (now_ms clock).
Outcome send_one(const std::string& host, int port, const LoadGenOptions& o, const Item& it, double t0_ms) {
  Outcome out;
  out.start_s = it.at_s;
  httplib::Client cli(host, port);
  const auto secs = static_cast<time_t>(o.timeout_s);
  cli.set_connection_timeout(5, 0);
  cli.set_read_timeout(secs, 0);
  cli.set_write_timeout(secs, 0);
  httplib::Request req;
  req.method = "POST";
  req.path = "/v1/completions";
  req.headers = headers_for(o);
  req.headers.emplace("Content-Type", "application/json");
  req.body = it.body.dump();
  int status = 0;
  std::string buf, error_body;
  bool done = false, stream_error = false;
  req.response_handler = [&](const httplib::Response& r) {
    status = r.status;
    return true;
  };
  req.content_receiver = [&](const char* data, size_t n, uint64_t, uint64_t) {
    if (status != 200) {
      error_body.append(data, std::min<size_t>(n, 4096));
      return true;
    }
    buf.append(data, n);
    for (size_t p; (p = buf.find("\n\n")) != std::string::npos;) {
      const std::string ev = buf.substr(0, p);
      buf.erase(0, p + 2);
      if (ev.rfind("data: ", 0) != 0) continue;
      const std::string payload = ev.substr(6);
      if (payload == "[DONE]") {
        done = true;
        continue;
      }
      const json j = json::parse(payload, nullptr, false);
      if (j.is_discarded() || j.contains("error")) {
        stream_error = true;
        continue;
      }
      if (out.ttft_s < 0 && j.contains("choices") && !j["choices"].empty()) {
        const json& c = j["choices"][0];
        const bool text = c.contains("text") && c["text"].is_string() && !c["text"].get<std::string>().empty();
        const bool toks = c.contains("token_ids") && c["token_ids"].is_array() && !c["token_ids"].empty();
        if (text || toks) out.ttft_s = (now_ms() - t0_ms) / 1000.0 - it.at_s;
      }
      if (j.contains("usage") && j["usage"].is_object()) {
        out.prompt_tokens = j["usage"].value("prompt_tokens", int64_t{0});
        out.output_tokens = j["usage"].value("completion_tokens", int64_t{0});
      }
    }
    return true;
  };
  httplib::Response res;
  httplib::Error err = httplib::Error::Success;
  const bool sent = cli.send(req, res, err);
  out.end_s = (now_ms() - t0_ms) / 1000.0;
  out.latency_s = out.end_s - it.at_s;
  if (!sent) out.error = "connection: " + httplib::to_string(err);
  else if (status != 200) out.error = fmt::format("http {}", status);
  else if (stream_error) out.error = "stream error";
  else if (!done) out.error = "stream ended without [DONE]";
  else out.ok = true;
  if (out.ok && out.ttft_s < 0) out.ttft_s = out.latency_s;  // no visible token (e.g. stopped at once)
  return out;
}

double mean(const std::vector<double>& v) {
  double s = 0;
  for (double x : v) s += x;
  return v.empty() ? 0.0 : s / static_cast<double>(v.size());
}

}  // namespace

void parse_loopback_url(const std::string& url, std::string& host, int& port) {
  const std::string scheme = "http://";
  if (url.rfind(scheme, 0) != 0) fail(ErrorKind::InvalidInput, "load: --url must start with http:// (got '{}')", url);
  std::string rest = url.substr(scheme.size());
  if (auto p = rest.find('/'); p != std::string::npos) {
    if (rest.substr(p) != "/" && rest.substr(p) != "/v1" && rest.substr(p) != "/v1/")
      fail(ErrorKind::InvalidInput, "load: --url is the server's root, e.g. http://127.0.0.1:8080 (got '{}')", url);
    rest = rest.substr(0, p);
  }
  std::string port_s = "80";
  if (!rest.empty() && rest[0] == '[') {
    const auto e = rest.find(']');
    if (e == std::string::npos) fail(ErrorKind::InvalidInput, "load: bad IPv6 address in '{}'", url);
    host = rest.substr(1, e - 1);
    if (e + 1 < rest.size() && rest[e + 1] == ':') port_s = rest.substr(e + 2);
  } else if (auto c = rest.rfind(':'); c != std::string::npos) {
    host = rest.substr(0, c);
    port_s = rest.substr(c + 1);
  } else {
    host = rest;
  }
  char* end = nullptr;
  const long p = std::strtol(port_s.c_str(), &end, 10);
  if (port_s.empty() || *end || p < 1 || p > 65535) fail(ErrorKind::InvalidInput, "load: bad port in '{}'", url);
  port = static_cast<int>(p);
  bool loopback = host == "localhost" || host == "::1";
  if (host.rfind("127.", 0) == 0) {
    int a, b, c2, d;
    char tail;
    loopback = std::sscanf(host.c_str(), "%d.%d.%d.%d%c", &a, &b, &c2, &d, &tail) == 4 && a == 127 && b >= 0 && b < 256 &&
               c2 >= 0 && c2 < 256 && d >= 0 && d < 256;
  }
  if (!loopback)
    fail(ErrorKind::InvalidInput, "load: only loopback servers may be loaded (127.0.0.0/8, localhost, ::1), got '{}'", host);
}

LoadReport run_load(const LoadGenOptions& o) {
  std::string host;
  int port = 0;
  parse_loopback_url(o.url, host, port);
  if (o.concurrency < 1 || o.concurrency > 1024) fail(ErrorKind::InvalidInput, "load: --concurrency must be in [1, 1024], got {}", o.concurrency);
  if (!(o.timeout_s > 0)) fail(ErrorKind::InvalidInput, "load: the request timeout must be > 0");
  const bool from_file = !o.workload.empty();
  if (!from_file) {
    if (!(o.rate > 0) || !(o.duration_s > 0))
      fail(ErrorKind::InvalidInput, "load: give --workload FILE, or --rate R (> 0) and --duration S (> 0)");
    if (o.rate * o.duration_s > static_cast<double>(o.max_requests))
      fail(ErrorKind::InvalidInput, "load: --rate {} for --duration {} s is about {:.0f} requests; the limit is {}", o.rate, o.duration_s,
           o.rate * o.duration_s, o.max_requests);
    if (o.max_tokens < 1) fail(ErrorKind::InvalidInput, "load: --max-tokens must be >= 1, got {}", o.max_tokens);
  }

  httplib::Client meta(host, port);
  meta.set_connection_timeout(5, 0);
  meta.set_read_timeout(30, 0);
  LoadReport rep;
  rep.url = o.url;
  const json health = get_json(meta, "/health", o);
  rep.server_rss_before = health.is_object() ? health.value("rss_bytes", size_t{0}) : 0;
  const json models = get_json(meta, "/v1/models", o);
  std::string model;
  if (models.is_object() && models.contains("data") && models["data"].is_array() && !models["data"].empty())
    model = models["data"][0].value("id", "");

  std::vector<Item> items;
  std::mt19937_64 rng(o.seed);
  if (from_file) {
    const sched::Workload w = sched::load_workload(o.workload);
    if (static_cast<int64_t>(w.requests.size()) > o.max_requests)
      fail(ErrorKind::InvalidInput, "load: {} has {} requests; the limit is {}", o.workload, w.requests.size(), o.max_requests);
    // Token-count prompts are built from a filler text's tokens, cycled.
    auto tr = meta.Post("/tokenize", headers_for(o), json{{"prompt", "Once upon a time, there was a little girl named Lily. "}}.dump(),
                        "application/json");
    if (!tr || tr->status != 200) fail(ErrorKind::Io, "load: POST /tokenize failed at {}", o.url);
    const json tj = json::parse(tr->body, nullptr, false);
    const std::vector<int32_t> filler = tj["tokens"].get<std::vector<int32_t>>();
    const int64_t ctx = tj.value("max_model_len", int64_t{0});
    if (filler.size() < 2 || ctx < 2) fail(ErrorKind::Io, "load: unexpected /tokenize answer from {}", o.url);
    for (const auto& wr : w.requests) {
      Item it;
      it.at_s = wr.arrival_s;
      int64_t out = wr.output_tokens;
      json body = {{"stream", true}, {"stream_options", {{"include_usage", true}}}, {"return_token_ids", true},
                   {"ignore_eos", true}, {"seed", static_cast<int64_t>(wr.id)}};
      if (!model.empty()) body["model"] = model;
      if (!wr.prompt.empty()) {
        body["prompt"] = wr.prompt;
        if (out >= ctx) {
          out = ctx / 2;
          rep.clamped++;
        }
      } else {
        int64_t P = std::max<int64_t>(1, wr.prompt_tokens);
        if (P + out > ctx) {
          out = std::min<int64_t>(out, ctx - 1);
          P = std::max<int64_t>(1, ctx - out);
          rep.clamped++;
        }
        std::vector<int32_t> ids;
        ids.push_back(filler[0]);  // BOS (or the first token) once
        for (size_t k = 1; static_cast<int64_t>(ids.size()) < P; ++k) ids.push_back(filler[1 + (k - 1) % (filler.size() - 1)]);
        body["prompt"] = ids;
        it.prompt_tokens = P;
      }
      body["max_tokens"] = out;
      it.body = std::move(body);
      items.push_back(std::move(it));
    }
  } else {
    std::exponential_distribution<double> gap(o.rate);
    for (double t = gap(rng); t < o.duration_s; t += gap(rng)) {
      Item it;
      it.at_s = t;
      it.body = {{"prompt", o.prompt},     {"max_tokens", o.max_tokens},
                 {"stream", true},         {"stream_options", {{"include_usage", true}}},
                 {"return_token_ids", true}, {"seed", static_cast<int64_t>(items.size())}};
      if (o.ignore_eos) it.body["ignore_eos"] = true;
      if (!model.empty()) it.body["model"] = model;
      items.push_back(std::move(it));
    }
  }
  std::sort(items.begin(), items.end(), [](const Item& a, const Item& b) { return a.at_s < b.at_s; });

  // Workers take the requests in arrival order and wait for each one's time:
  // open-loop arrivals, at most `concurrency` in flight.
  std::vector<Outcome> outcomes(items.size());
  std::atomic<size_t> next{0};
  const double t0 = now_ms();
  std::vector<std::thread> workers;
  const int n_workers = static_cast<int>(std::min<size_t>(static_cast<size_t>(o.concurrency), std::max<size_t>(1, items.size())));
  for (int w = 0; w < n_workers; ++w)
    workers.emplace_back([&] {
      for (size_t i; (i = next++) < items.size();) {
        const double wait_ms = t0 + items[i].at_s * 1000.0 - now_ms();
        if (wait_ms > 0) std::this_thread::sleep_for(std::chrono::duration<double, std::milli>(wait_ms));
        outcomes[i] = send_one(host, port, o, items[i], t0);
      }
    });
  for (auto& t : workers) t.join();

  std::vector<double> lat, ttft, tpot;
  double first = 1e300, last = 0;
  for (const auto& r : outcomes) {
    rep.requests++;
    first = std::min(first, r.start_s);
    last = std::max(last, r.end_s);
    if (!r.ok) {
      rep.errors++;
      rep.error_kinds[r.error]++;
      continue;
    }
    rep.ok++;
    rep.prompt_tokens += r.prompt_tokens;
    rep.output_tokens += r.output_tokens;
    lat.push_back(r.latency_s);
    ttft.push_back(r.ttft_s);
    if (r.output_tokens > 1) tpot.push_back((r.latency_s - r.ttft_s) / static_cast<double>(r.output_tokens - 1));
  }
  rep.duration_s = rep.requests ? std::max(0.0, last - first) : 0.0;
  if (rep.duration_s > 0) {
    rep.requests_per_s = static_cast<double>(rep.ok) / rep.duration_s;
    rep.output_tok_per_s = static_cast<double>(rep.output_tokens) / rep.duration_s;
  }
  rep.mean_latency_s = mean(lat);
  rep.p50_latency_s = sched::percentile(lat, 50);
  rep.p90_latency_s = sched::percentile(lat, 90);
  rep.p99_latency_s = sched::percentile(lat, 99);
  rep.mean_ttft_s = mean(ttft);
  rep.p50_ttft_s = sched::percentile(ttft, 50);
  rep.p90_ttft_s = sched::percentile(ttft, 90);
  rep.p99_ttft_s = sched::percentile(ttft, 99);
  rep.mean_tpot_s = mean(tpot);
  rep.p50_tpot_s = sched::percentile(tpot, 50);
  rep.p90_tpot_s = sched::percentile(tpot, 90);
  rep.p99_tpot_s = sched::percentile(tpot, 99);
  if (auto h = meta.Get("/health", headers_for(o)); h && h->status == 200) {
    const json j = json::parse(h->body, nullptr, false);
    if (j.is_object()) rep.server_rss_after = j.value("rss_bytes", size_t{0});
  }
  return rep;
}

std::string LoadReport::text() const {
  std::string e;
  for (const auto& [k, n] : error_kinds) e += fmt::format("{}{} x{}", e.empty() ? " (" : ", ", k, n);
  if (!e.empty()) e += ")";
  std::string s = fmt::format("requests     {} sent, {} ok, {} errors{}\n", requests, ok, errors, e);
  s += fmt::format("duration     {:.2f} s: {:.2f} requests/s, {:.1f} output tokens/s ({} prompt, {} output tokens)\n", duration_s,
                   requests_per_s, output_tok_per_s, prompt_tokens, output_tokens);
  s += fmt::format("latency      mean {:.4f} s  p50 {:.4f}  p90 {:.4f}  p99 {:.4f}\n", mean_latency_s, p50_latency_s, p90_latency_s,
                   p99_latency_s);
  s += fmt::format("ttft         mean {:.4f} s  p50 {:.4f}  p90 {:.4f}  p99 {:.4f}\n", mean_ttft_s, p50_ttft_s, p90_ttft_s, p99_ttft_s);
  s += fmt::format("tpot         mean {:.2f} ms  p50 {:.2f}  p90 {:.2f}  p99 {:.2f}\n", mean_tpot_s * 1e3, p50_tpot_s * 1e3,
                   p90_tpot_s * 1e3, p99_tpot_s * 1e3);
  if (clamped) s += fmt::format("clamped      {} workload requests shortened to fit the server's context\n", clamped);
  if (server_rss_before || server_rss_after)
    s += fmt::format("server rss   {:.1f} MiB before, {:.1f} MiB after\n", server_rss_before / 1048576.0, server_rss_after / 1048576.0);
  return s;
}

json LoadReport::to_json() const {
  return json{{"url", url},
              {"requests", requests},
              {"ok", ok},
              {"errors", errors},
              {"error_kinds", error_kinds},
              {"prompt_tokens", prompt_tokens},
              {"output_tokens", output_tokens},
              {"clamped", clamped},
              {"duration_s", duration_s},
              {"requests_per_s", requests_per_s},
              {"output_tok_per_s", output_tok_per_s},
              {"mean_latency_s", mean_latency_s},
              {"p50_latency_s", p50_latency_s},
              {"p90_latency_s", p90_latency_s},
              {"p99_latency_s", p99_latency_s},
              {"mean_ttft_s", mean_ttft_s},
              {"p50_ttft_s", p50_ttft_s},
              {"p90_ttft_s", p90_ttft_s},
              {"p99_ttft_s", p99_ttft_s},
              {"mean_tpot_s", mean_tpot_s},
              {"p50_tpot_s", p50_tpot_s},
              {"p90_tpot_s", p90_tpot_s},
              {"p99_tpot_s", p99_tpot_s},
              {"server_rss_before", server_rss_before},
              {"server_rss_after", server_rss_after}};
}

}  // namespace harmonia::server
