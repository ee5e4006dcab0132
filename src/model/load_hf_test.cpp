// Hugging Face loader: the real TinyStories-656K folder; synthetic folders written
// here byte by byte (sharded, f16/bf16, qwen2 biases, qwen3 q/k norms, RoPE
// scaling, tied embeddings either way round); corrupt and truncated inputs, which
// must give one-line harmonia::Errors naming the file; and reference-vs-fast
// forward passes of loaded random models.
#include <gtest/gtest.h>
#include <unistd.h>

#include <cmath>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <functional>
#include <nlohmann/json.hpp>
#include <optional>
#include <random>

#include "common/error.h"
#include "common/fp16.h"
#include "common/testing.h"
#include "kv/policy.h"
#include "model/forward.h"
#include "model/model.h"

using namespace harmonia;
using nlohmann::json;
namespace fs = std::filesystem;

namespace {

// ---- Writing synthetic folders ----------------------------------------------------------

// One tensor to write: row-major shape (outermost first), values as f32, encoded
// to `dtype` ("F32" | "F16" | "BF16") on write.
struct StTensor {
  std::string name;
  std::vector<int64_t> shape;
  std::vector<float> values;
  std::string dtype = "F32";
};

std::string encode(const StTensor& t) {
  std::string out;
  if (t.dtype == "F32") return std::string(reinterpret_cast<const char*>(t.values.data()), t.values.size() * 4);
  for (float v : t.values) {
    const uint16_t h = t.dtype == "F16" ? f32_to_f16(v) : f32_to_bf16(v);
    out.append(reinterpret_cast<const char*>(&h), 2);
  }
  return out;
}

std::string u64_le(uint64_t n) {
  std::string s(8, '\0');
  for (int i = 0; i < 8; ++i) s[i] = static_cast<char>((n >> (8 * i)) & 0xff);
  return s;
}

// Header JSON + data section -> file bytes. pad: spaces up to a multiple of 8
// (what the safetensors writer does; without it F32 data may be misaligned).
std::string assemble(const json& header, const std::string& data, bool pad = true) {
  std::string hs = header.dump();
  while (pad && hs.size() % 8) hs += ' ';
  return u64_le(hs.size()) + hs + data;
}

std::string safetensors_bytes(const std::vector<StTensor>& ts, const json& metadata = json(), bool pad = true) {
  json h = json::object();
  std::string data;
  for (const StTensor& t : ts) {
    const std::string b = encode(t);
    h[t.name] = {{"dtype", t.dtype},
                 {"shape", t.shape},
                 {"data_offsets", json::array({data.size(), data.size() + b.size()})}};
    data += b;
  }
  if (!metadata.is_null()) h["__metadata__"] = metadata;
  return assemble(h, data, pad);
}

// Splits a file back into its header and data section.
std::pair<json, std::string> disassemble(const std::string& bytes) {
  uint64_t n = 0;
  for (int i = 7; i >= 0; --i) n = (n << 8) | static_cast<uint8_t>(bytes[i]);
  return {json::parse(bytes.substr(8, n)), bytes.substr(8 + n)};
}

void write_bytes(const fs::path& p, const std::string& bytes) {
  std::ofstream f(p, std::ios::binary | std::ios::trunc);
  f.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
  ASSERT_TRUE(f.good()) << p;
}

std::string read_bytes(const fs::path& p) {
  std::ifstream f(p, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(f), {});
}

// A model to write: shapes, config flags, storage choices.
struct Spec {
  std::string model_type = "llama";
  int dim = 32, ffn = 48, layers = 2, heads = 4, kv_heads = 2;
  int head_dim = 0;  // 0: not in config.json (dim / heads)
  int vocab = 40;
  double theta = 10000.0;
  bool tie = false;
  bool store_embd = true, store_head = true;  // which of embed_tokens / lm_head are stored
  std::string dtype = "F32";                  // of every tensor
  json rope_scaling;                          // null: none
  json metadata;                              // __metadata__ (null: none)
  bool pad = true;
  uint64_t seed = 1;

  int hd() const { return head_dim ? head_dim : dim / heads; }
  bool bias() const { return model_type == "qwen2"; }
  bool qk_norm() const { return model_type == "qwen3"; }
};

json config_json(const Spec& s) {
  json c = {{"model_type", s.model_type},
            {"hidden_act", "silu"},
            {"hidden_size", s.dim},
            {"intermediate_size", s.ffn},
            {"num_hidden_layers", s.layers},
            {"num_attention_heads", s.heads},
            {"num_key_value_heads", s.kv_heads},
            {"vocab_size", s.vocab},
            {"max_position_embeddings", 256},
            {"rms_norm_eps", 1e-5},
            {"rope_theta", s.theta},
            {"rope_scaling", s.rope_scaling},
            {"tie_word_embeddings", s.tie},
            {"torch_dtype", "float32"}};
  if (s.head_dim) c["head_dim"] = s.head_dim;
  return c;
}

// Random weights with transformers' names: matrices uniform in ±1/sqrt(fan_in),
// norm weights near 1, biases small.
std::vector<StTensor> make_weights(const Spec& s) {
  std::mt19937 rng(static_cast<uint32_t>(s.seed));
  std::uniform_real_distribution<float> u(-1.0f, 1.0f);
  std::vector<StTensor> ts;
  auto mat = [&](const std::string& name, int rows, int cols) {
    StTensor t{name, {rows, cols}, std::vector<float>(static_cast<size_t>(rows) * cols), s.dtype};
    for (float& v : t.values) v = u(rng) / std::sqrt(static_cast<float>(cols));
    ts.push_back(std::move(t));
  };
  auto vec = [&](const std::string& name, int n, float center, float spread) {
    StTensor t{name, {n}, std::vector<float>(n), s.dtype};
    for (float& v : t.values) v = center + spread * u(rng);
    ts.push_back(std::move(t));
  };
  const int qd = s.heads * s.hd(), kvd = s.kv_heads * s.hd();
  if (s.store_embd) mat("model.embed_tokens.weight", s.vocab, s.dim);
  for (int i = 0; i < s.layers; ++i) {
    const std::string b = "model.layers." + std::to_string(i) + ".";
    vec(b + "input_layernorm.weight", s.dim, 1.0f, 0.1f);
    mat(b + "self_attn.q_proj.weight", qd, s.dim);
    mat(b + "self_attn.k_proj.weight", kvd, s.dim);
    mat(b + "self_attn.v_proj.weight", kvd, s.dim);
    mat(b + "self_attn.o_proj.weight", s.dim, qd);
    if (s.bias()) {
      vec(b + "self_attn.q_proj.bias", qd, 0.0f, 0.2f);
      vec(b + "self_attn.k_proj.bias", kvd, 0.0f, 0.2f);
      vec(b + "self_attn.v_proj.bias", kvd, 0.0f, 0.2f);
    }
    if (s.qk_norm()) {
      vec(b + "self_attn.q_norm.weight", s.hd(), 1.0f, 0.1f);
      vec(b + "self_attn.k_norm.weight", s.hd(), 1.0f, 0.1f);
    }
    vec(b + "post_attention_layernorm.weight", s.dim, 1.0f, 0.1f);
    mat(b + "mlp.gate_proj.weight", s.ffn, s.dim);
    mat(b + "mlp.up_proj.weight", s.ffn, s.dim);
    mat(b + "mlp.down_proj.weight", s.dim, s.ffn);
  }
  vec("model.norm.weight", s.dim, 1.0f, 0.1f);
  if (s.store_head) mat("lm_head.weight", s.vocab, s.dim);
  return ts;
}

// A fresh folder under the system temp dir, removed at the end of the test.
class TempDir {
 public:
  TempDir() {
    static int counter = 0;
    const auto* info = ::testing::UnitTest::GetInstance()->current_test_info();
    path_ = fs::temp_directory_path() /
            ("harmonia_hf_" + std::to_string(::getpid()) + "_" + (info ? info->name() : "x") + "_" +
             std::to_string(counter++));
    fs::remove_all(path_);
    fs::create_directories(path_);
  }
  ~TempDir() {
    std::error_code ec;
    fs::remove_all(path_, ec);
  }
  const fs::path& path() const { return path_; }
  fs::path sub(const std::string& name) const {
    fs::create_directories(path_ / name);
    return path_ / name;
  }

