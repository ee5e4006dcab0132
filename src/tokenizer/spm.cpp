// SentencePiece-style BPE with byte fallback (kind "spm").
#include <algorithm>
#include <queue>

#include "common/error.h"
#include "tokenizer/models.h"
#include "tokenizer/utf8.h"

namespace harmonia::tok {
namespace {

class SpmTokenizer final : public VocabTokenizer {
 public:
  SpmTokenizer(Vocab v, SpmOptions o) : VocabTokenizer(std::move(v)), o_(std::move(o)) {
    strip_first_space_ = o_.prefix != SpmOptions::Prefix::Never;
    byte_ids_.fill(-1);
    for (int32_t id = 0; id < v_.size(); ++id) {
      if (v_.types[static_cast<size_t>(id)] != TokType::Byte) continue;
      const int b = parse_byte_piece(v_.pieces[static_cast<size_t>(id)]);
      if (b >= 0 && byte_ids_[static_cast<size_t>(b)] < 0) byte_ids_[static_cast<size_t>(b)] = id;
    }
    splitter_.build(std::move(o_.added));
  }

  std::vector<int32_t> encode(std::string_view text, bool add_bos, bool parse_special) const override {
    std::vector<int32_t> out;
    if (add_bos && v_.bos >= 0) out.push_back(v_.bos);
    bool prev_special = true;
    std::string s;
    for (const auto& frag : splitter_.split(text, parse_special)) {
      if (frag.id >= 0) {
        out.push_back(frag.id);
        prev_special = true;
        continue;
      }
      s.clear();
      bool prefix = false;
      switch (o_.prefix) {
        case SpmOptions::Prefix::AfterSpecial: prefix = prev_special; break;
        case SpmOptions::Prefix::First: prefix = frag.offset == 0; break;
        case SpmOptions::Prefix::Never: break;
      }
      if (prefix && o_.prefix_unless_space && frag.text[0] == ' ') prefix = false;
      if (prefix) s = o_.space;
      for (char c : frag.text) {
        if (c == ' ')
          s += o_.space;
        else
          s += c;
      }
      prev_special = false;
      if (o_.split_words) {
        // Words start at each space marker (HF Metaspace split, MergedWithNext).
        size_t start = 0;
        while (start < s.size()) {
          size_t next = s.find(o_.space, start + 1);
          if (next == std::string::npos) next = s.size();
          encode_word(std::string_view(s).substr(start, next - start), out);
          start = next;
        }
      } else {
        encode_word(s, out);
      }
    }
    return out;
  }

  std::string token_bytes(int32_t id) const override {
    v_.check_id(id);
    const std::string& p = v_.pieces[static_cast<size_t>(id)];
    switch (v_.types[static_cast<size_t>(id)]) {
      case TokType::Byte: {
        const int b = parse_byte_piece(p);
        return b >= 0 ? std::string(1, static_cast<char>(b)) : p;
      }
      case TokType::Control:
      case TokType::Unknown:
      case TokType::UserDefined:
        return v_.text(id);
      default: break;
    }
    if (o_.space == " ") return p;
    std::string out;
    out.reserve(p.size());
    for (size_t i = 0; i < p.size();) {
      if (p.compare(i, o_.space.size(), o_.space) == 0) {
        out += ' ';
        i += o_.space.size();
      } else {
        out += p[i++];
      }
    }
    return out;
  }

  std::string kind() const override { return "spm"; }

 private:
  // Tokens that text may be merged into. Control, byte and unused tokens are
  // left out (NOTE: llama.cpp's SPM session would turn the text "<s>" into the
  // BOS id; SentencePiece itself never does, and the test vectors come from it).
  bool mergeable(int32_t id) const {
    const TokType t = v_.types[static_cast<size_t>(id)];
    return t == TokType::Normal || t == TokType::UserDefined;
  }

  // A character that is not a token: its bytes as <0xNN> tokens, else <unk>.
  void fallback(std::string_view ch, std::vector<int32_t>& out) const {
    if (o_.byte_fallback) {
      bool all = true;
      for (char c : ch) all = all && byte_ids_[static_cast<uint8_t>(c)] >= 0;
      if (all) {
        for (char c : ch) out.push_back(byte_ids_[static_cast<uint8_t>(c)]);
        return;
      }
    }
    if (v_.unk < 0) return;  // NOTE: nothing to emit; the character is dropped
    if (o_.fuse_unk && !out.empty() && out.back() == v_.unk) return;
    out.push_back(v_.unk);
  }

