// StreamDecoder: token-by-token detokenisation that only ever hands out whole
// UTF-8 characters (a byte-fallback emoji arrives as four <0xNN> tokens).
#include "tokenizer/tokenizer.h"
#include "tokenizer/utf8.h"

namespace harmonia {

namespace {
constexpr const char* kReplacement = "\xEF\xBF\xBD";  // U+FFFD

// Moves the complete characters at the front of `pending` into the result;
// invalid bytes become U+FFFD, an incomplete final sequence stays pending.
std::string take_complete(std::string& pending) {
  std::string out;
  size_t i = 0;
  while (i < pending.size()) {
    size_t len = 1;
    const auto c = tok::utf8_check(std::string_view(pending).substr(i), &len);
    if (c == tok::Utf8Check::Incomplete) break;
    if (c == tok::Utf8Check::Valid)
      out.append(pending, i, len);
    else
      out += kReplacement;
    i += len;
  }
  pending.erase(0, i);
  return out;
}
}  // namespace

StreamDecoder::StreamDecoder(const Tokenizer& tok, bool skip_special)
    : tok_(tok), skip_special_(skip_special), first_(false) {}

void StreamDecoder::continue_after(int32_t prev_id) { first_ = prev_id >= 0 && prev_id == tok_.bos_id(); }

std::string StreamDecoder::push(int32_t id) {
  const int32_t bos = tok_.bos_id();
  const bool special = tok_.is_special(id);  // also validates id
  if (skip_special_ && special) {
    // Nothing to show.
  } else if (first_ && !special) {
    // decode() applies the vocab's own rule to the token after BOS (a no-op
    // for byte-level vocabs).
    pending_ += tok_.decode({bos, id}, /*skip_special=*/true);
  } else {
    pending_ += tok_.token_bytes(id);
  }
  first_ = id == bos;
  return take_complete(pending_);
}

std::string StreamDecoder::flush() {
  std::string out = take_complete(pending_);
  if (!pending_.empty()) out += kReplacement;  // a sequence cut short by the end of the stream
  pending_.clear();
  return out;
}

}  // namespace harmonia
