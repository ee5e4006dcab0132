// Conformance of every tokenizer kind against reference ids: llama.cpp's vocab
// test vectors, llama2.c's test.c prompts, and the tiny models' references.
#include "tokenizer/tokenizer.h"

#include <gtest/gtest.h>

#include <filesystem>

#include <nlohmann/json.hpp>

#include "common/env.h"
#include "common/mapped_file.h"
#include "common/testing.h"
#include "gguf/gguf.h"
#include "tokenizer/test_util.h"

namespace harmonia {
namespace {

using testing::read_vocab_cases;
using testing::shared_tokenizer;
using testing::show_ids;

const std::string kVocab = "models/llama.cpp-vocab/";

void expect_vocab_cases(const Tokenizer& tok, const std::string& name) {
  const auto cases = read_vocab_cases(kVocab + name + ".inp", kVocab + name + ".out");
  ASSERT_EQ(cases.size(), 46u);
  int passed = 0;
  for (size_t i = 0; i < cases.size(); ++i) {
    const auto got = tok.encode(cases[i].text, /*add_bos=*/false);
    EXPECT_EQ(show_ids(got), show_ids(cases[i].ids)) << name << " case " << i << ": \"" << cases[i].text << "\"";
    passed += got == cases[i].ids;
  }
  EXPECT_EQ(passed, static_cast<int>(cases.size()));
}

#define REQUIRE_VOCAB_CASES(name)                      \
  HARMONIA_REQUIRE_SHARED(kVocab + name + ".inp");     \
  HARMONIA_REQUIRE_SHARED(kVocab + name + ".out")

TEST(TokenizerVocab, LlamaSpmGguf) {
  HARMONIA_REQUIRE_SHARED(kVocab + "ggml-vocab-llama-spm.gguf");
  REQUIRE_VOCAB_CASES("ggml-vocab-llama-spm.gguf");
  auto f = gguf::File::open(shared_path(kVocab + "ggml-vocab-llama-spm.gguf"));
  auto tok = tokenizer_from_gguf(*f);
  EXPECT_EQ(tok->kind(), "spm");
  EXPECT_EQ(tok->vocab_size(), 32000);
  EXPECT_EQ(tok->bos_id(), 1);
  EXPECT_EQ(tok->eos_id(), 2);
  EXPECT_TRUE(tok->add_bos_default());
  expect_vocab_cases(*tok, "ggml-vocab-llama-spm.gguf");
}

// Our SPM merge loop against the sentencepiece library on random mixed-script
// text: whitespace runs, digits, punctuation, accents, Cyrillic, CJK, emoji
// (byte fallback) and characters Llama 2 lacks.
TEST(TokenizerVocab, LlamaSpmMatchesSentencepieceOnRandomText) {
  HARMONIA_REQUIRE_SHARED("models/llama2-tokenizer/tokenizer.model");
  HARMONIA_REQUIRE_SHARED(kVocab + "ggml-vocab-llama-spm.gguf");
  const Tokenizer& ref = shared_tokenizer("models/llama2-tokenizer/tokenizer.model");
  const Tokenizer& ours = shared_tokenizer(kVocab + "ggml-vocab-llama-spm.gguf");
  auto bin = tokenizer_from_llama2c(shared_path("models/llama2-tokenizer/tokenizer.bin"), 32000);
  static const char* const pool[] = {
      "a", "e", "t", "th", "the ", "ing", "tion", "Q", "z", " ", " ", "  ", "\t", "\n", "\n\n", "0", "7",
      "42", ".", ",", "!", "'", "\"", "(", "-", "--", "...", "Ã©", "Ã¼", "Ã",
      "Ð¿ÑÐ¸", "Ð²ÐµÑ", "ä¸­", "æ",
      "ã", "ð¦", "ð", "â", "ê°",
      "á", "Â ", "â", "<s>", "don't", "Hello", "world"};
  uint64_t x = 0x9E3779B97F4A7C15ull;
  int mismatches = 0;
  for (int n = 0; n < 400; ++n) {
    std::string text;
    x ^= x << 13, x ^= x >> 7, x ^= x << 17;
    const int len = 1 + static_cast<int>(x % 24);
    for (int k = 0; k < len; ++k) {
      x ^= x << 13, x ^= x >> 7, x ^= x << 17;
      text += pool[x % (sizeof(pool) / sizeof(pool[0]))];
    }
    const auto want = ref.encode(text, true);
    const auto got = ours.encode(text, true);
    const auto got_bin = bin->encode(text, true);
    if (got != want || got_bin != want) {
      if (++mismatches <= 5)
        ADD_FAILURE() << "\"" << text << "\": sentencepiece " << show_ids(want) << " gguf " << show_ids(got)
                      << " llama2.c " << show_ids(got_bin);
    }
    EXPECT_EQ(ours.decode(got), text);
  }
  EXPECT_EQ(mismatches, 0);
}

// The same Llama 2 vocabulary in its two other formats gives the same ids.
TEST(TokenizerVocab, LlamaSpmCasesWithSentencepieceModel) {
  HARMONIA_REQUIRE_SHARED("models/llama2-tokenizer/tokenizer.model");
  REQUIRE_VOCAB_CASES("ggml-vocab-llama-spm.gguf");
  const Tokenizer& tok = shared_tokenizer("models/llama2-tokenizer/tokenizer.model");
  EXPECT_EQ(tok.kind(), "sentencepiece");
  expect_vocab_cases(tok, "ggml-vocab-llama-spm.gguf");
}

TEST(TokenizerVocab, LlamaSpmCasesWithLlama2cBin) {
  HARMONIA_REQUIRE_SHARED("models/llama2-tokenizer/tokenizer.bin");
  REQUIRE_VOCAB_CASES("ggml-vocab-llama-spm.gguf");
  auto tok = tokenizer_from_llama2c(shared_path("models/llama2-tokenizer/tokenizer.bin"), 32000);
  expect_vocab_cases(*tok, "ggml-vocab-llama-spm.gguf");
}

TEST(TokenizerVocab, Gpt2Gguf) {
  HARMONIA_REQUIRE_SHARED(kVocab + "ggml-vocab-gpt-2.gguf");
  REQUIRE_VOCAB_CASES("ggml-vocab-gpt-2.gguf");
  const Tokenizer& tok = shared_tokenizer(kVocab + "ggml-vocab-gpt-2.gguf");
  EXPECT_EQ(tok.kind(), "bpe");
  EXPECT_EQ(tok.vocab_size(), 50257);
  EXPECT_EQ(tok.eos_id(), 50256);
  EXPECT_TRUE(tok.is_special(50256));
  EXPECT_FALSE(tok.is_special(0));
  expect_vocab_cases(tok, "ggml-vocab-gpt-2.gguf");
}

TEST(TokenizerVocab, Llama3Json) {
  HARMONIA_REQUIRE_SHARED("models/llama3-tokenizer/tokenizer.json");
  REQUIRE_VOCAB_CASES("ggml-vocab-llama-bpe.gguf");
  const Tokenizer& tok = shared_tokenizer("models/llama3-tokenizer/tokenizer.json");
  EXPECT_EQ(tok.kind(), "bpe");
  EXPECT_EQ(tok.vocab_size(), 128256);
  EXPECT_EQ(tok.bos_id(), 128000);
  EXPECT_EQ(tok.eos_id(), 128001);
  EXPECT_TRUE(tok.add_bos_default());
  expect_vocab_cases(tok, "ggml-vocab-llama-bpe.gguf");
}

TEST(TokenizerVocab, Qwen2Json) {
  HARMONIA_REQUIRE_SHARED("models/qwen3-tokenizer/tokenizer.json");
  REQUIRE_VOCAB_CASES("ggml-vocab-qwen2.gguf");
  const Tokenizer& tok = shared_tokenizer("models/qwen3-tokenizer/tokenizer.json");
  EXPECT_EQ(tok.kind(), "bpe");
  EXPECT_EQ(tok.bos_id(), -1);
  EXPECT_EQ(tok.eos_id(), 151645);  // <|im_end|>
  EXPECT_FALSE(tok.add_bos_default());
  expect_vocab_cases(tok, "ggml-vocab-qwen2.gguf");
}

// The llama-bpe and qwen2 GGUF vocab files were not obtainable; build them from
// the HF files the way convert_hf_to_gguf.py does (tokens, token types,
// "a b" merges, tokenizer.ggml.pre) and check the GGUF byte-level path on the
// same vectors.
void expect_gguf_from_hf(const std::string& json_rel, const std::string& pre, const std::string& cases) {
  const Tokenizer& hf = shared_tokenizer(json_rel);
  const auto j = nlohmann::json::parse(read_file(shared_path(json_rel)));
  std::vector<std::string> tokens;
  std::vector<int32_t> types;
  for (int32_t id = 0; id < hf.vocab_size(); ++id) {
    tokens.push_back(hf.piece(id));
    types.push_back(hf.is_special(id) ? 3 : 1);
  }
  std::vector<std::string> merges;
  for (const auto& m : j.at("model").at("merges"))
    merges.push_back(m.is_string() ? m.get<std::string>()
                                   : m[0].get<std::string>() + " " + m[1].get<std::string>());
  gguf::Writer w;
  w.set_string("general.architecture", "llama");
  w.set_string("tokenizer.ggml.model", "gpt2");
  w.set_string("tokenizer.ggml.pre", pre);
  w.set_str_array("tokenizer.ggml.tokens", tokens);
  w.set_i32_array("tokenizer.ggml.token_type", types);
  w.set_str_array("tokenizer.ggml.merges", merges);
  if (hf.eos_id() >= 0) w.set_u32("tokenizer.ggml.eos_token_id", static_cast<uint32_t>(hf.eos_id()));
  const std::string path =
      (std::filesystem::temp_directory_path() / ("harmonia_tok_" + pre + ".gguf")).string();
  w.write(path);
  auto tok = load_tokenizer(path);
  std::filesystem::remove(path);
  EXPECT_EQ(tok->kind(), "bpe");
  EXPECT_EQ(tok->eos_id(), hf.eos_id());
  expect_vocab_cases(*tok, cases);
}

TEST(TokenizerVocab, Llama3Gguf) {
  HARMONIA_REQUIRE_SHARED("models/llama3-tokenizer/tokenizer.json");
  REQUIRE_VOCAB_CASES("ggml-vocab-llama-bpe.gguf");
  expect_gguf_from_hf("models/llama3-tokenizer/tokenizer.json", "llama-bpe", "ggml-vocab-llama-bpe.gguf");
}

TEST(TokenizerVocab, Qwen2Gguf) {
  HARMONIA_REQUIRE_SHARED("models/qwen3-tokenizer/tokenizer.json");
  REQUIRE_VOCAB_CASES("ggml-vocab-qwen2.gguf");
  expect_gguf_from_hf("models/qwen3-tokenizer/tokenizer.json", "qwen2", "ggml-vocab-qwen2.gguf");
}

TEST(TokenizerLoad, DispatchesByNameAndMagic) {
  HARMONIA_REQUIRE_SHARED("models/stories260K/tok512.bin");
  HARMONIA_REQUIRE_SHARED("models/TinyStories-656K/tokenizer.json");
  auto bin = load_tokenizer(shared_path("models/stories260K/tok512.bin"));
  EXPECT_EQ(bin->kind(), "spm");
  EXPECT_EQ(bin->vocab_size(), 512);  // every token in the file
  auto dir = load_tokenizer(shared_path("models/TinyStories-656K"));  // a model folder
  EXPECT_EQ(dir->vocab_size(), 2048);
  EXPECT_EQ(dir->encode("Once upon a time", true).size(), 6u);
}

// ---- Llama 2 prompts of llama2.c test.c ------------------------------------------

void expect_llama2_vectors(const Tokenizer& tok) {
  const auto j = nlohmann::json::parse(read_file(shared_path("models/llama2-tokenizer/test_vectors.json")));
  ASSERT_TRUE(j.at("bos_prepended").get<bool>());
  ASSERT_EQ(j.at("cases").size(), 5u);
  for (const auto& c : j.at("cases")) {
    const std::string text = c.at("text").get<std::string>();
    const auto want = c.at("ids").get<std::vector<int32_t>>();
    EXPECT_EQ(show_ids(tok.encode(text, /*add_bos=*/true)), show_ids(want)) << "\"" << text << "\"";
  }
}

TEST(TokenizerLlama2, TestVectorsSentencepieceModel) {
  HARMONIA_REQUIRE_SHARED("models/llama2-tokenizer/test_vectors.json");
  HARMONIA_REQUIRE_SHARED("models/llama2-tokenizer/tokenizer.model");
  expect_llama2_vectors(shared_tokenizer("models/llama2-tokenizer/tokenizer.model"));
}

TEST(TokenizerLlama2, TestVectorsLlama2cBin) {
  HARMONIA_REQUIRE_SHARED("models/llama2-tokenizer/test_vectors.json");
  HARMONIA_REQUIRE_SHARED("models/llama2-tokenizer/tokenizer.bin");
  auto tok = tokenizer_from_llama2c(shared_path("models/llama2-tokenizer/tokenizer.bin"), 32000);
  EXPECT_EQ(tok->kind(), "spm");
  EXPECT_EQ(tok->vocab_size(), 32000);
  EXPECT_EQ(tok->bos_id(), 1);
  EXPECT_EQ(tok->eos_id(), 2);
  // Stored as "\n<s>\n" by llama2.c's exporter; the token's text is "<s>".
  EXPECT_EQ(tok->piece(1), "\n<s>\n");
  EXPECT_EQ(tok->token_bytes(1), "<s>");
  EXPECT_TRUE(tok->is_special(1));
  EXPECT_EQ(tok->token_bytes(13), "\n");  // <0x0A>
  expect_llama2_vectors(*tok);
}

TEST(TokenizerLlama2, TestVectorsGguf) {
  HARMONIA_REQUIRE_SHARED("models/llama2-tokenizer/test_vectors.json");
  HARMONIA_REQUIRE_SHARED(kVocab + "ggml-vocab-llama-spm.gguf");
  expect_llama2_vectors(shared_tokenizer(kVocab + "ggml-vocab-llama-spm.gguf"));
}

// The three formats of the Llama 2 vocabulary agree on every piece's bytes.
TEST(TokenizerLlama2, FormatsAgreeOnTokenBytes) {
  HARMONIA_REQUIRE_SHARED("models/llama2-tokenizer/tokenizer.model");
  HARMONIA_REQUIRE_SHARED("models/llama2-tokenizer/tokenizer.bin");
  HARMONIA_REQUIRE_SHARED(kVocab + "ggml-vocab-llama-spm.gguf");
  const Tokenizer& model = shared_tokenizer("models/llama2-tokenizer/tokenizer.model");
  const Tokenizer& gguf = shared_tokenizer(kVocab + "ggml-vocab-llama-spm.gguf");
  auto bin = tokenizer_from_llama2c(shared_path("models/llama2-tokenizer/tokenizer.bin"), 32000);
  int differ = 0;
  for (int32_t id = 0; id < 32000; ++id) {
    const std::string a = model.token_bytes(id);
    differ += a != gguf.token_bytes(id) || a != bin->token_bytes(id);
  }
  EXPECT_EQ(differ, 0);
}

// ---- tiny models -------------------------------------------------------------------

TEST(TokenizerTinyStories, HfJsonPromptIds) {
  const std::string dir = "models/TinyStories-656K/";
  HARMONIA_REQUIRE_SHARED(dir + "tokenizer.json");
  HARMONIA_REQUIRE_SHARED(dir + "reference_greedy.json");
  const auto ref = nlohmann::json::parse(read_file(shared_path(dir + "reference_greedy.json")));
  auto tok = tokenizer_from_hf_json(shared_path(dir + "tokenizer.json"));
  EXPECT_EQ(tok->kind(), "spm");
  EXPECT_EQ(tok->vocab_size(), 2048);
  EXPECT_EQ(tok->bos_id(), 1);
  EXPECT_EQ(tok->eos_id(), 2);
  EXPECT_TRUE(tok->add_bos_default());
  const std::string prompt = ref.at("prompt_text").get<std::string>();
  ASSERT_EQ(prompt, "Once upon a time");
  const auto ids = tok->encode(prompt, /*add_bos=*/true);
  EXPECT_EQ(show_ids(ids), "1 80 147 201 282 57");
  EXPECT_EQ(ids, ref.at("prompt_ids").get<std::vector<int32_t>>());
  std::vector<std::string> pieces;
  for (int32_t id : ids) pieces.push_back(tok->piece(id));
  EXPECT_EQ(pieces, ref.at("prompt_pieces").get<std::vector<std::string>>());
  EXPECT_EQ(tok->decode(ids), prompt);

  // The f32 continuation decodes to the reference text.
  const auto& f32 = ref.at("f32_safetensors");
  EXPECT_EQ(tok->decode(f32.at("generated_ids").get<std::vector<int32_t>>()),
            f32.at("decoded_text").get<std::string>());
}

// The Q8_0 GGUF of TinyStories carries the same vocabulary but no merges and
// every score -1000, so llama.cpp's score-based SPM merges leftmost-first there.
// Its decoding is what the model tests use; it must match the HF decoder.
TEST(TokenizerTinyStories, GgufDecodesLikeHf) {
  const std::string dir = "models/TinyStories-656K/";
  HARMONIA_REQUIRE_SHARED(dir + "tokenizer.json");
  HARMONIA_REQUIRE_SHARED(dir + "TinyStories-656K-Q8_0.gguf");
  HARMONIA_REQUIRE_SHARED(dir + "reference_greedy.json");
  const auto ref = nlohmann::json::parse(read_file(shared_path(dir + "reference_greedy.json")));
  auto gguf_tok = load_tokenizer(shared_path(dir + "TinyStories-656K-Q8_0.gguf"));
  EXPECT_EQ(gguf_tok->kind(), "spm");
  const auto& q8 = ref.at("q8_0_gguf");
  EXPECT_EQ(gguf_tok->decode(q8.at("generated_ids").get<std::vector<int32_t>>()),
            q8.at("decoded_text").get<std::string>());
}

TEST(TokenizerStories260K, DecodesReferenceGreedy) {
  const std::string dir = "models/stories260K/";
  HARMONIA_REQUIRE_SHARED(dir + "tok512.bin");
  HARMONIA_REQUIRE_SHARED(dir + "reference_greedy.json");
  const auto ref = nlohmann::json::parse(read_file(shared_path(dir + "reference_greedy.json")));
  auto tok = tokenizer_from_llama2c(shared_path(dir + "tok512.bin"), 512);
  EXPECT_EQ(tok->vocab_size(), 512);
  std::vector<int32_t> ids = ref.at("prompt_tokens").get<std::vector<int32_t>>();
  ASSERT_EQ(ids, std::vector<int32_t>{1});
  const auto gen = ref.at("generated_token_ids").get<std::vector<int32_t>>();
  ASSERT_EQ(gen.size(), 200u);
  ASSERT_EQ(std::vector<int32_t>(gen.begin(), gen.begin() + 10),
            (std::vector<int32_t>{403, 407, 261, 378, 432, 383, 286, 261, 376, 298}));
  ids.insert(ids.end(), gen.begin(), gen.end());
  // decoded_text is run.c's stdout for all 200 steps: the first piece's space
  // (after BOS) stripped, <0x0A> as a newline.
  const std::string text = tok->decode(ids);
  EXPECT_EQ(text, ref.at("decoded_text").get<std::string>());
  EXPECT_TRUE(text.starts_with("Once upon a time, there was a little girl named Lily."));

  // Streaming gives the same text.
  StreamDecoder sd(*tok);
  std::string streamed;
  for (int32_t id : ids) streamed += sd.push(id);
  streamed += sd.flush();
  EXPECT_EQ(streamed, text);

  // The GGUF copy of the same vocabulary agrees.
  HARMONIA_REQUIRE_SHARED(dir + "stories260K.gguf");
  auto g = load_tokenizer(shared_path(dir + "stories260K.gguf"));
  EXPECT_EQ(g->decode(ids), text);
  EXPECT_EQ(g->encode("Once upon a time", true), tok->encode("Once upon a time", true));
}

}  // namespace
}  // namespace harmonia
