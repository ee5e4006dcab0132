#pragma once
// A LLaMA-family decoder (Llama 2/3, Mistral, Qwen2, Qwen3) loaded from GGUF,
// a Hugging Face safetensors folder, or a llama2.c checkpoint. Weights stay in
// the file's memory map where its layout is the compute layout.
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "common/huge_pages.h"
#include "common/mapped_file.h"
#include "gguf/gguf.h"
#include "model/rope.h"
#include "tensor/tensor.h"
#include "tokenizer/tokenizer.h"

namespace harmonia {


enum class Arch { Llama, Mistral, Qwen2, Qwen3 };
const char* arch_name(Arch a);

struct ModelConfig {
  Arch arch = Arch::Llama;
  int dim = 0;           // hidden size (embedding_length)
  int n_layers = 0;
  int n_heads = 0;       // query heads
  int n_kv_heads = 0;    // key/value heads (GQA when < n_heads)
  int head_dim = 0;      // per head (usually dim / n_heads; Qwen3 may differ)
  int ffn_dim = 0;       // SwiGLU hidden size
  int vocab_size = 0;
  int64_t ctx_len = 0;   // trained context length (tokens)
  float norm_eps = 1e-5f;
  bool qkv_bias = false; // Qwen2
  bool qk_norm = false;  // Qwen3: RMSNorm over each q/k head before RoPE
  bool tied_embeddings = false;
  RopeConfig rope;

  int q_dim() const { return n_heads * head_dim; }
  int kv_dim() const { return n_kv_heads * head_dim; }
  // Bytes of fp32 K+V per token over all layers (the plain full cache).
  size_t kv_bytes_per_token_f32() const {
    return static_cast<size_t>(n_layers) * 2 * static_cast<size_t>(kv_dim()) * 4;
  }
  // Throws Error(InvalidInput) naming `source` and the field when inconsistent.
  void validate(const std::string& source) const;
};

struct LayerWeights {
  Tensor attn_norm;               // [dim] f32
  Tensor wq, wk, wv, wo;          // wq [q_dim, dim], wk/wv [kv_dim, dim], wo [dim, q_dim] (rows, cols)
  Tensor bq, bk, bv;              // Qwen2 biases [q_dim], [kv_dim], [kv_dim] f32; empty otherwise
  Tensor q_norm, k_norm;          // Qwen3 per-head RMSNorm [head_dim] f32; empty otherwise
  Tensor ffn_norm;                // [dim] f32
  Tensor w_gate, w_up, w_down;    // gate/up [ffn_dim, dim], down [dim, ffn_dim]
};

struct ModelWeights {
  Tensor tok_embd;     // [vocab, dim]: row t is token t's embedding
  Tensor output_norm;  // [dim] f32
  Tensor output;       // [vocab, dim]; same bytes as tok_embd when tied
  std::vector<LayerWeights> layers;
};

class Model {
 public:
  ModelConfig config;
  ModelWeights weights;
  std::unique_ptr<Tokenizer> tokenizer;  // may be null (llama2.c without --tokenizer)
  std::string path;    // what was loaded
  std::string format;  // "gguf" | "safetensors" | "llama2c" | "random"

  // Total bytes of all weight tensors (what a decode step reads, besides the KV cache).
  size_t weight_bytes() const;
  // Weight bytes one decode step reads: everything but the embedding table,
  // of which one row is read (all of it when tied, as the output matrix).
  size_t decode_read_bytes() const;
  // Keeps mapped files and converted buffers alive for the Tensor views.
  std::vector<std::unique_ptr<MappedFile>> maps;
  std::unique_ptr<gguf::File> gguf_file;
  std::vector<HugeVector<uint8_t>> owned;  // on huge pages (common/huge_pages.h)
  // Copies `t` to an owned f32 buffer (norms and biases are always f32 in compute).
  Tensor to_f32(const Tensor& t);
  // Owned buffer of n bytes, zero-filled, 64-byte aligned. Buffers smaller than
  // a huge page are carved from shared arenas of kArenaBytes, so that they sit
  // on huge pages too (alone, alloc_huge leaves them on 4 KiB pages).
  uint8_t* alloc(size_t n);
  // Copies every layer matrix and the output matrix (the embedding table too when tied) that is
  // not already in an owned buffer into alloc() buffers and points the weights at the copies
  // (LoadOptions::mmap_weights false).
  void own_decode_matrices();
  static constexpr size_t kArenaBytes = size_t{8} << 20;
  uint8_t* arena = nullptr;  // the arena alloc() carves from (in `owned`)
  size_t arena_used = 0;     // bytes of it handed out

  ~Model();
};

struct LoadOptions {
  std::string tokenizer_path;  // llama2.c: tokenizer.bin (default: tokenizer.bin / tok<vocab>.bin beside the model)
  // GGUF, llama2.c, safetensors: false (default) copies the matrices a decode step streams (attention, FFN, output; the
  // embedding table only when tied) from the memory-mapped file into huge-page buffers at load
  // (Model::own_decode_matrices): the file's mapping sits on 4 KiB pages, and llama-110m q8_0
  // decoded ~25 % slower from it. true keeps them as views into the mapping (faster load, page
  // cache shared between processes; llama.cpp's default).
  bool mmap_weights = false;
};

// Detects the format: a directory or *.json / *.safetensors -> Hugging Face; GGUF
// magic -> GGUF; else llama2.c. Throws Error naming the file and the problem.
std::unique_ptr<Model> load_model(const std::string& path, const LoadOptions& opts = {});
std::unique_ptr<Model> load_gguf(const std::string& path, const LoadOptions& opts);
std::unique_ptr<Model> load_llama2c(const std::string& path, const LoadOptions& opts);
std::unique_ptr<Model> load_hf(const std::string& path, const LoadOptions& opts);

// Checks that a weight tensor has the (rows, cols) the config implies.
void expect_shape(const std::string& source, const Tensor& t, int64_t rows, int64_t cols);

}  // namespace harmonia