 private:
  fs::path path_;
};

// Writes config.json and model.safetensors, or `shards` files plus
// model.safetensors.index.json. Returns the tensors written.
std::vector<StTensor> write_folder(const fs::path& dir, const Spec& s, int shards = 1) {
  write_bytes(dir / "config.json", config_json(s).dump(2));
  std::vector<StTensor> ts = make_weights(s);
  if (shards == 1) {
    write_bytes(dir / "model.safetensors", safetensors_bytes(ts, s.metadata, s.pad));
    return ts;
  }
  json wm = json::object();
  const size_t per = (ts.size() + shards - 1) / shards;
  for (int k = 0; k < shards; ++k) {
    const std::string file = "model-0000" + std::to_string(k + 1) + "-of-0000" + std::to_string(shards) + ".safetensors";
    std::vector<StTensor> part(ts.begin() + std::min(ts.size(), k * per), ts.begin() + std::min(ts.size(), (k + 1) * per));
    for (const StTensor& t : part) wm[t.name] = file;
    write_bytes(dir / file, safetensors_bytes(part, s.metadata, s.pad));
  }
  write_bytes(dir / "model.safetensors.index.json", json({{"metadata", {{"total_size", 0}}}, {"weight_map", wm}}).dump(2));
  return ts;
}

const StTensor& named(const std::vector<StTensor>& ts, const std::string& name) {
  for (const StTensor& t : ts)
    if (t.name == name) return t;
  throw std::runtime_error("test bug: no tensor " + name);
}

// What the loader should hold for `t`: its values after the dtype round trip.
float stored(const StTensor& t, size_t i) {
  if (t.dtype == "F16") return f16_to_f32(f32_to_f16(t.values[i]));
  if (t.dtype == "BF16") return bf16_to_f32(f32_to_bf16(t.values[i]));
  return t.values[i];
}

float element(const Tensor& t, size_t i) {
  const uint8_t* p = static_cast<const uint8_t*>(t.data);
  uint16_t h;
  switch (t.type) {
    case DType::F32: {
      float f;
      std::memcpy(&f, p + 4 * i, 4);
      return f;
    }
    case DType::F16: std::memcpy(&h, p + 2 * i, 2); return f16_to_f32(h);
    case DType::BF16: std::memcpy(&h, p + 2 * i, 2); return bf16_to_f32(h);
    default: ADD_FAILURE() << "unexpected type"; return NAN;
  }
}

void expect_values(const Tensor& got, const StTensor& want) {
  ASSERT_EQ(static_cast<size_t>(got.numel()), want.values.size()) << want.name;
  for (size_t i = 0; i < want.values.size(); ++i)
    ASSERT_EQ(element(got, i), stored(want, i)) << want.name << " element " << i;
}

// load_model(path) must throw a harmonia::Error whose message is one line and
// contains `needle` (the file to blame) and `also` (the tensor or key).
void expect_load_error(const std::string& path, const std::string& needle, std::optional<ErrorKind> kind = std::nullopt,
                       const std::string& also = "") {
  try {
    load_model(path);
    ADD_FAILURE() << path << ": loaded, but an error naming " << needle << " was expected";
  } catch (const Error& e) {
    const std::string msg = e.what();
    EXPECT_NE(msg.find(needle), std::string::npos) << "message does not name " << needle << ": " << msg;
    EXPECT_EQ(msg.find('\n'), std::string::npos) << "not one line: " << msg;
    if (kind) {
      EXPECT_EQ(static_cast<int>(e.kind()), static_cast<int>(*kind)) << msg;
    }
    if (!also.empty()) {
      EXPECT_NE(msg.find(also), std::string::npos) << "message lacks '" << also << "': " << msg;
    }
  }
}

// |a - b| / max(1, |b|), worst over the row: relative for large logits, absolute near 0.
double max_rel_diff(const float* a, const std::vector<float>& b) {
  double worst = 0.0;
  for (size_t i = 0; i < b.size(); ++i) worst = std::max(worst, std::abs(a[i] - b[i]) / std::max(1.0, std::abs(double(b[i]))));
  return worst;
}

// ReferenceForward token by token vs Forward (batched prefill of 4, then decode
// steps) on the loaded model: finite logits that agree within 1e-4.
void check_forward(const Model& m) {
  const int V = m.config.vocab_size;
  const std::vector<int32_t> toks = {1, 5, 9, 3, 17, 2, 30, 11};
  ReferenceForward ref(m, 64);
  std::vector<std::vector<float>> want;
  for (int32_t t : toks) {
    want.emplace_back(V);
    ref.step(t, want.back().data());
    double mx = 0.0;
    for (float v : want.back()) {
      ASSERT_TRUE(std::isfinite(v));
      mx = std::max(mx, std::abs(double(v)));
    }
    EXPECT_GT(mx, 1e-3) << "degenerate logits";
  }
  auto kv = kv::make_policy("full", kv_shape(m.config, 64));
  Forward fw(m);
  const int n_prefill = 4;
  std::vector<float> all(static_cast<size_t>(n_prefill) * V);
  fw.run(toks.data(), n_prefill, *kv, all.data(), true);
  for (int i = 0; i < n_prefill; ++i) EXPECT_LE(max_rel_diff(all.data() + i * V, want[i]), 1e-4) << "prefill pos " << i;
  std::vector<float> logits(V);
  for (size_t i = n_prefill; i < toks.size(); ++i) {
    fw.run(&toks[i], 1, *kv, logits.data());
    for (float v : logits) ASSERT_TRUE(std::isfinite(v));
    EXPECT_LE(max_rel_diff(logits.data(), want[i]), 1e-4) << "decode pos " << i;
  }
}

}  // namespace

