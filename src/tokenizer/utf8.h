#pragma once
// Private UTF-8 helpers of src/tokenizer/.
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

namespace harmonia::tok {

// Bytes of the UTF-8 sequence that `lead` starts, by the lead byte alone
// (1 for ASCII, continuation and invalid bytes), as llama.cpp's unicode_len_utf8.
inline size_t utf8_seq_len(uint8_t lead) {
  if (lead < 0xC0) return 1;
  if (lead < 0xE0) return 2;
  if (lead < 0xF0) return 3;
  if (lead < 0xF8) return 4;
  return 1;
}

inline void append_utf8(std::string& out, uint32_t cp) {
  if (cp < 0x80) {
    out += static_cast<char>(cp);
  } else if (cp < 0x800) {
    out += static_cast<char>(0xC0 | (cp >> 6));
    out += static_cast<char>(0x80 | (cp & 0x3F));
  } else if (cp < 0x10000) {
    out += static_cast<char>(0xE0 | (cp >> 12));
    out += static_cast<char>(0x80 | ((cp >> 6) & 0x3F));
    out += static_cast<char>(0x80 | (cp & 0x3F));
  } else {
    out += static_cast<char>(0xF0 | (cp >> 18));
    out += static_cast<char>(0x80 | ((cp >> 12) & 0x3F));
    out += static_cast<char>(0x80 | ((cp >> 6) & 0x3F));
    out += static_cast<char>(0x80 | (cp & 0x3F));
  }
}

// Result of checking the UTF-8 sequence at the start of `s` (RFC 3629: no
// overlong forms, no surrogates, nothing above U+10FFFF).
enum class Utf8Check { Valid, Incomplete, Invalid };
// len: bytes of the valid sequence (Valid), or bytes present of a valid but
// truncated one (Incomplete), or 1 (Invalid: the lead byte is to be replaced).
Utf8Check utf8_check(std::string_view s, size_t* len);

// Decodes the codepoint at s[*pos] and advances *pos; invalid bytes decode as
// U+FFFD one byte at a time.
uint32_t utf8_next(std::string_view s, size_t* pos);

}  // namespace harmonia::tok
