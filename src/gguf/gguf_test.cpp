#include "gguf/gguf.h"

#include <gtest/gtest.h>

#include <cstdio>
#include <filesystem>
#include <fstream>
#include <vector>

#include "common/error.h"
#include "common/testing.h"
#include "common/testing_cli.h"

using namespace harmonia;

namespace {
std::string tmp_path(const std::string& name) {
  return (std::filesystem::temp_directory_path() / ("harmonia_gguf_" + name)).string();
}
using cli_testing::slurp;
using cli_testing::spit;
}  // namespace

TEST(Gguf, ReadsStories260K) {
  HARMONIA_REQUIRE_SHARED("models/stories260K/stories260K.gguf");
  auto f = gguf::File::open(shared_path("models/stories260K/stories260K.gguf"));
  EXPECT_EQ(f->version(), 3u);
  EXPECT_EQ(f->get_string("general.architecture"), "llama");
  EXPECT_EQ(f->get_int("llama.embedding_length"), 64);
  EXPECT_EQ(f->get_int("llama.block_count"), 5);
  EXPECT_EQ(f->get_int("llama.attention.head_count"), 8);
  EXPECT_EQ(f->get_int("llama.attention.head_count_kv"), 4);
  EXPECT_EQ(f->tensor_infos().size(), 48u);
  const auto* toks = f->get_str_array("tokenizer.ggml.tokens");
  ASSERT_NE(toks, nullptr);
  EXPECT_EQ(toks->size(), 512u);
  Tensor emb = f->tensor("token_embd.weight");
  EXPECT_EQ(emb.type, DType::F32);
  EXPECT_EQ(emb.cols(), 64);
  EXPECT_EQ(emb.rows(), 512);
  EXPECT_EQ(emb.nbytes, 512u * 64u * 4u);
}

TEST(Gguf, VocabOnlyFileHasNoTensors) {
  HARMONIA_REQUIRE_SHARED("models/llama.cpp-vocab/ggml-vocab-llama-spm.gguf");
  auto f = gguf::File::open(shared_path("models/llama.cpp-vocab/ggml-vocab-llama-spm.gguf"));
  EXPECT_TRUE(f->tensor_infos().empty());
  EXPECT_EQ(f->get_int("llama.embedding_length"), 4096);
  EXPECT_EQ(f->get_str_array("tokenizer.ggml.tokens")->size(), 32000u);
  EXPECT_THROW(f->tensor("token_embd.weight"), Error);
}

TEST(Gguf, WriterRoundTrip) {
  gguf::Writer w;
  w.set_string("general.architecture", "llama");
  w.set_u32("llama.block_count", 3);
  w.set_f32("llama.rope.freq_base", 500000.0f);
  w.set_bool("tokenizer.ggml.add_bos_token", true);
  w.set_str_array("tokenizer.ggml.tokens", {"a", "b", "<0x0A>"});
  w.set_i32_array("ids", {1, -2, 3});
  std::vector<float> data(64 * 3);
  for (size_t i = 0; i < data.size(); ++i) data[i] = static_cast<float>(i) * 0.5f;
  w.add_tensor("w", DType::F32, {64, 3}, data.data(), data.size() * 4);
  const std::string p = tmp_path("rt.gguf");
  w.write(p);
  auto f = gguf::File::open(p);
  EXPECT_EQ(f->get_string("general.architecture"), "llama");
  EXPECT_EQ(f->get_int("llama.block_count"), 3);
  EXPECT_FLOAT_EQ(static_cast<float>(f->get_float("llama.rope.freq_base")), 500000.0f);
  EXPECT_TRUE(f->get_bool("tokenizer.ggml.add_bos_token", false));
  EXPECT_EQ((*f->get_str_array("tokenizer.ggml.tokens"))[2], "<0x0A>");
  EXPECT_EQ((*f->get_int_array("ids"))[1], -2);
  Tensor t = f->tensor("w");
  EXPECT_EQ(t.rows(), 3);
  EXPECT_EQ(static_cast<const float*>(t.data)[100], 50.0f);
  EXPECT_THROW(f->get_string("llama.block_count"), Error);  // wrong type
  EXPECT_THROW(f->get_int("missing.key"), Error);
  std::remove(p.c_str());
}

TEST(Gguf, TruncatedAtEveryOffsetGivesErrorNotCrash) {
  HARMONIA_REQUIRE_SHARED("models/stories260K/stories260K.gguf");
  const std::string full = slurp(shared_path("models/stories260K/stories260K.gguf"));
  const std::string p = tmp_path("trunc.gguf");
  // Header region byte by byte, then coarser steps through the data.
  std::vector<size_t> cuts;
  for (size_t i = 0; i < 4096; i += 7) cuts.push_back(i);
  for (size_t i = 4096; i < full.size(); i += 9973) cuts.push_back(i);
  cuts.push_back(full.size() - 1);
  for (size_t cut : cuts) {
    spit(p, full.substr(0, cut));
    try {
      gguf::File::open(p);
      ADD_FAILURE() << "no error for a file cut at " << cut;
    } catch (const Error& e) {
      EXPECT_EQ(e.exit_code(), 2);
      EXPECT_NE(std::string(e.what()).find(p), std::string::npos) << e.what();
    }
  }
  std::remove(p.c_str());
}

TEST(Gguf, CorruptHeaderFields) {
  HARMONIA_REQUIRE_SHARED("models/stories260K/stories260K.gguf");
  const std::string full = slurp(shared_path("models/stories260K/stories260K.gguf"));
  const std::string p = tmp_path("corrupt.gguf");
  auto expect_error = [&](std::string bytes, const char* needle) {
    spit(p, bytes);
    try {
      gguf::File::open(p);
      ADD_FAILURE() << "no error, expected " << needle;
    } catch (const Error& e) {
      EXPECT_NE(std::string(e.what()).find(needle), std::string::npos) << e.what();
    }
  };
  std::string b = full;
  b[0] = 'X';
  expect_error(b, "bad magic");
  b = full;
  b[4] = 9;
  expect_error(b, "version 9");
  b = full;
  b[8] = '\xff';
  b[15] = '\x7f';  // absurd tensor count
  expect_error(b, "cannot fit");
  // Random single-byte corruption anywhere in the header must never crash.
  uint32_t seed = 12345;
  for (int k = 0; k < 300; ++k) {
    seed = seed * 1664525u + 1013904223u;
    b = full;
    b[seed % 4096] = static_cast<char>(seed >> 24);
    spit(p, b);
    try {
      gguf::File::open(p);
    } catch (const Error&) {
    }
  }
  std::remove(p.c_str());
}

TEST(Gguf, TensorPastEndOfFile) {
  gguf::Writer w;
  std::vector<float> data(32 * 2, 1.0f);
  w.add_tensor("w", DType::F32, {32, 2}, data.data(), data.size() * 4);
  const std::string p = tmp_path("past.gguf");
  w.write(p);
  std::string bytes = slurp(p);
  spit(p, bytes.substr(0, bytes.size() - 16));
  try {
    gguf::File::open(p);
    ADD_FAILURE();
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("past the end"), std::string::npos) << e.what();
  }
  std::remove(p.c_str());
}

TEST(Gguf, MissingFile) {
  try {
    gguf::File::open("/nonexistent/model.gguf");
    ADD_FAILURE();
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("/nonexistent/model.gguf"), std::string::npos);
  }
}
