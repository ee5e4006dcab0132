// Hugging Face loader: config.json + model.safetensors (or the shards named by
// model.safetensors.index.json), tokenizer.json beside them.
//
// Safetensors (github.com/huggingface/safetensors, README "Format"): u64
// little-endian header length N, then N bytes of JSON
//   {name: {"dtype": "F32", "shape": [d0, d1], "data_offsets": [begin, end]}, ...,
//    "__metadata__": {str: str}}
// then the data section; offsets are bytes relative to its start. Shapes are
// row-major (last dimension contiguous), so an nn.Linear weight [out, in] is a
// Tensor with ne = {in, out}: the compute layout, used in place from the map.
//
// Tensor names are transformers' LlamaForCausalLM / MistralForCausalLM /
// Qwen2ForCausalLM / Qwen3ForCausalLM state-dict keys. Their q_proj/k_proj rows
// are in rotate_half order (RopeConfig::Style::Half), so no permutation is needed.
#include <algorithm>
#include <cmath>
#include <cstring>
#include <filesystem>
#include <limits>
#include <map>
#include <optional>
#include <vector>

#include <nlohmann/json.hpp>

#include "common/error.h"
#include "model/model.h"

namespace harmonia {

namespace {

namespace fs = std::filesystem;
using nlohmann::json;

// Header sizes above this are refused before parsing (the safetensors crate's limit).
constexpr uint64_t kMaxHeaderBytes = 100ull << 20;

// nlohmann's messages start with "[json.exception.parse_error.101] "; keep the rest.
std::string json_reason(const json::exception& e) {
  std::string s = e.what();
  if (!s.empty() && s[0] == '[') {
    const size_t p = s.find("] ");
    if (p != std::string::npos) s.erase(0, p + 2);
  }
  return s;
}

json parse_json_file(const std::string& path) {
  const std::string text = read_file(path);
  try {
    return json::parse(text);
  } catch (const json::exception& e) {
    fail(ErrorKind::InvalidInput, "{}: not valid JSON: {}", path, json_reason(e));
  }
}

// ---- config.json --------------------------------------------------------------------

// Typed access to config.json fields; every failure names the file and the key.
// A key that is present but null counts as absent (HF writes e.g. "head_dim": null).
class ConfigReader {
 public:
  ConfigReader(const std::string& path, const json& j) : path_(path), j_(j) {}

  const json* find(const std::string& key) const {
    auto it = j_.find(key);
    return it == j_.end() || it->is_null() ? nullptr : &*it;
  }
  bool has(const std::string& key) const { return find(key) != nullptr; }

  int64_t integer(const std::string& key) const {
    const json* v = find(key);
    if (!v) fail(ErrorKind::InvalidInput, "{}: '{}' is missing", path_, key);
    return as_int(key, *v);
  }
  int64_t integer(const std::string& key, int64_t def) const { return has(key) ? integer(key) : def; }
  // An int field of ModelConfig: also range-checked.
  int small(const std::string& key) const { return narrow(key, integer(key)); }
  int small(const std::string& key, int def) const { return has(key) ? small(key) : def; }

  double number(const std::string& key, double def) const {
    const json* v = find(key);
    if (!v) return def;
    return as_number(key, *v);
  }
  bool boolean(const std::string& key, bool def) const {
    const json* v = find(key);
    if (!v) return def;
    if (!v->is_boolean())
      fail(ErrorKind::InvalidInput, "{}: '{}' must be true or false, got {}", path_, key, v->type_name());
    return v->get<bool>();
  }
  std::string string(const std::string& key, const std::string& def) const {
    const json* v = find(key);
    if (!v) return def;
    if (!v->is_string())
      fail(ErrorKind::InvalidInput, "{}: '{}' must be a string, got {}", path_, key, v->type_name());
    return v->get<std::string>();
  }

