#include "server/server.h"

#include <sys/socket.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <csignal>
#include <mutex>
#include <thread>

#include <fmt/format.h>
#include <httplib.h>

#include "common/env.h"
#include "common/error.h"
#include "server/openai.h"
#include "server/sse.h"

namespace harmonia::server {

namespace {

using namespace std::chrono_literals;

// cpp-httplib's server, plus closing the listening socket without ending the
// connections in progress (Server::stop() would also cut running streams).
class HttpServer : public httplib::Server {
 public:
  // The accept loop then fails, closes the socket itself and waits for the workers.
  void stop_accepting() {
    const socket_t s = svr_sock_;
    if (s != INVALID_SOCKET) ::shutdown(s, SHUT_RDWR);
  }
};

const char* const kRoutes[] = {"/v1/completions", "/v1/chat/completions", "/v1/models", "/health",
                               "/metrics",        "/tokenize",            "/detokenize"};

// Metrics label of a path: a known route, never the raw client path.
std::string route_of(const std::string& path) {
  for (const char* r : kRoutes)
    if (path == r) return r;
  if (path.rfind("/v1/models/", 0) == 0) return "/v1/models/{id}";
  return "other";
}

bool needs_key(const std::string& path) {
  return path.rfind("/v1/", 0) == 0 || path == "/tokenize" || path == "/detokenize";
}

// Compares without an early exit, so response time does not leak the key's prefix.
bool same_key(const std::string& a, const std::string& b) {
  unsigned char diff = a.size() == b.size() ? 0 : 1;
  for (size_t i = 0; i < a.size(); ++i) diff |= static_cast<unsigned char>(a[i] ^ b[i % std::max<size_t>(1, b.size())]);
  return diff == 0;
}

void send_error(httplib::Response& res, const ApiError& e) {
  res.status = e.status;
  res.set_content(dump(error_body(e)), "application/json");
}

std::string file_stem(const std::string& path) {
  std::string s = path;
  while (!s.empty() && s.back() == '/') s.pop_back();
  if (auto p = s.find_last_of('/'); p != std::string::npos) s = s.substr(p + 1);
  if (s == "config.json") return "model";
  if (auto p = s.find_last_of('.'); p != std::string::npos && p > 0) s = s.substr(0, p);
  return s.empty() ? "model" : s;
}

std::string mib(size_t b) { return fmt::format("{:.2f} MiB", static_cast<double>(b) / 1048576.0); }

}  // namespace

std::string Capacity::text() const {
  std::string o = fmt::format("context      {} tokens per sequence\n", ctx);
  for (const auto& r : rows)
    o += fmt::format("kv           {}: {:.1f} bytes/token ({} per {}-token sequence)\n", r.policy, r.bytes_per_token,
                     mib(r.bytes_at_ctx), ctx);
  if (kv_budget_bytes == 0) {
    o += fmt::format("kv budget    unlimited (--kv-budget BYTES bounds it); {} sequences per step\n", max_seqs);
  } else {
    o += fmt::format("kv budget    {} ({} bytes):", mib(kv_budget_bytes), kv_budget_bytes);
    for (size_t i = 0; i < rows.size(); ++i)
      o += fmt::format("{} {} sequences of {} tokens under {}", i ? ";" : "", rows[i].sequences, ctx, rows[i].policy);
    o += fmt::format("; {} sequences per step\n", max_seqs);
  }
  return o;
}

struct Server::Impl {
  const Model& target;
  ServerOptions o;
  engine::Engine eng;
  ServerMetrics metrics;
  ParseContext pc;
  Capacity cap;
  std::vector<std::string> policy_names;
  HttpServer http;
  std::thread listen_thread;
  int port = -1;
  std::atomic<bool> draining{false};
  std::atomic<int> active{0};        // requests in a handler or streaming
  std::mutex submit_mu;              // orders submit() against the engine's stop
  bool engine_stopped = false;       // guarded by submit_mu
  std::atomic<bool> engine_gone{false};
  std::mutex shutdown_mu;
  bool shut = false;

