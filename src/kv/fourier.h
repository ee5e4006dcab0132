#pragma once
// `fourier`: FourierAttention (arXiv 2506.11886; spec shared/specs/fourierattention.md)
// as a KV-cache policy.
//
// Per layer the cache keeps [sinks | middle | local]: the first `sink` tokens
// and the last `window` tokens exact; in the middle, the exact dims of every
// token, and for each compressed dim M = 2N real Fourier coefficients of
// period T (spec §2) plus a per-dim affine correction (§3.5). Prefill attention
// is exact (the prompt is stored exactly until it is complete, so the first
// generated token equals `full`'s, oracle O12); compression happens at the
// commit() that completes the prompt, or later (see "short prompts").
//
// Options (kv::Options key=value; parse() documents the accepted ranges):
//   sink=4           L_init, exact first tokens
//   window=1024      L_local, exact last tokens (includes the current token; >= 1)
//   coeffs=1024      M = 2N coefficient rows per compressed dim (even, >= 2)
//   max_new=-1       tokens planned after the prompt for T; -1 = plan()'s max_new
//                    (without plan(): context size - prompt)
//   dims=PATH        dims file (see kv/dims.h); "" = built-in default selection,
//                    "none" = no compressed dims (the cache stays exact = `full`)
//   rope=half|interleaved  the model's RoPE pair layout (dims files are rotate_half)
//   coeff_dtype=f32|bf16|f16   coefficient storage (spec §11.7). 16-bit keeps the
//                    DC row in f32 and drops the zero sin row: 2*M bytes per dim
//   stats_dtype=f32|f16|bf16   u_bar, i_bar, s storage (the reference uses f16)
//   attention=spectral|direct  spectral: §4.3 in the coefficient domain by FFT;
//                    direct: reconstruct every middle token (reference path)
//   period=smooth|exact|aligned   smooth rounds T up to an even 7-smooth integer
//                    (fast FFTs); exact uses T as planned; aligned rounds T up to a
//                    multiple of Q = fourier_aligned_quantum(N) (the GPU's four-step
//                    path, cuda::FourierPath::FourStep). compat=reference forces exact
//   compat=none|reference   reference reproduces the authors' code (spec §10)
//   rollback=16      evicted tokens remembered so truncate() can undo them
//
// Decisions (spec §11), default vs compat=reference:
//  - Eviction position: the true middle index l = L_mid (reference: l + 1, §10.1).
//  - Period: T = min(P + max_new, context) - sink - window, at least the middle
//    length, rounded as `period` says; used everywhere (reference: int(1/(1/T))
//    for the FFT and the decode update, T elsewhere, §10.2).
//  - Reconstruction: the proper inverse (1/T)[C_0 + 2 sum ...] (reference: the
//    (1/N) sum of §3.5). Identical after the affine match at compression (O4);
//    with frozen statistics ours stays a fixed affine map of the truncated
//    Fourier series at decode, where the reference's drifts by C_0/(2N) per token.
//  - Statistics u_bar, i_bar, s: computed at compression, frozen (as the Triton
//    reference); s = 1 when the reconstruction is constant.
//  - Short prompts: compress at the first commit after the prompt where the
//    middle exceeds M (at the end of the prompt, or at a later decode step,
//    compressing the accumulated exact middle with T from the plan). Reference:
//    compression is only considered at a commit that completes a prompt, so a
//    prompt with P <= sink + window + M is never compressed (§10.4). "Prompt"
//    follows kv::PromptClock (without plan(), every multi-token step is one).
//  - Past T: before a token would be written at middle index p >= T the period
//    is re-anchored: T' = max(p + 1, min(2T, context - sink - window)); each
//    compressed dim is reconstructed over [0, p) (affine-corrected), transformed
//    again with period T' and its statistics recomputed against that
//    reconstruction. Nothing ever wraps. (Reference: the basis wraps, §3.6.)
//  - Layers without compressed dims stay exact and use full's attention, so
//    dims=none gives `full` bit for bit.
//  - With period=smooth (default) T is rounded up to an even 7-smooth length
//    (at most a few % longer; NOTE: a deviation from the literal rule, because
//    FFTW runs prime/odd lengths 5-50x slower). period=exact keeps the rule.
//    NOTE: period=aligned is a deviation of the same kind (the spec needs only
//    T >= the final middle length): T a multiple of Q lets the GPU evaluate the
//    middle by length-Q FFTs per residue mod T / Q (at most Q - 1 extra positions).
//
// Attention (spec §4.3). Spectral: per (KV head, query) job and GQA group, the
// query is projected into coefficient space (O(M |Dc(h)|)), the middle's
// compressed-dim scores for all l come from one inverse real FFT of length T,
// and the compressed V dims of the output from one forward real FFT of the
// softmax weights: O(M |Dc| + T log T) per query head instead of
// O(L_mid M |Dc|), and no cos/sin tables (FFTW's twiddles; the decode update
// computes N cos/sin once per step for all layers). The middle's exact dims are
// stored one time series per dim so both products stream with unit stride.
// Direct: reconstructs every middle token in double and calls full's
// causal_attention on [sinks | middle | local]: the slow reference the
// spectral path is tested against. Memory is accounted by fourier_memory().
#include <cstdint>
#include <deque>
#include <memory>
#include <string>
#include <vector>

