#include "tokenizer/vocab.h"

#include <algorithm>

#include "common/error.h"
#include "tokenizer/utf8.h"

namespace harmonia::tok {

// ---- UTF-8 ---------------------------------------------------------------------

Utf8Check utf8_check(std::string_view s, size_t* len) {
  *len = 1;
  if (s.empty()) return Utf8Check::Incomplete;
  const auto c = static_cast<uint8_t>(s[0]);
  if (c < 0x80) return Utf8Check::Valid;
  size_t need = 0;
  uint8_t lo = 0x80, hi = 0xBF;  // allowed range of the second byte
  if (c < 0xC2) return Utf8Check::Invalid;  // continuation byte or overlong C0/C1
  if (c < 0xE0) {
    need = 2;
  } else if (c < 0xF0) {
    need = 3;
    if (c == 0xE0) lo = 0xA0;  // overlong
    if (c == 0xED) hi = 0x9F;  // surrogates
  } else if (c < 0xF5) {
    need = 4;
    if (c == 0xF0) lo = 0x90;  // overlong
    if (c == 0xF4) hi = 0x8F;  // above U+10FFFF
  } else {
    return Utf8Check::Invalid;
  }
  for (size_t k = 1; k < need; ++k) {
    if (k >= s.size()) {
      *len = k;
      return Utf8Check::Incomplete;
    }
    const auto b = static_cast<uint8_t>(s[k]);
    if (b < (k == 1 ? lo : 0x80) || b > (k == 1 ? hi : 0xBF)) return Utf8Check::Invalid;
  }
  *len = need;
  return Utf8Check::Valid;
}

uint32_t utf8_next(std::string_view s, size_t* pos) {
  size_t len = 1;
  std::string_view rest = s.substr(*pos);
  if (utf8_check(rest, &len) != Utf8Check::Valid) {
    *pos += 1;
    return 0xFFFD;
  }
  const auto* p = reinterpret_cast<const uint8_t*>(rest.data());
  uint32_t cp = 0;
  switch (len) {
    case 1: cp = p[0]; break;
    case 2: cp = ((p[0] & 0x1Fu) << 6) | (p[1] & 0x3Fu); break;
    case 3: cp = ((p[0] & 0x0Fu) << 12) | ((p[1] & 0x3Fu) << 6) | (p[2] & 0x3Fu); break;
    default:
      cp = ((p[0] & 0x07u) << 18) | ((p[1] & 0x3Fu) << 12) | ((p[2] & 0x3Fu) << 6) | (p[3] & 0x3Fu);
  }
  *pos += len;
  return cp;
}

// ---- Vocab ---------------------------------------------------------------------

void Vocab::index() {
  const size_t n = pieces.size();
  scores.resize(n, 0.0f);
  types.resize(n, TokType::Normal);
  ids.clear();
  ids.reserve(n + text_override.size());
  for (size_t i = 0; i < n; ++i) ids.emplace(pieces[i], static_cast<int32_t>(i));
  for (const auto& [id, text] : text_override) ids.emplace(text, id);
}

void Vocab::check_id(int32_t id) const {
  if (id < 0 || id >= size())
    fail(ErrorKind::InvalidInput, "{}: token id {} is outside the vocabulary [0, {})", source, id,
         size());
}

const std::string& Vocab::text(int32_t id) const {
  if (auto it = text_override.find(id); it != text_override.end()) return it->second;
  return pieces[static_cast<size_t>(id)];
}

int parse_byte_piece(std::string_view p) {
  if (p.size() != 6 || p.substr(0, 3) != "<0x" || p[5] != '>') return -1;
  auto hex = [](char c) -> int {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    return -1;
  };
  const int hi = hex(p[3]), lo = hex(p[4]);
  return hi < 0 || lo < 0 ? -1 : hi * 16 + lo;
}

std::vector<AddedToken> added_tokens_from_types(const Vocab& v) {
  std::vector<AddedToken> out;
  for (int32_t id = 0; id < v.size(); ++id) {
    const TokType t = v.types[static_cast<size_t>(id)];
    // As llama.cpp: user-defined tokens are always matched; control and unknown
    // tokens only when the caller asks for special-token parsing.
    if (t == TokType::Control || t == TokType::Unknown || t == TokType::UserDefined) {
      AddedToken a;
      a.text = v.text(id);
      a.id = id;
      a.special = t != TokType::UserDefined;
      if (!a.text.empty()) out.push_back(std::move(a));
    }
  }
  return out;
}

// ---- SpecialSplitter -----------------------------------------------------------

void SpecialSplitter::build(std::vector<AddedToken> toks) {
  std::erase_if(toks, [](const AddedToken& t) { return t.text.empty(); });
  // Longest first, so the first candidate that matches at a position is the longest.
  std::stable_sort(toks.begin(), toks.end(), [](const AddedToken& a, const AddedToken& b) {
    return a.text.size() > b.text.size();
  });
  toks_ = std::move(toks);
  for (auto& v : by_first_) v.clear();
  for (size_t i = 0; i < toks_.size(); ++i)
    by_first_[static_cast<uint8_t>(toks_[i].text[0])].push_back(static_cast<uint32_t>(i));
}

std::vector<SpecialSplitter::Fragment> SpecialSplitter::split(std::string_view text,
                                                              bool parse_special) const {
  std::vector<Fragment> out;
  auto is_ws = [](char c) { return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\f' || c == '\v'; };
  size_t start = 0, pos = 0;
  while (pos < text.size()) {
    const AddedToken* hit = nullptr;
    for (uint32_t idx : by_first_[static_cast<uint8_t>(text[pos])]) {
      const AddedToken& t = toks_[idx];
      if (t.special && !parse_special) continue;
      if (text.compare(pos, t.text.size(), t.text) == 0) {
        hit = &t;
        break;
      }
    }
    if (!hit) {
      ++pos;
      continue;
    }
    size_t text_end = pos;
    if (hit->lstrip)
      while (text_end > start && is_ws(text[text_end - 1])) --text_end;
    if (text_end > start) out.push_back({text.substr(start, text_end - start), -1, start});
    out.push_back({{}, hit->id, pos});
    pos += hit->text.size();
    if (hit->rstrip)
      while (pos < text.size() && is_ws(text[pos])) ++pos;
    start = pos;
  }
  if (start < text.size()) out.push_back({text.substr(start), -1, start});
  return out;
}

// ---- VocabTokenizer ------------------------------------------------------------

VocabTokenizer::VocabTokenizer(Vocab v) : v_(std::move(v)) {
  if (v_.eos >= 0) eog_.push_back(v_.eos);
  // End-of-turn markers of the chat formats we know; generation stops at any.
  for (const char* name : {"<|eot_id|>", "<|eom_id|>", "<|im_end|>", "<|end_of_text|>",
                           "<|endoftext|>"}) {
    const int32_t id = v_.find(name);
    if (id >= 0 && std::find(eog_.begin(), eog_.end(), id) == eog_.end()) eog_.push_back(id);
  }
}

bool VocabTokenizer::is_special(int32_t id) const {
  v_.check_id(id);
  const TokType t = v_.types[static_cast<size_t>(id)];
  return t == TokType::Control || t == TokType::Unknown;
}

std::string VocabTokenizer::piece(int32_t id) const {
  v_.check_id(id);
  return v_.pieces[static_cast<size_t>(id)];
}

std::optional<int32_t> VocabTokenizer::piece_to_id(std::string_view piece) const {
  const int32_t id = v_.find(piece);
  if (id < 0) return std::nullopt;
  return id;
}

std::string VocabTokenizer::decode(const std::vector<int32_t>& ids, bool skip_special) const {
  std::string out;
  // The dummy-prefix space belongs to the first token after an optional BOS
  // (llama.cpp llama_detokenize; llama2.c run.c strips it after BOS).
  const size_t first = !ids.empty() && v_.bos >= 0 && ids[0] == v_.bos ? 1 : 0;
  for (size_t i = 0; i < ids.size(); ++i) {
    const int32_t id = ids[i];
    v_.check_id(id);
    if (skip_special && is_special(id)) continue;
    std::string b = token_bytes(id);
    if (strip_first_space_ && i == first && !b.empty() && b[0] == ' ') b.erase(0, 1);
    out += b;
  }
  return out;
}

}  // namespace harmonia::tok
