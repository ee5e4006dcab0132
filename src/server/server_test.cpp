// The HTTP server end to end: a real server on a free loopback port, real HTTP.
#include <gtest/gtest.h>

#include <atomic>
#include <future>
#include <map>
#include <sstream>
#include <set>
#include <thread>

#include "server/test_util.h"

using namespace harmonia;
using namespace harmonia::server;
using namespace harmonia::server::testing;

namespace {

// The error body's shape, and its status; returns the error object.
json expect_error(const HttpResult& r, int status, const std::string& param = "*") {
  EXPECT_EQ(r.status, status) << r.body;
  const json j = r.j();
  EXPECT_TRUE(j.is_object() && j.contains("error")) << r.body;
  if (!j.is_object() || !j.contains("error")) return json::object();
  const json& e = j["error"];
  EXPECT_TRUE(e.contains("message") && e["message"].is_string() && !e["message"].get<std::string>().empty()) << r.body;
  EXPECT_TRUE(e.contains("type") && e["type"].is_string()) << r.body;
  EXPECT_TRUE(e.contains("param")) << r.body;
  EXPECT_TRUE(e.contains("code")) << r.body;
  if (param != "*") {
    EXPECT_EQ(e["param"], param == "" ? json(nullptr) : json(param)) << r.body;
  }
  return e;
}

struct Streamed {
  std::string text;
  std::vector<int> token_ids;
  json logprob_tokens = json::array();  // completions: logprobs.tokens; chat: logprobs.content
  std::string finish_reason;
  int usage_chunks = 0;
  json usage;
  bool done = false;
};

Streamed collect_stream(const HttpResult& r, bool chat) {
  Streamed s;
  std::string err;
  const auto evs = sse_events(r.body, &s.done, &err);
  EXPECT_EQ(err, "");
  for (const json& e : evs) {
    EXPECT_FALSE(e.contains("error")) << e.dump();
    if (e.contains("usage") && e["usage"].is_object()) {
      s.usage_chunks++;
      s.usage = e["usage"];
      EXPECT_TRUE(e["choices"].empty());
    }
    for (const json& c : e["choices"]) {
      if (chat) {
        if (c["delta"].contains("content")) s.text += c["delta"]["content"].get<std::string>();
      } else {
        s.text += c["text"].get<std::string>();
      }
      if (c.contains("token_ids"))
        for (int t : c["token_ids"]) s.token_ids.push_back(t);
      if (c["logprobs"].is_object()) {
        const json& lp = chat ? c["logprobs"]["content"] : c["logprobs"]["tokens"];
        for (const auto& x : lp) s.logprob_tokens.push_back(x);
      }
      if (!c["finish_reason"].is_null()) s.finish_reason = c["finish_reason"];
    }
  }
  return s;
}

}  // namespace

TEST(ServerHttp, ModelsHealthTokenizeDetokenize) {
  HARMONIA_REQUIRE_SHARED(kModel);
  TestServer ts;
  auto models = get(ts.port, "/v1/models");
  ASSERT_EQ(models.status, 200) << models.body;
  EXPECT_EQ(models.j()["object"], "list");
  ASSERT_EQ(models.j()["data"].size(), 1u);
  EXPECT_EQ(models.j()["data"][0]["id"], "stories260K");
  EXPECT_EQ(models.j()["data"][0]["object"], "model");
  EXPECT_EQ(get(ts.port, "/v1/models/stories260K").status, 200);
  expect_error(get(ts.port, "/v1/models/gpt-4"), 404, "model");

  auto h = get(ts.port, "/health");
  ASSERT_EQ(h.status, 200);
  EXPECT_EQ(h.j()["status"], "ok");
  EXPECT_EQ(h.j()["context"], 256);
  EXPECT_GT(h.j()["rss_bytes"].get<size_t>(), 0u);

  auto t = post(ts.port, "/tokenize", json{{"prompt", "Once upon a time"}});
  ASSERT_EQ(t.status, 200) << t.body;
  const auto ids = t.j()["tokens"].get<std::vector<int32_t>>();
  EXPECT_EQ(ids, stories().tokenizer->encode("Once upon a time", true));
  EXPECT_EQ(t.j()["count"], ids.size());
  EXPECT_EQ(t.j()["max_model_len"], 256);
  auto t2 = post(ts.port, "/tokenize", json{{"prompt", "Once upon a time"}, {"add_special_tokens", false}});
  EXPECT_EQ(t2.j()["count"].get<size_t>() + 1, ids.size());

  auto d = post(ts.port, "/detokenize", json{{"tokens", ids}});
  ASSERT_EQ(d.status, 200) << d.body;
  EXPECT_EQ(d.j()["prompt"], "Once upon a time");
  expect_error(post(ts.port, "/detokenize", json{{"tokens", {1, 99999}}}), 400, "tokens[1]");
  expect_error(post(ts.port, "/detokenize", json{{"tokens", {-1}}}), 400, "tokens[0]");
  expect_error(post(ts.port, "/tokenize", json{{"text", "x"}}), 400, "text");
  expect_error(get(ts.port, "/v1/nothing"), 404);
  expect_error(get(ts.port, "/v1/completions"), 405);
}