  int64_t as_int(const std::string& key, const json& v) const {
    if (v.is_number_unsigned()) {
      const uint64_t u = v.get<uint64_t>();
      if (u > static_cast<uint64_t>(std::numeric_limits<int64_t>::max()))
        fail(ErrorKind::InvalidInput, "{}: '{}' = {} is out of range", path_, key, u);
      return static_cast<int64_t>(u);
    }
    if (v.is_number_integer()) return v.get<int64_t>();
    if (v.is_number_float()) {  // 4096.0 is accepted, 4096.5 is not
      const double d = v.get<double>();
      if (std::abs(d) < 9e15 && d == static_cast<double>(static_cast<int64_t>(d))) return static_cast<int64_t>(d);
    }
    fail(ErrorKind::InvalidInput, "{}: '{}' must be an integer, got {}", path_, key, v.dump());
  }
  double as_number(const std::string& key, const json& v) const {
    if (!v.is_number())
      fail(ErrorKind::InvalidInput, "{}: '{}' must be a number, got {}", path_, key, v.type_name());
    return v.get<double>();
  }
  int narrow(const std::string& key, int64_t v) const {
    if (v < std::numeric_limits<int>::min() || v > std::numeric_limits<int>::max())
      fail(ErrorKind::InvalidInput, "{}: '{}' = {} is out of range", path_, key, v);
    return static_cast<int>(v);
  }
  const std::string& path() const { return path_; }

