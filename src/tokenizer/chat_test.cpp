// Chat templates against hand-written expectations of the official templates.
#include <gtest/gtest.h>

#include "common/env.h"
#include "common/error.h"
#include "common/testing.h"
#include "tokenizer/test_util.h"
#include "tokenizer/tokenizer.h"

namespace harmonia {
namespace {

using testing::shared_tokenizer;

const std::vector<ChatMessage> kConversation = {
    {"system", "You are terse."},
    {"user", "  Hi there \n"},
    {"assistant", "Hello."},
    {"user", "Name a colour."},
};

TEST(ChatTemplate, Llama2) {
  EXPECT_EQ(apply_chat_template(ChatFormat::Llama2, kConversation),
            "[INST] <<SYS>>\nYou are terse.\n<</SYS>>\n\n  Hi there [/INST] Hello. </s>"
            "<s>[INST] Name a colour. [/INST]");
  EXPECT_EQ(apply_chat_template(ChatFormat::Llama2, {{"user", "Hi"}}), "[INST] Hi [/INST]");
  // Roles must alternate user/assistant, starting with user.
  EXPECT_THROW(apply_chat_template(ChatFormat::Llama2, {{"assistant", "x"}}), Error);
  EXPECT_THROW(apply_chat_template(ChatFormat::Llama2, {{"user", "a"}, {"user", "b"}}), Error);
}

TEST(ChatTemplate, Llama3) {
  EXPECT_EQ(apply_chat_template(ChatFormat::Llama3, kConversation),
            "<|start_header_id|>system<|end_header_id|>\n\nYou are terse.<|eot_id|>"
            "<|start_header_id|>user<|end_header_id|>\n\nHi there<|eot_id|>"
            "<|start_header_id|>assistant<|end_header_id|>\n\nHello.<|eot_id|>"
            "<|start_header_id|>user<|end_header_id|>\n\nName a colour.<|eot_id|>"
            "<|start_header_id|>assistant<|end_header_id|>\n\n");
  EXPECT_EQ(apply_chat_template(ChatFormat::Llama3, {{"user", "Hi"}}, /*add_generation_prompt=*/false),
            "<|start_header_id|>user<|end_header_id|>\n\nHi<|eot_id|>");
}

TEST(ChatTemplate, ChatML) {
  EXPECT_EQ(apply_chat_template(ChatFormat::ChatML, kConversation),
            "<|im_start|>system\nYou are terse.<|im_end|>\n"
            "<|im_start|>user\n  Hi there \n<|im_end|>\n"
            "<|im_start|>assistant\nHello.<|im_end|>\n"
            "<|im_start|>user\nName a colour.<|im_end|>\n"
            "<|im_start|>assistant\n");
  EXPECT_EQ(apply_chat_template(ChatFormat::ChatML, {{"user", "Hi"}}, false),
            "<|im_start|>user\nHi<|im_end|>\n");
  // Qwen3: reasoning of earlier turns is dropped; a final assistant turn (after
  // the last user turn) keeps a <think> block.
  EXPECT_EQ(apply_chat_template(ChatFormat::ChatML,
                                {{"user", "a"}, {"assistant", "<think>\nhmm\n</think>\n\nA"}, {"user", "b"}}),
            "<|im_start|>user\na<|im_end|>\n<|im_start|>assistant\nA<|im_end|>\n"
            "<|im_start|>user\nb<|im_end|>\n<|im_start|>assistant\n");
  EXPECT_EQ(apply_chat_template(ChatFormat::ChatML, {{"user", "a"}, {"assistant", "A"}}, false),
            "<|im_start|>user\na<|im_end|>\n<|im_start|>assistant\n<think>\n\n</think>\n\nA<|im_end|>\n");
}

TEST(ChatTemplate, Raw) {
  EXPECT_EQ(apply_chat_template(ChatFormat::Raw, {{"user", "Once upon"}, {"user", "a time"}}),
            "Once upon\na time");
}

TEST(ChatTemplate, DetectFromJinja) {
  EXPECT_EQ(detect_chat_format(""), ChatFormat::Raw);
  EXPECT_EQ(detect_chat_format("{{ messages }}"), ChatFormat::Raw);
  // meta-llama/Llama-2-7b-chat-hf
  EXPECT_EQ(detect_chat_format("{% if message['role'] == 'user' %}{{ bos_token + '[INST] ' + "
                               "content.strip() + ' [/INST]' }}{% endif %}"),
            ChatFormat::Llama2);
  EXPECT_STREQ(chat_format_name(ChatFormat::Llama3), "llama3");
  EXPECT_STREQ(chat_format_name(ChatFormat::ChatML), "chatml");

  HARMONIA_REQUIRE_SHARED("models/llama3-tokenizer/tokenizer.json");
  HARMONIA_REQUIRE_SHARED("models/qwen3-tokenizer/tokenizer.json");
  const Tokenizer& l3 = shared_tokenizer("models/llama3-tokenizer/tokenizer.json");
  const Tokenizer& qw = shared_tokenizer("models/qwen3-tokenizer/tokenizer.json");
  EXPECT_EQ(detect_chat_format(l3.chat_template()), ChatFormat::Llama3);
  EXPECT_EQ(detect_chat_format(qw.chat_template()), ChatFormat::ChatML);
}

// The formatted prompt tokenizes with its markers as special ids.
TEST(ChatTemplate, EncodesMarkersAsSpecialTokens) {
  HARMONIA_REQUIRE_SHARED("models/llama3-tokenizer/tokenizer.json");
  const Tokenizer& tok = shared_tokenizer("models/llama3-tokenizer/tokenizer.json");
  const std::string prompt = apply_chat_template(ChatFormat::Llama3, {{"user", "Hi"}});
  const auto ids = tok.encode(prompt, tok.add_bos_default(), /*parse_special=*/true);
  // <|begin_of_text|> <|start_header_id|> user <|end_header_id|> \n\n Hi <|eot_id|>
  // <|start_header_id|> assistant <|end_header_id|> \n\n
  ASSERT_EQ(ids.size(), 11u);
  EXPECT_EQ(ids[0], 128000);
  EXPECT_EQ(ids[1], 128006);
  EXPECT_EQ(ids[3], 128007);
  EXPECT_EQ(ids[6], 128009);
  EXPECT_EQ(ids[7], 128006);
  EXPECT_EQ(ids[9], 128007);
}

}  // namespace
}  // namespace harmonia