TEST(ServerHttp, StreamingAndNonStreamingAgreeForTheSameSeed) {
  HARMONIA_REQUIRE_SHARED(kModel);
  TestServer ts;
  for (const bool chat : {false, true}) {
    SCOPED_TRACE(chat ? "chat" : "completions");
    json body = {{"model", "stories260K"}, {"max_tokens", 48}, {"temperature", 0.9}, {"top_p", 0.95},
                 {"seed", 1234},           {"return_token_ids", true}};
    if (chat) {
      body["messages"] = {{{"role", "user"}, {"content", "Tell me about a cat."}}};
      body["logprobs"] = true;
      body["top_logprobs"] = 2;
    } else {
      body["prompt"] = "Once upon a time, there was a";
      body["logprobs"] = 2;
    }
    const std::string path = chat ? "/v1/chat/completions" : "/v1/completions";
    auto whole = post(ts.port, path, body);
    ASSERT_EQ(whole.status, 200) << whole.body;
    const json w = whole.j();
    const json& c = w["choices"][0];
    const std::string wtext = chat ? c["message"]["content"].get<std::string>() : c["text"].get<std::string>();
    const auto wids = c["token_ids"].get<std::vector<int>>();
    EXPECT_EQ(w["object"], chat ? "chat.completion" : "text_completion");
    EXPECT_EQ(w["usage"]["completion_tokens"], wids.size());
    EXPECT_EQ(w["usage"]["total_tokens"], w["usage"]["prompt_tokens"].get<int>() + w["usage"]["completion_tokens"].get<int>());
    EXPECT_FALSE(wtext.empty());

    json sbody = body;
    sbody["stream"] = true;
    sbody["stream_options"] = {{"include_usage", true}};
    auto streamed = post(ts.port, path, sbody);
    ASSERT_EQ(streamed.status, 200) << streamed.body;
    EXPECT_NE(streamed.header("Content-Type").find("text/event-stream"), std::string::npos);
    const Streamed s = collect_stream(streamed, chat);
    EXPECT_TRUE(s.done) << "no [DONE]";
    EXPECT_EQ(s.text, wtext);
    EXPECT_EQ(s.token_ids, wids);
    EXPECT_EQ(s.finish_reason, c["finish_reason"]);
    EXPECT_EQ(s.usage_chunks, 1) << "the usage chunk must appear exactly once";
    EXPECT_EQ(s.usage, w["usage"]);
    const json& wl = chat ? c["logprobs"]["content"] : c["logprobs"]["tokens"];
    EXPECT_EQ(s.logprob_tokens, wl);

    // Without include_usage: no usage chunk at all.
    sbody.erase("stream_options");
    const Streamed s2 = collect_stream(post(ts.port, path, sbody), chat);
    EXPECT_EQ(s2.usage_chunks, 0);
    EXPECT_EQ(s2.text, wtext);
  }
}

