#pragma once
// Private to src/tokenizer/: the vocabulary table shared by every tokenizer
// kind, the special-token splitter, and the base class that implements the
// vocabulary queries of harmonia::Tokenizer once for all of them.
#include <array>
#include <cstdint>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "tokenizer/tokenizer.h"

namespace harmonia::tok {

// Token kinds; the numeric values are GGUF's `tokenizer.ggml.token_type`.
enum class TokType : uint8_t {
  Normal = 1,
  Unknown = 2,
  Control = 3,      // <s>, </s>, <|eot_id|>, HF added tokens with special=true
  UserDefined = 4,  // HF added tokens with special=false: always matched as a whole
  Unused = 5,
  Byte = 6,  // <0xNN> byte-fallback tokens
};

struct StringHash {
  using is_transparent = void;
  size_t operator()(std::string_view s) const { return std::hash<std::string_view>{}(s); }
};
// piece -> id, with string_view lookups that do not allocate.
using PieceMap = std::unordered_map<std::string, int32_t, StringHash, std::equal_to<>>;

struct Vocab {
  std::string source;               // file the vocabulary came from, for error messages
  std::vector<std::string> pieces;  // [n_vocab] as stored
  std::vector<float> scores;        // [n_vocab]; SPM merge priority (higher merges first)
  std::vector<TokType> types;       // [n_vocab]
  PieceMap ids;                     // piece -> id; the first id wins on duplicates
  // Text of a control token when it differs from the stored piece (llama2.c
  // stores <s> as "\n<s>\n"); also accepted by piece_to_id and parse_special.
  std::unordered_map<int32_t, std::string> text_override;
  int32_t bos = -1, eos = -1, unk = -1;
  bool add_bos = false;
  std::string chat_template;

  int32_t size() const { return static_cast<int32_t>(pieces.size()); }
  // Fills `ids` from `pieces` (and text_override) and sizes scores/types to match.
  void index();
  // Throws Error(InvalidInput) naming the source when id is outside [0, size()).
  void check_id(int32_t id) const;
  // Text a control/added token stands for.
  const std::string& text(int32_t id) const;
  // Id of `piece` or -1.
  int32_t find(std::string_view piece) const {
    auto it = ids.find(piece);
    return it == ids.end() ? -1 : it->second;
  }
  // -1 when v is outside [0, size()) (GGUF writes "none" as UINT32_MAX).
  int32_t valid_or_none(int64_t v) const { return v >= 0 && v < size() ? static_cast<int32_t>(v) : -1; }
};

// Splits text around special/added tokens before the model's own tokenization,
// so "<|eot_id|>" becomes one id instead of "<|", "eot", "_id", "|>".
struct AddedToken {
  std::string text;
  int32_t id = -1;
  bool special = true;  // false: matched even without parse_special (HF non-special added tokens)
  bool lstrip = false;  // HF: also swallow whitespace on the left / right
  bool rstrip = false;
};

class SpecialSplitter {
 public:
  struct Fragment {
    std::string_view text;  // raw text when id < 0
    int32_t id = -1;
    size_t offset = 0;  // bytes from the start of the input
  };
  void build(std::vector<AddedToken> toks);
  bool empty() const { return toks_.empty(); }
  // Leftmost-longest matching of the added tokens in `text`. Special ones are
  // only matched when parse_special. Empty text fragments are dropped.
  std::vector<Fragment> split(std::string_view text, bool parse_special) const;

 private:
  std::vector<AddedToken> toks_;                    // longest first
  std::array<std::vector<uint32_t>, 256> by_first_;  // first byte -> indexes into toks_
};

// Implements the vocabulary-level queries of Tokenizer; subclasses provide
// encode(), token_bytes() and kind().
class VocabTokenizer : public Tokenizer {
 public:
  explicit VocabTokenizer(Vocab v);

  std::string decode(const std::vector<int32_t>& ids, bool skip_special = true) const override;
  int32_t vocab_size() const override { return v_.size(); }
  int32_t bos_id() const override { return v_.bos; }
  int32_t eos_id() const override { return v_.eos; }
  std::vector<int32_t> eog_ids() const override { return eog_; }
  bool is_special(int32_t id) const override;
  bool add_bos_default() const override { return v_.add_bos; }
  std::string piece(int32_t id) const override;
  std::optional<int32_t> piece_to_id(std::string_view piece) const override;
  const std::string& chat_template() const override { return v_.chat_template; }

 protected:
  Vocab v_;
  // SentencePiece vocabs: decode() drops one leading space of the first piece
  // (after BOS), the space of the dummy prefix that encode() added.
  bool strip_first_space_ = false;
  std::vector<int32_t> eog_;
};

// Lists control / user-defined / unknown tokens of `v` as added tokens (GGUF and
// sentencepiece vocabs, where the token type is all we know).
std::vector<AddedToken> added_tokens_from_types(const Vocab& v);

// "<0x0A>" -> 0x0A; -1 when `piece` is not of that form.
int parse_byte_piece(std::string_view piece);

}  // namespace harmonia::tok
