#include "sample/stop.h"

#include <algorithm>

#include "common/error.h"

namespace harmonia {

const char* stop_reason_name(StopReason r) {
  switch (r) {
    case StopReason::None: return "none";
    case StopReason::StopToken: return "stop_token";
    case StopReason::StopString: return "stop_string";
    case StopReason::MaxTokens: return "max_tokens";
  }
  return "unknown";
}

const char* openai_finish_reason(StopReason r) {
  switch (r) {
    case StopReason::None: return nullptr;
    case StopReason::StopToken:
    case StopReason::StopString: return "stop";
    case StopReason::MaxTokens: return "length";
  }
  return nullptr;
}

namespace {

// Length of a trailing UTF-8 sequence whose lead byte promises more bytes than
// are present (0 when the text ends on a character boundary or is not UTF-8).
size_t incomplete_utf8_tail(std::string_view s) {
  size_t i = s.size();
  size_t cont = 0;
  while (i > 0 && cont < 3 && (static_cast<unsigned char>(s[i - 1]) & 0xC0) == 0x80) {
    --i;
    ++cont;
  }
  if (i == 0) return 0;
  const unsigned char lead = static_cast<unsigned char>(s[i - 1]);
  size_t need = 1;
  if (lead >= 0xF8) need = 1;  // not a UTF-8 lead byte
  else if (lead >= 0xF0) need = 4;
  else if (lead >= 0xE0) need = 3;
  else if (lead >= 0xC0) need = 2;
  const size_t have = cont + 1;
  return have < need ? have : 0;
}

}  // namespace

StopChecker::StopChecker(std::vector<std::string> stop_strings, std::vector<int32_t> stop_tokens,
                         int max_tokens)
    : stop_strings_(std::move(stop_strings)),
      stop_tokens_(std::move(stop_tokens)),
      max_tokens_(max_tokens) {
  for (size_t i = 0; i < stop_strings_.size(); ++i)
    if (stop_strings_[i].empty()) fail(ErrorKind::InvalidInput, "stop string {} is empty", i);
  for (size_t i = 0; i < stop_tokens_.size(); ++i)
    if (stop_tokens_[i] < 0)
      fail(ErrorKind::InvalidInput, "stop token {} is {}, expected a token id >= 0", i,
           stop_tokens_[i]);
  if (max_tokens_ < 1 && max_tokens_ != -1)
    fail(ErrorKind::InvalidInput, "max_tokens must be >= 1 or -1 (no limit), got {}", max_tokens_);
}

size_t StopChecker::hold_back() const {
  // Longest suffix of pending_ that is a proper prefix of some stop string.
  size_t hold = 0;
  const std::string_view p = pending_;
  for (const auto& s : stop_strings_) {
    for (size_t len = std::min(s.size() - 1, p.size()); len > hold; --len) {
      if (p.substr(p.size() - len) == std::string_view(s).substr(0, len)) {
        hold = len;
        break;
      }
    }
  }
  return std::max(hold, incomplete_utf8_tail(p));
}

StopStep StopChecker::push(int32_t token, std::string_view piece) {
  if (stopped())
    fail(ErrorKind::Internal, "StopChecker::push(token {}) after the output stopped ({})", token,
         stop_reason_name(reason_));
  ++n_tokens_;
  StopStep step;

  auto tok = std::find(stop_tokens_.begin(), stop_tokens_.end(), token);
  if (tok != stop_tokens_.end()) {
    step.reason = reason_ = StopReason::StopToken;
    step.index = int(tok - stop_tokens_.begin());
    step.text = std::move(pending_);
    pending_.clear();
    return step;
  }

  pending_.append(piece);
  // Earliest occurrence of any stop string; ties go to the first listed.
  size_t best = std::string::npos;
  for (size_t i = 0; i < stop_strings_.size(); ++i) {
    const size_t pos = pending_.find(stop_strings_[i]);
    if (pos < best) {
      best = pos;
      step.index = int(i);
    }
  }
  if (best != std::string::npos) {
    step.reason = reason_ = StopReason::StopString;
    step.text = pending_.substr(0, best);
    pending_.clear();
    return step;
  }

  if (max_tokens_ != -1 && n_tokens_ >= max_tokens_) {
    step.reason = reason_ = StopReason::MaxTokens;
    step.text = std::move(pending_);
    pending_.clear();
    return step;
  }

  const size_t emit = pending_.size() - hold_back();
  step.text = pending_.substr(0, emit);
  pending_.erase(0, emit);
  return step;
}

std::string StopChecker::flush() {
  std::string out = std::move(pending_);
  pending_.clear();
  return out;
}

}  // namespace harmonia