TEST(ServerHttp, TopLogprobsAlignWithTheTokens) {
  HARMONIA_REQUIRE_SHARED(kModel);
  TestServer ts;
  // Greedy: each chosen token is the most likely one, so it heads its own top_logprobs.
  auto r = post(ts.port, "/v1/completions",
                json{{"prompt", "The little dog"}, {"max_tokens", 20}, {"temperature", 0}, {"logprobs", 5}, {"return_token_ids", true}});
  ASSERT_EQ(r.status, 200) << r.body;
  const json rj = r.j();
  const json& c = rj["choices"][0];
  const json& lp = c["logprobs"];
  const auto ids = c["token_ids"].get<std::vector<int>>();
  ASSERT_EQ(lp["tokens"].size(), ids.size());
  ASSERT_EQ(lp["token_logprobs"].size(), ids.size());
  ASSERT_EQ(lp["top_logprobs"].size(), ids.size());
  ASSERT_EQ(lp["text_offset"].size(), ids.size());
  std::string joined;
  for (size_t i = 0; i < ids.size(); ++i) {
    EXPECT_EQ(lp["tokens"][i], stories().tokenizer->token_bytes(ids[i]));
    const json& top = lp["top_logprobs"][i];
    EXPECT_EQ(top.size(), 5u);
    double best = -1e30;
    for (auto it = top.begin(); it != top.end(); ++it) best = std::max(best, it.value().get<double>());
    EXPECT_NEAR(lp["token_logprobs"][i].get<double>(), best, 1e-5);
    EXPECT_TRUE(top.contains(lp["tokens"][i].get<std::string>()));
    EXPECT_LE(lp["token_logprobs"][i].get<double>(), 0.0);
    EXPECT_EQ(lp["text_offset"][i], joined.size());
    joined += lp["tokens"][i].get<std::string>();
  }
  // Chat shape: content[i] = {token, logprob, bytes, top_logprobs[k]}, sorted, the chosen token first.
  auto rc = post(ts.port, "/v1/chat/completions",
                 json{{"messages", {{{"role", "user"}, {"content", "Hi"}}}}, {"max_tokens", 12}, {"temperature", 0},
                      {"logprobs", true}, {"top_logprobs", 3}, {"return_token_ids", true}});
  ASSERT_EQ(rc.status, 200) << rc.body;
  const json rcj = rc.j();
  const json& cc = rcj["choices"][0];
  const auto cids = cc["token_ids"].get<std::vector<int>>();
  ASSERT_EQ(cc["logprobs"]["content"].size(), cids.size());
  for (size_t i = 0; i < cids.size(); ++i) {
    const json& e = cc["logprobs"]["content"][i];
    ASSERT_EQ(e["top_logprobs"].size(), 3u);
    EXPECT_EQ(e["top_logprobs"][0]["token"], e["token"]);
    EXPECT_NEAR(e["top_logprobs"][0]["logprob"].get<double>(), e["logprob"].get<double>(), 1e-6);
    EXPECT_GE(e["top_logprobs"][0]["logprob"].get<double>(), e["top_logprobs"][1]["logprob"].get<double>());
    std::string bytes;
    for (int b : e["bytes"]) bytes.push_back(static_cast<char>(b));
    EXPECT_EQ(bytes, stories().tokenizer->token_bytes(cids[i]));
  }
}

