#pragma once
// Server-sent events (the text/event-stream framing OpenAI streams use) and the
// channel that carries one request's engine events from the engine thread to
// the HTTP worker that writes them.
#include <chrono>
#include <condition_variable>
#include <deque>
#include <mutex>
#include <string>
#include <vector>

#include "engine/engine.h"

namespace harmonia::server {

// "data: <payload>\n\n" — one event.
std::string sse_data(const std::string& payload);
// The stream's last event, as OpenAI sends it.
inline constexpr const char* kSseDone = "data: [DONE]\n\n";

// One request's events. The engine callback push()es (engine thread); the HTTP
// worker pop()s. Shared by both through a shared_ptr, so either may go first.
class RequestChannel {
 public:
  void push(const engine::Event& e);
  // Moves the queued events into `out` (cleared first), waiting up to `timeout`
  // for the first. Returns false when none came.
  bool pop(std::vector<engine::Event>& out, std::chrono::milliseconds timeout);
  // True once the final event (done) was pushed.
  bool finished() const;

 private:
  mutable std::mutex mu_;
  std::condition_variable cv_;
  std::deque<engine::Event> q_;
  bool finished_ = false;
};

}  // namespace harmonia::server