// ---- The real checkpoint ------------------------------------------------------------------

TEST(HfLoad, TinyStories656K) {
  HARMONIA_REQUIRE_SHARED("models/TinyStories-656K/model.safetensors");
  const std::string dir = shared_path("models/TinyStories-656K");
  LoadOptions views;  // weights as views into the map (the default copies them to huge pages)
  views.mmap_weights = true;
  auto m = load_model(dir, views);
  const ModelConfig& c = m->config;
  EXPECT_EQ(m->format, "safetensors");
  EXPECT_EQ(c.arch, Arch::Llama);
  EXPECT_EQ(c.dim, 128);
  EXPECT_EQ(c.n_layers, 2);
  EXPECT_EQ(c.n_heads, 8);
  EXPECT_EQ(c.n_kv_heads, 4);
  EXPECT_EQ(c.head_dim, 16);
  EXPECT_EQ(c.ffn_dim, 384);
  EXPECT_EQ(c.vocab_size, 2048);
  EXPECT_EQ(c.ctx_len, 512);
  EXPECT_FLOAT_EQ(c.norm_eps, 1e-6f);
  EXPECT_FALSE(c.qkv_bias);
  EXPECT_FALSE(c.qk_norm);
  EXPECT_EQ(c.rope.style, RopeConfig::Style::Half);
  EXPECT_EQ(c.rope.n_rot, 16);
  EXPECT_DOUBLE_EQ(c.rope.theta, 10000.0);
  EXPECT_EQ(c.rope.scaling, RopeConfig::Scaling::None);
  // The file stores only lm_head.weight; the embedding is the same bytes.
  EXPECT_TRUE(c.tied_embeddings);
  EXPECT_EQ(m->weights.tok_embd.data, m->weights.output.data);
  EXPECT_EQ(m->weights.tok_embd.name, "lm_head.weight");
  EXPECT_EQ(m->weights.tok_embd.rows(), 2048);
  EXPECT_EQ(m->weights.tok_embd.cols(), 128);
  ASSERT_EQ(m->weights.layers.size(), 2u);
  const LayerWeights& l = m->weights.layers[1];
  EXPECT_EQ(l.wq.rows(), 128);
  EXPECT_EQ(l.wk.rows(), 64);
  EXPECT_EQ(l.wk.cols(), 128);
  EXPECT_EQ(l.wo.rows(), 128);
  EXPECT_EQ(l.w_gate.rows(), 384);
  EXPECT_EQ(l.w_down.cols(), 384);
  EXPECT_EQ(l.wq.type, DType::F32);
  EXPECT_TRUE(l.bq.empty());
  EXPECT_TRUE(l.q_norm.empty());
  // 2-D weights are views into the single map.
  ASSERT_EQ(m->maps.size(), 1u);
  const uint8_t* lo = m->maps[0]->data();
  const uint8_t* p = static_cast<const uint8_t*>(l.w_up.data);
  EXPECT_TRUE(p >= lo && p + l.w_up.nbytes <= lo + m->maps[0]->size());
  EXPECT_EQ(m->weight_bytes(), 2624000u);  // the data section: every tensor once
  ASSERT_NE(m->tokenizer, nullptr);
  EXPECT_EQ(m->tokenizer->vocab_size(), 2048);

  // The same folder through its config.json or its .safetensors file.
  for (const char* f : {"/config.json", "/model.safetensors"}) {
    auto m2 = load_model(dir + f);
    EXPECT_EQ(m2->config.dim, 128) << f;
    EXPECT_EQ(m2->config.vocab_size, 2048) << f;
    EXPECT_TRUE(m2->config.tied_embeddings) << f;
  }
}

// ---- Synthetic folders -------------------------------------------------------------------

TEST(HfSynthetic, SingleFileValuesAndViews) {
  TempDir tmp;
  Spec s;
  const auto ts = write_folder(tmp.path(), s);
  LoadOptions views;  // weights as views into the map (the default copies them to huge pages)
  views.mmap_weights = true;
  auto m = load_model(tmp.path().string(), views);
  EXPECT_EQ(m->config.arch, Arch::Llama);
  EXPECT_EQ(m->config.vocab_size, 40);
  EXPECT_FALSE(m->config.tied_embeddings);
  EXPECT_NE(m->weights.tok_embd.data, m->weights.output.data);
  EXPECT_EQ(m->tokenizer, nullptr);  // no tokenizer.json
  expect_values(m->weights.tok_embd, named(ts, "model.embed_tokens.weight"));
  expect_values(m->weights.output, named(ts, "lm_head.weight"));
  expect_values(m->weights.output_norm, named(ts, "model.norm.weight"));
  expect_values(m->weights.layers[1].wo, named(ts, "model.layers.1.self_attn.o_proj.weight"));
  expect_values(m->weights.layers[0].w_down, named(ts, "model.layers.0.mlp.down_proj.weight"));
  EXPECT_EQ(m->weights.layers[1].wo.rows(), 32);
  EXPECT_EQ(m->weights.layers[0].w_down.cols(), 48);
  EXPECT_TRUE(m->owned.empty()) << "aligned f32 weights should not be copied";
}