TEST(ServerHttp, ChatUsesTheModelsTemplateAndStops) {
  HARMONIA_REQUIRE_SHARED(kModel);
  TestServer ts;
  const json msgs = {{{"role", "system"}, {"content", "Be brief."}}, {{"role", "user"}, {"content", "Once upon a time"}}};
  auto tok = post(ts.port, "/tokenize", json{{"messages", msgs}});
  ASSERT_EQ(tok.status, 200) << tok.body;
  auto r = post(ts.port, "/v1/chat/completions", json{{"messages", msgs}, {"max_tokens", 30}, {"temperature", 0}});
  ASSERT_EQ(r.status, 200) << r.body;
  const json j = r.j();
  EXPECT_EQ(j["usage"]["prompt_tokens"], tok.j()["count"]);
  EXPECT_EQ(j["choices"][0]["message"]["role"], "assistant");
  EXPECT_TRUE(j["id"].get<std::string>().rfind("chatcmpl-", 0) == 0);
  // A stop string ends the text before it; finish_reason "stop".
  const std::string text = j["choices"][0]["message"]["content"];
  ASSERT_GT(text.size(), 6u);
  const std::string stop = text.substr(3, 3);
  auto rs = post(ts.port, "/v1/chat/completions", json{{"messages", msgs}, {"max_tokens", 30}, {"temperature", 0}, {"stop", stop}});
  ASSERT_EQ(rs.status, 200);
  EXPECT_EQ(rs.j()["choices"][0]["finish_reason"], "stop");
  EXPECT_EQ(rs.j()["choices"][0]["message"]["content"], text.substr(0, text.find(stop)));
  // Default max_tokens of completions is 16 (OpenAI's); "length" when cut.
  auto rl = post(ts.port, "/v1/completions", json{{"prompt", "Once"}, {"temperature", 0}, {"ignore_eos", true}});
  ASSERT_EQ(rl.status, 200);
  EXPECT_EQ(rl.j()["usage"]["completion_tokens"], 16);
  EXPECT_EQ(rl.j()["choices"][0]["finish_reason"], "length");
  // Token-id prompts, and the extension fields.
  const auto ids = stories().tokenizer->encode("Once upon a time", true);
  auto rt = post(ts.port, "/v1/completions",
                 json{{"prompt", ids}, {"max_tokens", 8}, {"temperature", 0}, {"priority", 3},
                      {"kv", {{"policy", "streaming"}, {"options", {{"window", 64}, {"sink", 4}}}}},
                      {"speculative", {{"drafter", "ngram"}, {"n", 3}}}});
  ASSERT_EQ(rt.status, 200) << rt.body;
  auto rp = post(ts.port, "/v1/completions", json{{"prompt", "Once upon a time"}, {"max_tokens", 8}, {"temperature", 0}});
  EXPECT_EQ(rt.j()["choices"][0]["text"], rp.j()["choices"][0]["text"]);
}

