#pragma once
// Tokenizers: SentencePiece-style BPE with byte fallback (GGUF `llama` vocab,
// llama2.c tokenizer.bin, tokenizer.model through the sentencepiece library, HF
// tokenizer.json with model.type BPE + byte_fallback) and byte-level BPE
// (GGUF `gpt2` vocab, HF tokenizer.json with ByteLevel; GPT-2 / Llama 3 / Qwen2
// pre-tokenizer regexes). Special and added tokens, BOS/EOS, streaming UTF-8
// detokenisation and chat templates.
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace harmonia {
namespace gguf {
class File;
}

class Tokenizer {
 public:
  virtual ~Tokenizer() = default;

  // Token ids of `text`. add_bos: prepend BOS when the vocab has one.
  // parse_special: text like "<|eot_id|>" or "<s>" becomes that special/added token
  // (otherwise it is tokenized as plain text). Non-special added tokens (GGUF
  // user-defined, HF added with special=false, e.g. Qwen's "<think>") are matched
  // either way, as llama.cpp and HF do. SentencePiece vocabs put a dummy-prefix
  // space before the text and again after every special token (llama.cpp's rule).
  virtual std::vector<int32_t> encode(std::string_view text, bool add_bos,
                                      bool parse_special = false) const = 0;
  // Raw bytes that token `id` stands for ("<0x0A>" -> "\n", "▁" -> " ", byte-level
  // BPE symbols mapped back to bytes). Special tokens give their text (e.g. "</s>").
  // Throws Error(InvalidInput) for an id outside [0, vocab_size()).
  virtual std::string token_bytes(int32_t id) const = 0;
  // Text of `ids`. Special/control tokens are omitted when skip_special. For
  // SentencePiece vocabs the leading space of the dummy prefix is removed from
  // the first piece (as llama.cpp and llama2.c do after BOS). Raw bytes: may be
  // invalid UTF-8 mid-character (use StreamDecoder for display). Throws
  // Error(InvalidInput) for a bad id, as do is_special() and piece().
  virtual std::string decode(const std::vector<int32_t>& ids, bool skip_special = true) const = 0;

  virtual int32_t vocab_size() const = 0;
  virtual int32_t bos_id() const = 0;  // -1 when none
  virtual int32_t eos_id() const = 0;  // -1 when none
  // All ids that end generation (eos, and e.g. <|eot_id|>, <|im_end|>).
  virtual std::vector<int32_t> eog_ids() const = 0;
  virtual bool is_special(int32_t id) const = 0;  // control/added-special tokens
  virtual bool add_bos_default() const = 0;       // the vocab's own add-BOS flag
  // Vocabulary piece string as stored (e.g. "▁the", "Ġthe", "<0x0A>").
  virtual std::string piece(int32_t id) const = 0;
  virtual std::optional<int32_t> piece_to_id(std::string_view piece) const = 0;
  // Jinja chat template from the model's metadata ("" when none).
  virtual const std::string& chat_template() const = 0;
  // "spm", "bpe" (byte-level), "sentencepiece" (library): for logs and `info`.
  virtual std::string kind() const = 0;
};

// Factories. All throw Error(Io) for a missing/unreadable file, Error(InvalidInput)
// for a corrupt one and Error(Unsupported) for a valid tokenizer we do not
// implement (WordPiece/Unigram, unknown pre-tokenizers); messages name the file.
// GGUF `tokenizer.ggml.*` metadata (model "llama" -> SPM, "gpt2" -> byte-level BPE
// with `tokenizer.ggml.pre` choosing the pre-tokenizer).
std::unique_ptr<Tokenizer> tokenizer_from_gguf(const gguf::File& f);
// HF tokenizer.json; reads tokenizer_config.json beside it for chat_template,
// add_bos_token and bos/eos names when present.
std::unique_ptr<Tokenizer> tokenizer_from_hf_json(const std::string& path);
// llama2.c tokenizer.bin (u32 max_token_length; per token f32 score, i32 len, bytes).
// Reads the first vocab_size tokens (the model's vocab size; run.c does the
// same), or every token in the file when vocab_size <= 0. BOS 1, EOS 2, unk 0
// as run.c hard-codes; "\n<s>\n" / "\n</s>\n" are control tokens whose text is
// "<s>" / "</s>"; "<0xNN>" pieces are byte-fallback tokens.
std::unique_ptr<Tokenizer> tokenizer_from_llama2c(const std::string& path, int32_t vocab_size);
// SentencePiece tokenizer.model through the sentencepiece library.
std::unique_ptr<Tokenizer> tokenizer_from_sentencepiece(const std::string& path);
// Picks the factory by file name / magic: "GGUF" magic, *.json, *.model, else
// llama2.c .bin (all tokens in the file). A folder: its tokenizer.json, else
// tokenizer.model.
std::unique_ptr<Tokenizer> load_tokenizer(const std::string& path);

// Streaming detokeniser: push() returns the text that is complete so far, never a
// partial UTF-8 sequence; flush() returns the rest (invalid bytes as U+FFFD).
// SentencePiece's leading space is dropped only from the token right after a
// BOS (llama2.c run.c), so a stream that continues a prompt keeps the space of
// its first word. push() throws Error(InvalidInput) for a bad id.
class StreamDecoder {
 public:
  explicit StreamDecoder(const Tokenizer& tok, bool skip_special = true);
  std::string push(int32_t id);
  std::string flush();
  // Declares the token before the first push (e.g. the prompt's last token)
  // when it was not pushed: after a BOS-only prompt the first generated word
  // then loses its dummy-prefix space, as in llama2.c.
  void continue_after(int32_t prev_id);

 private:
  const Tokenizer& tok_;
  bool skip_special_;
  bool first_ = false;  // the previous token was BOS: strip the next one's leading space
  std::string pending_;
};

// ---- Chat templates ------------------------------------------------------------
struct ChatMessage {
  std::string role;  // "system" | "user" | "assistant"
  std::string content;
};
enum class ChatFormat { Llama2, Llama3, ChatML, Raw };
// Picks the format from a Jinja template's tell-tale markers ("[INST]",
// "<|start_header_id|>", "<|im_start|>"); Raw when unknown or empty.
ChatFormat detect_chat_format(const std::string& jinja_template);
const char* chat_format_name(ChatFormat f);
// Prompt text for `messages`, ending with the assistant header when
// add_generation_prompt. The BOS token text is NOT included (the caller adds BOS).
// Encode the result with parse_special = true so the markers become their ids.
//  Llama2: "[INST] <<SYS>>\n{sys}\n<</SYS>>\n\n{user} [/INST] {assistant} </s><s>[INST] ...";
//          contents are stripped; later turns carry the "<s>"/"</s>" texts; there is
//          no generation header (the prompt already ends with " [/INST]"). Throws
//          Error(InvalidInput) unless turns alternate user/assistant from user.
//  Llama3: "<|start_header_id|>{role}<|end_header_id|>\n\n{content, trimmed}<|eot_id|>"...
//  ChatML: "<|im_start|>{role}\n{content}<|im_end|>\n"... (Qwen3's template without tools).
//  Raw:    the contents joined with "\n".
std::string apply_chat_template(ChatFormat f, const std::vector<ChatMessage>& messages,
                                bool add_generation_prompt = true);

}  // namespace harmonia
