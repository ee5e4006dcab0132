// The official `openai` npm client (tests/npm/client.mjs) against a real server:
// a chat completion, a streamed completion, a models listing and typed errors.
// `make test-fast` installs the client (make npm-deps); without node or the
// module the test is skipped with the reason.
#include <gtest/gtest.h>

#include <array>
#include <cstdio>
#include <cstdlib>

#include "server/test_util.h"

using namespace harmonia;
using namespace harmonia::server;
using namespace harmonia::server::testing;

TEST(ServerNpm, OfficialOpenAiClientTalksToTheServer) {
  HARMONIA_REQUIRE_SHARED(kModel);
  const std::string dir = source_dir() + "/tests/npm";
  if (!file_exists(dir + "/client.mjs")) GTEST_SKIP() << "tests/npm/client.mjs not found (set HARMONIA_SOURCE to the source tree)";
  if (std::system("node --version > /dev/null 2>&1") != 0) GTEST_SKIP() << "node is not installed";
  if (!file_exists(dir + "/node_modules/openai/package.json"))
    GTEST_SKIP() << "the openai npm module is missing: run `make npm-deps` (cd tests/npm && npm ci)";
  ServerOptions o;
  o.api_key = "sk-npm-test";
  TestServer ts(o);
  const std::string cmd = "cd '" + dir + "' && timeout 120 node client.mjs http://127.0.0.1:" + std::to_string(ts.port) +
                          "/v1 sk-npm-test 2>&1";
  FILE* p = ::popen(cmd.c_str(), "r");
  ASSERT_NE(p, nullptr);
  std::string out;
  std::array<char, 4096> buf;
  while (size_t n = std::fread(buf.data(), 1, buf.size(), p)) out.append(buf.data(), n);
  const int rc = ::pclose(p);
  ASSERT_EQ(rc, 0) << out;
  const json j = json::parse(out.substr(0, out.find('\n')), nullptr, false);
  ASSERT_TRUE(j.is_object()) << out;
  EXPECT_EQ(j["ok"], true) << out;
  EXPECT_EQ(j["model"], "stories260K");
  EXPECT_GT(j["chunks"].get<int>(), 2) << out;
  EXPECT_GE(ts.srv->metrics().responses("/v1/chat/completions", 200), 1);
  EXPECT_EQ(ts.srv->metrics().responses("/v1/completions", 404), 1);
  EXPECT_EQ(ts.srv->metrics().responses("/v1/models", 401), 1);
}
