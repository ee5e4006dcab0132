// Decoding, streaming, special tokens, bad input and speed.
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>

#include "common/env.h"
#include "common/error.h"
#include "common/testing.h"
#include "gguf/gguf.h"
#include "tokenizer/test_util.h"
#include "tokenizer/tokenizer.h"

namespace harmonia {
namespace {

using testing::read_vocab_cases;
using testing::shared_tokenizer;
using testing::show_ids;

const std::string kVocab = "models/llama.cpp-vocab/";
const std::string kLlama3 = "models/llama3-tokenizer/tokenizer.json";
const std::string kQwen = "models/qwen3-tokenizer/tokenizer.json";
const std::string kGpt2 = "models/llama.cpp-vocab/ggml-vocab-gpt-2.gguf";
const std::string kSpm = "models/llama.cpp-vocab/ggml-vocab-llama-spm.gguf";

std::string tmp_path(const std::string& name) {
  return (std::filesystem::temp_directory_path() / ("harmonia_tok_" + name)).string();
}
void spit(const std::string& p, const std::string& s) {
  std::ofstream f(p, std::ios::binary | std::ios::trunc);
  f.write(s.data(), static_cast<std::streamsize>(s.size()));
}

// ---- round trips -------------------------------------------------------------------

void expect_round_trip(const Tokenizer& tok) {
  const auto cases = read_vocab_cases(kVocab + "ggml-vocab-gpt-2.gguf.inp", kVocab + "ggml-vocab-gpt-2.gguf.out");
  ASSERT_FALSE(cases.empty());
  for (const auto& c : cases) {
    EXPECT_EQ(tok.decode(tok.encode(c.text, false)), c.text);
    // With BOS in front the text is the same (BOS is skipped as special).
    EXPECT_EQ(tok.decode(tok.encode(c.text, true)), c.text);
  }
}

TEST(TokenizerRoundTrip, Gpt2) {
  HARMONIA_REQUIRE_SHARED(kGpt2);
  expect_round_trip(shared_tokenizer(kGpt2));
}
TEST(TokenizerRoundTrip, Llama3) {
  HARMONIA_REQUIRE_SHARED(kLlama3);
  expect_round_trip(shared_tokenizer(kLlama3));
}
TEST(TokenizerRoundTrip, Qwen2) {
  HARMONIA_REQUIRE_SHARED(kQwen);
  expect_round_trip(shared_tokenizer(kQwen));
}
// SentencePiece vocabs round-trip too: byte fallback covers every character and
// decode() removes exactly the dummy-prefix space that encode() added.
TEST(TokenizerRoundTrip, LlamaSpm) {
  HARMONIA_REQUIRE_SHARED(kSpm);
  expect_round_trip(shared_tokenizer(kSpm));
}

TEST(TokenizerRoundTrip, InvalidUtf8SurvivesByteLevel) {
  HARMONIA_REQUIRE_SHARED(kLlama3);
  const Tokenizer& tok = shared_tokenizer(kLlama3);
  const std::string bad = std::string("ab\xff\xfe cd \xe2\x82") + " end";
  EXPECT_EQ(tok.decode(tok.encode(bad, false)), bad);
}

// ---- token bytes, leading space -----------------------------------------------------

TEST(TokenizerDecode, SpmLeadingSpaceRule) {
  HARMONIA_REQUIRE_SHARED(kSpm);
  const Tokenizer& tok = shared_tokenizer(kSpm);
  const auto ids = tok.encode("Hello world", true);
  EXPECT_EQ(show_ids(ids), "1 15043 3186");
  EXPECT_EQ(tok.token_bytes(15043), " Hello");
  EXPECT_EQ(tok.piece(15043), "\xE2\x96\x81Hello");
  EXPECT_EQ(tok.decode(ids), "Hello world");
  EXPECT_EQ(tok.decode({15043, 3186}), "Hello world");
  EXPECT_EQ(tok.decode(ids, /*skip_special=*/false), "<s>Hello world");
  EXPECT_EQ(tok.decode({3186}), "world");
  EXPECT_EQ(tok.token_bytes(13), "\n");  // <0x0A>
  EXPECT_EQ(tok.piece_to_id("\xE2\x96\x81Hello"), 15043);
  EXPECT_FALSE(tok.piece_to_id("no such piece").has_value());
}

TEST(TokenizerDecode, ByteLevelTokenBytes) {
  HARMONIA_REQUIRE_SHARED(kLlama3);
  const Tokenizer& tok = shared_tokenizer(kLlama3);
  const auto ids = tok.encode(" Hello", false);
  ASSERT_EQ(ids.size(), 1u);
  EXPECT_EQ(tok.piece(ids[0]), "\xC4\xA0Hello");  // "ĠHello"
  EXPECT_EQ(tok.token_bytes(ids[0]), " Hello");
  EXPECT_EQ(tok.decode(ids), " Hello");  // byte-level vocabs keep every space
  EXPECT_EQ(tok.token_bytes(128009), "<|eot_id|>");
  EXPECT_EQ(tok.decode({128000, ids[0], 128009}), " Hello");
  EXPECT_EQ(tok.decode({128000, ids[0], 128009}, false), "<|begin_of_text|> Hello<|eot_id|>");
}

// ---- special tokens -----------------------------------------------------------------

TEST(TokenizerSpecial, Llama3ParseSpecial) {
  HARMONIA_REQUIRE_SHARED(kLlama3);
  const Tokenizer& tok = shared_tokenizer(kLlama3);
  const std::string text = "<|start_header_id|>user<|end_header_id|>\n\nHi<|eot_id|>";
  const auto ids = tok.encode(text, true, /*parse_special=*/true);
  ASSERT_GE(ids.size(), 6u);
  EXPECT_EQ(ids[0], 128000);
  EXPECT_EQ(ids[1], 128006);
  EXPECT_EQ(ids.back(), 128009);
  EXPECT_EQ(tok.decode(ids, false), "<|begin_of_text|>" + text);
  // Without parse_special the markers are plain text.
  const auto plain = tok.encode(text, false, false);
  for (int32_t id : plain) EXPECT_LT(id, 128000);
  EXPECT_EQ(tok.decode(plain), text);

  const auto eog = tok.eog_ids();
  EXPECT_NE(std::find(eog.begin(), eog.end(), 128001), eog.end());  // <|end_of_text|>
  EXPECT_NE(std::find(eog.begin(), eog.end(), 128009), eog.end());  // <|eot_id|>
}

TEST(TokenizerSpecial, QwenImEnd) {
  HARMONIA_REQUIRE_SHARED(kQwen);
  const Tokenizer& tok = shared_tokenizer(kQwen);
  const auto ids = tok.encode("<|im_start|>user\nhi<|im_end|>\n", false, true);
  EXPECT_EQ(ids.front(), 151644);
  EXPECT_NE(std::find(ids.begin(), ids.end(), 151645), ids.end());
  const auto eog = tok.eog_ids();
  EXPECT_NE(std::find(eog.begin(), eog.end(), 151645), eog.end());  // <|im_end|>
  EXPECT_NE(std::find(eog.begin(), eog.end(), 151643), eog.end());  // <|endoftext|>
  EXPECT_TRUE(tok.is_special(151645));
  EXPECT_FALSE(tok.is_special(151667));  // <think> is an added token, not special
  // Non-special added tokens are matched even without parse_special (as HF does).
  EXPECT_EQ(show_ids(tok.encode("<think>", false, false)), "151667");
}

TEST(TokenizerSpecial, SpmParseSpecial) {
  HARMONIA_REQUIRE_SHARED(kSpm);
  const Tokenizer& tok = shared_tokenizer(kSpm);
  // After a special token the next text gets its own dummy prefix (llama.cpp).
  EXPECT_EQ(show_ids(tok.encode("Hi</s><s>Hello", false, true)), show_ids([&] {
              std::vector<int32_t> v = tok.encode("Hi", false);
              v.push_back(2);
              v.push_back(1);
              for (int32_t id : tok.encode("Hello", false)) v.push_back(id);
              return v;
            }()));
  const auto eog = tok.eog_ids();
  EXPECT_EQ(eog, std::vector<int32_t>{2});
}

// ---- streaming ----------------------------------------------------------------------

TEST(TokenizerStream, EmojiSplitAcrossByteTokens) {
  HARMONIA_REQUIRE_SHARED(kSpm);
  const Tokenizer& tok = shared_tokenizer(kSpm);
  // 🦙 has no token in Llama 2: "▁" then its four bytes <0xF0> <0x9F> <0xA6> <0x99>.
  const auto ids = tok.encode("\xF0\x9F\xA6\x99!", true);
  ASSERT_EQ(show_ids(ids), "1 29871 243 162 169 156 29991");
  StreamDecoder sd(tok);
  std::vector<std::string> out;
  for (int32_t id : ids) out.push_back(sd.push(id));
  EXPECT_EQ(out, (std::vector<std::string>{"", "", "", "", "", "\xF0\x9F\xA6\x99", "!"}));
  EXPECT_EQ(sd.flush(), "");
}

TEST(TokenizerStream, ByteLevelEmoji) {
  HARMONIA_REQUIRE_SHARED(kGpt2);
  const Tokenizer& tok = shared_tokenizer(kGpt2);
  const std::string text = "go \xF0\x9F\x9A\x80\xF0\x9F\x98\xB6 now";
  const auto ids = tok.encode(text, false);
  StreamDecoder sd(tok);
  std::string all;
  for (int32_t id : ids) {
    const std::string piece = sd.push(id);
    // Every piece handed out is whole UTF-8.
    size_t cont = 0;
    for (unsigned char c : piece) cont += (c & 0xC0) == 0x80;
    size_t leads = 0;
    for (unsigned char c : piece) leads += c >= 0xC0;
    EXPECT_LE(cont, 3 * leads) << "partial UTF-8 in " << piece;
    all += piece;
  }
  all += sd.flush();
  EXPECT_EQ(all, text);
}

TEST(TokenizerStream, FlushReplacesIncompleteSequence) {
  HARMONIA_REQUIRE_SHARED(kSpm);
  const Tokenizer& tok = shared_tokenizer(kSpm);
  StreamDecoder sd(tok);
  EXPECT_EQ(sd.push(tok.encode("a", false)[0]), " a");  // no BOS before: the space stays
  EXPECT_EQ(sd.push(243), "");  // <0xF0>: waits for the rest
  EXPECT_EQ(sd.push(162), "");  // <0x9F>
  EXPECT_EQ(sd.flush(), "\xEF\xBF\xBD");
  // A stray continuation byte is invalid at once, not held back.
  StreamDecoder sd2(tok);
  EXPECT_EQ(sd2.push(tok.encode("a", false)[0]), " a");
  EXPECT_EQ(sd2.push(3 + 0x80), "\xEF\xBF\xBD");
  EXPECT_EQ(sd2.flush(), "");
}

// Generation streams the tokens after the prompt: a word that continues the
// prompt keeps its space; only the first token after BOS loses it (llama2.c).
TEST(TokenizerStream, LeadingSpaceOnlyAfterBos) {
  HARMONIA_REQUIRE_SHARED(kSpm);
  const Tokenizer& tok = shared_tokenizer(kSpm);
  ASSERT_EQ(show_ids(tok.encode("Hello world", true)), "1 15043 3186");
  StreamDecoder whole(tok);
  EXPECT_EQ(whole.push(1), "");
  EXPECT_EQ(whole.push(15043), "Hello");
  EXPECT_EQ(whole.push(3186), " world");

  StreamDecoder after_prompt(tok);
  after_prompt.continue_after(15043);  // prompt "<s> Hello", not pushed
  EXPECT_EQ(after_prompt.push(3186), " world");

  StreamDecoder after_bos(tok);
  after_bos.continue_after(1);  // BOS-only prompt
  EXPECT_EQ(after_bos.push(15043), "Hello");
  EXPECT_EQ(after_bos.push(3186), " world");

  StreamDecoder keep_special(tok, /*skip_special=*/false);
  EXPECT_EQ(keep_special.push(1), "<s>");
  EXPECT_EQ(keep_special.push(15043), "Hello");
  EXPECT_EQ(keep_special.push(2), "</s>");
}

TEST(TokenizerStream, OutOfRangeIdThrows) {
  HARMONIA_REQUIRE_SHARED(kSpm);
  const Tokenizer& tok = shared_tokenizer(kSpm);
  StreamDecoder sd(tok);
  EXPECT_THROW(sd.push(32000), Error);
  EXPECT_THROW(sd.push(-1), Error);
}

// ---- bad input ----------------------------------------------------------------------

TEST(TokenizerErrors, MissingFiles) {
  for (const std::string p : {"/nonexistent/tokenizer.json", "/nonexistent/tokenizer.model",
                              "/nonexistent/tok.bin", "/nonexistent/m.gguf"}) {
    try {
      (void)load_tokenizer(p);
      ADD_FAILURE() << "no error for " << p;
    } catch (const Error& e) {
      EXPECT_EQ(e.kind(), ErrorKind::Io) << e.what();
      EXPECT_NE(std::string(e.what()).find(p), std::string::npos) << e.what();
    }
  }
  EXPECT_THROW((void)tokenizer_from_hf_json("/nonexistent/tokenizer.json"), Error);
  EXPECT_THROW((void)tokenizer_from_sentencepiece("/nonexistent/tokenizer.model"), Error);
  EXPECT_THROW((void)tokenizer_from_llama2c("/nonexistent/tokenizer.bin", 32000), Error);
}

TEST(TokenizerErrors, MalformedJson) {
  const std::string dir = tmp_path("badjson");
  std::filesystem::create_directories(dir);
  const std::string p = dir + "/tokenizer.json";
  spit(p, "{\"model\": {\"type\": \"BPE\", \"vocab\": {\"a\": 0,}");
  try {
    (void)load_tokenizer(p);
    ADD_FAILURE() << "no error";
  } catch (const Error& e) {
    EXPECT_EQ(e.kind(), ErrorKind::InvalidInput);
    EXPECT_NE(std::string(e.what()).find("malformed JSON"), std::string::npos) << e.what();
  }
  // Well-formed JSON of the wrong shape.
  spit(p, "{\"model\": {\"type\": \"BPE\", \"vocab\": [1, 2]}}");
  EXPECT_THROW((void)load_tokenizer(p), Error);
  spit(p, "{\"model\": {\"type\": \"BPE\", \"vocab\": {\"a\": 0}, \"merges\": [7]}}");
  EXPECT_THROW((void)load_tokenizer(p), Error);
  spit(p, "{\"model\": {\"type\": \"Unigram\", \"vocab\": []}}");
  try {
    (void)load_tokenizer(p);
    ADD_FAILURE() << "no error";
  } catch (const Error& e) {
    EXPECT_EQ(e.kind(), ErrorKind::Unsupported) << e.what();
  }
  std::filesystem::remove_all(dir);
}

TEST(TokenizerErrors, TruncatedLlama2cBin) {
  HARMONIA_REQUIRE_SHARED("models/stories260K/tok512.bin");
  const std::string whole = read_file(shared_path("models/stories260K/tok512.bin"));
  const std::string p = tmp_path("trunc.bin");
  spit(p, whole.substr(0, whole.size() / 2));
  EXPECT_THROW((void)tokenizer_from_llama2c(p, 512), Error);
  // Asking for more tokens than the file has is an error too.
  EXPECT_THROW((void)tokenizer_from_llama2c(shared_path("models/stories260K/tok512.bin"), 600), Error);
  spit(p, std::string("\x07\x00\x00\x00\x00\x00\x00\x00\xff\xff\xff\x7f", 12));  // huge length
  EXPECT_THROW((void)tokenizer_from_llama2c(p, 1), Error);
  spit(p, "ab");
  EXPECT_THROW((void)tokenizer_from_llama2c(p, 1), Error);
  std::filesystem::remove(p);
}

TEST(TokenizerErrors, NotASentencepieceModel) {
  const std::string p = tmp_path("bad.model");
  spit(p, "this is not a protobuf");
  EXPECT_THROW((void)tokenizer_from_sentencepiece(p), Error);
  std::filesystem::remove(p);
}

TEST(TokenizerErrors, GgufWithoutVocabulary) {
  const std::string p = tmp_path("novocab.gguf");
  gguf::Writer w;
  w.set_string("general.architecture", "llama");
  w.write(p);
  EXPECT_THROW((void)load_tokenizer(p), Error);
  w.set_string("tokenizer.ggml.model", "llama");
  w.write(p);
  EXPECT_THROW((void)load_tokenizer(p), Error);  // no tokens
  w.set_str_array("tokenizer.ggml.tokens", {"<unk>", "<s>", "</s>", "a"});
  w.set_f32_array("tokenizer.ggml.scores", {0, 0});  // wrong length
  w.write(p);
  EXPECT_THROW((void)load_tokenizer(p), Error);
  std::filesystem::remove(p);
}

TEST(TokenizerErrors, OutOfRangeIds) {
  HARMONIA_REQUIRE_SHARED(kGpt2);
  const Tokenizer& tok = shared_tokenizer(kGpt2);
  EXPECT_THROW((void)tok.token_bytes(tok.vocab_size()), Error);
  EXPECT_THROW((void)tok.token_bytes(-1), Error);
  EXPECT_THROW((void)tok.piece(1 << 30), Error);
  EXPECT_THROW((void)tok.decode({1, 2, 50257}), Error);
  EXPECT_THROW((void)tok.is_special(-5), Error);
  try {
    (void)tok.token_bytes(50257);
  } catch (const Error& e) {
    EXPECT_EQ(e.kind(), ErrorKind::InvalidInput);
    EXPECT_NE(std::string(e.what()).find("50257"), std::string::npos) << e.what();
  }
}

// ---- speed --------------------------------------------------------------------------

// ~100 KB of English-like text (a fixed pseudo-random word sequence).
std::string english_text(size_t bytes) {
  static const char* const words[] = {
      "the", "of", "and", "a", "to", "in", "is", "you", "that", "it", "he", "was", "for", "on",
      "are", "as", "with", "his", "they", "I", "at", "be", "this", "have", "from", "or", "one",
      "had", "by", "word", "but", "not", "what", "all", "were", "we", "when", "your", "can",
      "said", "there", "use", "an", "each", "which", "she", "do", "how", "their", "if", "will",
      "up", "other", "about", "out", "many", "then", "them", "these", "so", "some", "her",
      "would", "make", "like", "him", "into", "time", "has", "look", "two", "more", "write",
      "go", "see", "number", "no", "way", "could", "people", "my", "than", "first", "water",
      "been", "call", "who", "oil", "its", "now", "find", "long", "down", "day", "did", "get",
      "come", "made", "may", "part", "startups", "founders", "essay", "programming", "1997",
      "investors", "Paul", "Graham's", "haystack", "needle"};
  std::string s;
  uint64_t x = 88172645463325252ull;
  size_t n = 0;
  while (s.size() < bytes) {
    x ^= x << 13, x ^= x >> 7, x ^= x << 17;  // xorshift64
    s += words[x % (sizeof(words) / sizeof(words[0]))];
    ++n;
    s += n % 17 == 0 ? ".\n" : n % 7 == 0 ? ", " : " ";
  }
  return s;
}

void expect_fast(const Tokenizer& tok, const char* name) {
  const std::string text = english_text(100 * 1024);
  const double t0 = now_ms();
  const auto ids = tok.encode(text, true);
  const double ms = now_ms() - t0;
  std::printf("[ speed    ] %s: %zu bytes -> %zu tokens in %.1f ms\n", name, text.size(), ids.size(), ms);
  EXPECT_GT(ids.size(), text.size() / 8);
  EXPECT_LT(ms, 1000.0) << name;
  EXPECT_EQ(tok.decode(ids), text);
}

TEST(TokenizerSpeed, Encode100KB) {
  if (file_exists(shared_path(kSpm))) expect_fast(shared_tokenizer(kSpm), "llama-spm gguf");
  if (file_exists(shared_path(kLlama3))) expect_fast(shared_tokenizer(kLlama3), "llama3 json");
  if (file_exists(shared_path(kQwen))) expect_fast(shared_tokenizer(kQwen), "qwen json");
  if (file_exists(shared_path("models/llama2-tokenizer/tokenizer.model")))
    expect_fast(shared_tokenizer("models/llama2-tokenizer/tokenizer.model"), "sentencepiece");
  if (file_exists(shared_path("models/TinyStories-656K/tokenizer.json")))
    expect_fast(shared_tokenizer("models/TinyStories-656K/tokenizer.json"), "tinystories json");
}

}  // namespace
}  // namespace harmonia
