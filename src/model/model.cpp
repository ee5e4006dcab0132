#include "model/model.h"

#include <sys/stat.h>

#include <cstring>
#include <fstream>

#include "common/error.h"
#include "gguf/gguf.h"
#include "tensor/ops.h"

namespace harmonia {

const char* arch_name(Arch a) {
  switch (a) {
    case Arch::Llama: return "llama";
    case Arch::Mistral: return "mistral";
    case Arch::Qwen2: return "qwen2";
    case Arch::Qwen3: return "qwen3";
  }
  return "?";
}

void ModelConfig::validate(const std::string& src) const {
  auto pos = [&](const char* name, int64_t v) {
    if (v <= 0) fail(ErrorKind::InvalidInput, "{}: {} is {}, must be positive", src, name, v);
  };
  pos("dim", dim);
  pos("n_layers", n_layers);
  pos("n_heads", n_heads);
  pos("n_kv_heads", n_kv_heads);
  pos("head_dim", head_dim);
  pos("ffn_dim", ffn_dim);
  pos("vocab_size", vocab_size);
  if (n_layers > 1024 || n_heads > 4096 || dim > (1 << 20) || ffn_dim > (1 << 22) || vocab_size > (1 << 24))
    fail(ErrorKind::InvalidInput, "{}: implausible shape (dim {}, layers {}, heads {}, ffn {}, vocab {})",
         src, dim, n_layers, n_heads, ffn_dim, vocab_size);
  if (n_heads % n_kv_heads != 0)
    fail(ErrorKind::InvalidInput, "{}: n_heads {} is not a multiple of n_kv_heads {}", src, n_heads,
         n_kv_heads);
  if (head_dim % 2 != 0) fail(ErrorKind::InvalidInput, "{}: head_dim {} is odd", src, head_dim);
  if (rope.n_rot <= 0 || rope.n_rot > head_dim || rope.n_rot % 2 != 0)
    fail(ErrorKind::InvalidInput, "{}: rope dimension count {} does not fit head_dim {}", src, rope.n_rot,
         head_dim);
  if (!(norm_eps > 0.0f) || !(rope.theta > 0.0))
    fail(ErrorKind::InvalidInput, "{}: norm eps {} / rope theta {} must be positive", src, norm_eps,
         rope.theta);
}

size_t Model::weight_bytes() const {
  size_t n = weights.tok_embd.nbytes + weights.output_norm.nbytes;
  if (!config.tied_embeddings) n += weights.output.nbytes;
  for (const auto& l : weights.layers)
    for (const Tensor* t : {&l.attn_norm, &l.wq, &l.wk, &l.wv, &l.wo, &l.bq, &l.bk, &l.bv, &l.q_norm,
                            &l.k_norm, &l.ffn_norm, &l.w_gate, &l.w_up, &l.w_down})
      n += t->nbytes;
  return n;
}

size_t Model::decode_read_bytes() const {
  size_t n = weight_bytes();
  if (!config.tied_embeddings) n -= weights.tok_embd.nbytes - weights.tok_embd.row_stride();
  return n;
}

Model::~Model() = default;

// NOTE: every llama-110m q8_0 layer matrix is 0.6-1.7 MB, below the 2 MiB of a
// huge page, so each on its own stayed on 4 KiB pages while the f32 ones (2.4 MB
// and up) got huge pages; the weight stream then took a TLB miss every 4 KiB.
uint8_t* Model::alloc(size_t n) {
  if (n >= kHugePageBytes) {
    owned.emplace_back(n, 0);
    return owned.back().data();
  }
  constexpr size_t kAlign = 64;
  const size_t need = (n + kAlign - 1) / kAlign * kAlign;
  if (!arena || arena_used + need > kArenaBytes) {
    owned.emplace_back(kArenaBytes, 0);
    arena = owned.back().data();
    arena_used = 0;
  }
  uint8_t* p = arena + arena_used;
  arena_used += need;
  return p;
}

void Model::own_decode_matrices() {
  auto owned_already = [&](const void* d) {  // converted at load (to_f32, dequantised): already on huge pages
    const auto* p = static_cast<const uint8_t*>(d);
    for (const auto& b : owned)
      if (p >= b.data() && p < b.data() + b.size()) return true;
    return false;
  };
  auto own = [&](Tensor& t) {
    if (t.empty() || t.nbytes == 0 || owned_already(t.data)) return;
    uint8_t* p = alloc(t.nbytes);
    std::memcpy(p, t.data, t.nbytes);
    t.data = p;
  };
  ModelWeights& w = weights;
  const bool tied = !w.output.empty() && w.output.data == w.tok_embd.data;
  own(w.output);
  if (tied) w.tok_embd.data = w.output.data;
  for (LayerWeights& l : w.layers)
    for (Tensor* t : {&l.wq, &l.wk, &l.wv, &l.wo, &l.w_gate, &l.w_up, &l.w_down}) own(*t);
}

Tensor Model::to_f32(const Tensor& t) {
  if (t.empty() || t.type == DType::F32) return t;
  Tensor r = t;
  r.type = DType::F32;
  r.nbytes = static_cast<size_t>(t.numel()) * 4;
  float* dst = reinterpret_cast<float*>(alloc(r.nbytes));
  for (int64_t row = 0; row < t.rows(); ++row) dequantize_row(t.type, t.row(row), dst + row * t.cols(), t.cols());
  r.data = dst;
  return r;
}

void expect_shape(const std::string& src, const Tensor& t, int64_t rows, int64_t cols) {
  if (t.empty()) fail(ErrorKind::InvalidInput, "{}: tensor '{}' is missing", src, t.name);
  if (t.rows() != rows || t.cols() != cols)
    fail(ErrorKind::InvalidInput, "{}: tensor '{}' has shape [{}, {}] but the config implies [{}, {}]",
         src, t.name, t.rows(), t.cols(), rows, cols);
}

std::unique_ptr<Model> load_model(const std::string& path, const LoadOptions& opts) {
  struct stat st{};
  if (::stat(path.c_str(), &st) != 0) fail(ErrorKind::Io, "{}: no such file or directory", path);
  if (S_ISDIR(st.st_mode)) return load_hf(path, opts);
  auto ends = [&](const char* suf) {
    const size_t n = std::strlen(suf);
    return path.size() >= n && path.compare(path.size() - n, n, suf) == 0;
  };
  if (ends(".safetensors") || ends(".json")) return load_hf(path, opts);
  char magic[4] = {};
  std::ifstream f(path, std::ios::binary);
  f.read(magic, 4);
  if (f.gcount() == 4 && std::memcmp(magic, "GGUF", 4) == 0) return load_gguf(path, opts);
  if (ends(".gguf")) fail(ErrorKind::InvalidInput, "{}: not a GGUF file (bad magic at offset 0)", path);
  return load_llama2c(path, opts);
}

}  // namespace harmonia