  Impl(const Model& t, const Model* draft, ServerOptions opts)
      : target(t), o(std::move(opts)), eng(t, draft, o.engine) {
    if (!target.tokenizer) fail(ErrorKind::InvalidInput, "{}: the server needs a tokenizer (give --tokenizer)", target.path);
    if (o.kv.empty()) o.kv.push_back({"full", {}});
    if (o.model_id.empty()) o.model_id = file_stem(target.path);
    pc.tok = target.tokenizer.get();
    pc.ctx = eng.options().ctx;
    pc.vocab_size = target.config.vocab_size;
    pc.model_id = o.model_id;
    pc.model_path = target.path;
    pc.default_kv = o.kv.front();
    pc.default_spec = o.speculative;
    pc.check_kv = [this](const kv::PolicySpec& s) { eng.kv_bytes_for(s, 1); };
    pc.default_spec.validate();
    if (o.speculative.drafter == "draft" && !draft)
      fail(ErrorKind::InvalidInput, "speculative drafter 'draft' needs a draft model (--draft MODEL)");
    cap.ctx = pc.ctx;
    cap.kv_budget_bytes = o.engine.kv_budget_bytes;
    cap.max_seqs = eng.options().max_seqs;
    for (const auto& s : o.kv) {
      Capacity::Row r;
      r.policy = s.label();
      r.bytes_at_ctx = eng.kv_bytes_for(s, cap.ctx);  // also validates the policy and its options
      r.bytes_per_token = static_cast<double>(r.bytes_at_ctx) / static_cast<double>(cap.ctx);
      if (cap.kv_budget_bytes) r.sequences = r.bytes_at_ctx ? static_cast<int64_t>(cap.kv_budget_bytes / r.bytes_at_ctx) : 0;
      cap.rows.push_back(r);
      if (std::find(policy_names.begin(), policy_names.end(), s.name) == policy_names.end()) policy_names.push_back(s.name);
    }
    setup_http();
  }

  // ---- HTTP plumbing ----------------------------------------------------------------

