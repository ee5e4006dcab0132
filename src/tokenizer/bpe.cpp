// Byte-level BPE (kind "bpe"): GPT-2, Llama 3, Qwen2 vocabularies.
#define PCRE2_CODE_UNIT_WIDTH 8
#include <pcre2.h>

#include <mutex>

#include "common/error.h"
#include "tokenizer/models.h"
#include "tokenizer/utf8.h"

namespace harmonia::tok {

// llama.cpp src/llama-vocab.cpp (LLAMA_VOCAB_PRE_TYPE_GPT2) = OpenAI GPT-2 encoder.py.
const char* const kGpt2Regex =
    R"('s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+)";
// Meta Llama 3 tokenizer.json pre_tokenizer Split regex.
const char* const kLlama3Regex =
    R"((?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+)";
// Qwen2 tokenizer.json: as Llama 3 but single digits.
const char* const kQwen2Regex =
    R"((?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+)";

namespace {

struct ByteMap {
  std::array<std::string, 256> to_utf8;
  std::array<int16_t, 512> from_cp;  // codepoints used are < 324
};

// GPT-2 bytes_to_unicode(): printable Latin-1 bytes stand for themselves, the
// other 68 bytes get codepoints 256.. in byte order, so every byte has a
// visible, non-space character and merges never see raw whitespace.
const ByteMap& byte_map() {
  static const ByteMap m = [] {
    ByteMap bm;
    bm.from_cp.fill(-1);
    int n = 0;
    for (int b = 0; b < 256; ++b) {
      const bool printable = (b >= '!' && b <= '~') || (b >= 0xA1 && b <= 0xAC) || (b >= 0xAE);
      const uint32_t cp = printable ? static_cast<uint32_t>(b) : 256u + static_cast<uint32_t>(n++);
      append_utf8(bm.to_utf8[static_cast<size_t>(b)], cp);
      bm.from_cp[cp] = static_cast<int16_t>(b);
    }
    return bm;
  }();
  return m;
}

// A compiled PCRE2 pattern (UTF + Unicode properties, JIT when available).
class Regex {
 public:
  explicit Regex(const std::string& pattern) {
    int err = 0;
    PCRE2_SIZE off = 0;
    // MATCH_INVALID_UTF: text with invalid UTF-8 is still split; bad bytes
    // never match and end up in the gaps between matches.
    code_ = pcre2_compile(reinterpret_cast<PCRE2_SPTR>(pattern.data()), pattern.size(),
                          PCRE2_UTF | PCRE2_UCP | PCRE2_MATCH_INVALID_UTF, &err, &off, nullptr);
    if (!code_) {
      PCRE2_UCHAR msg[256];
      pcre2_get_error_message(err, msg, sizeof(msg));
      fail(ErrorKind::Unsupported, "pre-tokenizer regex {:?} does not compile at offset {}: {}",
           pattern, off, reinterpret_cast<const char*>(msg));
    }
    pcre2_jit_compile(code_, PCRE2_JIT_COMPLETE);  // falls back to the interpreter on failure
  }
  ~Regex() { pcre2_code_free(code_); }
  Regex(const Regex&) = delete;
  Regex& operator=(const Regex&) = delete;

  // Appends the matches of the pattern in `s` and the non-empty gaps between
  // them to `out`, in order (HF Split with behavior "Isolated").
  void split(std::string_view s, std::vector<std::string_view>& out) const {
    pcre2_match_data* md = pcre2_match_data_create_from_pattern(code_, nullptr);
    size_t pos = 0, last = 0;
    while (pos < s.size()) {
      const int rc = pcre2_match(code_, reinterpret_cast<PCRE2_SPTR>(s.data()), s.size(), pos, 0,
                                 md, nullptr);
      if (rc == PCRE2_ERROR_NOMATCH) break;
      if (rc < 0) {
        PCRE2_UCHAR msg[256];
        pcre2_get_error_message(rc, msg, sizeof(msg));
        fail(ErrorKind::Internal, "pre-tokenizer regex failed at byte {} of {}: {}", pos, s.size(),
             reinterpret_cast<const char*>(msg));
      }
      const PCRE2_SIZE* ov = pcre2_get_ovector_pointer(md);
      const size_t b = ov[0], e = ov[1];
      if (e == b) {  // an empty match splits nothing; step past one character
        pos = b + std::max<size_t>(1, utf8_seq_len(static_cast<uint8_t>(s[b])));
        continue;
      }
      if (b > last) out.push_back(s.substr(last, b - last));
      out.push_back(s.substr(b, e - b));
      last = pos = e;
    }
    if (last < s.size()) out.push_back(s.substr(last));
    pcre2_match_data_free(md);
  }