 private:
  const std::string& path_;
  const json& j_;
};

// transformers' config class -> model_type, for configs without "model_type".
const std::pair<const char*, const char*> kArchitectures[] = {
    {"LlamaForCausalLM", "llama"},
    {"MistralForCausalLM", "mistral"},
    {"Qwen2ForCausalLM", "qwen2"},
    {"Qwen3ForCausalLM", "qwen3"},
};

Arch parse_arch(const ConfigReader& cfg, const json& j) {
  std::string mt = cfg.string("model_type", "");
  if (mt.empty()) {
    auto it = j.find("architectures");
    if (it != j.end() && it->is_array() && !it->empty() && (*it)[0].is_string()) {
      mt = (*it)[0].get<std::string>();
      for (const auto& [cls, type] : kArchitectures)
        if (mt == cls) mt = type;
    }
  }
  if (mt == "llama") return Arch::Llama;
  if (mt == "mistral") return Arch::Mistral;
  if (mt == "qwen2") return Arch::Qwen2;
  if (mt == "qwen3") return Arch::Qwen3;
  if (mt.empty())
    fail(ErrorKind::InvalidInput, "{}: neither 'model_type' nor 'architectures' says what model this is",
         cfg.path());
  fail(ErrorKind::Unsupported, "{}: model_type '{}' is not supported (supported: llama, mistral, qwen2, qwen3)",
       cfg.path(), mt);
}

// rope_theta and rope_scaling (transformers' modeling_rope_utils.py semantics;
// transformers >= 5 nests both in "rope_parameters").
void parse_rope(const ConfigReader& cfg, const ModelConfig& c, RopeConfig& r) {
  r.style = RopeConfig::Style::Half;
  r.n_rot = c.head_dim;
  const json* rp = cfg.find("rope_parameters");
  if (rp && !rp->is_object())
    fail(ErrorKind::InvalidInput, "{}: 'rope_parameters' must be an object, got {}", cfg.path(), rp->type_name());
  const json* rs = cfg.find("rope_scaling");
  if (!rs) rs = rp;
  r.theta = cfg.number("rope_theta", 10000.0);
  if (!cfg.has("rope_theta") && rp) {
    ConfigReader sub(cfg.path(), *rp);
    r.theta = sub.number("rope_theta", 10000.0);
  }
  if (!rs) return;
  if (!rs->is_object())
    fail(ErrorKind::InvalidInput, "{}: 'rope_scaling' must be an object or null, got {}", cfg.path(), rs->type_name());
  const ConfigReader s(cfg.path(), *rs);
  const std::string type = s.has("rope_type") ? s.string("rope_type", "") : s.string("type", "default");
  if (type == "default") return;
  using S = RopeConfig::Scaling;
  if (type == "linear") r.scaling = S::Linear;
  else if (type == "dynamic") r.scaling = S::DynamicNTK;
  else if (type == "yarn") r.scaling = S::Yarn;
  else if (type == "llama3") r.scaling = S::Llama3;
  else
    fail(ErrorKind::Unsupported,
         "{}: rope_scaling type '{}' is not supported (supported: linear, dynamic, yarn, llama3)", cfg.path(),
         type);
  if (!s.has("factor")) fail(ErrorKind::InvalidInput, "{}: rope_scaling '{}' needs a 'factor'", cfg.path(), type);
  r.factor = s.number("factor", 1.0);
  if (!(r.factor > 0.0) || !std::isfinite(r.factor))
    fail(ErrorKind::InvalidInput, "{}: rope_scaling factor {} must be positive", cfg.path(), r.factor);
  // NOTE: recent transformers re-derive the YaRN factor as max_position_embeddings /
  // original_max_position_embeddings when both are given; we keep the declared
  // factor, as vLLM and llama.cpp's converter do.
  r.original_ctx = s.integer("original_max_position_embeddings", c.ctx_len);
  if (type == "llama3" && !s.has("original_max_position_embeddings"))
    fail(ErrorKind::InvalidInput, "{}: rope_scaling 'llama3' needs 'original_max_position_embeddings'",
         cfg.path());
  if (r.scaling != S::Linear && r.original_ctx <= 0)
    fail(ErrorKind::InvalidInput, "{}: rope_scaling original_max_position_embeddings {} must be positive",
         cfg.path(), r.original_ctx);
  if (r.scaling == S::Llama3) {
    r.low_freq_factor = s.number("low_freq_factor", 1.0);
    r.high_freq_factor = s.number("high_freq_factor", 4.0);
    if (!(r.low_freq_factor > 0.0) || !(r.high_freq_factor > r.low_freq_factor))
      fail(ErrorKind::InvalidInput,
           "{}: rope_scaling llama3 needs 0 < low_freq_factor < high_freq_factor (got {} and {})", cfg.path(),
           r.low_freq_factor, r.high_freq_factor);
  }
  if (r.scaling == S::Yarn) {
    r.yarn_beta_fast = s.number("beta_fast", 32.0);
    r.yarn_beta_slow = s.number("beta_slow", 1.0);
    r.yarn_attn_factor = s.number("attention_factor", 0.0);
    if (!(r.yarn_beta_fast > 0.0) || !(r.yarn_beta_slow > 0.0) || r.yarn_attn_factor < 0.0)
      fail(ErrorKind::InvalidInput, "{}: rope_scaling yarn beta_fast {}, beta_slow {}, attention_factor {} are invalid",
           cfg.path(), r.yarn_beta_fast, r.yarn_beta_slow, r.yarn_attn_factor);
  }
}

void parse_config(const std::string& path, const json& j, ModelConfig& c, bool& tie) {
  if (!j.is_object()) fail(ErrorKind::InvalidInput, "{}: expected a JSON object, got {}", path, j.type_name());
  const ConfigReader cfg(path, j);
  c.arch = parse_arch(cfg, j);
  const std::string act = cfg.string("hidden_act", "silu");
  if (act != "silu" && act != "swish")
    fail(ErrorKind::Unsupported, "{}: hidden_act '{}' is not supported (only silu)", path, act);
  if (cfg.boolean("mlp_bias", false))
    fail(ErrorKind::Unsupported, "{}: mlp_bias true is not supported (MLP projections without biases only)", path);
  c.dim = cfg.small("hidden_size");
  c.ffn_dim = cfg.small("intermediate_size");
  c.n_layers = cfg.small("num_hidden_layers");
  c.n_heads = cfg.small("num_attention_heads");
  c.n_kv_heads = cfg.small("num_key_value_heads", c.n_heads);
  if (cfg.has("head_dim")) {
    c.head_dim = cfg.small("head_dim");
  } else if (c.n_heads > 0) {
    if (c.dim % c.n_heads != 0)
      fail(ErrorKind::InvalidInput, "{}: hidden_size {} is not a multiple of num_attention_heads {} and no head_dim is given",
           path, c.dim, c.n_heads);
    c.head_dim = c.dim / c.n_heads;
  }
  c.vocab_size = cfg.small("vocab_size", 0);  // 0: taken from the embedding below
  // transformers' defaults per config class.
  const int64_t def_ctx = c.arch == Arch::Llama ? 2048 : c.arch == Arch::Mistral ? 131072 : 32768;
  c.ctx_len = cfg.integer("max_position_embeddings", def_ctx);
  if (c.ctx_len <= 0)
    fail(ErrorKind::InvalidInput, "{}: max_position_embeddings {} must be positive", path, c.ctx_len);
  c.norm_eps = static_cast<float>(cfg.number("rms_norm_eps", 1e-6));
  // Qwen2 always has q/k/v biases; for the others attention_bias adds them.
  c.qkv_bias = c.arch == Arch::Qwen2 || cfg.boolean("attention_bias", false);
  c.qk_norm = c.arch == Arch::Qwen3;
  tie = cfg.boolean("tie_word_embeddings", false);
  // NOTE: Mistral's / Qwen2's sliding_window is not applied: attention is full over
  // the whole context (exact up to the window; the KV policy decides beyond it).
  parse_rope(cfg, c, c.rope);
}

// ---- safetensors ---------------------------------------------------------------------

struct DTypeDesc {
  const char* name;  // safetensors spelling
  int bytes;         // per element
  std::optional<DType> type;  // Harmonia's type when supported
};
const DTypeDesc kDTypes[] = {
    {"F32", 4, DType::F32},   {"F16", 2, DType::F16},     {"BF16", 2, DType::BF16},
    {"F64", 8, std::nullopt}, {"I64", 8, std::nullopt},     {"U64", 8, std::nullopt},
    {"I32", 4, std::nullopt}, {"U32", 4, std::nullopt},     {"I16", 2, std::nullopt},
    {"U16", 2, std::nullopt}, {"I8", 1, std::nullopt},      {"U8", 1, std::nullopt},
    {"BOOL", 1, std::nullopt}, {"F8_E4M3", 1, std::nullopt}, {"F8_E5M2", 1, std::nullopt},
    {"F8_E8M0", 1, std::nullopt},
};
const DTypeDesc* find_dtype(const std::string& s) {
  for (const auto& d : kDTypes)
    if (s == d.name) return &d;
  return nullptr;
}

std::string shape_str(const std::vector<int64_t>& shape) {
  std::string s = "[";
  for (size_t i = 0; i < shape.size(); ++i) s += (i ? ", " : "") + std::to_string(shape[i]);
  return s + "]";
}

struct StEntry {
  std::string dtype;            // safetensors spelling: "F32", "BF16", ...
  std::vector<int64_t> shape;   // row-major, outermost first
  uint64_t begin = 0, end = 0;  // bytes, relative to the data section
};

// One .safetensors file: its parsed header; the data stays in the map.
struct StFile {
  std::string path;
  const MappedFile* map = nullptr;
  uint64_t data_start = 0;  // 8 + header length
  std::map<std::string, StEntry> tensors;
  std::map<std::string, std::string> metadata;  // __metadata__
};

uint64_t json_u64(const std::string& path, const std::string& name, const char* field, const json& v) {
  if (!v.is_number_integer() || (!v.is_number_unsigned() && v.get<int64_t>() < 0))
    fail(ErrorKind::InvalidInput, "{}: tensor '{}': {} holds {}, expected non-negative integers", path, name, field,
         v.dump());
  return v.get<uint64_t>();
}

// Parses and checks the header against the file size: every tensor's bytes lie in
// the data section and match its dtype and shape. Throws Error(InvalidInput).
StFile parse_safetensors(const std::string& path, const MappedFile& mf) {
  StFile f;
  f.path = path;
  f.map = &mf;
  const uint64_t size = mf.size();
  if (size < 8)
    fail(ErrorKind::InvalidInput, "{}: truncated safetensors file ({} bytes; the header length alone needs 8)",
         path, size);
  uint64_t n = 0;
  for (int i = 7; i >= 0; --i) n = (n << 8) | mf.data()[i];  // little-endian on any host
  if (n > size - 8)
    fail(ErrorKind::InvalidInput,
         "{}: header length {} at offset 0 runs past the end of the file ({} bytes): truncated or not safetensors",
         path, n, size);
  if (n > kMaxHeaderBytes)
    fail(ErrorKind::InvalidInput, "{}: header length {} exceeds the {} byte limit", path, n, kMaxHeaderBytes);
  f.data_start = 8 + n;
  const uint64_t data_bytes = size - f.data_start;
  json h;
  try {
    h = json::parse(mf.data() + 8, mf.data() + 8 + n);
  } catch (const json::exception& e) {
    fail(ErrorKind::InvalidInput, "{}: header (bytes 8..{}) is not valid JSON: {}", path, 8 + n, json_reason(e));
  }
  if (!h.is_object())
    fail(ErrorKind::InvalidInput, "{}: header is a JSON {}, expected an object of tensors", path, h.type_name());
  for (const auto& [name, v] : h.items()) {
    if (name == "__metadata__") {
      if (!v.is_object())
        fail(ErrorKind::InvalidInput, "{}: __metadata__ is a JSON {}, expected an object", path, v.type_name());
      for (const auto& [k, s] : v.items())
        if (s.is_string()) f.metadata[k] = s.get<std::string>();
      continue;
    }
    if (!v.is_object())
      fail(ErrorKind::InvalidInput, "{}: tensor '{}': header entry is a JSON {}, expected an object", path, name,
           v.type_name());
    StEntry e;
    auto dt = v.find("dtype");
    auto sh = v.find("shape");
    auto off = v.find("data_offsets");
    if (dt == v.end() || !dt->is_string())
      fail(ErrorKind::InvalidInput, "{}: tensor '{}': 'dtype' is missing or not a string", path, name);
    if (sh == v.end() || !sh->is_array())
      fail(ErrorKind::InvalidInput, "{}: tensor '{}': 'shape' is missing or not an array", path, name);
    if (off == v.end() || !off->is_array() || off->size() != 2)
      fail(ErrorKind::InvalidInput, "{}: tensor '{}': 'data_offsets' is missing or not [begin, end]", path, name);
    e.dtype = dt->get<std::string>();
    uint64_t numel = 1;
    for (const json& d : *sh) {
      const uint64_t x = json_u64(path, name, "shape", d);
      if (x > (1ull << 40) || __builtin_mul_overflow(numel, x, &numel) || numel > (1ull << 60))
        fail(ErrorKind::InvalidInput, "{}: tensor '{}': shape {} is implausibly large", path, name, sh->dump());
      e.shape.push_back(static_cast<int64_t>(x));
    }
    e.begin = json_u64(path, name, "data_offsets", (*off)[0]);
    e.end = json_u64(path, name, "data_offsets", (*off)[1]);
    if (e.begin > e.end || e.end > data_bytes)
      fail(ErrorKind::InvalidInput,
           "{}: tensor '{}': data_offsets [{}, {}] lie outside the data section ({} bytes at offset {}): truncated?",
           path, name, e.begin, e.end, data_bytes, f.data_start);
    // Unknown dtypes are checked (and refused) only if the tensor is used.
    if (const DTypeDesc* d = find_dtype(e.dtype); d && e.end - e.begin != numel * d->bytes)
      fail(ErrorKind::InvalidInput,
           "{}: tensor '{}': {} x {} ({} bytes each) needs {} bytes but data_offsets [{}, {}] hold {}", path, name,
           e.dtype, shape_str(e.shape), d->bytes, numel * d->bytes, e.begin, e.end, e.end - e.begin);
    f.tensors.emplace(name, std::move(e));
  }
  return f;
}

// The tensors of one checkpoint: a single .safetensors file, or the shards listed
// by a model.safetensors.index.json (each mapped once, kept alive in Model::maps).
class Checkpoint {
 public:
  Checkpoint(Model& m, const fs::path& weights) : m_(m), source_(weights.string()) {
    const std::string s = weights.filename().string();
    if (s.size() >= 5 && s.compare(s.size() - 5, 5, ".json") == 0)
      open_index(weights);
    else
      open_shard(weights);
  }