// Every error case answers its status and an OpenAI error body, while a normal
// streaming request runs alongside and still completes.
TEST(ServerHttp, ErrorCasesAnswerTheirStatusWhileANormalRequestCompletes) {
  HARMONIA_REQUIRE_SHARED(kModel);
  ServerOptions o;
  o.debug_event_delay_ms = 4;  // 150 tokens take more than half a second
  o.engine.max_queue = 3;
  o.max_body_bytes = 256 * 1024;
  TestServer ts(o);
  auto normal = std::async(std::launch::async, [&] {
    return post(ts.port, "/v1/completions",
                json{{"prompt", "Once upon a time"}, {"max_tokens", 150}, {"temperature", 0}, {"ignore_eos", true}, {"stream", true}});
  });
  ASSERT_TRUE(eventually([&] { return ts.engine_metrics().admitted + ts.engine_metrics().waiting > 0; }));
  const std::string C = "/v1/completions", CH = "/v1/chat/completions";
  // A full queue: 429 with Retry-After (the normal request holds one slot).
  std::vector<std::future<HttpResult>> fill;
  for (int i = 0; i < 2; ++i)
    fill.push_back(std::async(std::launch::async, [&] {
      return post(ts.port, C, json{{"prompt", "Once"}, {"max_tokens", 40}, {"ignore_eos", true}, {"temperature", 0}});
    }));
  ASSERT_TRUE(eventually([&] { return ts.engine_metrics().admitted + ts.engine_metrics().waiting >= 3; }));
  const HttpResult full = post(ts.port, C, json{{"prompt", "x"}, {"max_tokens", 2}});
  const json eq = expect_error(full, 429);
  EXPECT_EQ(eq["code"], "queue_full");
  EXPECT_EQ(full.header("Retry-After"), "1");
  // Malformed JSON, wrong types, unknown fields, out-of-range values.
  expect_error(post(ts.port, C, std::string("{\"prompt\": \"x\",")), 400, "");
  expect_error(post(ts.port, C, std::string("[1, 2]")), 400, "");
  expect_error(post(ts.port, C, json{{"prompt", 5}}), 400, "prompt");
  expect_error(post(ts.port, C, json{{"prompt", "x"}, {"max_tokens", "ten"}}), 400, "max_tokens");
  expect_error(post(ts.port, C, json{{"prompt", "x"}, {"temperature", "hot"}}), 400, "temperature");
  expect_error(post(ts.port, C, json{{"prompt", "x"}, {"temperature", 2.5}}), 400, "temperature");
  expect_error(post(ts.port, C, json{{"prompt", "x"}, {"top_p", 0}}), 400, "top_p");
  expect_error(post(ts.port, C, json{{"prompt", "x"}, {"max_tokens", -3}}), 400, "max_tokens");
  expect_error(post(ts.port, C, json{{"prompt", "x"}, {"stream", "yes"}}), 400, "stream");
  expect_error(post(ts.port, C, json{{"prompt", "x"}, {"stop", {"a", ""}}}), 400, "stop[1]");
  expect_error(post(ts.port, C, json{{"prompt", "x"}, {"stop", {"a", "b", "c", "d", "e"}}}), 400, "stop");
  expect_error(post(ts.port, C, json{{"prompt", "x"}, {"logprobs", 21}}), 400, "logprobs");
  expect_error(post(ts.port, C, json{{"prompt", "x"}, {"stream_options", {{"include_usage", true}}}}), 400, "stream_options");
  expect_error(post(ts.port, C, json{{"prompt", "x"}, {"temprature", 0.5}}), 400, "temprature");
  expect_error(post(ts.port, C, json{{"prompt", "x"}, {"kv", {{"policy", "full"}, {"opts", {}}}}}), 400, "kv.opts");
  expect_error(post(ts.port, C, json{{"prompt", "x"}, {"kv", "nosuchpolicy"}}), 400, "kv");
  expect_error(post(ts.port, C, json{{"prompt", "x"}, {"kv", "streaming:nosuchoption=3"}}), 400, "kv");
  expect_error(post(ts.port, C, json{{"prompt", "x"}, {"speculative", {{"drafter", "ngram"}, {"k", 3}}}}), 400, "speculative.k");
  expect_error(post(ts.port, C, json{{"prompt", "x"}, {"speculative", {{"drafter", "telepathy"}}}}), 400, "speculative");
  expect_error(post(ts.port, C, json{{"prompt", "x"}, {"speculative", "draft"}}), 400);  // no draft model loaded
  expect_error(post(ts.port, C, json{{"prompt", "x"}, {"priority", 1.5}}), 400, "priority");
  expect_error(post(ts.port, C, json{{"prompt", "x"}, {"n", 2}}), 400, "n");
  expect_error(post(ts.port, C, json{{"prompt", {"a", "b"}}}), 400, "prompt");
  expect_error(post(ts.port, C, json{{"prompt", {1, 2, 100000}}}), 400, "prompt[2]");
  expect_error(post(ts.port, CH, json{{"messages", "hello"}}), 400, "messages");
  expect_error(post(ts.port, CH, json{{"messages", json::array()}}), 400, "messages");
  expect_error(post(ts.port, CH, json{{"messages", {{{"role", "wizard"}, {"content", "x"}}}}}), 400, "messages[0].role");
  expect_error(post(ts.port, CH, json{{"messages", {{{"role", "user"}}}}}), 400, "messages[0].content");
  expect_error(post(ts.port, CH, json{{"messages", {{{"role", "user"}, {"content", "x"}}}}, {"top_logprobs", 2}}), 400, "top_logprobs");
  expect_error(post(ts.port, CH, json{{"messages", {{{"role", "user"}, {"content", "x"}}}}, {"tools", {{{"type", "function"}}}}}), 400, "tools");
  expect_error(post(ts.port, CH, json{{"prompt", "x"}}), 400, "prompt");
  // A prompt longer than the context: 400 with both numbers, the same status at every length.
  for (int words : {300, 1000, 5000}) {
    std::string p;
    for (int i = 0; i < words; ++i) p += "the cat sat. ";
    const int n = static_cast<int>(stories().tokenizer->encode(p, true).size());
    const json e = expect_error(post(ts.port, C, json{{"prompt", p}, {"max_tokens", 4}}), 400, "prompt");
    EXPECT_EQ(e["message"], fmt::format("prompt has {} tokens but the context is 256", n));
    EXPECT_EQ(e["code"], "context_length_exceeded");
    const json ec = expect_error(post(ts.port, CH, json{{"messages", {{{"role", "user"}, {"content", p}}}}}), 400, "messages");
    EXPECT_NE(ec["message"].get<std::string>().find("but the context is 256"), std::string::npos);
  }
  // max_tokens that cannot fit beside the prompt.
  const json e = expect_error(post(ts.port, C, json{{"prompt", "Once upon a time"}, {"max_tokens", 1000}}), 400, "max_tokens");
  const size_t P = stories().tokenizer->encode("Once upon a time", true).size();
  EXPECT_EQ(e["message"], fmt::format("max_tokens 1000 cannot fit: the prompt has {} tokens and the context is 256", P));
  expect_error(post(ts.port, CH, json{{"messages", {{{"role", "user"}, {"content", "x"}}}}, {"max_completion_tokens", 300}}), 400,
               "max_completion_tokens");
  // Unknown model: 404.
  const json em = expect_error(post(ts.port, C, json{{"model", "gpt-4"}, {"prompt", "x"}}), 404, "model");
  EXPECT_EQ(em["code"], "model_not_found");
  // Oversized body: 413 in the same shape.
  expect_error(post(ts.port, C, json{{"prompt", std::string(300 * 1024, 'a')}}), 413);

  for (auto& f : fill) EXPECT_EQ(f.get().status, 200);
  const HttpResult n = normal.get();
  ASSERT_EQ(n.status, 200) << n.body;
  const Streamed s = collect_stream(n, false);
  EXPECT_TRUE(s.done);
  EXPECT_EQ(s.finish_reason, "length");
  // The server counted every status.
  EXPECT_GE(ts.srv->metrics().responses("/v1/completions", 400), 20);
  EXPECT_EQ(ts.srv->metrics().responses("/v1/completions", 429), 1);
  EXPECT_EQ(ts.srv->metrics().responses("/v1/completions", 404), 1);
  EXPECT_EQ(ts.srv->metrics().responses("/v1/completions", 413), 1);
  EXPECT_EQ(ts.srv->metrics().responses("/v1/completions", 200), 3);
}

