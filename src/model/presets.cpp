#include "model/presets.h"

#include <cmath>

#include "common/error.h"
#include "gguf/gguf.h"
#include "tensor/ops.h"

namespace harmonia {

namespace {

struct Preset {
  const char* name;
  Arch arch;
  int dim, n_layers, n_heads, n_kv_heads, head_dim, ffn_dim, vocab;
  int64_t ctx;
  double theta;
  bool tied;
  double llama3_factor;  // 0 = no llama3 scaling
};

// Shapes from each model's config.json.
constexpr Preset kPresets[] = {
    {"llama-110m", Arch::Llama, 768, 12, 12, 12, 64, 2048, 32000, 1024, 10000.0, false, 0},
    {"llama-1b", Arch::Llama, 2048, 16, 32, 8, 64, 8192, 128256, 131072, 500000.0, true, 32},
    {"llama-3b", Arch::Llama, 3072, 28, 24, 8, 128, 8192, 128256, 131072, 500000.0, true, 32},
    {"llama-8b", Arch::Llama, 4096, 32, 32, 8, 128, 14336, 128256, 131072, 500000.0, false, 8},
    {"mistral-7b", Arch::Mistral, 4096, 32, 32, 8, 128, 14336, 32768, 32768, 1000000.0, false, 0},
    {"qwen2-0.5b", Arch::Qwen2, 896, 24, 14, 2, 64, 4864, 151936, 32768, 1000000.0, true, 0},
    {"qwen3-0.6b", Arch::Qwen3, 1024, 28, 16, 8, 128, 3072, 151936, 40960, 1000000.0, true, 0},
    {"tiny-llama", Arch::Llama, 64, 2, 4, 2, 16, 128, 256, 512, 10000.0, false, 0},
    {"tiny-mistral", Arch::Mistral, 64, 2, 4, 1, 16, 160, 256, 512, 1000000.0, false, 0},
    {"tiny-qwen2", Arch::Qwen2, 64, 2, 4, 2, 16, 128, 256, 512, 1000000.0, true, 0},
    {"tiny-qwen3", Arch::Qwen3, 64, 2, 4, 2, 32, 128, 256, 512, 1000000.0, true, 0},
};

// SplitMix64: cheap, seedable per (tensor, row) so rows fill in parallel.
uint64_t splitmix(uint64_t& s) {
  uint64_t z = (s += 0x9E3779B97F4A7C15ull);
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
  return z ^ (z >> 31);
}
float uniform(uint64_t& s) { return static_cast<float>(splitmix(s) >> 40) * (1.0f / 16777216.0f) * 2.0f - 1.0f; }

}  // namespace

std::vector<std::string> preset_names() {
  std::vector<std::string> r;
  for (const auto& p : kPresets) r.push_back(p.name);
  return r;
}

ModelConfig preset_config(const std::string& name) {
  for (const auto& p : kPresets) {
    if (name != p.name) continue;
    ModelConfig c;
    c.arch = p.arch;
    c.dim = p.dim;
    c.n_layers = p.n_layers;
    c.n_heads = p.n_heads;
    c.n_kv_heads = p.n_kv_heads;
    c.head_dim = p.head_dim;
    c.ffn_dim = p.ffn_dim;
    c.vocab_size = p.vocab;
    c.ctx_len = p.ctx;
    c.norm_eps = p.arch == Arch::Llama && p.llama3_factor == 0 ? 1e-5f : 1e-6f;
    c.qkv_bias = p.arch == Arch::Qwen2;
    c.qk_norm = p.arch == Arch::Qwen3;
    c.tied_embeddings = p.tied;
    c.rope.style = (p.arch == Arch::Qwen2 || p.arch == Arch::Qwen3) ? RopeConfig::Style::Half
                                                                    : RopeConfig::Style::Interleaved;
    c.rope.n_rot = p.head_dim;
    c.rope.theta = p.theta;
    if (p.llama3_factor > 0) {
      c.rope.scaling = RopeConfig::Scaling::Llama3;
      c.rope.factor = p.llama3_factor;
      c.rope.original_ctx = 8192;
      c.rope.low_freq_factor = 1.0;
      c.rope.high_freq_factor = 4.0;
    }
    c.validate(std::string("preset ") + name);
    return c;
  }
  std::string known;
  for (const auto& n : preset_names()) known += (known.empty() ? "" : ", ") + n;
  fail(ErrorKind::InvalidInput, "unknown preset '{}' (known: {})", name, known);
}

std::unique_ptr<Model> make_random_model(const ModelConfig& cfg, const RandomModelOptions& opts) {
  cfg.validate("random model");
  const auto& info = dtype_info(opts.dtype);
  if (!info.supported) fail(ErrorKind::Unsupported, "make-model: dtype {} has no kernels", info.name);
  auto m = std::make_unique<Model>();
  m->config = cfg;
  m->format = "random";
  m->path = "(random weights)";
  uint64_t tensor_id = opts.seed * 1000003ull;

  // A 2-D weight [rows, cols] in opts.dtype (falls back to f32 where cols is not
  // a multiple of the block size, as llama.cpp's quantiser does).
  auto matrix = [&](const std::string& name, int64_t rows, int64_t cols) {
    const uint64_t id = ++tensor_id;
    DType t = opts.dtype;
    if (cols % dtype_info(t).block_elems != 0) t = DType::F32;
    Tensor w;
    w.name = name;
    w.type = t;
    w.ne = {cols, rows, 1, 1};
    w.n_dims = 2;
    const size_t rb = row_bytes(t, cols);
    w.nbytes = rb * static_cast<size_t>(rows);
    uint8_t* dst = m->alloc(w.nbytes);
    w.data = dst;
    const float a = 1.0f / std::sqrt(static_cast<float>(cols));
#pragma omp parallel
    {
      std::vector<float> buf(static_cast<size_t>(cols));
#pragma omp for schedule(static)
      for (int64_t r = 0; r < rows; ++r) {
        uint64_t s = id * 0x100000001B3ull + static_cast<uint64_t>(r);
        for (int64_t j = 0; j < cols; ++j) buf[j] = a * uniform(s);
        quantize_row(t, buf.data(), dst + rb * r, cols);
      }
    }
    return w;
  };
  auto vec = [&](const std::string& name, int64_t n, float center, float spread) {
    uint64_t s = ++tensor_id;
    Tensor w;
    w.name = name;
    w.type = DType::F32;
    w.ne = {n, 1, 1, 1};
    w.n_dims = 1;
    w.nbytes = static_cast<size_t>(n) * 4;
    float* d = reinterpret_cast<float*>(m->alloc(w.nbytes));
    for (int64_t i = 0; i < n; ++i) d[i] = center + spread * uniform(s);
    w.data = d;
    return w;
  };

  ModelWeights& w = m->weights;
  // Embedding rows get unit-scale entries (as trained embeddings do after the first norm).
  w.tok_embd = matrix("token_embd.weight", cfg.vocab_size, cfg.dim);
  w.output_norm = vec("output_norm.weight", cfg.dim, 1.0f, 0.1f);
  w.output = cfg.tied_embeddings ? w.tok_embd : matrix("output.weight", cfg.vocab_size, cfg.dim);
  w.layers.resize(cfg.n_layers);
  for (int i = 0; i < cfg.n_layers; ++i) {
    const std::string b = "blk." + std::to_string(i) + ".";
    LayerWeights& l = w.layers[i];
    l.attn_norm = vec(b + "attn_norm.weight", cfg.dim, 1.0f, 0.1f);
    l.wq = matrix(b + "attn_q.weight", cfg.q_dim(), cfg.dim);
    l.wk = matrix(b + "attn_k.weight", cfg.kv_dim(), cfg.dim);
    l.wv = matrix(b + "attn_v.weight", cfg.kv_dim(), cfg.dim);
    l.wo = matrix(b + "attn_output.weight", cfg.dim, cfg.q_dim());
    if (cfg.qkv_bias) {
      l.bq = vec(b + "attn_q.bias", cfg.q_dim(), 0.0f, 0.1f);
      l.bk = vec(b + "attn_k.bias", cfg.kv_dim(), 0.0f, 0.1f);
      l.bv = vec(b + "attn_v.bias", cfg.kv_dim(), 0.0f, 0.1f);
    }
    if (cfg.qk_norm) {
      l.q_norm = vec(b + "attn_q_norm.weight", cfg.head_dim, 1.0f, 0.1f);
      l.k_norm = vec(b + "attn_k_norm.weight", cfg.head_dim, 1.0f, 0.1f);
    }
    l.ffn_norm = vec(b + "ffn_norm.weight", cfg.dim, 1.0f, 0.1f);
    l.w_gate = matrix(b + "ffn_gate.weight", cfg.ffn_dim, cfg.dim);
    l.w_up = matrix(b + "ffn_up.weight", cfg.ffn_dim, cfg.dim);
    l.w_down = matrix(b + "ffn_down.weight", cfg.dim, cfg.ffn_dim);
  }
  return m;
}

void write_gguf(const Model& m, const std::string& path) {
  const ModelConfig& c = m.config;
  const std::string a = arch_name(c.arch);
  gguf::Writer w;
  w.set_string("general.architecture", a);
  w.set_string("general.name", m.format == "random" ? "harmonia random weights" : m.path);
  w.set_u32(a + ".context_length", static_cast<uint32_t>(c.ctx_len));
  w.set_u32(a + ".embedding_length", static_cast<uint32_t>(c.dim));
  w.set_u32(a + ".block_count", static_cast<uint32_t>(c.n_layers));
  w.set_u32(a + ".feed_forward_length", static_cast<uint32_t>(c.ffn_dim));
  w.set_u32(a + ".attention.head_count", static_cast<uint32_t>(c.n_heads));
  w.set_u32(a + ".attention.head_count_kv", static_cast<uint32_t>(c.n_kv_heads));
  w.set_u32(a + ".attention.key_length", static_cast<uint32_t>(c.head_dim));
  w.set_u32(a + ".attention.value_length", static_cast<uint32_t>(c.head_dim));
  w.set_f32(a + ".attention.layer_norm_rms_epsilon", c.norm_eps);
  w.set_u32(a + ".rope.dimension_count", static_cast<uint32_t>(c.rope.n_rot));
  w.set_f32(a + ".rope.freq_base", static_cast<float>(c.rope.theta));
  w.set_u32(a + ".vocab_size", static_cast<uint32_t>(c.vocab_size));
  std::vector<float> freqs;
  if (c.rope.scaling == RopeConfig::Scaling::Linear || c.rope.scaling == RopeConfig::Scaling::Yarn) {
    w.set_string(a + ".rope.scaling.type", c.rope.scaling == RopeConfig::Scaling::Linear ? "linear" : "yarn");
    w.set_f32(a + ".rope.scaling.factor", static_cast<float>(c.rope.factor));
    w.set_u32(a + ".rope.scaling.original_context_length", static_cast<uint32_t>(c.rope.original_ctx));
  } else if (c.rope.scaling == RopeConfig::Scaling::Llama3) {
    // llama.cpp stores llama3 scaling as inv_freq divisors: base / scaled.
    RopeConfig plain = c.rope;
    plain.scaling = RopeConfig::Scaling::None;
    plain.freq_factors.clear();
    const Rope base(plain), scaled(c.rope);
    for (size_t i = 0; i < base.inv_freq().size(); ++i)
      freqs.push_back(static_cast<float>(base.inv_freq()[i] / scaled.inv_freq()[i]));
    w.add_tensor("rope_freqs.weight", DType::F32, {static_cast<int64_t>(freqs.size())}, freqs.data(),
                 freqs.size() * 4);
  } else if (c.rope.scaling == RopeConfig::Scaling::DynamicNTK) {
    fail(ErrorKind::Unsupported, "{}: GGUF has no dynamic-NTK RoPE scaling key", path);
  }
  auto add = [&](const Tensor& t, const std::string& name) {
    if (t.empty()) return;
    std::vector<int64_t> ne(t.ne.begin(), t.ne.begin() + std::max(1, t.n_dims));
    w.add_tensor(name, t.type, ne, t.data, t.nbytes);
  };
  const ModelWeights& mw = m.weights;
  add(mw.tok_embd, "token_embd.weight");
  add(mw.output_norm, "output_norm.weight");
  if (!c.tied_embeddings) add(mw.output, "output.weight");
  for (int i = 0; i < c.n_layers; ++i) {
    const std::string b = "blk." + std::to_string(i) + ".";
    const LayerWeights& l = mw.layers[i];
    add(l.attn_norm, b + "attn_norm.weight");
    add(l.wq, b + "attn_q.weight");
    add(l.wk, b + "attn_k.weight");
    add(l.wv, b + "attn_v.weight");
    add(l.wo, b + "attn_output.weight");
    add(l.bq, b + "attn_q.bias");
    add(l.bk, b + "attn_k.bias");
    add(l.bv, b + "attn_v.bias");
    add(l.q_norm, b + "attn_q_norm.weight");
    add(l.k_norm, b + "attn_k_norm.weight");
    add(l.ffn_norm, b + "ffn_norm.weight");
    add(l.w_gate, b + "ffn_gate.weight");
    add(l.w_up, b + "ffn_up.weight");
    add(l.w_down, b + "ffn_down.weight");
  }
  w.write(path);
}

}  // namespace harmonia