  void setup_http() {
    const int threads = std::max(1, o.http_threads);
    http.new_task_queue = [threads] { return new httplib::ThreadPool(static_cast<size_t>(threads)); };
    http.set_payload_max_length(o.max_body_bytes);
    http.set_read_timeout(o.read_timeout_s, 0);
    http.set_write_timeout(o.write_timeout_s, 0);
    http.set_keep_alive_timeout(o.keep_alive_timeout_s);
    http.set_keep_alive_max_count(1000);
    http.set_tcp_nodelay(true);  // stream chunks leave at once

    http.set_pre_routing_handler([this](const httplib::Request& req, httplib::Response& res) {
      if (draining && req.path != "/metrics") {
        res.set_header("Connection", "close");
        res.set_header("Retry-After", "5");
        if (req.path == "/health") {
          res.status = 503;
          res.set_content(dump(json{{"status", "draining"}}), "application/json");
        } else {
          send_error(res, ApiError(503, "the server is shutting down", "server_error", "", "shutting_down"));
        }
        return httplib::Server::HandlerResponse::Handled;
      }
      if (!o.api_key.empty() && needs_key(req.path)) {
        const std::string auth = req.get_header_value("Authorization");
        const std::string prefix = "Bearer ";
        if (auth.empty()) {
          res.set_header("WWW-Authenticate", "Bearer");
          send_error(res, ApiError(401, "missing API key: send the header 'Authorization: Bearer KEY'",
                                   "invalid_request_error", "", "invalid_api_key"));
          return httplib::Server::HandlerResponse::Handled;
        }
        if (auth.rfind(prefix, 0) != 0 || !same_key(auth.substr(prefix.size()), o.api_key)) {
          res.set_header("WWW-Authenticate", "Bearer");
          send_error(res, ApiError(401, "incorrect API key", "invalid_request_error", "", "invalid_api_key"));
          return httplib::Server::HandlerResponse::Handled;
        }
      }
      return httplib::Server::HandlerResponse::Unhandled;
    });

    // Responses httplib makes itself (unknown path, oversized body, bad HTTP) get OpenAI's error body too.
    http.set_error_handler(httplib::Server::HandlerWithResponse([this](const httplib::Request& req, httplib::Response& res) {
      if (!res.body.empty()) return httplib::Server::HandlerResponse::Unhandled;
      std::string msg, code;
      std::string type = res.status >= 500 ? "server_error" : "invalid_request_error";
      switch (res.status) {
        case 404: {
          const std::string r = route_of(req.path);
          if (r != "other" && r != "/v1/models/{id}") {
            res.status = 405;
            msg = fmt::format("method {} is not allowed on {}", req.method, r);
            code = "method_not_allowed";
          } else {
            msg = fmt::format("unknown endpoint: {} {}", req.method, req.path);
            code = "not_found";
          }
          break;
        }
        case 413:
          msg = fmt::format("the request body is larger than {} bytes", o.max_body_bytes);
          code = "payload_too_large";
          break;
        case 414: msg = "the request URI is too long"; code = "uri_too_long"; break;
        case 400: msg = "malformed HTTP request"; code = "bad_request"; break;
        default: msg = fmt::format("HTTP error {}", res.status); break;
      }
      res.set_content(dump(error_body(ApiError(res.status, msg, type, "", code))), "application/json");
      return httplib::Server::HandlerResponse::Handled;
    }));

    http.set_exception_handler([](const httplib::Request&, httplib::Response& res, std::exception_ptr ep) {
      std::string what = "unknown exception";
      try {
        std::rethrow_exception(ep);
      } catch (const std::exception& e) {
        what = e.what();
      } catch (...) {
      }
      send_error(res, ApiError(500, "internal error: " + what, "server_error", "", "internal_error"));
    });

    // Counted in the post-routing handler, which runs before the response is written (the logger
    // runs after it): a client that reads /metrics right after a response sees that response counted.
    http.set_post_routing_handler([this](const httplib::Request& req, httplib::Response& res) {
      metrics.on_response(route_of(req.path), res.status);
    });

    http.Get("/health", [this](const httplib::Request&, httplib::Response& res) {
      const auto m = eng.metrics();
      json j = {{"status", "ok"},
                {"model", o.model_id},
                {"context", cap.ctx},
                {"running", m.running},
                {"waiting", m.admitted - m.running + m.waiting},
                {"kv_bytes_in_use", m.kv_bytes_in_use},
                {"kv_budget_bytes", m.kv_budget_bytes},
                {"rss_bytes", resident_bytes()}};
      res.set_content(dump(j), "application/json");
    });
    http.Get("/metrics", [this](const httplib::Request&, httplib::Response& res) {
      res.set_content(metrics.render(eng.metrics(), policy_names, o.model_id, resident_bytes()),
                      "text/plain; version=0.0.4; charset=utf-8");
    });
    http.Get("/v1/models", [this](const httplib::Request&, httplib::Response& res) {
      res.set_content(dump(json{{"object", "list"}, {"data", json::array({model_json()})}}), "application/json");
    });
    http.Get(R"(/v1/models/(.+))", [this](const httplib::Request& req, httplib::Response& res) {
      const std::string id = req.matches[1];
      if (id != o.model_id)
        return send_error(res, ApiError(404, fmt::format("the model '{}' does not exist: this server serves '{}'", id, o.model_id),
                                        "invalid_request_error", "model", "model_not_found"));
      res.set_content(dump(model_json()), "application/json");
    });
    http.Post("/v1/completions", [this](const httplib::Request& req, httplib::Response& res) {
      guarded(res, [&] { generate(Endpoint::Completions, req, res); });
    });
    http.Post("/v1/chat/completions", [this](const httplib::Request& req, httplib::Response& res) {
      guarded(res, [&] { generate(Endpoint::Chat, req, res); });
    });
    http.Post("/tokenize", [this](const httplib::Request& req, httplib::Response& res) {
      guarded(res, [&] { tokenize(req, res); });
    });
    http.Post("/detokenize", [this](const httplib::Request& req, httplib::Response& res) {
      guarded(res, [&] { detokenize(req, res); });
    });
  }

  json model_json() const {
    return json{{"id", o.model_id},
                {"object", "model"},
                {"created", 0},
                {"owned_by", "harmonia"},
                {"context_length", cap.ctx}};
  }

