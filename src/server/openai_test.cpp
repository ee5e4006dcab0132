// Request parsing and validation, without HTTP.
#include "server/openai.h"

#include <gtest/gtest.h>

#include "server/test_util.h"

using namespace harmonia;
using namespace harmonia::server;
using namespace harmonia::server::testing;

namespace {

ParseContext context() {
  ParseContext pc;
  pc.tok = stories().tokenizer.get();
  pc.ctx = 128;
  pc.vocab_size = stories().config.vocab_size;
  pc.model_id = "stories260K";
  return pc;
}

ApiError error_of(Endpoint ep, const std::string& body) {
  try {
    parse_request(ep, body, context());
  } catch (const ApiError& e) {
    return e;
  }
  ADD_FAILURE() << "no error for " << body;
  return ApiError(0, "");
}

}  // namespace

TEST(ServerApi, DefaultsFollowOpenAi) {
  HARMONIA_REQUIRE_SHARED(kModel);
  const ParsedRequest c = parse_request(Endpoint::Completions, R"({"prompt": "Once upon a time"})", context());
  EXPECT_EQ(c.r.max_tokens, 16);
  EXPECT_EQ(c.r.sampling.temperature, 1.0f);
  EXPECT_EQ(c.r.sampling.top_p, 1.0f);
  EXPECT_EQ(c.r.sampling.top_k, 0);
  EXPECT_EQ(c.r.sampling.min_p, 0.0f);
  EXPECT_EQ(c.r.top_logprobs, -1);
  EXPECT_FALSE(c.stream);
  EXPECT_EQ(c.r.kv.name, "full");
  EXPECT_EQ(c.r.speculative.drafter, "none");
  EXPECT_EQ(c.r.prompt, stories().tokenizer->encode("Once upon a time", true));
  const ParsedRequest ch = parse_request(Endpoint::Chat, R"({"messages": [{"role": "user", "content": "Hi"}]})", context());
  EXPECT_EQ(ch.r.max_tokens, 128 - static_cast<int>(ch.r.prompt.size()));  // the rest of the context
  // Nullable fields: null means absent.
  const ParsedRequest n = parse_request(
      Endpoint::Completions, R"({"prompt": "x", "max_tokens": null, "stop": null, "seed": null, "logprobs": null})", context());
  EXPECT_EQ(n.r.max_tokens, 16);
  EXPECT_TRUE(n.r.stop.empty());
}

TEST(ServerApi, FieldsMapOntoTheEngineRequest) {
  HARMONIA_REQUIRE_SHARED(kModel);
  const ParsedRequest p = parse_request(Endpoint::Completions, R"({
      "prompt": "x", "max_tokens": 5.0, "temperature": 0.5, "top_p": 0.9, "seed": 18446744073709551615,
      "stop": ["a", "bb"], "logprobs": 3, "presence_penalty": 0.5, "frequency_penalty": -0.5, "user": "u",
      "stream": true, "stream_options": {"include_usage": true},
      "kv": {"policy": "streaming", "options": {"window": 64, "sink": "4"}},
      "speculative": {"drafter": "ngram", "n": 3}, "priority": -2, "ignore_eos": true, "top_k": 7, "min_p": 0.1})",
                                        context());
  EXPECT_EQ(p.r.max_tokens, 5);
  EXPECT_FLOAT_EQ(p.r.sampling.temperature, 0.5f);
  EXPECT_EQ(p.r.sampling.seed, UINT64_MAX);
  EXPECT_EQ(p.r.stop, (std::vector<std::string>{"a", "bb"}));
  EXPECT_EQ(p.r.top_logprobs, 3);
  EXPECT_TRUE(p.logprobs && p.stream && p.include_usage && p.r.ignore_eos);
  EXPECT_EQ(p.r.kv.name, "streaming");
  EXPECT_EQ(p.r.kv.options.at("window"), "64");
  EXPECT_EQ(p.r.kv.options.at("sink"), "4");
  EXPECT_EQ(p.r.speculative.drafter, "ngram");
  EXPECT_EQ(p.r.speculative.n, 3);
  EXPECT_EQ(p.r.priority, -2);
  EXPECT_EQ(p.r.sampling.top_k, 7);
  const ParsedRequest s = parse_request(Endpoint::Completions, R"({"prompt": "x", "kv": "fourier:window=16"})", context());
  EXPECT_EQ(s.r.kv.name, "fourier");
  EXPECT_EQ(s.r.kv.options.at("window"), "16");
}

TEST(ServerApi, ErrorsNameTheFieldAndTheValue) {
  HARMONIA_REQUIRE_SHARED(kModel);
  auto e = error_of(Endpoint::Completions, R"({"prompt": "x", "max_tokens": 5.5})");
  EXPECT_EQ(e.status, 400);
  EXPECT_EQ(e.param, "max_tokens");
  EXPECT_STREQ(e.what(), "'max_tokens' must be an integer, got 5.5");
  e = error_of(Endpoint::Completions, R"({"prompt": "x", "temperature": 3})");
  EXPECT_STREQ(e.what(), "'temperature' must be in [0, 2], got 3");
  e = error_of(Endpoint::Completions, R"({"prompt": "x", "max_tokens": 99999999999999999999})");
  EXPECT_EQ(e.param, "max_tokens");
  e = error_of(Endpoint::Completions, R"({"prompt": "x", "foo": 1})");
  EXPECT_EQ(e.param, "foo");
  EXPECT_EQ(e.code, "unknown_field");
  EXPECT_NE(std::string(e.what()).find("unrecognized request argument 'foo'"), std::string::npos);
  e = error_of(Endpoint::Chat, R"({"messages": [{"role": "user", "content": "x", "colour": "red"}]})");
  EXPECT_EQ(e.param, "messages[0].colour");
  e = error_of(Endpoint::Completions, R"({"prompt": "x", "model": "other"})");
  EXPECT_EQ(e.status, 404);
  e = error_of(Endpoint::Completions, std::string(100, '[') + std::string(100, ']'));
  EXPECT_EQ(e.code, "invalid_json");
  EXPECT_NE(std::string(e.what()).find("deeper than 64"), std::string::npos);
  // Invalid UTF-8 in the body: a 400 whose JSON rendering is itself valid.
  e = error_of(Endpoint::Completions, "{\"prompt\": \"\xff\xfe\"}");
  EXPECT_EQ(e.code, "invalid_json");
  EXPECT_FALSE(json::parse(dump(error_body(e)), nullptr, false).is_discarded());
  e = error_of(Endpoint::Completions, R"({"prompt": "x", "stop": "a", "stream_options": {"include_usage": true}})");
  EXPECT_EQ(e.param, "stream_options");
  e = error_of(Endpoint::Completions, R"({"prompt": "x", "max_tokens": 128})");
  EXPECT_EQ(e.param, "max_tokens");
  EXPECT_EQ(e.code, "context_length_exceeded");
}
