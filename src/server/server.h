#pragma once
// The OpenAI-compatible HTTP server (`harmonia serve`): cpp-httplib in front of
// the in-process serving engine (engine/engine.h).
//
// Endpoints (docs/serving.md):
//   POST /v1/completions, POST /v1/chat/completions   (stream: server-sent events)
//   GET  /v1/models, GET /v1/models/{id}, GET /health, GET /metrics (Prometheus)
//   POST /tokenize, POST /detokenize
// Errors are OpenAI's shape {"error": {"message", "type", "param", "code"}}:
// client faults 4xx (400 bad input, 401 API key, 404 unknown model or path,
// 413 body too large, 429 queue full with Retry-After, 503 shutting down), our
// own faults 500. One bad request never takes the server or other requests down.
//
// Threads: cpp-httplib's worker pool parses requests and writes responses; the
// engine's own thread runs the step loop and hands each request's events to
// its worker through a RequestChannel (server/sse.h). A streaming client that
// disconnects is noticed within ~50 ms (or at the next write) and its request
// is cancelled, which frees its KV cache.
#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "engine/engine.h"
#include "kv/spec.h"
#include "server/metrics.h"
#include "spec/drafter.h"

namespace harmonia::server {

struct ServerOptions {
  std::string host = "127.0.0.1";
  int port = 8080;                       // 0 = any free port (Server::start returns it)
  std::string api_key;                   // non-empty: /v1/*, /tokenize, /detokenize need "Authorization: Bearer KEY"
  std::string model_id;                  // name in /v1/models and in "model" (default: the model file's stem)
  std::vector<kv::PolicySpec> kv{{"full", {}}};  // the first is the requests' default; all are reported at start-up
  spec::SpecOptions speculative;         // requests' default drafter (drafter "none" = plain decoding)
  engine::EngineOptions engine;
  // Larger request bodies get 413. Tokenizing costs ~1-3 us per byte of prompt,
  // so this also bounds the work one request can cause before it is refused.
  size_t max_body_bytes = 2u << 20;
  int http_threads = 32;                 // worker threads (each open connection holds one)
  int read_timeout_s = 10;               // a client slower than this to send its request is dropped
  int write_timeout_s = 10;              // a client that reads nothing for this long is dropped (its request cancelled)
  int keep_alive_timeout_s = 5;          // idle keep-alive connections close after this
  // Tests only: the engine thread sleeps this long at each event it delivers, so
  // a tiny model generates slowly enough to disconnect mid-stream or fill the queue.
  double debug_event_delay_ms = 0;
};

// What the deployment can hold, printed at start-up and served at /health.
struct Capacity {
  int64_t ctx = 0;               // tokens per sequence
  size_t kv_budget_bytes = 0;    // 0 = unlimited
  int max_seqs = 0;              // sequences per step
  struct Row {
    std::string policy;          // label, e.g. "fourier(window=64)"
    size_t bytes_at_ctx = 0;     // KV bytes of one sequence at ctx tokens
    double bytes_per_token = 0;  // bytes_at_ctx / ctx
    int64_t sequences = -1;      // sequences of ctx tokens that fit the budget (-1: unlimited budget)
  };
  std::vector<Row> rows;         // one per ServerOptions::kv entry
  std::string text() const;      // the start-up lines
};

class Server {
 public:
  // The models must outlive the server. Throws Error(InvalidInput) for bad
  // options (unknown KV policy or scheduler, a model without a tokenizer).
  Server(const Model& target, const Model* draft, ServerOptions o);
  ~Server();  // shutdown(0)
  Server(const Server&) = delete;
  Server& operator=(const Server&) = delete;

  // Binds host:port and starts the engine and the HTTP threads; returns the
  // bound port. Throws Error(Io) when it cannot listen there.
  int start();
  // Graceful stop (SIGTERM): new requests get 503 and new connections are
  // refused; in-flight requests get up to grace_s seconds to finish, then the
  // rest are cancelled (their streams end with an error event and [DONE]);
  // returns when every worker has finished. Idempotent.
  void shutdown(double grace_s);

  int port() const;
  const Capacity& capacity() const;
  engine::Engine& engine();
  const ServerMetrics& metrics() const;
  const ServerOptions& options() const;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace harmonia::server