  // Maps what a handler throws onto the response: ApiError as given, our input
  // errors as 400, anything else as 500 (our fault).
  template <class F>
  void guarded(httplib::Response& res, F&& f) {
    try {
      f();
    } catch (const ApiError& e) {
      send_error(res, e);
    } catch (const engine::QueueFull& e) {
      res.set_header("Retry-After", "1");
      send_error(res, ApiError(429, e.what(), "rate_limit_error", "", "queue_full"));
    } catch (const Error& e) {
      if (e.kind() == ErrorKind::Internal) send_error(res, ApiError(500, e.what(), "server_error", "", "internal_error"));
      else send_error(res, ApiError(400, e.what(), "invalid_request_error", "", "invalid_value"));
    } catch (const json::exception& e) {
      send_error(res, ApiError(400, std::string("invalid request: ") + e.what(), "invalid_request_error", "", "invalid_value"));
    } catch (const std::bad_alloc&) {
      send_error(res, ApiError(500, "out of memory", "server_error", "", "internal_error"));
    } catch (const std::exception& e) {
      send_error(res, ApiError(500, std::string("internal error: ") + e.what(), "server_error", "", "internal_error"));
    }
  }

  // ---- /tokenize, /detokenize ---------------------------------------------------------

  void tokenize(const httplib::Request& req, httplib::Response& res) {
    const json j = parse_body(req.body);
    for (auto it = j.begin(); it != j.end(); ++it)
      if (it.key() != "model" && it.key() != "prompt" && it.key() != "messages" && it.key() != "add_special_tokens" &&
          it.key() != "return_pieces")
        bad_request(it.key(), fmt::format("unrecognized request argument '{}' (accepted here: model, prompt, messages, add_special_tokens, return_pieces)", it.key()),
                    "unknown_field");
    if (j.contains("model") && !j["model"].is_null()) {
      if (!j["model"].is_string()) bad_request("model", "'model' must be a string", "invalid_type");
      if (j["model"] != o.model_id && j["model"] != target.path)
        throw ApiError(404, fmt::format("the model '{}' does not exist: this server serves '{}'", j["model"].get<std::string>(), o.model_id),
                       "invalid_request_error", "model", "model_not_found");
    }
    const Tokenizer& tok = *target.tokenizer;
    bool add_special = true, pieces = false;
    if (j.contains("add_special_tokens") && !j["add_special_tokens"].is_null()) {
      if (!j["add_special_tokens"].is_boolean()) bad_request("add_special_tokens", "'add_special_tokens' must be a boolean", "invalid_type");
      add_special = j["add_special_tokens"].get<bool>();
    }
    if (j.contains("return_pieces") && !j["return_pieces"].is_null()) {
      if (!j["return_pieces"].is_boolean()) bad_request("return_pieces", "'return_pieces' must be a boolean", "invalid_type");
      pieces = j["return_pieces"].get<bool>();
    }
    const bool has_prompt = j.contains("prompt") && !j["prompt"].is_null();
    const bool has_messages = j.contains("messages") && !j["messages"].is_null();
    if (has_prompt == has_messages) bad_request("prompt", "give exactly one of 'prompt' (text) and 'messages' (chat)", "missing_field");
    std::vector<int32_t> ids;
    if (has_messages) {
      ids = chat_prompt(j["messages"], tok);
    } else {
      if (!j["prompt"].is_string()) bad_request("prompt", "'prompt' must be a string", "invalid_type");
      ids = tok.encode(j["prompt"].get<std::string>(), add_special && tok.bos_id() >= 0 && tok.add_bos_default());
    }
    json out = {{"tokens", ids}, {"count", ids.size()}, {"max_model_len", cap.ctx}};
    if (pieces) {
      json p = json::array();
      for (int32_t id : ids) p.push_back(tok.token_bytes(id));
      out["pieces"] = p;
    }
    res.set_content(dump(out), "application/json");
  }

