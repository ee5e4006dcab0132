#include "server/sse.h"

namespace harmonia::server {

std::string sse_data(const std::string& payload) {
  std::string s;
  s.reserve(payload.size() + 8);
  s += "data: ";
  s += payload;  // JSON text from dump(): no raw newlines, so one data line
  s += "\n\n";
  return s;
}

void RequestChannel::push(const engine::Event& e) {
  {
    std::lock_guard<std::mutex> lk(mu_);
    q_.push_back(e);
    if (e.done) finished_ = true;
  }
  cv_.notify_all();
}

bool RequestChannel::pop(std::vector<engine::Event>& out, std::chrono::milliseconds timeout) {
  out.clear();
  std::unique_lock<std::mutex> lk(mu_);
  if (!cv_.wait_for(lk, timeout, [&] { return !q_.empty(); })) return false;
  while (!q_.empty()) {
    out.push_back(std::move(q_.front()));
    q_.pop_front();
  }
  return true;
}

bool RequestChannel::finished() const {
  std::lock_guard<std::mutex> lk(mu_);
  return finished_;
}

}  // namespace harmonia::server
