#pragma once
// Which K/V feature dims FourierAttention compresses, per layer (arXiv
// 2506.11886 §3.4; spec shared/specs/fourierattention.md §2.2, §7).
//
// A feature is addressed by its global index g = h*head_dim + d in the
// flattened [tokens, n_kv_heads*head_dim] K or V of a layer (spec §1). Files
// list K indices in Hugging Face "rotate_half" order (RoPE pairs d, d+head_dim/2),
// as the authors' files do; for a model whose keys use adjacent-pair RoPE
// (GGUF llama, llama2.c) the K indices are permuted on load (RopeLayout).
//
// File formats read (detected from the content; errors name file, layer and problem):
//  - authors' splithead:  {"Layer_i": {"kc_list", "kn_list", "vc_list", "vn_list",
//                          "kc_h_list", "kn_h_list", "vc_h_list", "vn_h_list"}}
//    (sorted lists; *_h_list = inclusive per-head prefix counts, spec §7.2)
//  - authors' ranking:    {"Layer_i": {"self_attn.k_proj": [...], "self_attn.v_proj": [...]}}
//    (compressed dims, most compressible first)
//  - ours:                {"format": "harmonia-fourier-dims-v1", "n_layers": L, "kv_dim": D,
//                          "head_dim": d, "rope_layout": "half"|"interleaved" (optional, default half),
//                          "layers": [{"k_compressed": [...], "v_compressed": [...]}, ...]}
#include <string>
#include <vector>

#include <nlohmann/json_fwd.hpp>

#include "kv/policy.h"

namespace harmonia::kv {


struct LayerDims {
  std::vector<int> k_compressed, v_compressed;  // sorted global indices in [0, kv_dim), engine layout
  // The file's ranking (most compressible first) when it has one (authors' ranking
  // format), in the file's own (rotate_half) order; empty otherwise.
  std::vector<int> k_rank, v_rank;
};

struct FourierDims {
  int n_layers = 0;
  int kv_dim = 0;  // n_kv_heads * head_dim
  std::vector<LayerDims> layers;  // [n_layers]
  std::string source;             // file path, "built-in default" or "none"

  size_t k_compressed_total() const;
  size_t v_compressed_total() const;
  // (|Dkc| + |Dvc|) summed over layers / (2 * kv_dim * n_layers).
  double compressed_fraction() const;
};

// Within-head offsets d in [0, head_dim) of one KV head: compressed (c) and
// exact (n) dims of K and V, each sorted; kc+kn and vc+vn partition [0, head_dim).
struct HeadDims {
  std::vector<int> kc, kn, vc, vn;
};
// [n_kv_heads] per-head split of one layer.
std::vector<HeadDims> split_heads(const LayerDims& layer, int n_kv_heads, int head_dim);

// Reads a dims file in any of the three formats, validated against the model
// shape (layer count, kv_dim, index range, duplicates, partitions, per-head
// counts). `layout`: the keys' RoPE layout (K indices are permuted from
// rotate_half when Interleaved). Throws Error(Io) if unreadable,
// Error(InvalidInput) "fourier dims FILE: Layer_i: problem" otherwise.
FourierDims load_fourier_dims(const std::string& path, const Shape& shape, RopeLayout layout);
FourierDims parse_fourier_dims(const nlohmann::json& j, const std::string& source, const Shape& shape,
                               RopeLayout layout);

// Built-in selection when no dims file is given (no calibration data needed).
// Per-layer compressed fractions follow the authors' "asymmetric inverted
// pyramid" (spec §7.1): the first ceil(L/8) layers K 0.90 / V 0.95, the last
// ceil(L/4) layers K 0.50 / V 0.70, the rest 0.80 / 0.80 (first group wins on
// overlap); count = floor(p * kv_dim) as the authors round. Which dims: the
// exact (uncompressed) dims of a layer are spread over its heads as evenly as
// possible (head h gets one more while h < remainder), and within a head
//  - K keeps exact the lowest-RoPE-frequency pairs (both members of a pair
//    together). Post-RoPE keys rotate at theta^(-2i/head_dim) rad/token; the
//    truncated basis only spans 2*pi*(N-1)/T rad/token, so fast pairs reduce to
//    a smoothed mean (spec §10.5), which perturbs attention little (paper §3.1
//    Fig. 2), while slow pairs carry the long-range content and are what the
//    authors' search keeps (spec §7.3, Fig. 7).
//  - V keeps exact evenly spaced offsets floor((k + 1/2) * head_dim / e), k < e.
// `harmonia calibrate` replaces this with measured dims files.
FourierDims default_fourier_dims(const Shape& shape, RopeLayout layout);

// No compressed dims anywhere (option dims=none): the cache stays exact.
FourierDims no_compressed_dims(const Shape& shape);

// The authors' splithead JSON for `dims` (engine layout `layout`; K indices are
// written in rotate_half order), for `harmonia calibrate`. write_*: throws Error(Io).
nlohmann::json splithead_json(const FourierDims& dims, int n_kv_heads, int head_dim, RopeLayout layout);
void write_splithead_dims(const std::string& path, const FourierDims& dims, int n_kv_heads, int head_dim,
                          RopeLayout layout);
// Our own schema (see top of file), K indices in rotate_half order.
nlohmann::json harmonia_dims_json(const FourierDims& dims, int head_dim, RopeLayout layout);

// Within-head offset d in rotate_half order -> the same feature in `layout`, and back.
int rope_permute(int d, int head_dim, RopeLayout from, RopeLayout to);

// Spec §7.3 / paper Fig. 7: reorder each head's compressed within-head offsets
// into RoPE-pair order [0, h/2, 1, h/2+1, ...] (rotate_half layout), histogram
// into `bins` bins of head_dim/bins positions, and average over the heads with
// at least one compressed dim. compressed: global indices (rotate_half order).
// heads_counted (optional): how many heads were averaged. Returns [bins].
std::vector<double> rope_pair_histogram(const std::vector<int>& compressed, int n_kv_heads, int head_dim,
                                        int bins = 8, int* heads_counted = nullptr);

}  // namespace harmonia::kv