  void detokenize(const httplib::Request& req, httplib::Response& res) {
    const json j = parse_body(req.body);
    for (auto it = j.begin(); it != j.end(); ++it)
      if (it.key() != "model" && it.key() != "tokens")
        bad_request(it.key(), fmt::format("unrecognized request argument '{}' (accepted here: model, tokens)", it.key()), "unknown_field");
    if (!j.contains("tokens") || !j["tokens"].is_array()) bad_request("tokens", "'tokens' must be an array of token ids", "invalid_type");
    const int32_t V = target.config.vocab_size;
    std::vector<int32_t> ids;
    for (size_t i = 0; i < j["tokens"].size(); ++i) {
      const json& t = j["tokens"][i];
      if (!t.is_number_integer() && !t.is_number_unsigned())
        bad_request(fmt::format("tokens[{}]", i), fmt::format("'tokens[{}]' must be an integer token id", i), "invalid_type");
      const bool neg = t.is_number_integer() && !t.is_number_unsigned() && t.get<int64_t>() < 0;
      if (neg || t.get<uint64_t>() >= static_cast<uint64_t>(V))
        bad_request(fmt::format("tokens[{}]", i), fmt::format("token id {} is outside the vocabulary [0, {})", t.dump(), V), "invalid_value");
      ids.push_back(static_cast<int32_t>(t.get<int64_t>()));
    }
    res.set_content(dump(json{{"prompt", target.tokenizer->decode(ids)}}), "application/json");
  }

  // ---- generation ---------------------------------------------------------------------

  // The engine callback: runs on the engine thread, so it only queues.
  engine::Callback callback(std::shared_ptr<RequestChannel> ch) {
    const double delay = o.debug_event_delay_ms;
    return [this, ch, delay](const engine::Event& e) {
      if (delay > 0) std::this_thread::sleep_for(std::chrono::duration<double, std::milli>(delay));
      if (e.done && e.error.empty()) metrics.on_finished(e.usage, e.ttft_ms, e.latency_ms);
      ch->push(e);
    };
  }

  ApiError failure(const std::string& error) const {
    if (error == "cancelled")
      return ApiError(503, "the request was cancelled: the server is shutting down", "server_error", "", "shutting_down");
    return ApiError(500, "generation failed: " + error, "server_error", "", "internal_error");
  }

  int64_t submit(const engine::RequestOptions& r, const std::shared_ptr<RequestChannel>& ch) {
    std::lock_guard<std::mutex> lk(submit_mu);
    if (engine_stopped) throw ApiError(503, "the server is shutting down", "server_error", "", "shutting_down");
    return eng.submit(r, callback(ch));
  }

  struct StreamState {
    ParsedRequest pr;
    std::unique_ptr<ResponseBuilder> rb;
    std::shared_ptr<RequestChannel> ch;
    int64_t id = -1;
    bool started = false, finished = false;
  };

  void generate(Endpoint ep, const httplib::Request& req, httplib::Response& res) {
    auto st = std::make_shared<StreamState>();
    st->pr = parse_request(ep, req.body, pc);
    st->rb = std::make_unique<ResponseBuilder>(st->pr, *target.tokenizer, o.model_id);
    st->ch = std::make_shared<RequestChannel>();
    st->id = submit(st->pr.r, st->ch);
    if (st->pr.stream) return stream(st, res);

    active++;
    Completion c;
    std::string error;
    std::vector<engine::Event> evs;
    for (bool done = false; !done;) {
      if (!st->ch->pop(evs, 100ms)) {
        if (engine_gone && !st->ch->finished()) {  // cannot happen (stop() ends every request); never hang
          error = "cancelled";
          break;
        }
        continue;
      }
      for (const auto& e : evs) {
        c.text += e.text;
        c.tokens.insert(c.tokens.end(), e.tokens.begin(), e.tokens.end());
        if (e.done) {
          done = true;
          c.reason = e.reason;
          c.usage = e.usage;
          error = e.error;
        }
      }
    }
    active--;
    if (!error.empty()) return send_error(res, failure(error));
    res.set_content(dump(st->rb->full(c)), "application/json");
  }

