// GGUF model loader: llama.cpp tensor names and `<arch>.*` metadata keys.
#include <cmath>

#include "common/error.h"
#include "gguf/gguf.h"
#include "model/model.h"

namespace harmonia {

namespace {

Arch parse_arch(const std::string& path, const std::string& a) {
  if (a == "llama") return Arch::Llama;
  if (a == "mistral") return Arch::Mistral;
  if (a == "qwen2") return Arch::Qwen2;
  if (a == "qwen3") return Arch::Qwen3;
  fail(ErrorKind::Unsupported,
       "{}: architecture '{}' is not supported (supported: llama, mistral, qwen2, qwen3)", path, a);
}

}  // namespace

std::unique_ptr<Model> load_gguf(const std::string& path, const LoadOptions& opts) {
  auto m = std::make_unique<Model>();
  m->path = path;
  m->format = "gguf";
  m->gguf_file = gguf::File::open(path);
  const gguf::File& f = *m->gguf_file;
  const std::string a = f.get_string("general.architecture");
  ModelConfig& c = m->config;
  c.arch = parse_arch(path, a);
  const std::string p = a + ".";
  c.dim = static_cast<int>(f.get_int(p + "embedding_length"));
  c.n_layers = static_cast<int>(f.get_int(p + "block_count"));
  c.n_heads = static_cast<int>(f.get_int(p + "attention.head_count"));
  c.n_kv_heads = static_cast<int>(f.get_int(p + "attention.head_count_kv", c.n_heads));
  c.ffn_dim = static_cast<int>(f.get_int(p + "feed_forward_length"));
  c.ctx_len = f.get_int(p + "context_length", 2048);
  c.norm_eps = static_cast<float>(f.get_float(p + "attention.layer_norm_rms_epsilon", 1e-5));
  c.head_dim = c.n_heads > 0 ? static_cast<int>(f.get_int(p + "attention.key_length", c.dim / c.n_heads)) : 0;
  c.qkv_bias = c.arch == Arch::Qwen2;
  c.qk_norm = c.arch == Arch::Qwen3;

  RopeConfig& r = c.rope;
  // llama.cpp permutes Q/K rows of llama/mistral so that adjacent pairs rotate
  // (LLAMA_ROPE_TYPE_NORM); qwen2/qwen3 keep the HF order (NEOX, half rotation).
  r.style = (c.arch == Arch::Qwen2 || c.arch == Arch::Qwen3) ? RopeConfig::Style::Half
                                                             : RopeConfig::Style::Interleaved;
  r.n_rot = static_cast<int>(f.get_int(p + "rope.dimension_count", c.head_dim));
  r.theta = f.get_float(p + "rope.freq_base", 10000.0);
  const std::string st = f.get_string(p + "rope.scaling.type", "none");
  const double factor = f.get_float(p + "rope.scaling.factor", 0.0);
  r.original_ctx = f.get_int(p + "rope.scaling.original_context_length", 0);
  if (st == "linear" && factor > 0) {
    r.scaling = RopeConfig::Scaling::Linear;
    r.factor = factor;
  } else if (st == "yarn" && factor > 0) {
    r.scaling = RopeConfig::Scaling::Yarn;
    r.factor = factor;
    r.yarn_beta_fast = f.get_float(p + "rope.scaling.yarn_beta_fast", 32.0);
    r.yarn_beta_slow = f.get_float(p + "rope.scaling.yarn_beta_slow", 1.0);
  } else if (st != "none" && st != "linear" && st != "yarn") {
    fail(ErrorKind::Unsupported, "{}: rope scaling type '{}' is not supported", path, st);
  }
  const gguf::TensorInfo* emb = f.find_tensor("token_embd.weight");
  if (!emb) fail(ErrorKind::InvalidInput, "{}: tensor 'token_embd.weight' is missing", path);
  c.vocab_size = static_cast<int>(f.get_int(p + "vocab_size", emb->ne[1]));
  c.validate(path);

  // Llama 3.1+ files carry llama3 scaling as per-pair frequency divisors.
  if (const auto* ti = f.find_tensor("rope_freqs.weight")) {
    Tensor t = m->to_f32(f.tensor("rope_freqs.weight"));
    if (t.numel() != r.n_rot / 2)
      fail(ErrorKind::InvalidInput, "{}: rope_freqs.weight has {} values, expected {}", path, t.numel(),
           r.n_rot / 2);
    const float* ff = static_cast<const float*>(t.data);
    r.freq_factors.assign(ff, ff + t.numel());
    (void)ti;
  }

  ModelWeights& w = m->weights;
  auto get = [&](const std::string& name) { return f.tensor(name); };
  auto opt = [&](const std::string& name) { return f.find_tensor(name) ? f.tensor(name) : Tensor{}; };
  auto norm = [&](const std::string& name, int64_t n) {
    Tensor t = m->to_f32(get(name));
    if (t.numel() != n)
      fail(ErrorKind::InvalidInput, "{}: tensor '{}' has {} elements but the config implies {}", path,
           name, t.numel(), n);
    return t;
  };
  w.tok_embd = get("token_embd.weight");
  expect_shape(path, w.tok_embd, c.vocab_size, c.dim);
  w.output_norm = norm("output_norm.weight", c.dim);
  if (f.find_tensor("output.weight")) {
    w.output = get("output.weight");
  } else {
    w.output = w.tok_embd;
    c.tied_embeddings = true;
  }
  expect_shape(path, w.output, c.vocab_size, c.dim);
  w.layers.resize(c.n_layers);
  for (int i = 0; i < c.n_layers; ++i) {
    const std::string b = "blk." + std::to_string(i) + ".";
    LayerWeights& l = w.layers[i];
    l.attn_norm = norm(b + "attn_norm.weight", c.dim);
    l.wq = get(b + "attn_q.weight");
    l.wk = get(b + "attn_k.weight");
    l.wv = get(b + "attn_v.weight");
    l.wo = get(b + "attn_output.weight");
    expect_shape(path, l.wq, c.q_dim(), c.dim);
    expect_shape(path, l.wk, c.kv_dim(), c.dim);
    expect_shape(path, l.wv, c.kv_dim(), c.dim);
    expect_shape(path, l.wo, c.dim, c.q_dim());
    if (c.qkv_bias) {
      l.bq = norm(b + "attn_q.bias", c.q_dim());
      l.bk = norm(b + "attn_k.bias", c.kv_dim());
      l.bv = norm(b + "attn_v.bias", c.kv_dim());
    } else if (f.find_tensor(b + "attn_q.bias")) {
      l.bq = norm(b + "attn_q.bias", c.q_dim());
      l.bk = norm(b + "attn_k.bias", c.kv_dim());
      l.bv = norm(b + "attn_v.bias", c.kv_dim());
    }
    if (c.qk_norm) {
      l.q_norm = norm(b + "attn_q_norm.weight", c.head_dim);
      l.k_norm = norm(b + "attn_k_norm.weight", c.head_dim);
    }
    l.ffn_norm = norm(b + "ffn_norm.weight", c.dim);
    l.w_gate = get(b + "ffn_gate.weight");
    l.w_up = get(b + "ffn_up.weight");
    l.w_down = get(b + "ffn_down.weight");
    expect_shape(path, l.w_gate, c.ffn_dim, c.dim);
    expect_shape(path, l.w_up, c.ffn_dim, c.dim);
    expect_shape(path, l.w_down, c.dim, c.ffn_dim);
  }
  (void)opt;
  if (f.has("tokenizer.ggml.model")) m->tokenizer = tokenizer_from_gguf(f);
  if (!opts.mmap_weights) m->own_decode_matrices();
  return m;
}

}  // namespace harmonia