#include "kv/dims.h"
#include "kv/full.h"
#include "kv/policy.h"

namespace harmonia::kv {

enum class CoeffDtype { F32, BF16, F16 };
int dtype_bytes(CoeffDtype t);
const char* dtype_name(CoeffDtype t);

enum class FourierAttentionMode { Spectral, Direct };

struct FourierOptions {
  int64_t sink = 4;
  int64_t window = 1024;
  int64_t coeffs = 1024;  // M
  int64_t max_new = -1;
  std::string dims;  // "" built-in default, "none", or a path
  RopeLayout rope = RopeLayout::Half;
  CoeffDtype coeff_dtype = CoeffDtype::F32;
  CoeffDtype stats_dtype = CoeffDtype::F32;
  FourierAttentionMode attention = FourierAttentionMode::Spectral;
  bool smooth_period = true;
  bool aligned_period = false;  // period=aligned (wins over smooth_period)
  bool compat_reference = false;
  int64_t rollback = 16;

  int n_freq() const { return static_cast<int>(coeffs / 2); }  // N
  // Reads `opts` with OptionReader; throws Error(InvalidInput) naming the option.
  static FourierOptions parse(const Options& opts);
};

// period=aligned: Q = the smallest power of two >= max(N, 32) for N frequencies, and the
// smallest multiple of Q >= T (T >= 1).
int64_t fourier_aligned_quantum(int n_freq);
int64_t aligned_period(int64_t T, int n_freq);

// Bytes of a FourierAttention cache by segment (spec §8), over all layers.
struct FourierMemory {
  size_t sinks = 0, local = 0, middle_exact = 0, coefficients = 0, statistics = 0, indices = 0;
  size_t total() const { return sinks + local + middle_exact + coefficients + statistics + indices; }
  ByteLedger ledger() const;
};

struct FourierMemoryParams {
  int64_t sink = 4, window = 1024, coeffs = 1024;
  int exact_bytes = 4;  // per exact K/V element (f32 in our CPU path, 2 for §8's fp16)
  int coeff_bytes = 4;  // per coefficient (4 = f32; 2 = 16-bit: M*2 bytes per dim, see coeff_dtype)
  int stats_bytes = 4;  // per statistic (3 per compressed dim: u_bar, i_bar, s)
  int index_bytes = 4;  // per index-list entry (2 * kv_dim per layer: K and V compressed + exact)
};

// Spec §8, pure: bytes after L tokens, `compressed` saying whether the cache has
// compressed (otherwise everything is exact: sinks = min(L, sink) tokens, local
// the rest). Compressed layers: sinks + local exact, middle (L - sink - window)
// tokens x (|Dkn| + |Dvn|), n_c * M coefficients, 3 n_c statistics. Layers without
// compressed dims count their middle as full rows. Spec §8's table is total() -
// indices with exact 2, coeff 4, stats 2 (oracle O11).
FourierMemory fourier_memory(const Shape& shape, const FourierDims& dims, const FourierMemoryParams& p, int64_t L,
                             bool compressed);
// The same per layer: [n_layers], summing to fourier_memory().
std::vector<FourierMemory> fourier_memory_layers(const Shape& shape, const FourierDims& dims,
                                                 const FourierMemoryParams& p, int64_t L, bool compressed);

class FourierCache : public Policy {
 public:
  // Loads the dims named by opts.dims (or the built-in selection).
  FourierCache(const Shape& shape, const FourierOptions& opts);
  FourierCache(const Shape& shape, const FourierOptions& opts, FourierDims dims);
  ~FourierCache() override;

