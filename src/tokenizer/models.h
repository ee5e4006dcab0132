#pragma once
// Private to src/tokenizer/: the two tokenization algorithms and their options.
// The loaders (loaders.cpp) fill a Vocab and these options from a file format;
// the algorithms do not know where the vocabulary came from.
#include <array>
#include <memory>
#include <string>
#include <vector>

#include "tokenizer/merge.h"
#include "tokenizer/vocab.h"

namespace harmonia::tok {

// SentencePiece-style BPE: spaces become a marker ("▁"), a dummy-prefix space
// starts each text fragment, unknown characters fall back to <0xNN> tokens.
struct SpmOptions {
  std::string space = "\xE2\x96\x81";  // U+2581 '▁'; llama2.c files store plain " "
  enum class Prefix {
    AfterSpecial,  // at text start and after every special token (llama.cpp, HF Prepend normalizer)
    First,         // only at text start (HF Metaspace prepend_scheme "first")
    Never,
  };
  Prefix prefix = Prefix::AfterSpecial;
  // HF Metaspace: no dummy prefix when the fragment already starts with a space.
  bool prefix_unless_space = false;
  // false: merge the highest-scoring adjacent pair whose concatenation is a token
  // (SentencePiece, llama.cpp llm_tokenizer_spm; GGUF and llama2.c vocabs).
  // true: merge by rule rank from `merges` (HF tokenizer.json BPE).
  bool use_ranks = false;
  MergeTable merges;
  bool split_words = false;  // HF Metaspace split=true: each "▁word" separately
  bool byte_fallback = true;
  bool fuse_unk = false;  // consecutive unknown characters give one <unk>
  std::vector<AddedToken> added;
};
std::unique_ptr<Tokenizer> make_spm_tokenizer(Vocab v, SpmOptions o);

// Byte-level BPE (GPT-2): pre-tokenizer regexes split the text into words,
// each word's bytes are mapped to printable characters and merged by rank.
struct BpeOptions {
  // Applied in turn, each splitting the pieces of the previous one (HF
  // Sequence of Split pre-tokenizers); matches and the gaps between them are
  // both kept, as HF's behavior "Isolated".
  std::vector<std::string> regexes;
  bool add_prefix_space = false;  // HF ByteLevel: " " before a fragment that lacks one
  bool ignore_merges = false;     // a word that is itself a token is not merged (Llama 3)
  MergeTable merges;
  std::vector<AddedToken> added;
};
std::unique_ptr<Tokenizer> make_bpe_tokenizer(Vocab v, BpeOptions o);

// GPT-2 bytes_to_unicode(): byte -> UTF-8 of the printable character standing for it.
const std::array<std::string, 256>& byte_to_unicode();
// Inverse: codepoint -> byte, or -1.
int unicode_to_byte(uint32_t cp);

// Pre-tokenizer regexes.
extern const char* const kGpt2Regex;
extern const char* const kLlama3Regex;
extern const char* const kQwen2Regex;

}  // namespace harmonia::tok