TEST(HfSynthetic, ShardedIndexMatchesSingleFile) {
  TempDir tmp;
  Spec s;
  const fs::path one = tmp.sub("one"), two = tmp.sub("two");
  const auto ts = write_folder(one, s, 1);
  write_folder(two, s, 2);
  ASSERT_TRUE(fs::exists(two / "model-00002-of-00002.safetensors"));
  auto a = load_model(one.string());
  auto b = load_model(two.string());
  auto b2 = load_model((two / "model.safetensors.index.json").string());
  EXPECT_EQ(a->maps.size(), 1u);
  EXPECT_EQ(b->maps.size(), 2u);  // each shard mapped once
  EXPECT_EQ(b2->maps.size(), 2u);
  expect_values(b->weights.tok_embd, named(ts, "model.embed_tokens.weight"));
  expect_values(b->weights.output, named(ts, "lm_head.weight"));
  for (int i = 0; i < s.layers; ++i) {
    const std::string p = "model.layers." + std::to_string(i) + ".";
    expect_values(b->weights.layers[i].wq, named(ts, p + "self_attn.q_proj.weight"));
    expect_values(b->weights.layers[i].w_up, named(ts, p + "mlp.up_proj.weight"));
    expect_values(b->weights.layers[i].ffn_norm, named(ts, p + "post_attention_layernorm.weight"));
  }
  // Same weights, same logits.
  ReferenceForward ra(*a, 8), rb(*b, 8);
  std::vector<float> la(40), lb(40);
  for (int32_t t : {1, 7, 3}) {
    ra.step(t, la.data());
    rb.step(t, lb.data());
    EXPECT_EQ(la, lb);
  }
}

TEST(HfSynthetic, ShardedIndexErrors) {
  TempDir tmp;
  Spec s;
  const fs::path d = tmp.path();
  write_folder(d, s, 2);
  const std::string idx = (d / "model.safetensors.index.json").string();
  const json good = json::parse(read_bytes(idx));

  json j = good;  // a shard that is not there
  j["weight_map"]["model.norm.weight"] = "model-00009-of-00009.safetensors";
  write_bytes(idx, j.dump());
  expect_load_error(d.string(), "model-00009-of-00009.safetensors", ErrorKind::Io, "model.norm.weight");

  j = good;  // a shard that does not hold what the index says
  j["weight_map"]["model.norm.weight"] = "model-00001-of-00002.safetensors";
  write_bytes(idx, j.dump());
  expect_load_error(d.string(), "model-00001-of-00002.safetensors", ErrorKind::InvalidInput, "model.norm.weight");

  j = good;  // a path outside the folder
  j["weight_map"]["model.norm.weight"] = "../model-00002-of-00002.safetensors";
  write_bytes(idx, j.dump());
  expect_load_error(d.string(), idx, ErrorKind::InvalidInput, "model.norm.weight");

  write_bytes(idx, R"({"metadata": {}})");
  expect_load_error(d.string(), idx, ErrorKind::InvalidInput, "weight_map");
  write_bytes(idx, R"({"weight_map": {"model.norm.weight": 3}})");
  expect_load_error(d.string(), idx, ErrorKind::InvalidInput);
  write_bytes(idx, "{\"weight_map\": ");
  expect_load_error(d.string(), idx, ErrorKind::InvalidInput);

  j = good;  // a tensor the index does not list is still found in its shard's header
  j["weight_map"].erase("model.layers.0.mlp.up_proj.weight");
  write_bytes(idx, j.dump());
  EXPECT_NO_THROW(load_model(d.string()));

  j["weight_map"] = json::object();  // only the second shard: the first half is missing
  for (const auto& [k, v] : good["weight_map"].items())
    if (v == "model-00002-of-00002.safetensors") j["weight_map"][k] = v;
  write_bytes(idx, j.dump());
  expect_load_error(d.string(), idx, ErrorKind::InvalidInput, "'model.embed_tokens.weight' is missing");
}

TEST(HfSynthetic, HalfPrecisionWeights) {
  for (const char* dt : {"BF16", "F16"}) {
    SCOPED_TRACE(dt);
    TempDir tmp;
    Spec s;
    s.dtype = dt;
    const auto ts = write_folder(tmp.path(), s);
    auto m = load_model(tmp.path().string());
    const DType want = std::string(dt) == "BF16" ? DType::BF16 : DType::F16;
    const LayerWeights& l = m->weights.layers[1];
    EXPECT_EQ(m->weights.tok_embd.type, want);
    EXPECT_EQ(l.wq.type, want);
    EXPECT_EQ(l.w_down.type, want);
    EXPECT_EQ(l.wq.nbytes, 32u * 32u * 2u);
    // Norms are converted to f32 (exactly: every half value is an f32).
    EXPECT_EQ(l.attn_norm.type, DType::F32);
    EXPECT_EQ(m->weights.output_norm.type, DType::F32);
    expect_values(l.wq, named(ts, "model.layers.1.self_attn.q_proj.weight"));
    expect_values(l.attn_norm, named(ts, "model.layers.1.input_layernorm.weight"));
    expect_values(m->weights.output_norm, named(ts, "model.norm.weight"));
    check_forward(*m);
  }
}

TEST(HfSynthetic, MisalignedDataIsCopied) {
  TempDir tmp;
  Spec s;
  s.pad = false;
  const auto ts = write_folder(tmp.path(), s);
  auto [h, data] = disassemble(read_bytes(tmp.path() / "model.safetensors"));
  // Make the data section start at an address that is 2 mod 4.
  std::string hs = h.dump();
  while ((8 + hs.size()) % 4 != 2) hs += ' ';
  write_bytes(tmp.path() / "model.safetensors", u64_le(hs.size()) + hs + data);
  auto m = load_model(tmp.path().string());
  const Tensor& wq = m->weights.layers[0].wq;
  EXPECT_EQ(reinterpret_cast<uintptr_t>(wq.data) % 4, 0u);
  expect_values(wq, named(ts, "model.layers.0.self_attn.q_proj.weight"));
  expect_values(m->weights.layers[0].attn_norm, named(ts, "model.layers.0.input_layernorm.weight"));
  check_forward(*m);
}