  void encode_word(std::string_view text, std::vector<int32_t>& out) const {
    if (text.empty()) return;
    if (o_.use_ranks)
      encode_by_rank(text, out);
    else
      encode_by_score(text, out);
  }

  // HF tokenizers BPE::merge_word: characters -> ids, then rank-ordered merges.
  void encode_by_rank(std::string_view text, std::vector<int32_t>& out) const {
    std::vector<int32_t> syms;
    syms.reserve(text.size());
    for (size_t pos = 0; pos < text.size();) {
      const size_t len = std::min(utf8_seq_len(static_cast<uint8_t>(text[pos])), text.size() - pos);
      const std::string_view ch = text.substr(pos, len);
      const int32_t id = v_.find(ch);
      if (id >= 0 && mergeable(id)) {
        syms.push_back(id);
      } else {
        fallback(ch, syms);  // into syms, so fuse_unk only fuses within the word
      }
      pos += len;
    }
    merge_by_rank(o_.merges, syms);
    out.insert(out.end(), syms.begin(), syms.end());
  }

  // llama.cpp llm_tokenizer_spm_session::tokenize: start from UTF-8 characters
  // and repeatedly merge the adjacent pair whose concatenation is the
  // highest-scoring token (leftmost on ties).
  void encode_by_score(std::string_view text, std::vector<int32_t>& out) const {
    struct Sym {
      int32_t prev, next;
      uint32_t start, len;  // bytes into text; len 0 = merged away
    };
    struct Bigram {
      float score;
      int32_t left, right;
      uint32_t size;  // bytes of the concatenation when queued
    };
    struct Lower {
      bool operator()(const Bigram& a, const Bigram& b) const {
        return a.score < b.score || (a.score == b.score && a.left > b.left);
      }
    };
    std::vector<Sym> sym;
    sym.reserve(text.size());
    for (size_t pos = 0; pos < text.size();) {
      const size_t len = std::min(utf8_seq_len(static_cast<uint8_t>(text[pos])), text.size() - pos);
      const auto i = static_cast<int32_t>(sym.size());
      sym.push_back({i - 1, -1, static_cast<uint32_t>(pos), static_cast<uint32_t>(len)});
      if (i > 0) sym[static_cast<size_t>(i - 1)].next = i;
      pos += len;
    }
    std::priority_queue<Bigram, std::vector<Bigram>, Lower> queue;
    auto try_add = [&](int32_t l, int32_t r) {
      if (l < 0 || r < 0) return;
      const Sym& a = sym[static_cast<size_t>(l)];
      const uint32_t size = a.len + sym[static_cast<size_t>(r)].len;
      const int32_t id = v_.find(text.substr(a.start, size));
      if (id < 0 || !mergeable(id)) return;
      queue.push({v_.scores[static_cast<size_t>(id)], l, r, size});
    };
    for (int32_t i = 1; i < static_cast<int32_t>(sym.size()); ++i) try_add(i - 1, i);

    while (!queue.empty()) {
      const Bigram b = queue.top();
      queue.pop();
      Sym& l = sym[static_cast<size_t>(b.left)];
      Sym& r = sym[static_cast<size_t>(b.right)];
      // Stale when either side changed since it was queued.
      if (l.len == 0 || r.len == 0 || l.len + r.len != b.size) continue;
      l.len += r.len;
      r.len = 0;
      l.next = r.next;
      if (r.next >= 0) sym[static_cast<size_t>(r.next)].prev = b.left;
      try_add(l.prev, b.left);
      try_add(b.left, l.next);
    }
    for (int32_t i = sym.empty() ? -1 : 0; i >= 0; i = sym[static_cast<size_t>(i)].next) {
      const Sym& s = sym[static_cast<size_t>(i)];
      const std::string_view piece = text.substr(s.start, s.len);
      const int32_t id = v_.find(piece);
      if (id >= 0 && mergeable(id))
        out.push_back(id);
      else
        fallback(piece, out);  // only single characters reach here: merges yield tokens
    }
  }

  SpmOptions o_;
  SpecialSplitter splitter_;
  std::array<int32_t, 256> byte_ids_;  // byte -> id of its <0xNN> token, or -1
};

}  // namespace

std::unique_ptr<Tokenizer> make_spm_tokenizer(Vocab v, SpmOptions o) {
  return std::make_unique<SpmTokenizer>(std::move(v), std::move(o));
}

}  // namespace harmonia::tok