  // Where a tensor's bytes come from, after __metadata__ aliases; null if absent.
  struct Found {
    const StFile* file;
    const std::string* name;
    const StEntry* entry;
  };
  std::optional<Found> find(const std::string& name) const {
    if (auto f = find_exact(name)) return f;
    for (const StFile& f : files_)  // {"model.embed_tokens.weight": "lm_head.weight"}
      if (auto it = f.metadata.find(name); it != f.metadata.end())
        if (auto g = find_exact(it->second)) return g;
    return std::nullopt;
  }
  bool has(const std::string& name) const { return find(name).has_value(); }

  // The file that holds `name` (for messages); the index or single file if none does.
  const std::string& where(const std::string& name) const {
    auto f = find(name);
    return f ? f->file->path : source_;
  }

  // View of `name` in the map, with the tensor's name; copied to an owned buffer
  // only if its bytes are not aligned to the element size. Throws Error naming
  // the file and tensor if it is missing, has too many dimensions, or has a dtype
  // without kernels.
  Tensor get(const std::string& name) const {
    auto f = find(name);
    if (!f) fail(ErrorKind::InvalidInput, "{}: tensor '{}' is missing", source_, name);
    const StEntry& e = *f->entry;
    const DTypeDesc* d = find_dtype(e.dtype);
    if (!d || !d->type)
      fail(ErrorKind::Unsupported, "{}: tensor '{}' has dtype {}, which is not supported (supported: F32, F16, BF16)",
           f->file->path, *f->name, e.dtype);
    if (e.shape.size() > 4)
      fail(ErrorKind::InvalidInput, "{}: tensor '{}' has {} dimensions, at most 4 are supported", f->file->path,
           *f->name, e.shape.size());
    Tensor t;
    t.name = *f->name;
    t.type = *d->type;
    t.n_dims = static_cast<int>(e.shape.size());
    for (int i = 0; i < t.n_dims; ++i) t.ne[i] = e.shape[t.n_dims - 1 - i];
    t.nbytes = static_cast<size_t>(e.end - e.begin);
    const uint8_t* p = f->file->map->data() + f->file->data_start + e.begin;
    if (t.nbytes > 0 && reinterpret_cast<uintptr_t>(p) % d->bytes != 0) {
      uint8_t* buf = m_.alloc(t.nbytes);
      std::memcpy(buf, p, t.nbytes);
      p = buf;
    }
    t.data = p;
    return t;
  }