TEST(ServerHttp, ApiKeyIsRequiredWhenSet) {
  HARMONIA_REQUIRE_SHARED(kModel);
  ServerOptions o;
  o.api_key = "sk-test-123";
  TestServer ts(o);
  const json body = {{"prompt", "Once"}, {"max_tokens", 2}};
  const json e1 = expect_error(post(ts.port, "/v1/completions", body), 401, "");
  EXPECT_EQ(e1["code"], "invalid_api_key");
  expect_error(post(ts.port, "/v1/completions", body, {{"Authorization", "Bearer sk-test-124"}}), 401);
  expect_error(post(ts.port, "/v1/completions", body, {{"Authorization", "sk-test-123"}}), 401);
  expect_error(get(ts.port, "/v1/models", {{"Authorization", "Bearer wrong"}}), 401);
  expect_error(post(ts.port, "/tokenize", json{{"prompt", "x"}}), 401);
  EXPECT_EQ(post(ts.port, "/v1/completions", body, {{"Authorization", "Bearer sk-test-123"}}).status, 200);
  EXPECT_EQ(get(ts.port, "/v1/models", {{"Authorization", "Bearer sk-test-123"}}).status, 200);
  EXPECT_EQ(get(ts.port, "/health").status, 200);  // probes and scrapers need no key
  EXPECT_EQ(get(ts.port, "/metrics").status, 200);
}

TEST(ServerHttp, ClientThatDisconnectsMidStreamCancelsItsRequestAndFreesItsKv) {
  HARMONIA_REQUIRE_SHARED(kModel);
  ServerOptions o;
  o.debug_event_delay_ms = 5;
  TestServer ts(o);
  const json body = {{"prompt", "Once upon a time"}, {"max_tokens", 200}, {"ignore_eos", true}, {"stream", true}};
  const int fd = connect_loopback(ts.port);
  ASSERT_GE(fd, 0);
  ASSERT_TRUE(send_all(fd, http_request("POST", "/v1/completions", body.dump())));
  std::string got;
  char buf[1024];
  while (got.find("data: ") == std::string::npos) {
    const ssize_t n = ::recv(fd, buf, sizeof buf, 0);
    ASSERT_GT(n, 0) << got;
    got.append(buf, static_cast<size_t>(n));
  }
  EXPECT_EQ(raw_status(got), 200);
  EXPECT_GT(ts.engine_metrics().kv_bytes_reserved, 0u);
  ::close(fd);  // vanish mid-stream
  EXPECT_TRUE(eventually([&] { return ts.engine_metrics().cancelled == 1; }, 5000)) << "the request was not cancelled";
  EXPECT_TRUE(eventually([&] {
    const auto m = ts.engine_metrics();
    return m.kv_bytes_reserved == 0 && m.kv_bytes_in_use == 0 && m.admitted == 0;
  }));
  EXPECT_EQ(ts.engine_metrics().finished, 0);
  // And the server goes on serving.
  EXPECT_EQ(post(ts.port, "/v1/completions", json{{"prompt", "Once"}, {"max_tokens", 3}}).status, 200);
}