TEST(HfSynthetic, Qwen2Biases) {
  TempDir tmp;
  Spec s;
  s.model_type = "qwen2";
  s.theta = 1e6;
  s.dtype = "BF16";
  const auto ts = write_folder(tmp.path(), s);
  auto m = load_model(tmp.path().string());
  const ModelConfig& c = m->config;
  EXPECT_EQ(c.arch, Arch::Qwen2);
  EXPECT_TRUE(c.qkv_bias);
  EXPECT_FALSE(c.qk_norm);
  EXPECT_DOUBLE_EQ(c.rope.theta, 1e6);
  EXPECT_EQ(c.rope.style, RopeConfig::Style::Half);
  for (int i = 0; i < s.layers; ++i) {
    const LayerWeights& l = m->weights.layers[i];
    const std::string p = "model.layers." + std::to_string(i) + ".self_attn.";
    EXPECT_EQ(l.bq.type, DType::F32);
    EXPECT_EQ(l.bq.numel(), 32);
    EXPECT_EQ(l.bk.numel(), 16);
    EXPECT_EQ(l.bv.numel(), 16);
    expect_values(l.bq, named(ts, p + "q_proj.bias"));
    expect_values(l.bk, named(ts, p + "k_proj.bias"));
    expect_values(l.bv, named(ts, p + "v_proj.bias"));
  }
  // A qwen2 file without biases is incomplete.
  Spec nb = s;
  nb.model_type = "llama";  // writes no biases
  write_bytes(tmp.path() / "model.safetensors", safetensors_bytes(make_weights(nb)));
  expect_load_error(tmp.path().string(), "model.safetensors", ErrorKind::InvalidInput, "q_proj.bias");
}

TEST(HfSynthetic, LlamaAttentionBias) {
  TempDir tmp;
  Spec s;
  s.model_type = "qwen2";  // writes q/k/v biases ...
  write_folder(tmp.path(), s);
  json c = config_json(s);
  c["model_type"] = "llama";  // ... which Llama's attention_bias reads
  c["attention_bias"] = true;
  write_bytes(tmp.path() / "config.json", c.dump());
  auto m = load_model(tmp.path().string());
  EXPECT_EQ(m->config.arch, Arch::Llama);
  EXPECT_TRUE(m->config.qkv_bias);
  EXPECT_FALSE(m->weights.layers[0].bv.empty());
  // An output-projection bias has nowhere to go.
  auto ts = make_weights(s);
  ts.push_back({"model.layers.1.self_attn.o_proj.bias", {32}, std::vector<float>(32, 0.5f)});
  write_bytes(tmp.path() / "model.safetensors", safetensors_bytes(ts));
  expect_load_error(tmp.path().string(), "model.safetensors", ErrorKind::Unsupported, "o_proj.bias");
}

TEST(HfSynthetic, Qwen3QkNormAndHeadDim) {
  TempDir tmp;
  Spec s;
  s.model_type = "qwen3";
  s.head_dim = 16;  // != hidden 32 / 4 heads
  s.dtype = "F16";
  const auto ts = write_folder(tmp.path(), s);
  auto m = load_model(tmp.path().string());
  const ModelConfig& c = m->config;
  EXPECT_EQ(c.arch, Arch::Qwen3);
  EXPECT_EQ(c.head_dim, 16);
  EXPECT_EQ(c.q_dim(), 64);
  EXPECT_EQ(c.kv_dim(), 32);
  EXPECT_EQ(c.rope.n_rot, 16);
  EXPECT_TRUE(c.qk_norm);
  EXPECT_FALSE(c.qkv_bias);
  const LayerWeights& l = m->weights.layers[1];
  EXPECT_EQ(l.wq.rows(), 64);
  EXPECT_EQ(l.wq.cols(), 32);
  EXPECT_EQ(l.wo.rows(), 32);
  EXPECT_EQ(l.wo.cols(), 64);
  EXPECT_EQ(l.q_norm.type, DType::F32);
  expect_values(l.q_norm, named(ts, "model.layers.1.self_attn.q_norm.weight"));
  expect_values(l.k_norm, named(ts, "model.layers.1.self_attn.k_norm.weight"));
  EXPECT_TRUE(l.bq.empty());
}

TEST(HfSynthetic, ArchitecturesWithoutModelType) {
  TempDir tmp;
  Spec s;
  s.model_type = "qwen3";
  write_folder(tmp.path(), s);
  json c = config_json(s);
  c.erase("model_type");
  c["architectures"] = {"Qwen3ForCausalLM"};
  c.erase("num_key_value_heads");  // default: = heads
  c["num_attention_heads"] = 2;
  c["head_dim"] = 16;
  write_bytes(tmp.path() / "config.json", c.dump());
  Spec s2 = s;
  s2.heads = s2.kv_heads = 2;
  s2.head_dim = 16;
  write_bytes(tmp.path() / "model.safetensors", safetensors_bytes(make_weights(s2)));
  auto m = load_model(tmp.path().string());
  EXPECT_EQ(m->config.arch, Arch::Qwen3);
  EXPECT_EQ(m->config.n_kv_heads, 2);
}