 private:
  pcre2_code* code_ = nullptr;
};

class BpeTokenizer final : public VocabTokenizer {
 public:
  BpeTokenizer(Vocab v, BpeOptions o) : VocabTokenizer(std::move(v)), o_(std::move(o)) {
    for (const auto& r : o_.regexes) regexes_.push_back(std::make_unique<Regex>(r));
    const ByteMap& bm = byte_map();
    for (size_t b = 0; b < 256; ++b) byte_ids_[b] = v_.find(bm.to_utf8[b]);
    splitter_.build(std::move(o_.added));
  }

  std::vector<int32_t> encode(std::string_view text, bool add_bos, bool parse_special) const override {
    std::vector<int32_t> out;
    out.reserve(text.size() / 3 + 2);
    if (add_bos && v_.bos >= 0) out.push_back(v_.bos);
    std::string prefixed;
    std::vector<std::string_view> words, next;
    for (const auto& frag : splitter_.split(text, parse_special)) {
      if (frag.id >= 0) {
        out.push_back(frag.id);
        continue;
      }
      std::string_view t = frag.text;
      if (o_.add_prefix_space && t[0] != ' ') {
        prefixed.clear();
        prefixed.push_back(' ');
        prefixed.append(t.data(), t.size());
        t = prefixed;
      }
      words.assign(1, t);
      for (const auto& re : regexes_) {
        next.clear();
        for (std::string_view w : words) re->split(w, next);
        words.swap(next);
      }
      for (std::string_view w : words) encode_word(w, out);
    }
    return out;
  }

  std::string token_bytes(int32_t id) const override {
    v_.check_id(id);
    const TokType t = v_.types[static_cast<size_t>(id)];
    if (t == TokType::Control || t == TokType::Unknown || t == TokType::UserDefined) return v_.text(id);
    const std::string& p = v_.pieces[static_cast<size_t>(id)];
    const ByteMap& bm = byte_map();
    std::string out;
    out.reserve(p.size());
    for (size_t pos = 0; pos < p.size();) {
      const size_t start = pos;
      const uint32_t cp = utf8_next(p, &pos);
      const int b = cp < bm.from_cp.size() ? bm.from_cp[cp] : -1;
      if (b >= 0)
        out += static_cast<char>(b);
      else
        out.append(p, start, pos - start);  // not a byte symbol: keep as is
    }
    return out;
  }

  std::string kind() const override { return "bpe"; }

 private:
  void encode_word(std::string_view word, std::vector<int32_t>& out) const {
    {
      std::lock_guard<std::mutex> lock(cache_mu_);
      if (auto it = cache_.find(word); it != cache_.end()) {
        out.insert(out.end(), it->second.begin(), it->second.end());
        return;
      }
    }
    std::vector<int32_t> ids;
    const ByteMap& bm = byte_map();
    if (o_.ignore_merges) {
      std::string mapped;
      for (char c : word) mapped += bm.to_utf8[static_cast<uint8_t>(c)];
      const int32_t id = v_.find(mapped);
      if (id >= 0 && v_.types[static_cast<size_t>(id)] == TokType::Normal) ids.push_back(id);
    }
    if (ids.empty()) {
      ids.reserve(word.size());
      for (char c : word) {
        const int32_t id = byte_ids_[static_cast<uint8_t>(c)];
        if (id >= 0)
          ids.push_back(id);
        else if (v_.unk >= 0)  // only an incomplete vocabulary lacks a byte
          ids.push_back(v_.unk);
      }
      merge_by_rank(o_.merges, ids);
    }
    out.insert(out.end(), ids.begin(), ids.end());
    std::lock_guard<std::mutex> lock(cache_mu_);
    if (cache_.size() >= kMaxCache) cache_.clear();  // bounded memory on endless streams
    cache_.emplace(std::string(word), std::move(ids));
  }

  static constexpr size_t kMaxCache = 1 << 18;  // words
  BpeOptions o_;
  std::vector<std::unique_ptr<Regex>> regexes_;
  SpecialSplitter splitter_;
  std::array<int32_t, 256> byte_ids_;  // byte -> id of its one-character token, or -1
  mutable std::mutex cache_mu_;
  mutable std::unordered_map<std::string, std::vector<int32_t>, StringHash, std::equal_to<>> cache_;
};

}  // namespace

const std::array<std::string, 256>& byte_to_unicode() { return byte_map().to_utf8; }

int unicode_to_byte(uint32_t cp) {
  const ByteMap& bm = byte_map();
  return cp < bm.from_cp.size() ? bm.from_cp[cp] : -1;
}

std::unique_ptr<Tokenizer> make_bpe_tokenizer(Vocab v, BpeOptions o) {
  return std::make_unique<BpeTokenizer>(std::move(v), std::move(o));
}

}  // namespace harmonia::tok
