#pragma once
// The OpenAI wire format: request bodies of /v1/completions and
// /v1/chat/completions parsed and validated into engine::RequestOptions, and
// the response objects (whole, and the chunks of a server-sent-event stream).
//
// Every client mistake becomes an ApiError with the HTTP status and OpenAI's
// error object {"error": {"message", "type", "param", "code"}}; `param` names
// the offending field as the client wrote it ("messages[2].role",
// "kv.options.window"). Unknown top-level fields are rejected (OpenAI does the
// same: "Unrecognized request argument"), so typos never pass silently.
//
// Fields (OpenAI's, with its defaults unless noted):
//   model, prompt (string | [string] | [token ids]) / messages, max_tokens
//   (completions 16, chat: the rest of the context; chat also max_completion_tokens),
//   temperature (1), top_p (1), seed (random), stop (string | up to 4 strings),
//   stream, stream_options.include_usage, logprobs (completions: 0..20 alternatives;
//   chat: bool + top_logprobs 0..20), presence_penalty, frequency_penalty (0),
//   user (ignored), n / best_of (1 only), echo (false only), logit_bias (empty only).
// Extensions (ours): kv ("name:k=v" or {"policy", "options": {k: v}}),
//   speculative ({"drafter", "n", "adaptive"}), priority (int), ignore_eos (bool),
//   top_k (0 = off), min_p (0 = off), return_token_ids (bool: "token_ids" in each choice).
#include <cstdint>
#include <functional>
#include <stdexcept>
#include <string>
#include <string_view>
#include <vector>

#include <nlohmann/json.hpp>

#include "engine/engine.h"
#include "kv/spec.h"
#include "spec/drafter.h"
#include "tokenizer/tokenizer.h"

namespace harmonia::server {

using nlohmann::json;

// A failure the client is told about: HTTP status + OpenAI error object.
class ApiError : public std::runtime_error {
 public:
  ApiError(int status, std::string message, std::string type = "invalid_request_error", std::string param = "",
           std::string code = "")
      : std::runtime_error(message), status(status), type(std::move(type)), param(std::move(param)),
        code(std::move(code)) {}
  int status;
  std::string type;   // invalid_request_error | authentication_error | rate_limit_error | server_error
  std::string param;  // "" -> null
  std::string code;   // "" -> null
};

// 400 invalid_request_error naming `param`.
[[noreturn]] void bad_request(const std::string& param, const std::string& message, const std::string& code = "");

// {"error": {"message", "type", "param", "code"}}
json error_body(const ApiError& e);
// JSON text with invalid UTF-8 replaced by U+FFFD (generated text and echoed input may hold any bytes).
std::string dump(const json& j);

enum class Endpoint { Completions, Chat };

// What request parsing needs to know about the deployment.
struct ParseContext {
  const Tokenizer* tok = nullptr;  // required
  int64_t ctx = 0;                 // context size in tokens
  int32_t vocab_size = 0;
  std::string model_id;            // the served model's name; "model" must match it (or be absent)
  std::string model_path;          // also accepted as "model"
  kv::PolicySpec default_kv{"full", {}};
  spec::SpecOptions default_spec;
  // Throws Error(InvalidInput) when the engine cannot run this KV policy (unknown name or option).
  std::function<void(const kv::PolicySpec&)> check_kv;
};

struct ParsedRequest {
  Endpoint endpoint = Endpoint::Completions;
  engine::RequestOptions r;  // prompt tokenized; sampling, stop, kv, speculative set
  bool stream = false;
  bool include_usage = false;  // stream_options.include_usage
  bool logprobs = false;       // report logprobs (r.top_logprobs >= 0)
  bool return_token_ids = false;
};

// Parses and validates a request body. Throws ApiError (400 for malformed or
// out-of-range input, 404 for an unknown model).
ParsedRequest parse_request(Endpoint ep, std::string_view body, const ParseContext& pc);

// Parses a JSON object body (depth-limited). Throws ApiError 400.
json parse_body(std::string_view body);
// Prompt tokens of a chat conversation ("messages" as in a chat request). Throws ApiError 400.
std::vector<int32_t> chat_prompt(const json& messages, const Tokenizer& tok);
// Prompt tokens of a completions "prompt" value (string, [string], or token ids). Throws ApiError 400.
std::vector<int32_t> text_prompt(const json& prompt, const Tokenizer& tok, int32_t vocab_size);

// ---- responses ------------------------------------------------------------------------

// What a finished (or finishing) request produced.
struct Completion {
  std::string text;
  std::vector<engine::TokenInfo> tokens;
  StopReason reason = StopReason::None;
  engine::Usage usage;
};

// Builds response objects for one request.
class ResponseBuilder {
 public:
  ResponseBuilder(const ParsedRequest& pr, const Tokenizer& tok, std::string model_id);
  const std::string& id() const { return id_; }

  // The whole response of a non-streamed request.
  json full(const Completion& c) const;
  // Stream chunks. The first chat chunk carries the role.
  json role_chunk() const;
  // Text and tokens of one step (either may be empty).
  json delta_chunk(const std::string& text, const std::vector<engine::TokenInfo>& tokens) const;
  json finish_chunk(StopReason reason) const;
  json usage_chunk(const engine::Usage& u) const;

 private:
  json choice_logprobs(const std::vector<engine::TokenInfo>& tokens, size_t text_offset) const;
  json base(const char* object) const;
  json usage_json(const engine::Usage& u) const;
  const ParsedRequest& pr_;
  const Tokenizer& tok_;
  std::string model_;
  std::string id_;
  int64_t created_ = 0;
  mutable size_t text_offset_ = 0;  // completions logprobs: bytes of token text streamed so far
};

}  // namespace harmonia::server