  void stream(const std::shared_ptr<StreamState>& st, httplib::Response& res) {
    active++;
    res.set_header("Cache-Control", "no-cache");
    res.set_header("X-Accel-Buffering", "no");
    res.set_chunked_content_provider(
        "text/event-stream",
        [this, st](size_t, httplib::DataSink& sink) -> bool {
          if (st->finished) {
            sink.done();
            return true;
          }
          const ParsedRequest& pr = st->pr;
          std::string out;
          if (!st->started) {
            st->started = true;
            if (pr.endpoint == Endpoint::Chat) out += sse_data(dump(st->rb->role_chunk()));
          }
          std::vector<engine::Event> evs;
          st->ch->pop(evs, 50ms);
          for (const auto& e : evs) {
            if (!e.text.empty() || (!e.tokens.empty() && (pr.logprobs || pr.return_token_ids)))
              out += sse_data(dump(st->rb->delta_chunk(e.text, e.tokens)));
            if (!e.done) continue;
            st->finished = true;
            if (!e.error.empty()) {
              out += sse_data(dump(error_body(failure(e.error))));
            } else {
              out += sse_data(dump(st->rb->finish_chunk(e.reason)));
              if (pr.include_usage) out += sse_data(dump(st->rb->usage_chunk(e.usage)));
            }
            out += kSseDone;
            break;
          }
          if (!out.empty() && !sink.write(out.data(), out.size())) return false;  // client gone: released below
          if (st->finished) sink.done();
          else if (out.empty() && !sink.is_writable()) return false;  // client gone while we waited
          return true;
        },
        [this, st](bool) {
          // Ends the request if the stream stopped early (client disconnected,
          // write timeout, shutdown): cancelling frees its KV cache.
          if (!st->ch->finished()) eng.cancel(st->id);
          active--;
        });
  }

  // ---- lifecycle ----------------------------------------------------------------------

  int start() {
    if (o.port == 0) {
      port = http.bind_to_any_port(o.host);
      if (port < 0) fail(ErrorKind::Io, "cannot listen on {} (any port): address not available", o.host);
    } else {
      if (o.port < 0 || o.port > 65535) fail(ErrorKind::InvalidInput, "--port must be in [0, 65535], got {}", o.port);
      if (!http.bind_to_port(o.host, o.port))
        fail(ErrorKind::Io, "cannot listen on {}:{}: address in use or not available", o.host, o.port);
      port = o.port;
    }
    eng.start();
    listen_thread = std::thread([this] { http.listen_after_bind(); });
    return port;
  }

  void shutdown(double grace_s) {
    std::lock_guard<std::mutex> lk(shutdown_mu);
    if (shut) return;
    shut = true;
    draining = true;
    if (listen_thread.joinable()) {
      // listen_after_bind has begun (it sets is_running at once; bounded in case it failed)
      for (int i = 0; i < 2000 && !http.is_running(); ++i) std::this_thread::sleep_for(1ms);
      http.stop_accepting();
    }
    const double deadline = now_ms() + std::max(0.0, grace_s) * 1000.0;
    while (active > 0 && now_ms() < deadline) std::this_thread::sleep_for(10ms);
    {
      std::lock_guard<std::mutex> slk(submit_mu);
      engine_stopped = true;
    }
    eng.stop();  // cancels what is left: every request gets its final event
    engine_gone = true;
    if (listen_thread.joinable()) listen_thread.join();  // the accept loop ended; waits for the workers
  }
};

Server::Server(const Model& target, const Model* draft, ServerOptions o)
    : impl_(std::make_unique<Impl>(target, draft, std::move(o))) {
  // A client that vanishes mid-write must not kill the process (httplib also ignores it).
  std::signal(SIGPIPE, SIG_IGN);
}

Server::~Server() { shutdown(0); }

int Server::start() { return impl_->start(); }
void Server::shutdown(double grace_s) { impl_->shutdown(grace_s); }
int Server::port() const { return impl_->port; }
const Capacity& Server::capacity() const { return impl_->cap; }
engine::Engine& Server::engine() { return impl_->eng; }
const ServerMetrics& Server::metrics() const { return impl_->metrics; }
const ServerOptions& Server::options() const { return impl_->o; }

}  // namespace harmonia::server