TEST(HfSynthetic, TiedEmbeddingsEitherWay) {
  struct Case {
    const char* what;
    bool tie, store_embd, store_head;
    json metadata;
    const char* embd_name;  // the stored tensor used for both
  };
  const Case cases[] = {
      {"tied, only embed_tokens", true, true, false, json(), "model.embed_tokens.weight"},
      {"tied, only lm_head (no metadata)", true, false, true, json(), "lm_head.weight"},
      {"tied, only lm_head + alias (TinyStories)", true, false, true,
       {{"format", "pt"}, {"model.embed_tokens.weight", "lm_head.weight"}}, "lm_head.weight"},
      {"tied, both stored: lm_head follows the embedding", true, true, true, json(), "model.embed_tokens.weight"},
      {"untied, lm_head aliased to the embedding", false, true, false,
       {{"lm_head.weight", "model.embed_tokens.weight"}}, "model.embed_tokens.weight"},
  };
  for (const Case& k : cases) {
    SCOPED_TRACE(k.what);
    TempDir tmp;
    Spec s;
    s.tie = k.tie;
    s.store_embd = k.store_embd;
    s.store_head = k.store_head;
    s.metadata = k.metadata;
    const auto ts = write_folder(tmp.path(), s);
    auto m = load_model(tmp.path().string());
    EXPECT_TRUE(m->config.tied_embeddings);
    EXPECT_EQ(m->weights.tok_embd.data, m->weights.output.data);
    EXPECT_EQ(m->weights.tok_embd.name, k.embd_name);
    expect_values(m->weights.output, named(ts, k.embd_name));
    check_forward(*m);
  }
  // Untied without lm_head: a missing tensor, not a silent tie.
  TempDir tmp;
  Spec s;
  s.store_head = false;
  write_folder(tmp.path(), s);
  expect_load_error(tmp.path().string(), (tmp.path() / "model.safetensors").string(), ErrorKind::InvalidInput,
                    "'lm_head.weight' is missing");
  // Tied with neither stored.
  s.tie = true;
  s.store_embd = false;
  write_folder(tmp.path(), s);
  expect_load_error(tmp.path().string(), (tmp.path() / "model.safetensors").string(), ErrorKind::InvalidInput,
                    "model.embed_tokens.weight");
}

TEST(HfSynthetic, RopeScaling) {
  using S = RopeConfig::Scaling;
  auto load_with = [](const json& rs, const std::string& extra_key = "", const json& extra = json()) {
    TempDir tmp;
    Spec s;
    s.rope_scaling = rs;
    write_folder(tmp.path(), s);
    if (!extra_key.empty()) {
      json c = config_json(s);
      c[extra_key] = extra;
      write_bytes(tmp.path() / "config.json", c.dump());
    }
    return load_model(tmp.path().string())->config.rope;
  };
  RopeConfig r = load_with({{"rope_type", "llama3"},
                            {"factor", 8.0},
                            {"low_freq_factor", 1.0},
                            {"high_freq_factor", 4.0},
                            {"original_max_position_embeddings", 8192}});
  EXPECT_EQ(r.scaling, S::Llama3);
  EXPECT_EQ(r.style, RopeConfig::Style::Half);
  EXPECT_DOUBLE_EQ(r.factor, 8.0);
  EXPECT_DOUBLE_EQ(r.low_freq_factor, 1.0);
  EXPECT_DOUBLE_EQ(r.high_freq_factor, 4.0);
  EXPECT_EQ(r.original_ctx, 8192);

  r = load_with({{"type", "yarn"},
                 {"factor", 4.0},
                 {"original_max_position_embeddings", 32768},
                 {"beta_fast", 16.0},
                 {"beta_slow", 2.0},
                 {"attention_factor", 1.25}});
  EXPECT_EQ(r.scaling, S::Yarn);
  EXPECT_DOUBLE_EQ(r.factor, 4.0);
  EXPECT_EQ(r.original_ctx, 32768);
  EXPECT_DOUBLE_EQ(r.yarn_beta_fast, 16.0);
  EXPECT_DOUBLE_EQ(r.yarn_beta_slow, 2.0);
  EXPECT_DOUBLE_EQ(r.yarn_attn_factor, 1.25);

  r = load_with({{"rope_type", "yarn"}, {"factor", 2.0}});  // defaults
  EXPECT_EQ(r.scaling, S::Yarn);
  EXPECT_EQ(r.original_ctx, 256);  // max_position_embeddings
  EXPECT_DOUBLE_EQ(r.yarn_beta_fast, 32.0);
  EXPECT_DOUBLE_EQ(r.yarn_beta_slow, 1.0);
  EXPECT_DOUBLE_EQ(r.yarn_attn_factor, 0.0);

  r = load_with({{"type", "linear"}, {"factor", 2.0}});
  EXPECT_EQ(r.scaling, S::Linear);
  EXPECT_DOUBLE_EQ(r.factor, 2.0);

  r = load_with({{"type", "dynamic"}, {"factor", 3.0}});
  EXPECT_EQ(r.scaling, S::DynamicNTK);
  EXPECT_DOUBLE_EQ(r.factor, 3.0);
  EXPECT_EQ(r.original_ctx, 256);

  r = load_with({{"rope_type", "default"}});
  EXPECT_EQ(r.scaling, S::None);

  // transformers >= 5: theta and scaling in rope_parameters.
  r = load_with(json(), "rope_parameters", {{"rope_type", "linear"}, {"factor", 4.0}, {"rope_theta", 5e5}});
  EXPECT_EQ(r.scaling, S::Linear);
  EXPECT_DOUBLE_EQ(r.factor, 4.0);
  EXPECT_DOUBLE_EQ(r.theta, 10000.0);  // the top-level rope_theta still wins
}

// ---- Bad input ----------------------------------------------------------------------------

TEST(HfBadInput, MissingFiles) {
  TempDir tmp;
  Spec s;
  write_folder(tmp.path(), s);
  expect_load_error((tmp.path() / "nowhere").string(), "nowhere", ErrorKind::Io);
  fs::remove(tmp.path() / "config.json");
  expect_load_error(tmp.path().string(), (tmp.path() / "config.json").string(), ErrorKind::Io);
  expect_load_error((tmp.path() / "model.safetensors").string(), (tmp.path() / "config.json").string(), ErrorKind::Io);
  write_bytes(tmp.path() / "config.json", config_json(s).dump());
  fs::remove(tmp.path() / "model.safetensors");
  expect_load_error(tmp.path().string(), tmp.path().string(), ErrorKind::Io, "model.safetensors");
}

