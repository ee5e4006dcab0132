// The real binary: `harmonia serve` prints its capacity, serves, and on SIGTERM
// stops accepting, lets the in-flight request finish, and exits 0.
#include <gtest/gtest.h>

#include <signal.h>
#include <sys/wait.h>

#include <future>

#include "server/test_util.h"

using namespace harmonia;
using namespace harmonia::server;
using namespace harmonia::server::testing;

TEST(ServerProcess, SigtermFinishesTheInFlightRequestAndExitsCleanly) {
  HARMONIA_REQUIRE_SHARED(kModel);
  const std::string bin_path = harmonia_bin();
  if (!file_exists(bin_path)) GTEST_SKIP() << "the harmonia binary was not found at '" << bin_path << "' (set HARMONIA_BIN)";
  const char* bin = bin_path.c_str();
  int out[2];
  ASSERT_EQ(::pipe(out), 0);
  const std::string model = shared_path(kModel);
  const pid_t pid = ::fork();
  ASSERT_GE(pid, 0);
  if (pid == 0) {
    ::dup2(out[1], 1);
    ::dup2(out[1], 2);
    ::close(out[0]);
    ::close(out[1]);
    ::execl(bin, bin, "serve", "-m", model.c_str(), "--host", "127.0.0.1", "--port", "0", "--ctx", "256", "--threads", "1",
            "--kv", "full,streaming:window=32", "--kv-budget", "16M", "--debug-event-delay-ms", "5", "--shutdown-grace", "20",
            static_cast<char*>(nullptr));
    ::_exit(127);
  }
  ::close(out[1]);
  FILE* f = ::fdopen(out[0], "r");
  ASSERT_NE(f, nullptr);
  std::string log;
  int port = 0;
  char line[4096];
  while (port == 0 && std::fgets(line, sizeof line, f)) {
    log += line;
    if (std::sscanf(line, "listening on http://127.0.0.1:%d", &port) == 1) break;
  }
  ASSERT_GT(port, 0) << log;
  EXPECT_NE(log.find("context      256 tokens per sequence"), std::string::npos) << log;
  EXPECT_NE(log.find("kv           full: "), std::string::npos) << log;
  EXPECT_NE(log.find("sequences of 256 tokens under streaming(window=32)"), std::string::npos) << log;

  auto inflight = std::async(std::launch::async, [&] {
    return post(port, "/v1/completions",
                json{{"prompt", "Once upon a time"}, {"max_tokens", 60}, {"ignore_eos", true}, {"stream", true}});
  });
  ASSERT_TRUE(eventually([&] {
    const HttpResult h = get(port, "/health");
    return h.status == 200 && h.j()["running"].get<int>() > 0;
  }));
  ASSERT_EQ(::kill(pid, SIGTERM), 0);
  const HttpResult r = inflight.get();
  EXPECT_EQ(r.status, 200);
  bool done = false;
  const auto evs = sse_events(r.body, &done);
  EXPECT_TRUE(done) << r.body.substr(0, 500);
  ASSERT_GE(evs.size(), 2u);
  EXPECT_EQ(evs.back()["choices"][0]["finish_reason"], "length") << evs.back().dump();
  int status = 0;
  bool exited = eventually([&] { return ::waitpid(pid, &status, WNOHANG) == pid; }, 20000);
  if (!exited) {
    ::kill(pid, SIGKILL);
    ::waitpid(pid, &status, 0);
  }
  while (std::fgets(line, sizeof line, f)) log += line;
  std::fclose(f);
  ASSERT_TRUE(exited) << "the server did not exit after SIGTERM\n" << log;
  ASSERT_TRUE(WIFEXITED(status)) << log;
  EXPECT_EQ(WEXITSTATUS(status), 0) << log;
  EXPECT_NE(log.find("stopped cleanly (1 finished, 0 cancelled, 0 failed)"), std::string::npos) << log;
  EXPECT_LT(connect_loopback(port, 500), 0);
}
