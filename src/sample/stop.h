#pragma once
// When to stop generating, and which decoded text may be streamed so far.
//
// The engine feeds every generated token with its decoded text piece to
// StopChecker::push() and streams the returned text. Text that could still be
// the start of a stop string is held back until it either completes the stop
// string (then it is dropped: the stop string and anything after it are never
// emitted, as in OpenAI and llama.cpp) or diverges (then it is released). A
// trailing incomplete UTF-8 sequence is held back too, so a byte-level token
// that splits a character never reaches the client half-written.
//
// Example, stop string "###": pieces "a#", "#", "b" emit "a", "", "##b";
// pieces "a#", "##x" emit "a", "" and stop with reason StopString.
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace harmonia {

enum class StopReason {
  None,        // keep generating
  StopToken,   // a stop token (EOS/EOT or a user-given id) was generated
  StopString,  // the text contains a stop string
  MaxTokens,   // max_tokens tokens were generated
};

// "none", "stop_token", "stop_string", "max_tokens" (for logs and metrics).
const char* stop_reason_name(StopReason r);
// OpenAI finish_reason: "stop" for StopToken/StopString, "length" for
// MaxTokens, nullptr for None (still generating).
const char* openai_finish_reason(StopReason r);

// Outcome of one push().
struct StopStep {
  std::string text;                      // text to emit now (may be empty)
  StopReason reason = StopReason::None;  // None = generate another token
  int index = -1;  // which stop_strings / stop_tokens entry matched; -1 otherwise
  bool stop() const { return reason != StopReason::None; }
};

class StopChecker {
 public:
  // stop_strings: non-empty strings ending the output (matched on the decoded
  //   text, possibly spanning several tokens).
  // stop_tokens: token ids ending the output; their piece is not emitted. The
  //   engine includes the tokenizer's EOS/EOT ids here.
  // max_tokens: generated tokens allowed, >= 1, or -1 for no limit.
  // Throws Error(InvalidInput) on an empty stop string, a negative stop token
  // or a bad max_tokens.
  StopChecker(std::vector<std::string> stop_strings, std::vector<int32_t> stop_tokens,
              int max_tokens);

  // Records one generated token and its decoded text piece (bytes; may end
  // mid-character). Checks, in order: stop token, stop string, max_tokens.
  // On any stop, the returned text is everything still emittable (held-back
  // text is released unless it was the start of the matched stop string).
  // Throws Error(Internal) when called after a stop.
  StopStep push(int32_t token, std::string_view piece);

  // Returns and clears the held-back text, for a stream the caller ends for a
  // reason of its own (context full, client cancelled; the caller reports that
  // finish reason: reason() stays as it was). "" after a stop.
  std::string flush();

  bool stopped() const { return reason_ != StopReason::None; }
  StopReason reason() const { return reason_; }
  int n_tokens() const { return n_tokens_; }  // tokens pushed so far
  size_t held_bytes() const { return pending_.size(); }  // text held back now

 private:
  // Bytes at the end of pending_ that must wait for more text.
  size_t hold_back() const;

  std::vector<std::string> stop_strings_;
  std::vector<int32_t> stop_tokens_;
  int max_tokens_;
  int n_tokens_ = 0;
  std::string pending_;  // decoded but not yet emitted
  StopReason reason_ = StopReason::None;
};

}  // namespace harmonia