TEST(ServerHttp, MetricsArePrometheusText) {
  HARMONIA_REQUIRE_SHARED(kModel);
  ServerOptions o;
  o.kv = {{"full", {}}, {"streaming", {{"window", "32"}, {"sink", "4"}}}};
  o.engine.kv_budget_bytes = 64u << 20;
  TestServer ts(o);
  for (int i = 0; i < 3; ++i)
    ASSERT_EQ(post(ts.port, "/v1/completions", json{{"prompt", "Once"}, {"max_tokens", 10}, {"ignore_eos", true}}).status, 200);
  ASSERT_EQ(post(ts.port, "/v1/completions",
                 json{{"prompt", "Once upon a time, once upon a time, once upon a"}, {"max_tokens", 10}, {"speculative", "ngram"},
                      {"temperature", 0}})
                .status,
            200);
  expect_error(post(ts.port, "/v1/completions", std::string("{")), 400);
  // The engine refreshes its gauges at the end of the step that sent a request's last event, which
  // can come just after the HTTP response: read until the finished requests are off the gauges.
  auto settled = [](const std::string& b) {
    for (const char* g : {"harmonia_kv_bytes_reserved 0", "harmonia_requests_running{queue=\"0\"} 0",
                          "harmonia_kv_bytes_in_use{policy=\"full\"} 0"})
      if (b.find(g) == std::string::npos) return false;
    return true;
  };
  auto m = get(ts.port, "/metrics");
  for (int i = 0; i < 200 && m.status == 200 && !settled(m.body); ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
    m = get(ts.port, "/metrics");
  }
  ASSERT_EQ(m.status, 200);
  EXPECT_NE(m.header("Content-Type").find("text/plain"), std::string::npos);
  const std::string& t = m.body;
  for (const char* needle :
       {"harmonia_http_requests_total{endpoint=\"/v1/completions\",status=\"200\"} 4",
        "harmonia_http_requests_total{endpoint=\"/v1/completions\",status=\"400\"} 1",
        "harmonia_prompt_tokens_total ", "harmonia_generation_tokens_total ",
        "# TYPE harmonia_time_to_first_token_seconds histogram", "harmonia_time_to_first_token_seconds_count 4",
        "harmonia_time_per_output_token_seconds_bucket{le=\"+Inf\"} 4", "harmonia_e2e_request_latency_seconds_sum ",
        "harmonia_requests_running{queue=\"0\"} 0", "harmonia_requests_waiting{queue=\"0\"} 0",
        "harmonia_kv_bytes_in_use{policy=\"full\"} 0", "harmonia_kv_bytes_in_use{policy=\"streaming\"} 0",
        "harmonia_kv_budget_bytes 67108864", "harmonia_kv_bytes_reserved 0", "harmonia_draft_acceptance_rate ",
        "harmonia_draft_tokens_total ", "harmonia_preemptions_total 0", "process_resident_memory_bytes "})
    EXPECT_NE(t.find(needle), std::string::npos) << needle << "\n" << t;
  EXPECT_NE(t.find("harmonia_generation_tokens_total 40"), std::string::npos) << t;
  // Every sample line is "name{labels} value" with a numeric value.
  std::istringstream lines(t);
  for (std::string line; std::getline(lines, line);) {
    if (line.empty() || line[0] == '#') continue;
    const auto sp = line.rfind(' ');
    ASSERT_NE(sp, std::string::npos) << line;
    char* end = nullptr;
    std::strtod(line.c_str() + sp + 1, &end);
    EXPECT_EQ(*end, '\0') << line;
  }
  // The start-up capacity lines name the policies and how many sequences fit.
  const std::string cap = ts.srv->capacity().text();
  EXPECT_NE(cap.find("context      256 tokens"), std::string::npos) << cap;
  EXPECT_NE(cap.find("streaming(sink=4,window=32)"), std::string::npos) << cap;
  EXPECT_NE(cap.find("sequences of 256 tokens under full"), std::string::npos) << cap;
  EXPECT_GT(ts.srv->capacity().rows[0].sequences, 0);
  EXPECT_LT(ts.srv->capacity().rows[1].bytes_per_token, ts.srv->capacity().rows[0].bytes_per_token);
}

