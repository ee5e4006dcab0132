#include "server/openai.h"

#include <chrono>
#include <cmath>
#include <limits>
#include <random>
#include <set>

#include <fmt/format.h>

#include "common/error.h"

namespace harmonia::server {

namespace {

// Deeper JSON than this is refused before parsing: no client of ours needs it,
// and it bounds the parser's stack and the work of the rest of the request.
constexpr int kMaxJsonDepth = 64;
constexpr int kMaxStop = 4;            // OpenAI's limit on stop strings
constexpr int kMaxTopLogprobs = 20;    // OpenAI's limit (the engine's too)

const char* type_name(const json& v) {
  switch (v.type()) {
    case json::value_t::null: return "null";
    case json::value_t::boolean: return "a boolean";
    case json::value_t::string: return "a string";
    case json::value_t::number_integer:
    case json::value_t::number_unsigned: return "an integer";
    case json::value_t::number_float: return "a number";
    case json::value_t::array: return "an array";
    case json::value_t::object: return "an object";
    default: return "an unsupported value";
  }
}

// A field that is there and not null (OpenAI's optional fields are nullable).
const json* field(const json& o, const char* key) {
  auto it = o.find(key);
  if (it == o.end() || it->is_null()) return nullptr;
  return &*it;
}

double get_number(const json& v, const std::string& param, double lo, double hi, bool lo_open = false) {
  if (!v.is_number()) bad_request(param, fmt::format("'{}' must be a number, got {}", param, type_name(v)), "invalid_type");
  const double x = v.get<double>();
  if (!(x >= lo && x <= hi) || (lo_open && x == lo))
    bad_request(param, fmt::format("'{}' must be in {}{}, {}], got {}", param, lo_open ? "(" : "[", lo, hi, x), "invalid_value");
  return x;
}

int64_t get_int(const json& v, const std::string& param, int64_t lo, int64_t hi) {
  auto range = [&](const std::string& shown) {
    bad_request(param, fmt::format("'{}' must be an integer in [{}, {}], got {}", param, lo, hi, shown), "invalid_value");
  };
  if (v.is_number_unsigned()) {
    const uint64_t u = v.get<uint64_t>();
    if (u > static_cast<uint64_t>(std::numeric_limits<int64_t>::max()) || static_cast<int64_t>(u) > hi || static_cast<int64_t>(u) < lo)
      range(std::to_string(u));
    return static_cast<int64_t>(u);
  }
  if (v.is_number_integer()) {
    const int64_t x = v.get<int64_t>();
    if (x < lo || x > hi) range(std::to_string(x));
    return x;
  }
  if (v.is_number_float()) {
    const double d = v.get<double>();
    // 5.0 is an integer to JSON clients in languages without one.
    if (std::isfinite(d) && d == std::floor(d) && std::fabs(d) < 9.0e15) {
      const auto x = static_cast<int64_t>(d);
      if (x < lo || x > hi) range(fmt::format("{}", d));
      return x;
    }
    bad_request(param, fmt::format("'{}' must be an integer, got {}", param, d), "invalid_type");
  }
  bad_request(param, fmt::format("'{}' must be an integer, got {}", param, type_name(v)), "invalid_type");
}

bool get_bool(const json& v, const std::string& param) {
  if (!v.is_boolean()) bad_request(param, fmt::format("'{}' must be a boolean, got {}", param, type_name(v)), "invalid_type");
  return v.get<bool>();
}

const std::string& get_string(const json& v, const std::string& param) {
  if (!v.is_string()) bad_request(param, fmt::format("'{}' must be a string, got {}", param, type_name(v)), "invalid_type");
  return v.get_ref<const std::string&>();
}

void check_keys(const json& o, const std::set<std::string>& allowed, const std::string& prefix) {
  for (auto it = o.begin(); it != o.end(); ++it)
    if (!allowed.count(it.key())) {
      std::string list;
      for (const auto& a : allowed) list += (list.empty() ? "" : ", ") + a;
      const std::string p = prefix.empty() ? it.key() : prefix + "." + it.key();
      bad_request(p, fmt::format("unrecognized request argument '{}' (accepted here: {})", p, list), "unknown_field");
    }
}

int json_depth(std::string_view s) {
  int depth = 0, max_depth = 0;
  bool in_str = false, esc = false;
  for (char c : s) {
    if (in_str) {
      if (esc) esc = false;
      else if (c == '\\') esc = true;
      else if (c == '"') in_str = false;
    } else if (c == '"') {
      in_str = true;
    } else if (c == '[' || c == '{') {
      max_depth = std::max(max_depth, ++depth);
      if (max_depth > kMaxJsonDepth) return max_depth;
    } else if (c == ']' || c == '}') {
      --depth;
    }
  }
  return max_depth;
}

kv::PolicySpec parse_kv(const json& v, const ParseContext& pc) {
  kv::PolicySpec spec;
  try {
    if (v.is_string()) {
      spec = kv::parse_policy_spec(v.get<std::string>());
    } else if (v.is_object()) {
      check_keys(v, {"policy", "options"}, "kv");
      const json* name = field(v, "policy");
      if (!name) bad_request("kv.policy", "'kv.policy' is required (e.g. {\"policy\": \"fourier\", \"options\": {\"window\": 64}})", "missing_field");
      spec.name = get_string(*name, "kv.policy");
      if (const json* opts = field(v, "options")) {
        if (!opts->is_object()) bad_request("kv.options", fmt::format("'kv.options' must be an object, got {}", type_name(*opts)), "invalid_type");
        for (auto it = opts->begin(); it != opts->end(); ++it) {
          const std::string p = "kv.options." + it.key();
          const json& x = it.value();
          std::string s;
          if (x.is_string()) s = x.get<std::string>();
          else if (x.is_boolean()) s = x.get<bool>() ? "true" : "false";
          else if (x.is_number_integer() || x.is_number_unsigned()) s = x.dump();
          else if (x.is_number_float()) s = fmt::format("{}", x.get<double>());
          else bad_request(p, fmt::format("'{}' must be a string, number or boolean, got {}", p, type_name(x)), "invalid_type");
          spec.options[it.key()] = s;
        }
      }
    } else {
      bad_request("kv", fmt::format("'kv' must be a string (\"name:k=v\") or an object, got {}", type_name(v)), "invalid_type");
    }
    if (pc.check_kv) pc.check_kv(spec);
  } catch (const Error& e) {
    bad_request("kv", e.what(), "invalid_value");
  }
  return spec;
}

spec::SpecOptions parse_speculative(const json& v, spec::SpecOptions so) {
  if (v.is_string()) {
    so.drafter = v.get<std::string>();
  } else if (v.is_object()) {
    check_keys(v, {"drafter", "n", "adaptive", "layers", "ngram_max", "ngram_min"}, "speculative");
    if (const json* x = field(v, "drafter")) so.drafter = get_string(*x, "speculative.drafter");
    if (const json* x = field(v, "n")) so.n = static_cast<int>(get_int(*x, "speculative.n", 1, 16));
    if (const json* x = field(v, "adaptive")) so.adaptive = get_bool(*x, "speculative.adaptive");
    if (const json* x = field(v, "layers")) so.layers = static_cast<int>(get_int(*x, "speculative.layers", 0, 1024));
    if (const json* x = field(v, "ngram_max")) so.ngram_max = static_cast<int>(get_int(*x, "speculative.ngram_max", 1, 64));
    if (const json* x = field(v, "ngram_min")) so.ngram_min = static_cast<int>(get_int(*x, "speculative.ngram_min", 1, 64));
  } else {
    bad_request("speculative", fmt::format("'speculative' must be an object or a drafter name, got {}", type_name(v)), "invalid_type");
  }
  try {
    so.validate();
  } catch (const Error& e) {
    bad_request("speculative", e.what(), "invalid_value");
  }
  return so;
}

std::vector<std::string> parse_stop(const json& v) {
  std::vector<std::string> out;
  auto one = [&](const json& s, const std::string& p) {
    const std::string& str = get_string(s, p);
    if (str.empty()) bad_request(p, fmt::format("'{}' must not be an empty string", p), "invalid_value");
    out.push_back(str);
  };
  if (v.is_string()) {
    one(v, "stop");
  } else if (v.is_array()) {
    if (v.size() > static_cast<size_t>(kMaxStop))
      bad_request("stop", fmt::format("'stop' may hold at most {} strings, got {}", kMaxStop, v.size()), "invalid_value");
    for (size_t i = 0; i < v.size(); ++i) one(v[i], fmt::format("stop[{}]", i));
  } else {
    bad_request("stop", fmt::format("'stop' must be a string or an array of strings, got {}", type_name(v)), "invalid_type");
  }
  return out;
}

// OpenAI fields we accept only at their neutral value.
void neutral_only(const json& j, Endpoint ep) {
  if (const json* x = field(j, "n"); x && get_int(*x, "n", 1, 128) != 1)
    bad_request("n", "'n' must be 1: one choice per request is supported", "unsupported_value");
  if (const json* x = field(j, "logit_bias")) {
    if (!x->is_object()) bad_request("logit_bias", fmt::format("'logit_bias' must be an object, got {}", type_name(*x)), "invalid_type");
    if (!x->empty()) bad_request("logit_bias", "'logit_bias' is not supported by this server", "unsupported_value");
  }
  if (ep == Endpoint::Completions) {
    if (const json* x = field(j, "best_of"); x && get_int(*x, "best_of", 1, 128) != 1)
      bad_request("best_of", "'best_of' must be 1", "unsupported_value");
    if (const json* x = field(j, "echo"); x && get_bool(*x, "echo"))
      bad_request("echo", "'echo' is not supported by this server", "unsupported_value");
    if (const json* x = field(j, "suffix"); x && !get_string(*x, "suffix").empty())
      bad_request("suffix", "'suffix' is not supported by this server", "unsupported_value");
    return;
  }
  for (const char* k : {"tools", "functions", "function_call", "audio", "prediction", "reasoning_effort", "web_search_options"})
    if (const json* x = field(j, k); x && !(x->is_array() && x->empty()))
      bad_request(k, fmt::format("'{}' is not supported by this server", k), "unsupported_value");
  if (const json* x = field(j, "tool_choice"); x && !(x->is_string() && (*x == "none" || *x == "auto")))
    bad_request("tool_choice", "'tool_choice' is not supported by this server (only \"none\")", "unsupported_value");
  if (const json* x = field(j, "response_format")) {
    if (!x->is_object() || !x->contains("type") || (*x)["type"] != "text")
      bad_request("response_format", "'response_format' supports only {\"type\": \"text\"}", "unsupported_value");
  }
  if (const json* x = field(j, "modalities"); x && *x != json::array({"text"}))
    bad_request("modalities", "'modalities' supports only [\"text\"]", "unsupported_value");
}

std::string random_id(const char* prefix) {
  thread_local std::mt19937_64 rng{std::random_device{}()};
  return fmt::format("{}{:016x}{:08x}", prefix, rng(), static_cast<uint32_t>(rng()));
}

}  // namespace

void bad_request(const std::string& param, const std::string& message, const std::string& code) {
  throw ApiError(400, message, "invalid_request_error", param, code);
}

json error_body(const ApiError& e) {
  return json{{"error",
               {{"message", e.what()},
                {"type", e.type},
                {"param", e.param.empty() ? json(nullptr) : json(e.param)},
                {"code", e.code.empty() ? json(nullptr) : json(e.code)}}}};
}

std::string dump(const json& j) { return j.dump(-1, ' ', false, json::error_handler_t::replace); }

json parse_body(std::string_view body) {
  if (json_depth(body) > kMaxJsonDepth)
    bad_request("", fmt::format("malformed request: JSON nested deeper than {} levels", kMaxJsonDepth), "invalid_json");
  json j;
  try {
    j = json::parse(body.begin(), body.end());
  } catch (const json::exception& e) {
    std::string m = e.what();
    if (auto p = m.find("] "); m.rfind("[json.exception.", 0) == 0 && p != std::string::npos) m = m.substr(p + 2);
    bad_request("", "malformed JSON in the request body: " + m, "invalid_json");
  }
  if (!j.is_object()) bad_request("", fmt::format("the request body must be a JSON object, got {}", type_name(j)), "invalid_type");
  return j;
}

std::vector<int32_t> text_prompt(const json& v, const Tokenizer& tok, int32_t vocab) {
  const bool bos = tok.bos_id() >= 0 && tok.add_bos_default();
  if (v.is_string()) return tok.encode(v.get<std::string>(), bos);
  if (v.is_array()) {
    if (v.empty()) bad_request("prompt", "'prompt' must not be an empty array", "invalid_value");
    if (v.size() == 1 && v[0].is_string()) return tok.encode(v[0].get<std::string>(), bos);
    if (v[0].is_string())
      bad_request("prompt", fmt::format("batched prompts are not supported: send one prompt per request (got {})", v.size()),
                  "unsupported_value");
    std::vector<int32_t> ids;
    ids.reserve(v.size());
    for (size_t i = 0; i < v.size(); ++i) {
      const std::string p = fmt::format("prompt[{}]", i);
      if (!v[i].is_number_integer() && !v[i].is_number_unsigned())
        bad_request(p, fmt::format("'{}' must be a token id (an integer), got {}", p, type_name(v[i])), "invalid_type");
      ids.push_back(static_cast<int32_t>(get_int(v[i], p, 0, vocab - 1)));
    }
    return ids;
  }
  bad_request("prompt", fmt::format("'prompt' must be a string, an array of one string, or an array of token ids, got {}", type_name(v)),
              "invalid_type");
}

std::vector<int32_t> chat_prompt(const json& v, const Tokenizer& tok) {
  if (!v.is_array()) bad_request("messages", fmt::format("'messages' must be an array, got {}", type_name(v)), "invalid_type");
  if (v.empty()) bad_request("messages", "'messages' must hold at least one message", "invalid_value");
  std::vector<ChatMessage> msgs;
  for (size_t i = 0; i < v.size(); ++i) {
    const std::string p = fmt::format("messages[{}]", i);
    const json& m = v[i];
    if (!m.is_object()) bad_request(p, fmt::format("'{}' must be an object, got {}", p, type_name(m)), "invalid_type");
    check_keys(m, {"role", "content", "name", "refusal"}, p);
    const json* role = field(m, "role");
    if (!role) bad_request(p + ".role", fmt::format("'{}.role' is required", p), "missing_field");
    std::string r = get_string(*role, p + ".role");
    if (r == "developer") r = "system";  // OpenAI's newer name for the system role
    if (r != "system" && r != "user" && r != "assistant")
      bad_request(p + ".role", fmt::format("'{}.role' must be system, developer, user or assistant, got '{}'", p, r), "invalid_value");
    std::string content;
    const json* c = field(m, "content");
    if (!c) {
      if (r != "assistant") bad_request(p + ".content", fmt::format("'{}.content' is required", p), "missing_field");
    } else if (c->is_string()) {
      content = c->get<std::string>();
    } else if (c->is_array()) {
      for (size_t k = 0; k < c->size(); ++k) {
        const std::string pp = fmt::format("{}.content[{}]", p, k);
        const json& part = (*c)[k];
        if (!part.is_object()) bad_request(pp, fmt::format("'{}' must be an object, got {}", pp, type_name(part)), "invalid_type");
        check_keys(part, {"type", "text"}, pp);
        const json* t = field(part, "type");
        if (!t || get_string(*t, pp + ".type") != "text")
          bad_request(pp + ".type", fmt::format("'{}.type' must be \"text\": only text content is supported", pp), "unsupported_value");
        const json* tx = field(part, "text");
        if (!tx) bad_request(pp + ".text", fmt::format("'{}.text' is required", pp), "missing_field");
        content += get_string(*tx, pp + ".text");
      }
    } else {
      bad_request(p + ".content", fmt::format("'{}.content' must be a string or an array of text parts, got {}", p, type_name(*c)),
                  "invalid_type");
    }
    if (const json* n = field(m, "name")) get_string(*n, p + ".name");
    msgs.push_back({r, std::move(content)});
  }
  std::string text;
  try {
    text = apply_chat_template(detect_chat_format(tok.chat_template()), msgs, true);
  } catch (const Error& e) {
    bad_request("messages", e.what(), "invalid_value");
  }
  return tok.encode(text, tok.bos_id() >= 0, /*parse_special=*/true);
}

ParsedRequest parse_request(Endpoint ep, std::string_view body, const ParseContext& pc) {
  const bool chat = ep == Endpoint::Chat;
  const json j = parse_body(body);
  if (const json* m = field(j, "model")) {
    const std::string& name = get_string(*m, "model");
    if (name != pc.model_id && name != pc.model_path)
      throw ApiError(404, fmt::format("the model '{}' does not exist: this server serves '{}'", name, pc.model_id),
                     "invalid_request_error", "model", "model_not_found");
  }
  static const std::set<std::string> common = {
      "model", "max_tokens", "temperature", "top_p", "n", "stream", "stream_options", "stop", "presence_penalty",
      "frequency_penalty", "logit_bias", "logprobs", "seed", "user",
      // ours
      "kv", "speculative", "priority", "ignore_eos", "top_k", "min_p", "return_token_ids"};
  static const std::set<std::string> completions_only = {"prompt", "best_of", "echo", "suffix"};
  static const std::set<std::string> chat_only = {
      "messages", "max_completion_tokens", "top_logprobs", "tools", "tool_choice", "functions", "function_call",
      "response_format", "parallel_tool_calls", "store", "metadata", "service_tier", "modalities", "audio",
      "prediction", "reasoning_effort", "web_search_options"};
  std::set<std::string> allowed = common;
  allowed.insert((chat ? chat_only : completions_only).begin(), (chat ? chat_only : completions_only).end());
  check_keys(j, allowed, "");
  neutral_only(j, ep);

  ParsedRequest pr;
  pr.endpoint = ep;
  engine::RequestOptions& r = pr.r;
  // OpenAI's sampling: temperature 1, nucleus 1, no top-k / min-p; penalties over the text so far.
  SamplingOptions& s = r.sampling;
  s.temperature = 1.0f;
  s.top_p = 1.0f;
  s.top_k = 0;
  s.min_p = 0.0f;
  s.repeat_last_n = -1;
  s.seed = SamplingOptions::kRandomSeed;
  if (const json* x = field(j, "temperature")) s.temperature = static_cast<float>(get_number(*x, "temperature", 0, 2));
  if (const json* x = field(j, "top_p")) s.top_p = static_cast<float>(get_number(*x, "top_p", 0, 1, /*lo_open=*/true));
  if (const json* x = field(j, "top_k")) s.top_k = static_cast<int32_t>(get_int(*x, "top_k", 0, pc.vocab_size));
  if (const json* x = field(j, "min_p")) s.min_p = static_cast<float>(get_number(*x, "min_p", 0, 1));
  if (const json* x = field(j, "presence_penalty")) s.presence_penalty = static_cast<float>(get_number(*x, "presence_penalty", -2, 2));
  if (const json* x = field(j, "frequency_penalty")) s.frequency_penalty = static_cast<float>(get_number(*x, "frequency_penalty", -2, 2));
  if (const json* x = field(j, "seed")) {
    if (x->is_number_unsigned()) s.seed = x->get<uint64_t>();
    else s.seed = static_cast<uint64_t>(get_int(*x, "seed", std::numeric_limits<int64_t>::min(), std::numeric_limits<int64_t>::max()));
  }
  if (const json* x = field(j, "user")) get_string(*x, "user");
  if (const json* x = field(j, "stream")) pr.stream = get_bool(*x, "stream");
  if (const json* x = field(j, "stream_options")) {
    if (!x->is_object()) bad_request("stream_options", fmt::format("'stream_options' must be an object, got {}", type_name(*x)), "invalid_type");
    if (!pr.stream) bad_request("stream_options", "'stream_options' is only allowed when 'stream' is true", "invalid_value");
    check_keys(*x, {"include_usage", "include_obfuscation"}, "stream_options");
    if (const json* u = field(*x, "include_usage")) pr.include_usage = get_bool(*u, "stream_options.include_usage");
    if (const json* o = field(*x, "include_obfuscation")) get_bool(*o, "stream_options.include_obfuscation");
  }
  if (const json* x = field(j, "stop")) r.stop = parse_stop(*x);
  if (chat) {
    bool lp = false;
    if (const json* x = field(j, "logprobs")) lp = get_bool(*x, "logprobs");
    int top = 0;
    if (const json* x = field(j, "top_logprobs")) {
      top = static_cast<int>(get_int(*x, "top_logprobs", 0, kMaxTopLogprobs));
      if (!lp) bad_request("top_logprobs", "'top_logprobs' needs 'logprobs': true", "invalid_value");
    }
    pr.logprobs = lp;
    r.top_logprobs = lp ? top : -1;
  } else if (const json* x = field(j, "logprobs")) {
    r.top_logprobs = static_cast<int>(get_int(*x, "logprobs", 0, kMaxTopLogprobs));
    pr.logprobs = true;
  }
  if (const json* x = field(j, "priority")) r.priority = static_cast<int>(get_int(*x, "priority", -1000000000, 1000000000));
  if (const json* x = field(j, "ignore_eos")) r.ignore_eos = get_bool(*x, "ignore_eos");
  if (const json* x = field(j, "return_token_ids")) pr.return_token_ids = get_bool(*x, "return_token_ids");
  r.kv = pc.default_kv;
  if (const json* x = field(j, "kv")) r.kv = parse_kv(*x, pc);
  r.speculative = pc.default_spec;
  if (const json* x = field(j, "speculative")) r.speculative = parse_speculative(*x, pc.default_spec);
  const char* max_name = "max_tokens";
  const json* max_field = field(j, "max_tokens");
  if (chat && field(j, "max_completion_tokens")) {
    max_name = "max_completion_tokens";
    max_field = field(j, "max_completion_tokens");
  }
  int64_t max_tokens = -1;
  if (max_field) max_tokens = get_int(*max_field, max_name, 1, std::numeric_limits<int32_t>::max());
  try {
    s.validate();
  } catch (const Error& e) {
    bad_request("", e.what(), "invalid_value");
  }

  // The prompt last: tokenizing is the expensive part.
  const char* prompt_name = chat ? "messages" : "prompt";
  const json* p = field(j, prompt_name);
  if (!p) bad_request(prompt_name, fmt::format("'{}' is required", prompt_name), "missing_field");
  r.prompt = chat ? chat_prompt(*p, *pc.tok) : text_prompt(*p, *pc.tok, pc.vocab_size);
  const auto P = static_cast<int64_t>(r.prompt.size());
  if (P == 0) bad_request(prompt_name, "the prompt is empty (it has 0 tokens)", "invalid_value");
  if (P > pc.ctx)
    bad_request(prompt_name, fmt::format("prompt has {} tokens but the context is {}", P, pc.ctx), "context_length_exceeded");
  if (max_tokens < 0) {
    if (P >= pc.ctx)
      bad_request(prompt_name, fmt::format("prompt has {} tokens, which fills the context of {}: no room to generate", P, pc.ctx),
                  "context_length_exceeded");
    max_tokens = chat ? pc.ctx - P : std::min<int64_t>(16, pc.ctx - P);
  } else if (P + max_tokens > pc.ctx) {
    bad_request(max_name, fmt::format("{} {} cannot fit: the prompt has {} tokens and the context is {}", max_name, max_tokens, P, pc.ctx),
                "context_length_exceeded");
  }
  r.max_tokens = static_cast<int>(max_tokens);
  return pr;
}

// ---- responses ------------------------------------------------------------------------

ResponseBuilder::ResponseBuilder(const ParsedRequest& pr, const Tokenizer& tok, std::string model_id)
    : pr_(pr), tok_(tok), model_(std::move(model_id)),
      id_(random_id(pr.endpoint == Endpoint::Chat ? "chatcmpl-" : "cmpl-")),
      created_(std::chrono::duration_cast<std::chrono::seconds>(std::chrono::system_clock::now().time_since_epoch()).count()) {}

json ResponseBuilder::base(const char* object) const {
  return json{{"id", id_}, {"object", object}, {"created", created_}, {"model", model_}, {"system_fingerprint", "harmonia"}};
}

json ResponseBuilder::usage_json(const engine::Usage& u) const {
  return json{{"prompt_tokens", u.prompt_tokens},
              {"completion_tokens", u.completion_tokens},
              {"total_tokens", u.prompt_tokens + u.completion_tokens}};
}

json ResponseBuilder::choice_logprobs(const std::vector<engine::TokenInfo>& tokens, size_t text_offset) const {
  if (!pr_.logprobs) return nullptr;
  if (pr_.endpoint == Endpoint::Chat) {
    auto entry = [&](int32_t id, float lp) {
      const std::string t = tok_.token_bytes(id);
      json bytes = json::array();
      for (unsigned char c : t) bytes.push_back(static_cast<int>(c));
      return json{{"token", t}, {"logprob", lp}, {"bytes", bytes}};
    };
    json content = json::array();
    for (const auto& ti : tokens) {
      json e = entry(ti.token, ti.logprob);
      json top = json::array();
      for (const auto& t : ti.top) top.push_back(entry(t.token, t.logprob));
      e["top_logprobs"] = top;
      content.push_back(std::move(e));
    }
    return json{{"content", content}, {"refusal", nullptr}};
  }
  json toks = json::array(), lps = json::array(), tops = json::array(), offs = json::array();
  size_t off = text_offset;
  for (const auto& ti : tokens) {
    const std::string t = tok_.token_bytes(ti.token);
    toks.push_back(t);
    lps.push_back(ti.logprob);
    json top = json::object();
    for (const auto& a : ti.top) top[tok_.token_bytes(a.token)] = a.logprob;
    tops.push_back(std::move(top));
    offs.push_back(off);
    off += t.size();
  }
  return json{{"tokens", toks}, {"token_logprobs", lps}, {"top_logprobs", tops}, {"text_offset", offs}};
}

static const char* finish_name(StopReason r) {
  const char* f = openai_finish_reason(r);
  return f ? f : "stop";
}

json ResponseBuilder::full(const Completion& c) const {
  const bool chat = pr_.endpoint == Endpoint::Chat;
  json out = base(chat ? "chat.completion" : "text_completion");
  json choice = {{"index", 0}};
  if (chat) choice["message"] = {{"role", "assistant"}, {"content", c.text}, {"refusal", nullptr}};
  else choice["text"] = c.text;
  choice["logprobs"] = choice_logprobs(c.tokens, 0);
  choice["finish_reason"] = finish_name(c.reason);
  if (pr_.return_token_ids) {
    json ids = json::array();
    for (const auto& t : c.tokens) ids.push_back(t.token);
    choice["token_ids"] = ids;
  }
  out["choices"] = json::array({choice});
  out["usage"] = usage_json(c.usage);
  return out;
}

json ResponseBuilder::role_chunk() const {
  json out = base("chat.completion.chunk");
  out["choices"] = json::array({{{"index", 0}, {"delta", {{"role", "assistant"}, {"content", ""}}}, {"logprobs", nullptr},
                                 {"finish_reason", nullptr}}});
  if (pr_.include_usage) out["usage"] = nullptr;
  return out;
}

json ResponseBuilder::delta_chunk(const std::string& text, const std::vector<engine::TokenInfo>& tokens) const {
  const bool chat = pr_.endpoint == Endpoint::Chat;
  json out = base(chat ? "chat.completion.chunk" : "text_completion");
  json choice = {{"index", 0}};
  if (chat) choice["delta"] = {{"content", text}};
  else choice["text"] = text;
  choice["logprobs"] = choice_logprobs(tokens, text_offset_);
  for (const auto& t : tokens) text_offset_ += tok_.token_bytes(t.token).size();
  choice["finish_reason"] = nullptr;
  if (pr_.return_token_ids) {
    json ids = json::array();
    for (const auto& t : tokens) ids.push_back(t.token);
    choice["token_ids"] = ids;
  }
  out["choices"] = json::array({choice});
  if (pr_.include_usage) out["usage"] = nullptr;
  return out;
}

json ResponseBuilder::finish_chunk(StopReason reason) const {
  const bool chat = pr_.endpoint == Endpoint::Chat;
  json out = base(chat ? "chat.completion.chunk" : "text_completion");
  json choice = {{"index", 0}};
  if (chat) choice["delta"] = json::object();
  else choice["text"] = "";
  choice["logprobs"] = nullptr;
  choice["finish_reason"] = finish_name(reason);
  out["choices"] = json::array({choice});
  if (pr_.include_usage) out["usage"] = nullptr;
  return out;
}

json ResponseBuilder::usage_chunk(const engine::Usage& u) const {
  json out = base(pr_.endpoint == Endpoint::Chat ? "chat.completion.chunk" : "text_completion");
  out["choices"] = json::array();
  out["usage"] = usage_json(u);
  return out;
}

}  // namespace harmonia::server
