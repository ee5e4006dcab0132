// llama2.c checkpoint loader (legacy version-0 format of Karpathy's run.c).
//
// Header: 7 x int32 {dim, hidden_dim, n_layers, n_heads, n_kv_heads, vocab_size,
// seq_len}; vocab_size < 0 means a separate classifier follows the weights.
// Then f32 arrays: token_embedding [vocab, dim], rms_att [L, dim], wq [L, dim, dim],
// wk [L, kv_dim, dim], wv [L, kv_dim, dim], wo [L, dim, dim], rms_ffn [L, dim],
// w1 [L, hidden, dim], w2 [L, dim, hidden], w3 [L, hidden, dim], rms_final [dim],
// freq_cis_real/imag [seq_len, head_size/2] (unused), wcls [vocab, dim] if unshared.
#include <cstring>
#include <filesystem>

#include "common/error.h"
#include "model/model.h"

namespace harmonia {

std::unique_ptr<Model> load_llama2c(const std::string& path, const LoadOptions& opts) {
  auto m = std::make_unique<Model>();
  m->path = path;
  m->format = "llama2c";
  m->maps.push_back(std::make_unique<MappedFile>(path));
  const MappedFile& mf = *m->maps.back();
  if (mf.size() < 28)
    fail(ErrorKind::InvalidInput, "{}: truncated llama2.c header ({} bytes, need 28)", path, mf.size());
  int32_t h[7];
  std::memcpy(h, mf.data(), sizeof(h));
  ModelConfig& c = m->config;
  c.arch = Arch::Llama;
  c.dim = h[0];
  c.ffn_dim = h[1];
  c.n_layers = h[2];
  c.n_heads = h[3];
  c.n_kv_heads = h[4];
  const bool shared = h[5] > 0;
  c.vocab_size = h[5] < 0 ? -h[5] : h[5];
  c.ctx_len = h[6];
  c.norm_eps = 1e-5f;
  if (c.n_heads <= 0 || c.dim <= 0 || c.dim % c.n_heads != 0)
    fail(ErrorKind::InvalidInput,
         "{}: not a llama2.c checkpoint (header dim {} / n_heads {} is not a valid shape)", path, c.dim,
         c.n_heads);
  c.head_dim = c.dim / c.n_heads;
  c.rope.style = RopeConfig::Style::Interleaved;
  c.rope.n_rot = c.head_dim;
  c.rope.theta = 10000.0;
  c.tied_embeddings = shared;
  c.validate(path);
  if (c.ctx_len <= 0 || c.ctx_len > (1 << 24))
    fail(ErrorKind::InvalidInput, "{}: seq_len {} in the header is not plausible", path, c.ctx_len);

  const int64_t D = c.dim, F = c.ffn_dim, L = c.n_layers, V = c.vocab_size, KV = c.kv_dim();
  const int64_t hs = c.head_dim;
  int64_t need = 7 * 4 + 4 * (V * D + L * D + L * D * D + 2 * L * KV * D + L * D * D + L * D + 3 * L * F * D +
                              D + c.ctx_len * hs);
  if (!shared) need += 4 * V * D;
  if (static_cast<int64_t>(mf.size()) < need)
    fail(ErrorKind::InvalidInput, "{}: file has {} bytes but the header's shapes need {}", path, mf.size(),
         need);

  const float* p = reinterpret_cast<const float*>(mf.data() + 28);
  auto take = [&](const std::string& name, int64_t rows, int64_t cols) {
    Tensor t;
    t.name = name;
    t.type = DType::F32;
    t.ne = {cols, rows, 1, 1};
    t.n_dims = 2;
    t.data = p;
    t.nbytes = static_cast<size_t>(rows * cols) * 4;
    p += rows * cols;
    return t;
  };
  ModelWeights& w = m->weights;
  w.layers.resize(L);
  w.tok_embd = take("token_embedding", V, D);
  for (int64_t i = 0; i < L; ++i) w.layers[i].attn_norm = take("rms_att", 1, D);
  for (int64_t i = 0; i < L; ++i) w.layers[i].wq = take("wq", c.q_dim(), D);
  for (int64_t i = 0; i < L; ++i) w.layers[i].wk = take("wk", KV, D);
  for (int64_t i = 0; i < L; ++i) w.layers[i].wv = take("wv", KV, D);
  for (int64_t i = 0; i < L; ++i) w.layers[i].wo = take("wo", D, c.q_dim());
  for (int64_t i = 0; i < L; ++i) w.layers[i].ffn_norm = take("rms_ffn", 1, D);
  for (int64_t i = 0; i < L; ++i) w.layers[i].w_gate = take("w1", F, D);
  for (int64_t i = 0; i < L; ++i) w.layers[i].w_down = take("w2", D, F);
  for (int64_t i = 0; i < L; ++i) w.layers[i].w_up = take("w3", F, D);
  w.output_norm = take("rms_final", 1, D);
  p += c.ctx_len * hs;  // freq_cis_real, freq_cis_imag: RoPE tables we recompute
  w.output = shared ? w.tok_embd : take("wcls", V, D);

  std::string tok = opts.tokenizer_path;
  if (tok.empty()) {
    namespace fs = std::filesystem;
    const fs::path dir = fs::path(path).parent_path();
    for (const std::string& cand : {"tok" + std::to_string(V) + ".bin", std::string("tokenizer.bin")})
      if (fs::exists(dir / cand)) {
        tok = (dir / cand).string();
        break;
      }
  }
  if (!tok.empty()) m->tokenizer = tokenizer_from_llama2c(tok, c.vocab_size);
  if (!opts.mmap_weights) m->own_decode_matrices();
  return m;
}

}  // namespace harmonia