TEST(ServerHttp, ShutdownRefusesNewWorkAndEndsInFlightStreamsCleanly) {
  HARMONIA_REQUIRE_SHARED(kModel);
  ServerOptions o;
  o.debug_event_delay_ms = 5;
  TestServer ts(o);
  auto longreq = std::async(std::launch::async, [&] {
    return post(ts.port, "/v1/completions",
                json{{"prompt", "Once"}, {"max_tokens", 200}, {"ignore_eos", true}, {"stream", true}});
  });
  auto shortreq = std::async(std::launch::async, [&] {
    return post(ts.port, "/v1/completions", json{{"prompt", "Once"}, {"max_tokens", 5}, {"ignore_eos", true}});
  });
  ASSERT_TRUE(eventually([&] { return ts.engine_metrics().admitted >= 2; }));
  const double t0 = now_ms();
  ts.srv->shutdown(0.3);  // the short one finishes within the grace; the long one is cancelled
  EXPECT_LT(now_ms() - t0, 5000.0);
  const HttpResult s = shortreq.get();
  EXPECT_EQ(s.status, 200) << s.body;
  const HttpResult l = longreq.get();
  ASSERT_EQ(l.status, 200);
  bool done = false;
  std::string err;
  const auto evs = sse_events(l.body, &done, &err);
  EXPECT_EQ(err, "");
  EXPECT_TRUE(done) << "the stream must still end with [DONE]";
  ASSERT_FALSE(evs.empty());
  EXPECT_EQ(evs.back()["error"]["code"], "shutting_down") << evs.back().dump();
  EXPECT_EQ(ts.engine_metrics().cancelled, 1);
  EXPECT_EQ(ts.engine_metrics().kv_bytes_reserved, 0u);
  EXPECT_LT(connect_loopback(ts.port, 1000), 0) << "the listening socket must be closed";
}

TEST(ServerHttp, MetricsCountRequestsPerSchedulerQueue) {
  HARMONIA_REQUIRE_SHARED(kModel);
  ServerOptions o;
  o.engine.sched = "mlfq:quantum1=2:service_unit=tokens:skip_join=false";
  o.engine.max_seqs = 1;  // one runs, the others wait: a request is demoted after 2, 6, 14 ... tokens
  o.debug_event_delay_ms = 3;
  TestServer ts(o);
  std::vector<std::future<HttpResult>> reqs;
  for (int i = 0; i < 3; ++i)
    reqs.push_back(std::async(std::launch::async, [&] {
      return post(ts.port, "/v1/completions", json{{"prompt", "Once"}, {"max_tokens", 30}, {"ignore_eos", true}});
    }));
  // Sample the gauges while they run: requests show up in queues below the top one.
  std::map<std::string, int> lower_queue_samples;  // "running{queue=\"k\"}" etc. with k > 0 and a value > 0
  int max_waiting = 0;
  for (int k = 0; k < 200 && lower_queue_samples.size() < 2; ++k) {
    std::istringstream lines(get(ts.port, "/metrics").body);
    int waiting = 0;
    for (std::string line; std::getline(lines, line);) {
      int q = 0;
      long long v = 0;
      char kind[16] = {0};
      if (std::sscanf(line.c_str(), "harmonia_requests_%15[a-z]{queue=\"%d\"} %lld", kind, &q, &v) == 3 && v > 0) {
        if (std::string(kind) == "waiting") waiting += static_cast<int>(v);
        if (q > 0) lower_queue_samples[std::string(kind) + "/" + std::to_string(q)]++;
      }
    }
    max_waiting = std::max(max_waiting, waiting);
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
  for (auto& r : reqs) EXPECT_EQ(r.get().status, 200);
  EXPECT_GE(max_waiting, 1);
  EXPECT_FALSE(lower_queue_samples.empty()) << "no request was ever seen below queue 0";
  const std::string after = get(ts.port, "/metrics").body;
  EXPECT_NE(after.find("harmonia_requests_running{queue=\"0\"} 0"), std::string::npos) << after;
}