  std::string name() const override { return "fourier"; }
  const Shape& shape() const override { return s_; }
  void plan(int64_t prompt_tokens, int64_t max_new_tokens) override;
  void append(int layer, int64_t n, const float* k, const float* v) override;
  void attend(int layer, int64_t n, const float* q, float* out) override;
  void commit(int64_t n) override;
  int64_t n_tokens() const override { return n_tokens_; }
  int64_t n_stored() const override;
  void truncate(int64_t n) override;
  // False once compressed: every decode commit moves the oldest local tokens into
  // the spectral middle, which the later queries of a multi-token step would see
  // exact.
  bool exact_multi_token_decode() const override { return !compressed_; }
  void clear() override;
  ByteLedger bytes() const override;
  ByteLedger bytes_at(int64_t n_tokens) const override;
  std::vector<ByteLedger> layer_bytes_at(int64_t n_tokens) const override;

  // ---- Introspection (tests, `harmonia info`) ----
  struct Segments {
    bool compressed = false;   // this layer holds a compressed middle
    int64_t sinks = 0, middle = 0, local = 0;  // tokens (uncompressed: all in local after the sinks)
    int64_t coeff_rows = 0;    // M when compressed
    int64_t period = 0;        // T (attention / statistics)
    int64_t fft_period = 0;    // period of the FFT and updates (T, or int(1/(1/T)) under compat)
  };
  Segments segments(int layer) const;
  bool compressed() const { return compressed_; }
  const FourierOptions& options() const { return o_; }
  const FourierDims& dims() const { return dims_; }
  // Bytes actually held by the containers, by the same segments as bytes()
  // (logical sizes, allocator slack excluded): tests check bytes() against it.
  ByteLedger held_bytes() const;
  // Largest middle index ever given to the basis (-1 if none): < period() unless compat wraps.
  int64_t max_position() const;
  // Coefficients of (layer, kv head) as f32, [M][|Dc(h)|] (rows 0..N-1 cos, N..2N-1 sin).
  std::vector<float> coefficients(int layer, int kv_head, bool values) const;
  // Reconstructed compressed dims (affine-corrected, direct double sums) of
  // middle token l for (layer, kv head): [|Dc(h)|].
  std::vector<float> reconstruct(int layer, int kv_head, bool values, int64_t l) const;

  struct Impl;

 private:
  Shape s_;
  FourierOptions o_;
  FourierDims dims_;
  std::unique_ptr<Impl> im_;
  int64_t n_tokens_ = 0;
  PromptClock clock_;
  int64_t plan_max_new_ = -1;   // plan()'s max_new (-1 without plan())
  int64_t prompt_end_ = -1;     // logical length after the last completed prompt
  bool compressed_ = false;
  int64_t compressed_at_ = 0;   // n_tokens_ when compression happened

  int64_t planned_period() const;
  void compress_all();
  FourierMemoryParams memory_params() const;
};

// `fourier` for make_policy: parses opts (FourierOptions::parse) and loads the dims.
std::unique_ptr<Policy> make_fourier(const Shape& shape, const Options& opts);

}  // namespace harmonia::kv