TEST(HfBadInput, BadConfig) {
  TempDir tmp;
  Spec s;
  write_folder(tmp.path(), s);
  const std::string cfg = (tmp.path() / "config.json").string();
  const std::string dir = tmp.path().string();
  auto with = [&](const std::function<void(json&)>& edit) {
    json c = config_json(s);
    edit(c);
    write_bytes(cfg, c.dump());
  };
  write_bytes(cfg, "{\"model_type\": \"llama\", \"hidden_size\": ");
  expect_load_error(dir, cfg, ErrorKind::InvalidInput, "JSON");
  write_bytes(cfg, "[1, 2]");
  expect_load_error(dir, cfg, ErrorKind::InvalidInput);
  with([](json& c) { c["model_type"] = "gpt2"; });
  expect_load_error(dir, cfg, ErrorKind::Unsupported, "gpt2");
  with([](json& c) { c.erase("model_type"); });
  expect_load_error(dir, cfg, ErrorKind::InvalidInput, "model_type");
  with([](json& c) { c.erase("hidden_size"); });
  expect_load_error(dir, cfg, ErrorKind::InvalidInput, "hidden_size");
  with([](json& c) { c["hidden_size"] = "32"; });
  expect_load_error(dir, cfg, ErrorKind::InvalidInput, "hidden_size");
  with([](json& c) { c["num_hidden_layers"] = -2; });
  expect_load_error(dir, cfg, ErrorKind::InvalidInput, "n_layers");
  with([](json& c) { c["num_attention_heads"] = 0; });
  expect_load_error(dir, cfg, ErrorKind::InvalidInput);
  with([](json& c) { c["num_key_value_heads"] = 3; });
  expect_load_error(dir, cfg, ErrorKind::InvalidInput, "n_kv_heads");
  with([](json& c) { c["intermediate_size"] = 1e30; });
  expect_load_error(dir, cfg, ErrorKind::InvalidInput, "intermediate_size");
  with([](json& c) { c["hidden_act"] = "gelu"; });
  expect_load_error(dir, cfg, ErrorKind::Unsupported, "gelu");
  with([](json& c) { c["tie_word_embeddings"] = "yes"; });
  expect_load_error(dir, cfg, ErrorKind::InvalidInput, "tie_word_embeddings");
  with([](json& c) { c["rope_scaling"] = {{"type", "longrope"}, {"factor", 2.0}}; });
  expect_load_error(dir, cfg, ErrorKind::Unsupported, "longrope");
  with([](json& c) { c["rope_scaling"] = {{"type", "linear"}}; });
  expect_load_error(dir, cfg, ErrorKind::InvalidInput, "factor");
  with([](json& c) { c["rope_scaling"] = {{"type", "linear"}, {"factor", -1.0}}; });
  expect_load_error(dir, cfg, ErrorKind::InvalidInput, "factor");
  with([](json& c) { c["rope_scaling"] = {{"rope_type", "llama3"}, {"factor", 8.0}}; });
  expect_load_error(dir, cfg, ErrorKind::InvalidInput, "original_max_position_embeddings");
  with([](json& c) { c["rope_scaling"] = "yarn"; });
  expect_load_error(dir, cfg, ErrorKind::InvalidInput, "rope_scaling");
  with([](json& c) { c["rope_theta"] = 0; });
  expect_load_error(dir, cfg, ErrorKind::InvalidInput, "theta");
  with([](json& c) { c["intermediate_size"] = 40; });  // the weights say 48
  expect_load_error(dir, (tmp.path() / "model.safetensors").string(), ErrorKind::InvalidInput, "mlp.gate_proj.weight");
  with([](json& c) { c["vocab_size"] = 41; });
  expect_load_error(dir, (tmp.path() / "model.safetensors").string(), ErrorKind::InvalidInput, "embed_tokens");
  // No vocab_size: the embedding's rows.
  with([](json& c) { c.erase("vocab_size"); });
  EXPECT_EQ(load_model(dir)->config.vocab_size, 40);
}

TEST(HfBadInput, BadHeaders) {
  TempDir tmp;
  Spec s;
  write_folder(tmp.path(), s);
  const fs::path st = tmp.path() / "model.safetensors";
  const std::string f = st.string(), dir = tmp.path().string();
  const std::string good = read_bytes(st);
  const auto [h0, data] = disassemble(good);
  auto with = [&](const std::function<void(json&)>& edit) {
    json h = h0;
    edit(h);
    write_bytes(st, assemble(h, data));
  };
  const std::string norm = "model.layers.1.input_layernorm.weight";
  const std::string up = "model.layers.0.mlp.up_proj.weight";

  write_bytes(st, "");
  expect_load_error(dir, f, ErrorKind::InvalidInput);
  write_bytes(st, u64_le(1000) + "{}");
  expect_load_error(dir, f, ErrorKind::InvalidInput, "header length 1000");
  write_bytes(st, u64_le(~0ull) + "{}");
  expect_load_error(dir, f, ErrorKind::InvalidInput, "header length");
  write_bytes(st, u64_le(4) + std::string("\x01\xff\x00{", 4));
  expect_load_error(dir, f, ErrorKind::InvalidInput, "JSON");
  write_bytes(st, assemble(json::array({1, 2}), ""));
  expect_load_error(dir, f, ErrorKind::InvalidInput);
  write_bytes(st, assemble(json::object(), ""));  // valid, empty
  expect_load_error(dir, f, ErrorKind::InvalidInput, "is missing");

  with([&](json& h) { h[norm]["data_offsets"] = json::array({data.size(), data.size() + 128}); });
  expect_load_error(dir, f, ErrorKind::InvalidInput, norm);
  with([&](json& h) { h[norm]["data_offsets"] = json::array({128, 0}); });
  expect_load_error(dir, f, ErrorKind::InvalidInput, norm);
  with([&](json& h) { h[norm]["data_offsets"] = json::array({-4, 124}); });
  expect_load_error(dir, f, ErrorKind::InvalidInput, norm);
  with([&](json& h) { h[norm]["data_offsets"] = json::array({0}); });
  expect_load_error(dir, f, ErrorKind::InvalidInput, norm);
  with([&](json& h) { h[norm].erase("dtype"); });
  expect_load_error(dir, f, ErrorKind::InvalidInput, norm);
  with([&](json& h) { h[norm]["shape"] = json::array({32.5}); });
  expect_load_error(dir, f, ErrorKind::InvalidInput, norm);
  with([&](json& h) { h[norm]["shape"] = json::array({1ll << 40, 1ll << 40}); });
  expect_load_error(dir, f, ErrorKind::InvalidInput, norm);
  with([&](json& h) { h[norm] = 7; });
  expect_load_error(dir, f, ErrorKind::InvalidInput, norm);
  with([&](json& h) { h["__metadata__"] = "pt"; });
  expect_load_error(dir, f, ErrorKind::InvalidInput, "__metadata__");
  // Element size times shape must equal the byte range.
  with([&](json& h) { h[norm]["dtype"] = "F16"; });
  expect_load_error(dir, f, ErrorKind::InvalidInput, norm);
  with([&](json& h) { h[norm]["shape"] = json::array({31}); });
  expect_load_error(dir, f, ErrorKind::InvalidInput, norm);
  // Right size, but no kernels for the dtype.
  with([&](json& h) { h[norm]["dtype"] = "I32"; });
  expect_load_error(dir, f, ErrorKind::Unsupported, norm + "' has dtype I32");
  with([&](json& h) { h[norm]["dtype"] = "F8_E4M3"; h[norm]["shape"] = json::array({128}); });
  expect_load_error(dir, f, ErrorKind::Unsupported, "F8_E4M3");
  with([&](json& h) { h[norm]["dtype"] = "Q4"; });
  expect_load_error(dir, f, ErrorKind::Unsupported, "Q4");
  // An unused tensor of a dtype without kernels is fine.
  with([&](json& h) { h["model.layers.0.self_attn.rotary_emb.inv_freq"] = {
        {"dtype", "I64"}, {"shape", json::array({2})}, {"data_offsets", json::array({0, 16})}}; });
  EXPECT_NO_THROW(load_model(dir));
  // Missing tensors and shapes that contradict config.json.
  with([&](json& h) { h.erase(up); });
  expect_load_error(dir, f, ErrorKind::InvalidInput, "'" + up + "' is missing");
  with([&](json& h) { h[up]["shape"] = json::array({32, 48}); });
  expect_load_error(dir, f, ErrorKind::InvalidInput, up);
  with([&](json& h) { h[up]["shape"] = json::array({48, 32, 1}); });
  expect_load_error(dir, f, ErrorKind::InvalidInput, up);
  with([&](json& h) { h[up]["shape"] = json::array({2, 24, 32}); });
  expect_load_error(dir, f, ErrorKind::InvalidInput, up);
  with([&](json& h) { h[up]["shape"] = json::array({1, 1, 1, 48, 32}); });
  expect_load_error(dir, f, ErrorKind::InvalidInput, up);
  with([&](json& h) { h[norm]["shape"] = json::array({4, 8}); });
  expect_load_error(dir, f, ErrorKind::InvalidInput, norm);
  // Sanity: the untouched file loads.
  write_bytes(st, good);
  EXPECT_NO_THROW(load_model(dir));
}