 private:
  std::optional<Found> find_exact(const std::string& name) const {
    auto it = index_.find(name);
    if (it == index_.end()) return std::nullopt;
    const StFile& f = files_[it->second];
    auto e = f.tensors.find(name);
    return Found{&f, &e->first, &e->second};
  }

  size_t open_shard(const fs::path& p) {
    for (size_t i = 0; i < files_.size(); ++i)
      if (files_[i].path == p.string()) return i;
    m_.maps.push_back(std::make_unique<MappedFile>(p.string()));
    files_.push_back(parse_safetensors(p.string(), *m_.maps.back()));
    for (const auto& [name, e] : files_.back().tensors) index_.emplace(name, files_.size() - 1);
    return files_.size() - 1;
  }

  void open_index(const fs::path& idx_path) {
    const std::string idx = idx_path.string();
    const json j = parse_json_file(idx);
    auto wm = j.is_object() ? j.find("weight_map") : j.end();
    if (wm == j.end() || !wm->is_object() || wm->empty())
      fail(ErrorKind::InvalidInput, "{}: 'weight_map' is missing, empty or not an object", idx);
    const fs::path dir = idx_path.parent_path();
    std::map<std::string, size_t> listed;
    for (const auto& [name, v] : wm->items()) {
      if (!v.is_string())
        fail(ErrorKind::InvalidInput, "{}: weight_map entry '{}' is a JSON {}, expected a file name", idx, name,
             v.type_name());
      const fs::path shard(v.get<std::string>());
      bool escapes = shard.empty() || shard.is_absolute();
      for (const auto& part : shard) escapes = escapes || part == "..";
      if (escapes)
        fail(ErrorKind::InvalidInput, "{}: weight_map puts tensor '{}' in '{}', which is not a file in this folder",
             idx, name, shard.string());
      const fs::path sp = dir / shard;
      std::error_code ec;
      if (!fs::is_regular_file(sp, ec))
        fail(ErrorKind::Io, "{}: shard file is missing (the index {} lists tensor '{}' in it)", sp.string(), idx, name);
      listed[name] = open_shard(sp);
    }
    for (const auto& [name, i] : listed) {
      if (!files_[i].tensors.count(name))
        fail(ErrorKind::InvalidInput, "{}: the index {} lists tensor '{}' in this shard, but its header lacks it",
             files_[i].path, idx, name);
      index_[name] = i;  // the index decides where a tensor stored twice is read from
    }
  }

