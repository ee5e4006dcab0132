// Chat templates: the official Jinja templates of Llama 2, Llama 3 and Qwen3
// (ChatML), re-implemented for the inputs we pass (role + content).
#include "common/error.h"
#include "tokenizer/tokenizer.h"

namespace harmonia {

namespace {

bool is_py_space(char c) { return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\f' || c == '\v'; }

// Python str.strip() / Jinja trim (ASCII whitespace).
std::string strip(std::string_view s) {
  size_t b = 0, e = s.size();
  while (b < e && is_py_space(s[b])) ++b;
  while (e > b && is_py_space(s[e - 1])) --e;
  return std::string(s.substr(b, e - b));
}
std::string lstrip_nl(std::string_view s) {
  size_t b = 0;
  while (b < s.size() && s[b] == '\n') ++b;
  return std::string(s.substr(b));
}
std::string rstrip_nl(std::string_view s) {
  size_t e = s.size();
  while (e > 0 && s[e - 1] == '\n') --e;
  return std::string(s.substr(0, e));
}

// meta-llama/Llama-2-7b-chat-hf tokenizer_config.json chat_template: turns
// alternate user/assistant; an optional system message is folded into the
// first user turn; every user turn after the first starts with the BOS text.
std::string llama2(const std::vector<ChatMessage>& msgs) {
  size_t start = 0;
  std::string system;
  const bool has_system = !msgs.empty() && msgs[0].role == "system";
  if (has_system) {
    system = msgs[0].content;
    start = 1;
  }
  std::string out;
  for (size_t i = start; i < msgs.size(); ++i) {
    const size_t k = i - start;  // loop.index0
    const ChatMessage& m = msgs[i];
    if ((m.role == "user") != (k % 2 == 0))
      fail(ErrorKind::InvalidInput,
           "chat: the Llama 2 template needs user/assistant turns alternating from user; message {} is {:?}",
           i, m.role);
    std::string content = m.content;
    if (k == 0 && has_system) content = "<<SYS>>\n" + system + "\n<</SYS>>\n\n" + m.content;
    if (m.role == "user") {
      if (k > 0) out += "<s>";
      out += "[INST] ";
      out += strip(content);
      out += " [/INST]";
    } else if (m.role == "assistant") {
      out += " ";
      out += strip(content);
      out += " </s>";
    }
  }
  return out;
}

// Meta-Llama-3-8B-Instruct chat_template.
std::string llama3(const std::vector<ChatMessage>& msgs, bool add_generation_prompt) {
  std::string out;
  for (const auto& m : msgs)
    out += "<|start_header_id|>" + m.role + "<|end_header_id|>\n\n" + strip(m.content) + "<|eot_id|>";
  if (add_generation_prompt) out += "<|start_header_id|>assistant<|end_header_id|>\n\n";
  return out;
}

// Qwen3 chat_template without tools (for other ChatML models it gives the
// plain "<|im_start|>role\ncontent<|im_end|>\n" form; only an assistant turn
// after the last user turn gets Qwen3's <think> block).
std::string chatml(const std::vector<ChatMessage>& msgs, bool add_generation_prompt) {
  std::string out;
  const size_t n = msgs.size();
  if (n > 0 && msgs[0].role == "system") out += "<|im_start|>system\n" + msgs[0].content + "<|im_end|>\n";
  size_t last_query = n == 0 ? 0 : n - 1;
  for (size_t r = n; r-- > 0;) {
    const std::string& c = msgs[r].content;
    const bool tool_response = c.starts_with("<tool_response>") && c.ends_with("</tool_response>");
    if (msgs[r].role == "user" && !tool_response) {
      last_query = r;
      break;
    }
  }
  for (size_t i = 0; i < n; ++i) {
    const ChatMessage& m = msgs[i];
    if (m.role == "user" || (m.role == "system" && i != 0)) {
      out += "<|im_start|>" + m.role + "\n" + m.content + "<|im_end|>\n";
    } else if (m.role == "assistant") {
      std::string content = m.content;
      std::string reasoning;
      if (const size_t close = m.content.find("</think>"); close != std::string::npos) {
        content = lstrip_nl(m.content.substr(m.content.rfind("</think>") + 8));
        const std::string before = rstrip_nl(m.content.substr(0, close));
        const size_t open = before.rfind("<think>");
        reasoning = lstrip_nl(open == std::string::npos ? before : before.substr(open + 7));
      }
      if (i > last_query && (i == n - 1 || !reasoning.empty()))
        out += "<|im_start|>" + m.role + "\n<think>\n" + lstrip_nl(rstrip_nl(reasoning)) +
               "\n</think>\n\n" + lstrip_nl(content);
      else
        out += "<|im_start|>" + m.role + "\n" + content;
      out += "<|im_end|>\n";
    } else if (m.role == "tool") {
      if (i == 0 || msgs[i - 1].role != "tool") out += "<|im_start|>user";
      out += "\n<tool_response>\n" + m.content + "\n</tool_response>";
      if (i == n - 1 || msgs[i + 1].role != "tool") out += "<|im_end|>\n";
    }
  }
  if (add_generation_prompt) out += "<|im_start|>assistant\n";
  return out;
}

}  // namespace

ChatFormat detect_chat_format(const std::string& t) {
  if (t.find("<|start_header_id|>") != std::string::npos) return ChatFormat::Llama3;
  if (t.find("<|im_start|>") != std::string::npos) return ChatFormat::ChatML;
  if (t.find("[INST]") != std::string::npos) return ChatFormat::Llama2;
  return ChatFormat::Raw;
}

const char* chat_format_name(ChatFormat f) {
  switch (f) {
    case ChatFormat::Llama2: return "llama2";
    case ChatFormat::Llama3: return "llama3";
    case ChatFormat::ChatML: return "chatml";
    case ChatFormat::Raw: return "raw";
  }
  return "raw";
}

std::string apply_chat_template(ChatFormat f, const std::vector<ChatMessage>& messages,
                                bool add_generation_prompt) {
  switch (f) {
    case ChatFormat::Llama2: return llama2(messages);
    case ChatFormat::Llama3: return llama3(messages, add_generation_prompt);
    case ChatFormat::ChatML: return chatml(messages, add_generation_prompt);
    case ChatFormat::Raw: break;
  }
  std::string out;
  for (size_t i = 0; i < messages.size(); ++i) {
    if (i > 0) out += "\n";
    out += messages[i].content;
  }
  return out;
}

}  // namespace harmonia
