// Tokenizer factories: GGUF metadata, HF tokenizer.json, llama2.c tokenizer.bin,
// and load_tokenizer() picking one by file name / magic.
#include <algorithm>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <optional>

#include <nlohmann/json.hpp>

#include "common/env.h"
#include "common/error.h"
#include "common/mapped_file.h"
#include "gguf/gguf.h"
#include "tokenizer/models.h"

namespace harmonia {

using tok::AddedToken;
using tok::TokType;
using tok::Vocab;
using json = nlohmann::json;

namespace {

// Adds "left right" merge rules in order; a rule whose parts or concatenation
// are not tokens is skipped (it could never apply).
void add_merge(const Vocab& v, tok::MergeTable& mt, std::string_view l, std::string_view r,
               int32_t rank) {
  const int32_t a = v.find(l), b = v.find(r);
  if (a < 0 || b < 0) return;
  std::string cat;
  cat.reserve(l.size() + r.size());
  cat.append(l).append(r);
  const int32_t m = v.find(cat);
  if (m >= 0) mt.add(a, b, rank, m);
}

// Pre-tokenizer names of llama.cpp (`tokenizer.ggml.pre`) grouped by the regex they use.
struct PreTokenizer {
  const char* regex;
  bool ignore_merges;
  bool add_bos;  // default when the GGUF has no tokenizer.ggml.add_bos_token
};
std::optional<PreTokenizer> gguf_pre_tokenizer(const std::string& pre) {
  static const char* const gpt2[] = {"default", "gpt-2", "gpt2", "jina-es", "jina-de", "phi-2"};
  static const char* const llama3[] = {"llama3", "llama-bpe", "llama-v3", "smaug-bpe", "dbrx", "falcon3"};
  static const char* const qwen2[] = {"qwen2", "deepseek-r1-qwen", "megrez"};
  for (const char* n : gpt2)
    if (pre == n) return PreTokenizer{tok::kGpt2Regex, false, false};
  for (const char* n : llama3)
    if (pre == n) return PreTokenizer{tok::kLlama3Regex, true, true};
  for (const char* n : qwen2)
    if (pre == n) return PreTokenizer{tok::kQwen2Regex, false, false};
  return std::nullopt;
}

// ---- HF tokenizer.json helpers -------------------------------------------------

// The components of a Sequence (normalizers / pretokenizers / decoders /
// processors), or the object itself; nothing for null.
std::vector<const json*> components(const json& j) {
  std::vector<const json*> out;
  if (!j.is_object()) return out;
  for (const char* key : {"normalizers", "pretokenizers", "decoders", "processors"}) {
    if (j.contains(key) && j[key].is_array()) {
      for (const auto& c : j[key])
        for (const json* sub : components(c)) out.push_back(sub);
      return out;
    }
  }
  out.push_back(&j);
  return out;
}

std::string type_of(const json& j) { return j.is_object() ? j.value("type", std::string()) : ""; }

// bos_token / eos_token of tokenizer_config.json: a string, {"content": ...} or null.
std::string token_name(const json& cfg, const char* key) {
  if (!cfg.contains(key)) return "";
  const json& t = cfg[key];
  if (t.is_string()) return t.get<std::string>();
  if (t.is_object() && t.contains("content") && t["content"].is_string())
    return t["content"].get<std::string>();
  return "";
}

// Escapes a literal for use inside a PCRE2 pattern (HF Split with a String pattern).
std::string regex_quote(const std::string& s) { return "\\Q" + s + "\\E"; }

std::unique_ptr<Tokenizer> hf_from_json(const std::string& path, const json& j, const json& cfg) {
  if (!j.is_object() || !j.contains("model") || !j["model"].is_object())
    fail(ErrorKind::InvalidInput, "{}: no \"model\" object (not a tokenizer.json)", path);
  const json& model = j["model"];
  const std::string type = model.value("type", std::string("BPE"));
  if (type != "BPE")
    fail(ErrorKind::Unsupported, "{}: tokenizer model type {} is not supported (only BPE)", path, type);
  if (!model.contains("vocab") || !model["vocab"].is_object())
    fail(ErrorKind::InvalidInput, "{}: model.vocab is missing or not an object", path);

  // Vocabulary: model.vocab plus added_tokens (which may lie beyond it, as
  // Llama 3's 128000.. do).
  int64_t n = 0;
  for (const auto& [piece, id] : model["vocab"].items()) {
    if (!id.is_number_integer() || id.get<int64_t>() < 0 || id.get<int64_t>() >= (1 << 24))
      fail(ErrorKind::InvalidInput, "{}: model.vocab entry {:?} has a bad id", path, piece);
    n = std::max<int64_t>(n, id.get<int64_t>() + 1);
  }
  std::vector<AddedToken> added;
  if (j.contains("added_tokens") && j["added_tokens"].is_array()) {
    for (const auto& a : j["added_tokens"]) {
      AddedToken t;
      t.id = a.at("id").get<int32_t>();
      t.text = a.at("content").get<std::string>();
      t.special = a.value("special", false);
      t.lstrip = a.value("lstrip", false);
      t.rstrip = a.value("rstrip", false);
      if (t.id < 0 || t.id >= (1 << 24))
        fail(ErrorKind::InvalidInput, "{}: added token {:?} has a bad id {}", path, t.text, t.id);
      n = std::max<int64_t>(n, t.id + 1);
      added.push_back(std::move(t));
    }
  }
  Vocab v;
  v.source = path;
  v.pieces.resize(static_cast<size_t>(n));
  v.types.assign(static_cast<size_t>(n), TokType::Unused);  // ids with no token stay Unused
  for (const auto& [piece, id] : model["vocab"].items()) {
    v.pieces[id.get<size_t>()] = piece;
    v.types[id.get<size_t>()] = TokType::Normal;
  }
  for (const auto& a : added) {
    v.pieces[static_cast<size_t>(a.id)] = a.text;
    v.types[static_cast<size_t>(a.id)] = a.special ? TokType::Control : TokType::UserDefined;
  }

  const json null_json;
  const json& normalizer = j.contains("normalizer") ? j["normalizer"] : null_json;
  const json& pre = j.contains("pre_tokenizer") ? j["pre_tokenizer"] : null_json;
  const json& decoder = j.contains("decoder") ? j["decoder"] : null_json;
  auto has = [](const json& root, const char* t) {
    for (const json* c : components(root))
      if (type_of(*c) == t) return true;
    return false;
  };
  const bool byte_level = has(pre, "ByteLevel") || has(decoder, "ByteLevel");
  const bool byte_fallback = model.value("byte_fallback", false);
  if (byte_fallback) {
    for (int32_t id = 0; id < v.size(); ++id)
      if (v.types[static_cast<size_t>(id)] == TokType::Normal && tok::parse_byte_piece(v.pieces[static_cast<size_t>(id)]) >= 0)
        v.types[static_cast<size_t>(id)] = TokType::Byte;
  }
  v.index();
  if (model.contains("unk_token") && model["unk_token"].is_string())
    v.unk = v.find(model["unk_token"].get<std::string>());

  // Merges: "a b" strings (older files) or ["a", "b"] pairs.
  tok::MergeTable merges;
  if (model.contains("merges") && model["merges"].is_array()) {
    const json& m = model["merges"];
    merges.reserve(m.size());
    int32_t rank = 0;
    for (const auto& r : m) {
      if (r.is_string()) {
        const auto& s = r.get_ref<const std::string&>();
        std::string_view a, b;
        if (!tok::split_merge_rule(s, &a, &b))
          fail(ErrorKind::InvalidInput, "{}: merge rule {} ({:?}) has no space", path, rank, s);
        add_merge(v, merges, a, b, rank);
      } else if (r.is_array() && r.size() == 2) {
        add_merge(v, merges, r[0].get_ref<const std::string&>(), r[1].get_ref<const std::string&>(), rank);
      } else {
        fail(ErrorKind::InvalidInput, "{}: merge rule {} is neither \"a b\" nor [a, b]", path, rank);
      }
      ++rank;
    }
  }

  // BOS/EOS and the add-BOS flag: tokenizer_config.json first, then the
  // post-processor template ("single": [SpecialToken bos, Sequence A]).
  std::string bos_name = token_name(cfg, "bos_token");
  const std::string eos_name = token_name(cfg, "eos_token");
  std::optional<bool> template_bos;
  if (j.contains("post_processor")) {
    for (const json* c : components(j["post_processor"])) {
      if (type_of(*c) != "TemplateProcessing" || !c->contains("single")) continue;
      const json& single = (*c)["single"];
      template_bos = single.is_array() && !single.empty() && single[0].contains("SpecialToken");
      if (*template_bos && bos_name.empty())
        bos_name = single[0]["SpecialToken"].value("id", std::string());
    }
  }
  if (!bos_name.empty()) v.bos = v.find(bos_name);
  if (!eos_name.empty()) v.eos = v.find(eos_name);
  if (cfg.contains("add_bos_token") && cfg["add_bos_token"].is_boolean())
    v.add_bos = cfg["add_bos_token"].get<bool>();
  else if (template_bos)
    v.add_bos = *template_bos;
  else  // NOTE: Llama 3's tokenizer.json adds no BOS itself, yet its models need one
    v.add_bos = v.bos >= 0;
  if (cfg.contains("chat_template")) {
    const json& ct = cfg["chat_template"];
    if (ct.is_string()) {
      v.chat_template = ct.get<std::string>();
    } else if (ct.is_array()) {  // [{"name": "default", "template": ...}, ...]
      for (const auto& e : ct)
        if (e.is_object() && e.value("name", std::string()) == "default")
          v.chat_template = e.value("template", std::string());
    }
  }

  if (byte_level) {
    tok::BpeOptions o;
    for (const json* c : components(normalizer)) {
      const std::string t = type_of(*c);
      // NOTE: NFC (Qwen2) is taken as the identity: input is expected in NFC
      // already, which nearly all text is; we carry no Unicode tables.
      if (t != "NFC")
        fail(ErrorKind::Unsupported, "{}: normalizer {} is not supported for byte-level BPE", path, t);
    }
    for (const json* c : components(pre)) {
      const std::string t = type_of(*c);
      if (t == "Split") {
        const json& pat = c->at("pattern");
        if (c->value("behavior", std::string("Isolated")) != "Isolated" || c->value("invert", false))
          fail(ErrorKind::Unsupported, "{}: Split pre-tokenizer other than Isolated/non-inverted", path);
        if (pat.contains("Regex"))
          o.regexes.push_back(pat["Regex"].get<std::string>());
        else
          o.regexes.push_back(regex_quote(pat.at("String").get<std::string>()));
      } else if (t == "ByteLevel") {
        o.add_prefix_space = c->value("add_prefix_space", false);
        if (c->value("use_regex", true)) o.regexes.push_back(tok::kGpt2Regex);
      } else if (t == "Digits") {
        o.regexes.push_back(c->value("individual_digits", false) ? "\\p{N}" : "\\p{N}+");
      } else {
        fail(ErrorKind::Unsupported, "{}: pre-tokenizer {} is not supported", path, t);
      }
    }
    o.ignore_merges = model.value("ignore_merges", false);
    o.merges = std::move(merges);
    o.added = std::move(added);
    return tok::make_bpe_tokenizer(std::move(v), std::move(o));
  }

  // SentencePiece-style BPE written out by HF: the "▁" handling lives in the
  // normalizer (Prepend + Replace, Llama 2 legacy) or in a Metaspace pre-tokenizer.
  tok::SpmOptions o;
  o.prefix = tok::SpmOptions::Prefix::Never;
  bool spm_like = byte_fallback || has(decoder, "ByteFallback") || has(decoder, "Metaspace");
  for (const json* c : components(normalizer)) {
    const std::string t = type_of(*c);
    if (t == "Prepend") {
      o.space = c->value("prepend", o.space);
      o.prefix = tok::SpmOptions::Prefix::AfterSpecial;
      spm_like = true;
    } else if (t == "Replace") {
      const json& pat = c->at("pattern");
      if (!pat.contains("String") || pat["String"] != " ")
        fail(ErrorKind::Unsupported, "{}: Replace normalizer other than \" \" -> \"▁\"", path);
      o.space = c->value("content", o.space);
      spm_like = true;
    } else if (t != "NFC") {
      fail(ErrorKind::Unsupported, "{}: normalizer {} is not supported", path, t);
    }
  }
  for (const json* c : components(pre)) {
    const std::string t = type_of(*c);
    if (t != "Metaspace") fail(ErrorKind::Unsupported, "{}: pre-tokenizer {} is not supported", path, t);
    o.space = c->value("replacement", o.space);
    std::string scheme = c->value("prepend_scheme", std::string());
    if (scheme.empty()) scheme = c->value("add_prefix_space", true) ? "always" : "never";
    o.prefix = scheme == "first"   ? tok::SpmOptions::Prefix::First
               : scheme == "never" ? tok::SpmOptions::Prefix::Never
                                   : tok::SpmOptions::Prefix::AfterSpecial;
    o.prefix_unless_space = true;
    o.split_words = c->value("split", true);
    spm_like = true;
  }
  if (!spm_like)
    fail(ErrorKind::Unsupported, "{}: BPE without ByteLevel or SentencePiece-style (▁) handling", path);
  o.use_ranks = true;
  o.merges = std::move(merges);
  o.byte_fallback = byte_fallback;
  o.fuse_unk = model.value("fuse_unk", false);
  o.added = std::move(added);
  return tok::make_spm_tokenizer(std::move(v), std::move(o));
}

json parse_json_file(const std::string& path) {
  const std::string text = read_file(path);
  try {
    return json::parse(text);
  } catch (const json::parse_error& e) {
    fail(ErrorKind::InvalidInput, "{}: malformed JSON at byte {}", path, e.byte);
  }
}

}  // namespace

// ---- GGUF ----------------------------------------------------------------------

std::unique_ptr<Tokenizer> tokenizer_from_gguf(const gguf::File& f) {
  const std::string model = f.get_string("tokenizer.ggml.model", "");
  if (model.empty()) fail(ErrorKind::InvalidInput, "{}: no tokenizer.ggml.model key (no vocabulary)", f.path());
  const std::vector<std::string>* tokens = f.get_str_array("tokenizer.ggml.tokens");
  if (!tokens || tokens->empty())
    fail(ErrorKind::InvalidInput, "{}: tokenizer.ggml.tokens is missing or empty", f.path());
  Vocab v;
  v.source = f.path();
  v.pieces = *tokens;
  const size_t n = tokens->size();
  if (const auto* scores = f.get_float_array("tokenizer.ggml.scores")) {
    if (scores->size() != n)
      fail(ErrorKind::InvalidInput, "{}: tokenizer.ggml.scores has {} entries for {} tokens", f.path(),
           scores->size(), n);
    v.scores.assign(scores->begin(), scores->end());
  }
  if (const auto* types = f.get_int_array("tokenizer.ggml.token_type")) {
    if (types->size() != n)
      fail(ErrorKind::InvalidInput, "{}: tokenizer.ggml.token_type has {} entries for {} tokens",
           f.path(), types->size(), n);
    v.types.resize(n);
    for (size_t i = 0; i < n; ++i) {
      const int64_t t = (*types)[i];
      v.types[i] = t >= 1 && t <= 6 ? static_cast<TokType>(t) : TokType::Normal;
    }
  }
  v.index();
  v.bos = v.valid_or_none(f.get_int("tokenizer.ggml.bos_token_id", -1));
  v.eos = v.valid_or_none(f.get_int("tokenizer.ggml.eos_token_id", -1));
  v.unk = v.valid_or_none(f.get_int("tokenizer.ggml.unknown_token_id", -1));
  v.chat_template = f.get_string("tokenizer.chat_template", "");

  if (model == "llama") {
    v.add_bos = f.get_bool("tokenizer.ggml.add_bos_token", true);
    tok::SpmOptions o;
    o.prefix = f.get_bool("tokenizer.ggml.add_space_prefix", true) ? tok::SpmOptions::Prefix::AfterSpecial
                                                                  : tok::SpmOptions::Prefix::Never;
    o.added = tok::added_tokens_from_types(v);
    return tok::make_spm_tokenizer(std::move(v), std::move(o));
  }
  if (model == "gpt2") {
    const std::string pre_name = f.get_string("tokenizer.ggml.pre", "default");
    const auto pre = gguf_pre_tokenizer(pre_name);
    if (!pre)
      fail(ErrorKind::Unsupported, "{}: pre-tokenizer tokenizer.ggml.pre={:?} is not supported "
           "(known: gpt-2, llama-bpe, qwen2 and their aliases)", f.path(), pre_name);
    const std::vector<std::string>* rules = f.get_str_array("tokenizer.ggml.merges");
    if (!rules) fail(ErrorKind::InvalidInput, "{}: gpt2 vocabulary without tokenizer.ggml.merges", f.path());
    tok::BpeOptions o;
    o.merges.reserve(rules->size());
    for (size_t r = 0; r < rules->size(); ++r) {
      std::string_view a, b;
      if (!tok::split_merge_rule((*rules)[r], &a, &b))
        fail(ErrorKind::InvalidInput, "{}: tokenizer.ggml.merges[{}] ({:?}) has no space", f.path(), r,
             (*rules)[r]);
      add_merge(v, o.merges, a, b, static_cast<int32_t>(r));
    }
    o.regexes.push_back(pre->regex);
    o.ignore_merges = pre->ignore_merges;
    v.add_bos = f.get_bool("tokenizer.ggml.add_bos_token", pre->add_bos);
    o.added = tok::added_tokens_from_types(v);
    return tok::make_bpe_tokenizer(std::move(v), std::move(o));
  }
  fail(ErrorKind::Unsupported, "{}: tokenizer.ggml.model {:?} is not supported (only llama, gpt2)",
       f.path(), model);
}

// ---- HF tokenizer.json ---------------------------------------------------------

std::unique_ptr<Tokenizer> tokenizer_from_hf_json(const std::string& path) {
  if (!file_exists(path)) fail(ErrorKind::Io, "{}: no such file", path);
  const json j = parse_json_file(path);
  json cfg = json::object();
  const std::string cfg_path =
      (std::filesystem::path(path).parent_path() / "tokenizer_config.json").string();
  if (file_exists(cfg_path)) cfg = parse_json_file(cfg_path);
  try {
    return hf_from_json(path, j, cfg);
  } catch (const json::exception& e) {
    // A field of the wrong JSON type somewhere nlohmann checked it for us.
    fail(ErrorKind::InvalidInput, "{}: unexpected tokenizer.json structure: {}", path, e.what());
  }
}

// ---- llama2.c tokenizer.bin ----------------------------------------------------

std::unique_ptr<Tokenizer> tokenizer_from_llama2c(const std::string& path, int32_t vocab_size) {
  const std::string data = read_file(path);
  if (data.size() < 4) fail(ErrorKind::InvalidInput, "{}: {} bytes is too short for a llama2.c tokenizer", path, data.size());
  uint32_t max_len = 0;
  std::memcpy(&max_len, data.data(), 4);
  Vocab v;
  v.source = path;
  size_t off = 4;
  while (vocab_size > 0 ? v.size() < vocab_size : off < data.size()) {
    if (data.size() - off < 8)
      fail(ErrorKind::InvalidInput, "{}: truncated at offset {}: token {} of {} needs a score and a length",
           path, off, v.size(), vocab_size > 0 ? std::to_string(vocab_size) : "?");
    float score = 0;
    int32_t len = 0;
    std::memcpy(&score, data.data() + off, 4);
    std::memcpy(&len, data.data() + off + 4, 4);
    off += 8;
    if (len < 0 || static_cast<size_t>(len) > data.size() - off)
      fail(ErrorKind::InvalidInput, "{}: at offset {}: token {} has length {} but {} bytes remain", path,
           off - 4, v.size(), len, data.size() - off);
    v.pieces.emplace_back(data.data() + off, static_cast<size_t>(len));
    v.scores.push_back(score);
    off += static_cast<size_t>(len);
  }
  if (v.pieces.empty()) fail(ErrorKind::InvalidInput, "{}: no tokens", path);
  // llama2.c's tokenizer.py writes <s> as "\n<s>\n", "▁" as " " and byte
  // tokens as the text "<0xNN>"; token types are not stored, so recover them.
  v.types.assign(v.pieces.size(), TokType::Normal);
  for (int32_t id = 0; id < v.size(); ++id) {
    const std::string& p = v.pieces[static_cast<size_t>(id)];
    auto& t = v.types[static_cast<size_t>(id)];
    if (p == "<unk>") {
      t = TokType::Unknown;
    } else if (tok::parse_byte_piece(p) >= 0) {
      t = TokType::Byte;
    } else if (p.size() > 4 && p.front() == '\n' && p.back() == '\n' && p[1] == '<' && p[p.size() - 2] == '>') {
      t = TokType::Control;
      v.text_override[id] = p.substr(1, p.size() - 2);
    } else if (p == "<s>" || p == "</s>") {
      t = TokType::Control;
    }
  }
  v.index();
  // run.c hard-codes these ids (BOS 1 delimits sequences).
  v.unk = v.valid_or_none(0);
  v.bos = v.valid_or_none(1);
  v.eos = v.valid_or_none(2);
  v.add_bos = true;
  tok::SpmOptions o;
  o.space = std::string(1, ' ');  // llama2.c pieces keep plain spaces
  o.added = tok::added_tokens_from_types(v);
  return tok::make_spm_tokenizer(std::move(v), std::move(o));
}

// ---- dispatch ------------------------------------------------------------------

std::unique_ptr<Tokenizer> load_tokenizer(const std::string& path) {
  namespace fs = std::filesystem;
  std::error_code ec;
  if (fs::is_directory(path, ec)) {
    // A Hugging Face model folder.
    for (const char* name : {"tokenizer.json", "tokenizer.model"}) {
      const std::string p = (fs::path(path) / name).string();
      if (file_exists(p)) return load_tokenizer(p);
    }
    fail(ErrorKind::Io, "{}: folder has no tokenizer.json or tokenizer.model", path);
  }
  if (!file_exists(path)) fail(ErrorKind::Io, "{}: no such file", path);
  char magic[4] = {};
  {
    std::ifstream in(path, std::ios::binary);
    if (!in) fail(ErrorKind::Io, "{}: cannot open", path);
    in.read(magic, 4);
  }
  if (std::memcmp(magic, "GGUF", 4) == 0) return tokenizer_from_gguf(*gguf::File::open(path));
  std::string ext = fs::path(path).extension().string();
  std::transform(ext.begin(), ext.end(), ext.begin(), [](unsigned char c) { return std::tolower(c); });
  if (ext == ".gguf") fail(ErrorKind::InvalidInput, "{}: not a GGUF file (no \"GGUF\" magic)", path);
  if (ext == ".json") return tokenizer_from_hf_json(path);
  if (ext == ".model") return tokenizer_from_sentencepiece(path);
  return tokenizer_from_llama2c(path, 0);
}

}  // namespace harmonia