TEST(HfBadInput, TruncatedAtManyOffsets) {
  TempDir tmp;
  Spec s;
  s.model_type = "qwen2";
  write_folder(tmp.path(), s);
  const fs::path st = tmp.path() / "model.safetensors";
  const std::string good = read_bytes(st);
  uint64_t header = 0;
  for (int i = 7; i >= 0; --i) header = (header << 8) | static_cast<uint8_t>(good[i]);
  std::vector<size_t> cuts;
  for (size_t n = 0; n < 64; ++n) cuts.push_back(n);                             // length, header start
  for (size_t n = 64; n < 8 + header + 64; n += 3) cuts.push_back(n);             // through the header
  for (size_t n = 8 + header + 64; n < good.size(); n += 151) cuts.push_back(n);  // through the data
  cuts.push_back(good.size() - 1);
  int failures = 0;
  for (size_t n : cuts) {
    write_bytes(st, good.substr(0, n));
    try {
      load_model(tmp.path().string());
      ADD_FAILURE() << "cut at " << n << " of " << good.size() << " loaded";
    } catch (const Error& e) {
      const std::string msg = e.what();
      if (msg.find(st.string()) == std::string::npos || msg.find('\n') != std::string::npos) {
        if (++failures < 5) ADD_FAILURE() << "cut at " << n << ": " << msg;
      }
    }
  }
  EXPECT_EQ(failures, 0);
  EXPECT_GT(cuts.size(), 500u);
  write_bytes(st, good);
  EXPECT_NO_THROW(load_model(tmp.path().string()));
}

TEST(HfBadInput, CorruptHeaderBytesNeverCrash) {
  TempDir tmp;
  Spec s;
  write_folder(tmp.path(), s);
  const fs::path st = tmp.path() / "model.safetensors";
  const std::string good = read_bytes(st);
  uint64_t header = 0;
  for (int i = 7; i >= 0; --i) header = (header << 8) | static_cast<uint8_t>(good[i]);
  std::mt19937 rng(7);
  int errors = 0;
  for (int trial = 0; trial < 400; ++trial) {
    std::string bad = good;
    const int flips = 1 + trial % 4;
    for (int k = 0; k < flips; ++k) {
      const size_t at = rng() % (8 + header);
      bad[at] = static_cast<char>(trial % 2 ? rng() & 0xff : "0123456789[]{}\",:-."[rng() % 19]);
    }
    write_bytes(st, bad);
    try {
      load_model(tmp.path().string());  // some edits are harmless (e.g. in padding)
    } catch (const Error& e) {
      ++errors;
      EXPECT_EQ(std::string(e.what()).find('\n'), std::string::npos) << e.what();
    }
  }
  EXPECT_GT(errors, 200);
}

// ---- Reference vs fast forward on loaded models ------------------------------------------

TEST(HfForward, LlamaRandom) {
  TempDir tmp;
  Spec s;
  s.dim = 64;
  s.ffn = 96;
  s.heads = 8;
  s.kv_heads = 2;
  s.vocab = 50;
  write_folder(tmp.path(), s);
  check_forward(*load_model(tmp.path().string()));
}

TEST(HfForward, Qwen2Random) {
  TempDir tmp;
  Spec s;
  s.model_type = "qwen2";
  s.theta = 1e6;
  s.tie = true;
  s.store_head = false;
  write_folder(tmp.path(), s);
  check_forward(*load_model(tmp.path().string()));
}

TEST(HfForward, Qwen3Random) {
  TempDir tmp;
  Spec s;
  s.model_type = "qwen3";
  s.head_dim = 16;
  s.layers = 3;
  s.theta = 1e6;
  write_folder(tmp.path(), s);
  check_forward(*load_model(tmp.path().string()));
}