  Model& m_;
  std::string source_;        // the .safetensors file or the index: named when a tensor is missing
  std::vector<StFile> files_;
  std::map<std::string, size_t> index_;  // tensor name -> files_ position
};

// ---- folder layout --------------------------------------------------------------------

bool ends_with(const std::string& s, const char* suf) {
  const size_t n = std::strlen(suf);
  return s.size() >= n && s.compare(s.size() - n, n, suf) == 0;
}

}  // namespace

std::unique_ptr<Model> load_hf(const std::string& path, const LoadOptions& opts) {
  std::error_code ec;
  const fs::path p(path);
  if (!fs::exists(p, ec)) fail(ErrorKind::Io, "{}: no such file or directory", path);
  // path: the folder, or a file in it (config.json, a .safetensors, the index).
  fs::path dir = p, weights;
  if (!fs::is_directory(p, ec)) {
    dir = p.parent_path();
    if (dir.empty()) dir = ".";
    const std::string name = p.filename().string();
    if (ends_with(name, ".safetensors") || ends_with(name, ".safetensors.index.json")) weights = p;
  }
  const fs::path config_path = dir / "config.json";
  if (!fs::is_regular_file(config_path, ec))
    fail(ErrorKind::Io, "{}: missing (a Hugging Face model folder needs config.json beside the weights)",
         config_path.string());
  if (weights.empty()) {
    for (const char* cand : {"model.safetensors", "model.safetensors.index.json"})
      if (fs::is_regular_file(dir / cand, ec)) {
        weights = dir / cand;
        break;
      }
    if (weights.empty())
      fail(ErrorKind::Io, "{}: no model.safetensors or model.safetensors.index.json in this folder", dir.string());
  }

  auto m = std::make_unique<Model>();
  m->path = path;
  m->format = "safetensors";
  ModelConfig& c = m->config;
  bool tie = false;
  const std::string cfg_path = config_path.string();
  parse_config(cfg_path, parse_json_file(cfg_path), c, tie);
  const Checkpoint ck(*m, weights);
  // Tied embeddings: HF ties lm_head to embed_tokens, and either may be the one
  // stored (TinyStories-656K stores only lm_head.weight, with the __metadata__
  // alias {"model.embed_tokens.weight": "lm_head.weight"}).
  std::string embd = "model.embed_tokens.weight";
  if (tie && !ck.has(embd) && ck.has("lm_head.weight")) embd = "lm_head.weight";
  if (c.vocab_size == 0 && ck.has(embd)) {  // no vocab_size in config.json: the embedding's rows
    const Tensor e = ck.get(embd);
    c.vocab_size = static_cast<int>(std::min<int64_t>(e.rows(), std::numeric_limits<int>::max()));
  }
  c.validate(cfg_path);

  auto matrix = [&](const std::string& name, int64_t rows, int64_t cols) {
    Tensor t = ck.get(name);
    if (t.n_dims != 2)
      fail(ErrorKind::InvalidInput, "{}: tensor '{}' has {} dimensions but the config implies a [{}, {}] matrix",
           ck.where(name), name, t.n_dims, rows, cols);
    expect_shape(ck.where(name), t, rows, cols);
    return t;
  };
  auto f32_vector = [&](const std::string& name, int64_t n) {
    Tensor t = ck.get(name);
    if (t.n_dims != 1 || t.ne[0] != n)
      fail(ErrorKind::InvalidInput, "{}: tensor '{}' has shape {} but the config implies [{}]", ck.where(name), name,
           shape_str(std::vector<int64_t>(t.ne.rend() - t.n_dims, t.ne.rend())), n);
    return m->to_f32(t);  // norms and biases are f32 in compute
  };

  ModelWeights& w = m->weights;
  w.tok_embd = matrix(embd, c.vocab_size, c.dim);
  w.output_norm = f32_vector("model.norm.weight", c.dim);
  w.output = tie ? w.tok_embd : matrix("lm_head.weight", c.vocab_size, c.dim);
  c.tied_embeddings = w.output.data == w.tok_embd.data;

  w.layers.resize(c.n_layers);
  for (int i = 0; i < c.n_layers; ++i) {
    const std::string b = "model.layers." + std::to_string(i) + ".";
    LayerWeights& l = w.layers[i];
    l.attn_norm = f32_vector(b + "input_layernorm.weight", c.dim);
    l.wq = matrix(b + "self_attn.q_proj.weight", c.q_dim(), c.dim);
    l.wk = matrix(b + "self_attn.k_proj.weight", c.kv_dim(), c.dim);
    l.wv = matrix(b + "self_attn.v_proj.weight", c.kv_dim(), c.dim);
    l.wo = matrix(b + "self_attn.o_proj.weight", c.dim, c.q_dim());
    if (c.qkv_bias) {
      l.bq = f32_vector(b + "self_attn.q_proj.bias", c.q_dim());
      l.bk = f32_vector(b + "self_attn.k_proj.bias", c.kv_dim());
      l.bv = f32_vector(b + "self_attn.v_proj.bias", c.kv_dim());
    }
    // Llama/Qwen3 attention_bias also gives o_proj a bias, which LayerWeights cannot hold.
    if (ck.has(b + "self_attn.o_proj.bias"))
      fail(ErrorKind::Unsupported, "{}: tensor '{}' (an attention output bias) is not supported",
           ck.where(b + "self_attn.o_proj.bias"), b + "self_attn.o_proj.bias");
    if (c.qk_norm) {
      l.q_norm = f32_vector(b + "self_attn.q_norm.weight", c.head_dim);
      l.k_norm = f32_vector(b + "self_attn.k_norm.weight", c.head_dim);
    }
    l.ffn_norm = f32_vector(b + "post_attention_layernorm.weight", c.dim);
    l.w_gate = matrix(b + "mlp.gate_proj.weight", c.ffn_dim, c.dim);
    l.w_up = matrix(b + "mlp.up_proj.weight", c.ffn_dim, c.dim);
    l.w_down = matrix(b + "mlp.down_proj.weight", c.dim, c.ffn_dim);
  }

  const fs::path tok = dir / "tokenizer.json";
  if (fs::is_regular_file(tok, ec)) m->tokenizer = tokenizer_from_hf_json(tok.string());
  if (!opts.mmap_weights) m->own_decode_matrices();
  return m;
}

}  // namespace harmonia
