#include "kv/fourier.h"

#include <omp.h>

#include <algorithm>
#include <cmath>
#include <cstring>

#include "common/error.h"
#include "common/fp16.h"
#include "kv/attn_kernels.h"
#include "kv/full.h"
#include "kv/options.h"
#include "kv/spectral.h"

namespace harmonia::kv {

namespace sp = spectral;

int dtype_bytes(CoeffDtype t) { return t == CoeffDtype::F32 ? 4 : 2; }

const char* dtype_name(CoeffDtype t) {
  switch (t) {
    case CoeffDtype::F32:
      return "f32";
    case CoeffDtype::BF16:
      return "bf16";
    case CoeffDtype::F16:
      return "f16";
  }
  return "?";
}

namespace {

CoeffDtype parse_dtype(const std::string& s) {
  return s == "f16" ? CoeffDtype::F16 : s == "bf16" ? CoeffDtype::BF16 : CoeffDtype::F32;
}

uint16_t enc16(CoeffDtype t, float v) { return t == CoeffDtype::F16 ? f32_to_f16(v) : f32_to_bf16(v); }
float dec16(CoeffDtype t, uint16_t h) { return t == CoeffDtype::F16 ? f16_to_f32(h) : bf16_to_f32(h); }

// A vector stored as f32 or as 16-bit values (statistics).
class Packed {
 public:
  void init(CoeffDtype t, size_t n) {
    t_ = t;
    f_.assign(t == CoeffDtype::F32 ? n : 0, 0.0f);
    h_.assign(t == CoeffDtype::F32 ? 0 : n, 0);
  }
  float get(size_t i) const { return t_ == CoeffDtype::F32 ? f_[i] : dec16(t_, h_[i]); }
  void set(size_t i, float v) {
    if (t_ == CoeffDtype::F32)
      f_[i] = v;
    else
      h_[i] = enc16(t_, v);
  }
  size_t bytes() const { return f_.size() * 4 + h_.size() * 2; }

 private:
  CoeffDtype t_ = CoeffDtype::F32;
  std::vector<float> f_;
  std::vector<uint16_t> h_;
};

// Spectral coefficients of one KV head's compressed dims: [M = 2N rows][cols],
// row n < N the cos coefficient C_n, row N + n the sin coefficient S_n (the
// reference's blocked layout, spec §2.3). f32 keeps all M rows (the zero S_0
// row too, as the reference does). 16-bit keeps C_0 in f32 (it is the running
// sum of the signal and would swallow later rank-1 updates in 16 bits), drops
// the zero S_0 row and stores the other M - 2 rows scaled by 1/T (no f16
// overflow): 2*M bytes per dim, as spec §8 counts 16-bit coefficients.
class CoeffMatrix {
 public:
  void init(CoeffDtype t, int N, int cols, int64_t T) {
    t_ = t;
    N_ = N;
    cols_ = cols;
    kappa_ = t == CoeffDtype::F32 ? 1.0f : static_cast<float>(1.0 / static_cast<double>(T));
    if (t == CoeffDtype::F32) {
      f_.assign(static_cast<size_t>(2 * N) * cols, 0.0f);
      h_.clear();
      dc_.clear();
    } else {
      f_.clear();
      h_.assign(static_cast<size_t>(2 * N - 2) * cols, 0);
      dc_.assign(cols, 0.0f);
    }
  }
  int cols() const { return cols_; }
  bool is_f32() const { return t_ == CoeffDtype::F32; }
  const float* f32_row(int r) const { return f_.data() + static_cast<size_t>(r) * cols_; }
  // Row r as true values into out[cols].
  void row(int r, float* out) const {
    if (is_f32()) {
      std::copy_n(f32_row(r), cols_, out);
    } else if (r == 0) {
      std::copy_n(dc_.data(), cols_, out);
    } else if (r == N_) {
      std::fill(out, out + cols_, 0.0f);
    } else {
      const uint16_t* h = h_.data() + static_cast<size_t>(slot(r)) * cols_;
      const float inv = 1.0f / kappa_;
      for (int j = 0; j < cols_; ++j) out[j] = dec16(t_, h[j]) * inv;
    }
  }
  // Column j: C_n -> c[n], S_n -> s[n], n < N.
  void column(int j, float* c, float* s) const {
    for (int n = 0; n < N_; ++n) {
      c[n] = get(n, j);
      s[n] = get(N_ + n, j);
    }
  }
  void set_column(int j, const float* c, const float* s) {
    for (int n = 0; n < N_; ++n) {
      set(n, j, c[n]);
      set(N_ + n, j, s[n]);
    }
  }
  // Spec §3.4: C_n += sign*x_j cos(w_n p), S_n += sign*x_j sin(w_n p), given cosv[N], sinv[N].
  void add_rank1(const float* cosv, const float* sinv, const float* x, float sign) {
    const int cols = cols_;
    if (is_f32()) {
      for (int n = 0; n < N_; ++n) {
        const float c = sign * cosv[n], s = sign * sinv[n];
        float* rc = f_.data() + static_cast<size_t>(n) * cols;
        float* rs = f_.data() + static_cast<size_t>(N_ + n) * cols;
#pragma omp simd
        for (int j = 0; j < cols; ++j) {
          rc[j] += x[j] * c;
          rs[j] += x[j] * s;
        }
      }
      return;
    }
    for (int j = 0; j < cols; ++j) dc_[j] += sign * x[j];  // cos(0) = 1
    for (int n = 1; n < N_; ++n) {
      const float c = sign * cosv[n] * kappa_, s = sign * sinv[n] * kappa_;
      uint16_t* rc = h_.data() + static_cast<size_t>(slot(n)) * cols;
      uint16_t* rs = h_.data() + static_cast<size_t>(slot(N_ + n)) * cols;
      for (int j = 0; j < cols; ++j) {
        rc[j] = enc16(t_, dec16(t_, rc[j]) + x[j] * c);
        rs[j] = enc16(t_, dec16(t_, rs[j]) + x[j] * s);
      }
    }
  }
  size_t bytes() const { return f_.size() * 4 + h_.size() * 2 + dc_.size() * 4; }

 private:
  CoeffDtype t_ = CoeffDtype::F32;
  int N_ = 0, cols_ = 0;
  float kappa_ = 1.0f;
  std::vector<float> f_;     // [2N][cols]
  std::vector<uint16_t> h_;  // [2N-2][cols]: rows 1..N-1, N+1..2N-1
  std::vector<float> dc_;    // [cols]
  int slot(int r) const { return r < N_ ? r - 1 : r - 2; }
  float get(int r, int j) const {
    if (is_f32()) return f_[static_cast<size_t>(r) * cols_ + j];
    if (r == 0) return dc_[j];
    if (r == N_) return 0.0f;
    return dec16(t_, h_[static_cast<size_t>(slot(r)) * cols_ + j]) / kappa_;
  }
  void set(int r, int j, float v) {
    if (is_f32()) {
      f_[static_cast<size_t>(r) * cols_ + j] = v;
    } else if (r == 0) {
      dc_[j] = v;
    } else if (r != N_) {
      h_[static_cast<size_t>(slot(r)) * cols_ + j] = enc16(t_, v * kappa_);
    }
  }
};

// u_bar, i_bar, s of a head's compressed dims of K or V (spec §3.5).
struct Stats {
  Packed u, i, s;
  void init(CoeffDtype t, size_t n) {
    u.init(t, n);
    i.init(t, n);
    s.init(t, n);
  }
  void set(size_t j, sp::Affine a) {
    u.set(j, a.u_bar);
    i.set(j, a.i_bar);
    s.set(j, a.scale);
  }
  // K~ = s*r + off with off = u_bar - s*i_bar.
  void scale_offset(size_t j, float& scale, float& off) const {
    scale = s.get(j);
    off = u.get(j) - scale * i.get(j);
  }
  size_t bytes() const { return u.bytes() + i.bytes() + s.bytes(); }
};

// The middle's exact dims of one KV head, one contiguous time series per dim
// ([cols][cap], `len` tokens used) so attention streams each dim over the middle
// with unit stride. Capacity grows geometrically (re-laid out on growth).
class ColumnStore {
 public:
  void init(int cols, int64_t len, int64_t cap) {
    cols_ = cols;
    len_ = len;
    cap_ = std::max<int64_t>(cap, len);
    data_.assign(static_cast<size_t>(cols_) * cap_, 0.0f);
  }
  int cols() const { return cols_; }
  int64_t len() const { return len_; }
  float* col(int j) { return data_.data() + static_cast<size_t>(j) * cap_; }
  const float* col(int j) const { return data_.data() + static_cast<size_t>(j) * cap_; }
  // Appends one token: value of column j = row[idx[j]].
  void push(const float* row, const std::vector<int>& idx) {
    if (len_ == cap_) grow(std::max<int64_t>(2 * cap_, 64));
    for (int j = 0; j < cols_; ++j) data_[static_cast<size_t>(j) * cap_ + len_] = row[idx[j]];
    ++len_;
  }
  void pop() { --len_; }
  size_t bytes() const { return static_cast<size_t>(cols_) * len_ * sizeof(float); }

 private:
  int cols_ = 0;
  int64_t len_ = 0, cap_ = 0;
  std::vector<float> data_;
  void grow(int64_t cap) {
    std::vector<float> nd(static_cast<size_t>(cols_) * cap);
    for (int j = 0; j < cols_; ++j) std::copy_n(col(j), len_, nd.data() + static_cast<size_t>(j) * cap);
    data_.swap(nd);
    cap_ = cap;
  }
};

struct HeadState {
  HeadDims d;                // within-head offsets kc, kn, vc, vn
  ColumnStore mid_k, mid_v;  // [|kn|][L_mid], [|vn|][L_mid] exact dims of middle tokens
  CoeffMatrix ck, cv;        // [M][|kc|], [M][|vc|]
  Stats sk, sv;              // [|kc|], [|vc|]
};

struct Evicted {
  int64_t l = 0;            // middle index it was written to
  std::vector<float> k, v;  // [n_kv_heads * head_dim]
};

}  // namespace

struct FourierCache::Impl {
  struct Layer {
    bool has_compressed = false;  // the dims compress something in this layer
    int64_t len = 0;              // tokens appended (this step's included)
    // Exact mode (before compression; always for layers without compressed dims):
    std::vector<float> ek, ev;  // [n_kv_heads][ecap][head_dim], as FullCache lays them out
    int64_t ecap = 0;
    // Compressed mode:
    bool compressed = false;
    int64_t T = 0, T_fft = 0;
    std::vector<float> sink_k, sink_v;  // [n_kv_heads][sink][head_dim]
    std::vector<float> loc_k, loc_v;    // [n_kv_heads][lcap][head_dim]; live rows [lstart, lstart + lcount)
    int64_t lcap = 0, lstart = 0, lcount = 0;
    int64_t mid_len = 0;
    std::vector<HeadState> heads;  // [n_kv_heads]
    std::deque<Evicted> undo;      // most recent evictions, oldest first
  };
  std::vector<Layer> layers;
  int64_t max_position = -1;
  // cos/sin(w_n p) of the last rank-1 update (every layer evicts the same p in a step).
  int64_t cs_p = -1, cs_T = 0;
  std::vector<float> cs_cos, cs_sin;  // [N]
};

// ---- Options and memory ------------------------------------------------------------

int64_t fourier_aligned_quantum(int n_freq) {
  int64_t q = 32;
  while (q < n_freq) q *= 2;
  return q;
}

int64_t aligned_period(int64_t T, int n_freq) {
  const int64_t q = fourier_aligned_quantum(n_freq);
  return (std::max<int64_t>(T, 1) + q - 1) / q * q;
}

FourierOptions FourierOptions::parse(const Options& opts) {
  OptionReader r("fourier", opts);
  FourierOptions o;
  o.sink = r.get_int("sink", o.sink, 0, int64_t{1} << 30);
  o.window = r.get_int("window", o.window, 1, int64_t{1} << 30);
  o.coeffs = r.get_int("coeffs", o.coeffs, 2, int64_t{1} << 20);
  if (o.coeffs % 2)
    fail(ErrorKind::InvalidInput, "kv policy 'fourier': option coeffs={} must be even (M = 2N cos and sin rows)",
         o.coeffs);
  o.max_new = r.get_int("max_new", o.max_new, -1, int64_t{1} << 40);
  o.dims = r.get_string("dims", "");
  o.rope = r.get_choice("rope", "half", {"half", "interleaved"}) == "half" ? RopeLayout::Half : RopeLayout::Interleaved;
  o.coeff_dtype = parse_dtype(r.get_choice("coeff_dtype", "f32", {"f32", "bf16", "f16"}));
  o.stats_dtype = parse_dtype(r.get_choice("stats_dtype", "f32", {"f32", "bf16", "f16"}));
  o.attention = r.get_choice("attention", "spectral", {"spectral", "direct"}) == "spectral"
                    ? FourierAttentionMode::Spectral
                    : FourierAttentionMode::Direct;
  o.compat_reference = r.get_choice("compat", "none", {"none", "reference"}) == "reference";
  const std::string period =
      r.get_choice("period", o.compat_reference ? "exact" : "smooth", {"smooth", "exact", "aligned"});
  if (o.compat_reference && period != "exact")
    fail(ErrorKind::InvalidInput,
         "kv policy 'fourier': option period={} contradicts compat=reference (the reference uses T as planned)",
         period);
  o.smooth_period = period == "smooth";
  o.aligned_period = period == "aligned";
  o.rollback = r.get_int("rollback", o.rollback, 0, int64_t{1} << 20);
  r.finish();
  return o;
}

ByteLedger FourierMemory::ledger() const {
  return {
      {"sinks", sinks},           {"local", local},    {"middle_exact", middle_exact}, {"coefficients", coefficients},
      {"statistics", statistics}, {"indices", indices}};
}

std::vector<FourierMemory> fourier_memory_layers(const Shape& s, const FourierDims& dims, const FourierMemoryParams& p,
                                                 int64_t L, bool compressed) {
  std::vector<FourierMemory> out(s.n_layers);
  const size_t kvd = static_cast<size_t>(s.n_kv_heads) * s.head_dim;
  const size_t row = 2 * kvd * p.exact_bytes;  // one token's K and V, all dims
  const size_t n_sink = static_cast<size_t>(std::min(L, p.sink));
  for (int l = 0; l < s.n_layers; ++l) {
    FourierMemory& m = out[l];
    m.indices = 2 * kvd * p.index_bytes;
    const size_t nc = dims.layers[l].k_compressed.size() + dims.layers[l].v_compressed.size();
    if (!compressed) {
      m.sinks = n_sink * row;
      m.local = static_cast<size_t>(L - static_cast<int64_t>(n_sink)) * row;
      continue;
    }
    const size_t mid = static_cast<size_t>(L - p.sink - p.window);
    m.sinks = static_cast<size_t>(p.sink) * row;
    m.local = static_cast<size_t>(p.window) * row;
    m.middle_exact = mid * (2 * kvd - nc) * p.exact_bytes;
    m.coefficients = nc * static_cast<size_t>(p.coeffs) * p.coeff_bytes;
    m.statistics = 3 * nc * p.stats_bytes;
  }
  return out;
}

FourierMemory fourier_memory(const Shape& s, const FourierDims& dims, const FourierMemoryParams& p, int64_t L,
                             bool compressed) {
  FourierMemory t;
  for (const FourierMemory& m : fourier_memory_layers(s, dims, p, L, compressed)) {
    t.sinks += m.sinks;
    t.local += m.local;
    t.middle_exact += m.middle_exact;
    t.coefficients += m.coefficients;
    t.statistics += m.statistics;
    t.indices += m.indices;
  }
  return t;
}

// ---- Construction ------------------------------------------------------------------

FourierCache::FourierCache(const Shape& shape, const FourierOptions& opts)
    : FourierCache(shape, opts,
                   opts.dims.empty()     ? default_fourier_dims(shape, opts.rope)
                   : opts.dims == "none" ? no_compressed_dims(shape)
                                         : load_fourier_dims(opts.dims, shape, opts.rope)) {}

FourierCache::FourierCache(const Shape& s, const FourierOptions& opts, FourierDims dims)
    : s_(s), o_(opts), dims_(std::move(dims)), im_(std::make_unique<Impl>()) {
  check_shape("fourier", s);
  if (dims_.n_layers != s.n_layers || dims_.kv_dim != s.n_kv_heads * s.head_dim ||
      static_cast<int>(dims_.layers.size()) != s.n_layers)
    fail(ErrorKind::InvalidInput, "fourier dims {}: for {} layers x kv_dim {}, the model has {} x {}", dims_.source,
         dims_.n_layers, dims_.kv_dim, s.n_layers, s.n_kv_heads * s.head_dim);
  if (o_.coeffs < 2 || o_.coeffs % 2 || o_.window < 1 || o_.sink < 0)
    fail(ErrorKind::InvalidInput, "kv policy 'fourier': invalid sink {}, window {} or coeffs {}", o_.sink, o_.window,
         o_.coeffs);
  clear();
}

FourierCache::~FourierCache() = default;

std::unique_ptr<Policy> make_fourier(const Shape& shape, const Options& opts) {
  // The keys' RoPE layout comes from the model unless the user says otherwise.
  Options o = opts;
  if (!o.count("rope")) o["rope"] = shape.rope_layout == RopeLayout::Interleaved ? "interleaved" : "half";
  return std::make_unique<FourierCache>(shape, FourierOptions::parse(o));
}

void FourierCache::clear() {
  im_->layers.assign(s_.n_layers, Impl::Layer{});
  for (int l = 0; l < s_.n_layers; ++l) {
    auto& L = im_->layers[l];
    L.has_compressed = !dims_.layers[l].k_compressed.empty() || !dims_.layers[l].v_compressed.empty();
    L.heads.resize(s_.n_kv_heads);
    auto split = split_heads(dims_.layers[l], s_.n_kv_heads, s_.head_dim);
    for (int h = 0; h < s_.n_kv_heads; ++h) L.heads[h].d = std::move(split[h]);
  }
  im_->max_position = -1;
  im_->cs_p = -1;
  n_tokens_ = 0;
  clock_.reset();
  plan_max_new_ = prompt_end_ = -1;
  compressed_ = false;
  compressed_at_ = 0;
}

int64_t FourierCache::max_position() const { return im_->max_position; }

void FourierCache::plan(int64_t prompt_tokens, int64_t max_new_tokens) {
  if (prompt_tokens < 0 || max_new_tokens < 0)
    fail(ErrorKind::InvalidInput, "kv plan: prompt {} and max_new {} must be >= 0", prompt_tokens, max_new_tokens);
  clock_.plan(n_tokens_, prompt_tokens);
  plan_max_new_ = max_new_tokens;
}

// ---- Helpers -------------------------------------------------------------------------

namespace {

using Layer = FourierCache::Impl::Layer;

// Below this much work (multiply-adds, roughly) a parallel region costs more
// than it saves (tiny models, tests), especially on an oversubscribed machine.
constexpr int64_t kParallelMin = int64_t{1} << 16;

// FFT scratch of the calling thread, kept across calls (OpenMP's pool threads persist).
sp::FftBuffer& fft_scratch() {
  static thread_local sp::FftBuffer buf;
  return buf;
}

sp::InverseWeights weights(const FourierOptions& o, int64_t T) {
  return o.compat_reference ? sp::reference_inverse(o.n_freq()) : sp::proper_inverse(T);
}

// Per-head view of a [n_kv][cap][hd] buffer.
inline float* row_at(std::vector<float>& b, int64_t cap, int hd, int h, int64_t t) {
  return b.data() + (static_cast<size_t>(h) * cap + t) * hd;
}
inline const float* row_at(const std::vector<float>& b, int64_t cap, int hd, int h, int64_t t) {
  return b.data() + (static_cast<size_t>(h) * cap + t) * hd;
}

void exact_reserve(Layer& L, const Shape& s, int64_t tokens) {
  if (tokens <= L.ecap) return;
  int64_t nc = std::max<int64_t>({tokens, L.ecap * 2, 256});
  nc = std::min(nc, s.max_tokens);
  const size_t hd = s.head_dim;
  for (auto* buf : {&L.ek, &L.ev}) {
    std::vector<float> nb(static_cast<size_t>(s.n_kv_heads) * nc * hd);
    for (int h = 0; h < s.n_kv_heads && L.len > 0; ++h)
      std::copy_n(buf->data() + h * L.ecap * hd, L.len * hd, nb.data() + h * nc * hd);
    buf->swap(nb);
  }
  L.ecap = nc;
}

// One compressed dim (of K or V) of one head: a unit of parallel transform work.
struct Fill {
  HeadState* hs;
  bool values;
  int j;  // index into kc / vc
};

// Every compressed dim of a layer's heads as work items.
std::vector<Fill> fill_items(std::vector<HeadState>& heads) {
  std::vector<Fill> items;
  for (auto& hs : heads) {
    for (int j = 0; j < static_cast<int>(hs.d.kc.size()); ++j) items.push_back({&hs, false, j});
    for (int j = 0; j < static_cast<int>(hs.d.vc.size()); ++j) items.push_back({&hs, true, j});
  }
  return items;
}

// Spec §3.3 + §3.5 for one dim: coefficients of x(0..K-1) (period T_fft) and the
// affine statistics against the reconstruction with period T.
void transform_dim(const float* x, int64_t K, int64_t stride, int64_t T, int64_t T_fft, int N, sp::InverseWeights w,
                   CoeffMatrix& cm, Stats& st, int j, sp::FftBuffer& buf, std::vector<float>& c, std::vector<float>& s,
                   std::vector<float>& r) {
  c.resize(N);
  s.resize(N);
  r.resize(K);
  sp::coefficients_fft(x, K, stride, T_fft, N, c.data(), s.data(), 1, buf);
  cm.set_column(j, c.data(), s.data());
  cm.column(j, c.data(), s.data());  // as stored (16-bit rounding included)
  sp::reconstruct_fft(c.data(), s.data(), 1, N, T, w, K, r.data(), buf);
  st.set(j, sp::affine_match(sp::mean_dev(x, K, stride), sp::mean_dev(r.data(), K)));
}

void init_head_storage(HeadState& hs, const FourierOptions& o, int64_t T) {
  hs.ck.init(o.coeff_dtype, o.n_freq(), static_cast<int>(hs.d.kc.size()), T);
  hs.cv.init(o.coeff_dtype, o.n_freq(), static_cast<int>(hs.d.vc.size()), T);
  hs.sk.init(o.stats_dtype, hs.d.kc.size());
  hs.sv.init(o.stats_dtype, hs.d.vc.size());
}

// Exact layer of `len` tokens -> [sinks | compressed middle | local] (spec §5 prefill step 4).
void compress_layer(Layer& L, const Shape& s, const FourierOptions& o, int64_t T, int64_t T_fft) {
  const int hd = s.head_dim, H = s.n_kv_heads, N = o.n_freq();
  const int64_t len = L.len, K = len - o.sink - o.window;
  L.T = T;
  L.T_fft = T_fft;
  L.sink_k.resize(static_cast<size_t>(H) * o.sink * hd);
  L.sink_v.resize(L.sink_k.size());
  L.lcap = 2 * o.window;
  L.loc_k.assign(static_cast<size_t>(H) * L.lcap * hd, 0.0f);
  L.loc_v.assign(L.loc_k.size(), 0.0f);
  for (int h = 0; h < H; ++h) {
    std::copy_n(row_at(L.ek, L.ecap, hd, h, 0), o.sink * hd, row_at(L.sink_k, o.sink, hd, h, 0));
    std::copy_n(row_at(L.ev, L.ecap, hd, h, 0), o.sink * hd, row_at(L.sink_v, o.sink, hd, h, 0));
    std::copy_n(row_at(L.ek, L.ecap, hd, h, len - o.window), o.window * hd, row_at(L.loc_k, L.lcap, hd, h, 0));
    std::copy_n(row_at(L.ev, L.ecap, hd, h, len - o.window), o.window * hd, row_at(L.loc_v, L.lcap, hd, h, 0));
    HeadState& hs = L.heads[h];
    // Room for the planned middle (T tokens): pages are only touched as it grows.
    hs.mid_k.init(static_cast<int>(hs.d.kn.size()), K, T + 1);
    hs.mid_v.init(static_cast<int>(hs.d.vn.size()), K, T + 1);
    for (int64_t l = 0; l < K; ++l) {
      const float* kr = row_at(L.ek, L.ecap, hd, h, o.sink + l);
      const float* vr = row_at(L.ev, L.ecap, hd, h, o.sink + l);
      for (size_t j = 0; j < hs.d.kn.size(); ++j) hs.mid_k.col(static_cast<int>(j))[l] = kr[hs.d.kn[j]];
      for (size_t j = 0; j < hs.d.vn.size(); ++j) hs.mid_v.col(static_cast<int>(j))[l] = vr[hs.d.vn[j]];
    }
    init_head_storage(hs, o, T);
  }
  L.lstart = 0;
  L.lcount = o.window;
  L.mid_len = K;
  const auto items = fill_items(L.heads);
  const sp::InverseWeights w = weights(o, T);
  const int64_t n_items = static_cast<int64_t>(items.size());
#pragma omp parallel if (n_items * K > kParallelMin)
  {
    sp::FftBuffer& buf = fft_scratch();
    std::vector<float> c, sn, r;
#pragma omp for schedule(dynamic, 4)
    for (int64_t it = 0; it < n_items; ++it) {
      const Fill& f = items[it];
      const int h = static_cast<int>(f.hs - L.heads.data());
      const int d = f.values ? f.hs->d.vc[f.j] : f.hs->d.kc[f.j];
      const float* x = row_at(f.values ? L.ev : L.ek, L.ecap, hd, h, o.sink) + d;
      // NOTE: torch's fft(x, n=T_fft) drops samples past T_fft (compat with max_new = 0 only).
      transform_dim(x, std::min(K, T_fft), hd, T, T_fft, N, w, f.values ? f.hs->cv : f.hs->ck,
                    f.values ? f.hs->sv : f.hs->sk, f.j, buf, c, sn, r);
    }
  }
  std::vector<float>().swap(L.ek);
  std::vector<float>().swap(L.ev);
  L.ecap = 0;
  L.compressed = true;
}

// Past T (default mode): re-anchor the basis to a longer period from the
// current affine-corrected reconstruction over [0, p) (see fourier.h).
void reanchor_layer(Layer& L, const Shape& s, const FourierOptions& o, int64_t p) {
  const int N = o.n_freq();
  const int64_t cap = s.max_tokens - o.sink - o.window;
  int64_t T2 = std::max(p + 1, std::min(2 * L.T, std::max(cap, p + 1)));
  if (o.aligned_period)
    T2 = aligned_period(T2, N);
  else if (o.smooth_period)
    T2 = sp::smooth_period(T2);
  const sp::InverseWeights w_old = weights(o, L.T), w_new = weights(o, T2);
  // New storage per head, filled column by column from the old.
  std::vector<HeadState> fresh(L.heads.size());
  for (size_t h = 0; h < fresh.size(); ++h) {
    fresh[h].d = L.heads[h].d;
    init_head_storage(fresh[h], o, T2);
  }
  const auto items = fill_items(L.heads);
  const int64_t n_items = static_cast<int64_t>(items.size());
  const int64_t T_old = L.T;
#pragma omp parallel if (n_items * p > kParallelMin)
  {
    sp::FftBuffer& buf = fft_scratch();
    std::vector<float> c(N), sn(N), y, c2, s2, r;
#pragma omp for schedule(dynamic, 4)
    for (int64_t it = 0; it < n_items; ++it) {
      const Fill& f = items[it];
      const size_t h = static_cast<size_t>(f.hs - L.heads.data());
      const CoeffMatrix& cm = f.values ? f.hs->cv : f.hs->ck;
      const Stats& st = f.values ? f.hs->sv : f.hs->sk;
      cm.column(f.j, c.data(), sn.data());
      y.resize(p);
      sp::reconstruct_fft(c.data(), sn.data(), 1, N, T_old, w_old, p, y.data(), buf);
      float scale, off;
      st.scale_offset(f.j, scale, off);
      for (int64_t l = 0; l < p; ++l) y[l] = scale * y[l] + off;
      HeadState& nh = fresh[h];
      transform_dim(y.data(), p, 1, T2, T2, N, w_new, f.values ? nh.cv : nh.ck, f.values ? nh.sv : nh.sk, f.j, buf, c2,
                    s2, r);
    }
  }
  for (size_t h = 0; h < fresh.size(); ++h) {
    HeadState& hs = L.heads[h];
    hs.ck = std::move(fresh[h].ck);
    hs.cv = std::move(fresh[h].cv);
    hs.sk = std::move(fresh[h].sk);
    hs.sv = std::move(fresh[h].sv);
  }
  L.T = L.T_fft = T2;
  L.undo.clear();  // rank-1 contributions in the old basis can no longer be subtracted exactly
}

const float* cos_sin(FourierCache::Impl& im, int N, int64_t p, int64_t T) {
  if (im.cs_p != p || im.cs_T != T || static_cast<int>(im.cs_cos.size()) != N) {
    im.cs_cos.resize(N);
    im.cs_sin.resize(N);
    for (int n = 0; n < N; ++n) {
      const double a = sp::angle(n, p, T);
      im.cs_cos[n] = static_cast<float>(std::cos(a));
      im.cs_sin[n] = static_cast<float>(std::sin(a));
    }
    im.cs_p = p;
    im.cs_T = T;
  }
  return im.cs_cos.data();
}

// Adds (sign = +1) or removes (-1) one token's compressed dims at basis position p.
void rank1_all_heads(FourierCache::Impl& im, Layer& L, const Shape& s, const FourierOptions& o, const float* krow,
                     const float* vrow, int64_t p, float sign) {
  const int N = o.n_freq(), hd = s.head_dim;
  cos_sin(im, N, p, L.T_fft);
  const float* cv = im.cs_cos.data();
  const float* sv = im.cs_sin.data();
  size_t work = 0;
  for (const auto& hs : L.heads) work += (hs.d.kc.size() + hs.d.vc.size()) * 2 * N;
#pragma omp parallel for schedule(static) if (work > (1u << 16))
  for (int h = 0; h < s.n_kv_heads; ++h) {
    HeadState& hs = L.heads[h];
    std::vector<float> x(std::max(hs.d.kc.size(), hs.d.vc.size()));
    for (size_t j = 0; j < hs.d.kc.size(); ++j) x[j] = krow[h * hd + hs.d.kc[j]];
    if (!hs.d.kc.empty()) hs.ck.add_rank1(cv, sv, x.data(), sign);
    for (size_t j = 0; j < hs.d.vc.size(); ++j) x[j] = vrow[h * hd + hs.d.vc[j]];
    if (!hs.d.vc.empty()) hs.cv.add_rank1(cv, sv, x.data(), sign);
  }
}

// Spec §3.4: the oldest local token moves to the middle.
void evict_oldest(FourierCache::Impl& im, Layer& L, const Shape& s, const FourierOptions& o) {
  const int hd = s.head_dim, H = s.n_kv_heads;
  const int64_t l = L.mid_len;
  if (!o.compat_reference && l >= L.T) reanchor_layer(L, s, o, l);
  // NOTE: the reference writes the j-th evicted token at L_mid(prefill) + j, one past
  // its true index (spec §10.1); compat reproduces it.
  const int64_t p = o.compat_reference ? l + 1 : l;
  Evicted ev;
  ev.l = l;
  ev.k.resize(static_cast<size_t>(H) * hd);
  ev.v.resize(ev.k.size());
  for (int h = 0; h < H; ++h) {
    std::copy_n(row_at(L.loc_k, L.lcap, hd, h, L.lstart), hd, ev.k.data() + h * hd);
    std::copy_n(row_at(L.loc_v, L.lcap, hd, h, L.lstart), hd, ev.v.data() + h * hd);
    HeadState& hs = L.heads[h];
    hs.mid_k.push(ev.k.data() + h * hd, hs.d.kn);
    hs.mid_v.push(ev.v.data() + h * hd, hs.d.vn);
  }
  rank1_all_heads(im, L, s, o, ev.k.data(), ev.v.data(), p, 1.0f);
  im.max_position = std::max(im.max_position, p);
  ++L.lstart;
  --L.lcount;
  ++L.mid_len;
  if (o.rollback > 0) {
    L.undo.push_back(std::move(ev));
    while (static_cast<int64_t>(L.undo.size()) > o.rollback) L.undo.pop_front();
  }
}

void push_local(Layer& L, const Shape& s, const float* k, const float* v) {
  const int hd = s.head_dim, H = s.n_kv_heads;
  if (L.lstart + L.lcount == L.lcap) {  // compact: live rows to the front
    for (int h = 0; h < H; ++h) {
      std::memmove(row_at(L.loc_k, L.lcap, hd, h, 0), row_at(L.loc_k, L.lcap, hd, h, L.lstart),
                   sizeof(float) * L.lcount * hd);
      std::memmove(row_at(L.loc_v, L.lcap, hd, h, 0), row_at(L.loc_v, L.lcap, hd, h, L.lstart),
                   sizeof(float) * L.lcount * hd);
    }
    L.lstart = 0;
  }
  for (int h = 0; h < H; ++h) {
    std::copy_n(k + h * hd, hd, row_at(L.loc_k, L.lcap, hd, h, L.lstart + L.lcount));
    std::copy_n(v + h * hd, hd, row_at(L.loc_v, L.lcap, hd, h, L.lstart + L.lcount));
  }
  ++L.lcount;
}

// Undo of evict_oldest for the most recent eviction (truncate()).
void unevict(FourierCache::Impl& im, Layer& L, const Shape& s, const FourierOptions& o) {
  const int hd = s.head_dim, H = s.n_kv_heads;
  Evicted ev = std::move(L.undo.back());
  L.undo.pop_back();
  if (ev.l != L.mid_len - 1)
    fail(ErrorKind::Internal, "fourier rollback: log at {} but middle ends at {}", ev.l, L.mid_len);
  const int64_t p = o.compat_reference ? ev.l + 1 : ev.l;
  rank1_all_heads(im, L, s, o, ev.k.data(), ev.v.data(), p, -1.0f);
  for (auto& hs : L.heads) {
    hs.mid_k.pop();
    hs.mid_v.pop();
  }
  --L.mid_len;
  if (L.lstart == 0) {  // make room at the front
    const int64_t ns = L.lcap - L.lcount;
    for (int h = 0; h < H; ++h) {
      std::memmove(row_at(L.loc_k, L.lcap, hd, h, ns), row_at(L.loc_k, L.lcap, hd, h, 0),
                   sizeof(float) * L.lcount * hd);
      std::memmove(row_at(L.loc_v, L.lcap, hd, h, ns), row_at(L.loc_v, L.lcap, hd, h, 0),
                   sizeof(float) * L.lcount * hd);
    }
    L.lstart = ns;
  }
  --L.lstart;
  ++L.lcount;
  for (int h = 0; h < H; ++h) {
    std::copy_n(ev.k.data() + h * hd, hd, row_at(L.loc_k, L.lcap, hd, h, L.lstart));
    std::copy_n(ev.v.data() + h * hd, hd, row_at(L.loc_v, L.lcap, hd, h, L.lstart));
  }
}

// Affine-corrected reconstruction of a head's compressed dims at middle index l,
// direct double sums (the reference path). out: [|Dc|].
void reconstruct_head(const CoeffMatrix& cm, const Stats& st, int N, sp::InverseWeights w,
                      const std::vector<double>& cosv, const std::vector<double>& sinv, std::vector<float>& row,
                      float* out) {
  const int cols = cm.cols();
  std::vector<double> acc(cols, 0.0);
  row.resize(cols);
  for (int n = 0; n < N; ++n) {
    const double wc = (n == 0 ? w.w0 : w.w) * cosv[n], ws = w.w * sinv[n];
    cm.row(n, row.data());
    for (int j = 0; j < cols; ++j) acc[j] += wc * row[j];
    if (n == 0) continue;
    cm.row(N + n, row.data());
    for (int j = 0; j < cols; ++j) acc[j] += ws * row[j];
  }
  for (int j = 0; j < cols; ++j) {
    float sc, off;
    st.scale_offset(j, sc, off);
    out[j] = static_cast<float>(sc * acc[j] + off);
  }
}

void angles(int N, int64_t l, int64_t T, std::vector<double>& c, std::vector<double>& s) {
  c.resize(N);
  s.resize(N);
  for (int n = 0; n < N; ++n) {
    const double a = sp::angle(n, l, T);
    c[n] = std::cos(a);
    s[n] = std::sin(a);
  }
}

// attention=direct: reconstruct [sinks | middle | local] per head, then full's attention.
void attend_direct(const Layer& L, const Shape& s, const FourierOptions& o, int64_t n, const float* q, float* out) {
  const int hd = s.head_dim, H = s.n_kv_heads, N = o.n_freq();
  const int64_t nk = o.sink + L.mid_len + L.lcount;
  std::vector<float> K(static_cast<size_t>(H) * nk * hd), V(K.size());
  const sp::InverseWeights w = weights(o, L.T);
  const int64_t jobs = static_cast<int64_t>(H) * L.mid_len;
  for (int h = 0; h < H; ++h) {
    std::copy_n(row_at(L.sink_k, o.sink, hd, h, 0), o.sink * hd, row_at(K, nk, hd, h, 0));
    std::copy_n(row_at(L.sink_v, o.sink, hd, h, 0), o.sink * hd, row_at(V, nk, hd, h, 0));
    std::copy_n(row_at(L.loc_k, L.lcap, hd, h, L.lstart), L.lcount * hd, row_at(K, nk, hd, h, o.sink + L.mid_len));
    std::copy_n(row_at(L.loc_v, L.lcap, hd, h, L.lstart), L.lcount * hd, row_at(V, nk, hd, h, o.sink + L.mid_len));
  }
#pragma omp parallel if (jobs * N * hd > kParallelMin)
  {
    std::vector<double> cosv, sinv;
    std::vector<float> row, rk, rv;
#pragma omp for schedule(dynamic, 16)
    for (int64_t job = 0; job < jobs; ++job) {
      const int h = static_cast<int>(job / L.mid_len);
      const int64_t l = job % L.mid_len;
      const HeadState& hs = L.heads[h];
      float* kr = row_at(K, nk, hd, h, o.sink + l);
      float* vr = row_at(V, nk, hd, h, o.sink + l);
      for (size_t j = 0; j < hs.d.kn.size(); ++j) kr[hs.d.kn[j]] = hs.mid_k.col(static_cast<int>(j))[l];
      for (size_t j = 0; j < hs.d.vn.size(); ++j) vr[hs.d.vn[j]] = hs.mid_v.col(static_cast<int>(j))[l];
      angles(N, l, L.T, cosv, sinv);
      rk.resize(hs.d.kc.size());
      rv.resize(hs.d.vc.size());
      if (!hs.d.kc.empty()) reconstruct_head(hs.ck, hs.sk, N, w, cosv, sinv, row, rk.data());
      if (!hs.d.vc.empty()) reconstruct_head(hs.cv, hs.sv, N, w, cosv, sinv, row, rv.data());
      for (size_t j = 0; j < hs.d.kc.size(); ++j) kr[hs.d.kc[j]] = rk[j];
      for (size_t j = 0; j < hs.d.vc.size(); ++j) vr[hs.d.vc[j]] = rv[j];
    }
  }
  causal_attention(s, n, q, K.data(), V.data(), nk, nk * hd, out);
}

inline float dot(const float* a, const float* b, int n) {
  float d = 0.0f;
#pragma omp simd reduction(+ : d)
  for (int j = 0; j < n; ++j) d += a[j] * b[j];
  return d;
}

inline void axpy(float a, const float* x, float* y, int n) {
#pragma omp simd
  for (int j = 0; j < n; ++j) y[j] += a * x[j];
}

// Long unit-stride loops over the middle.
inline void axpy_n(float a, const float* x, float* y, int64_t n) {
#pragma omp simd
  for (int64_t j = 0; j < n; ++j) y[j] += a * x[j];
}

inline float dot_n(const float* a, const float* b, int64_t n) {
  float d = 0.0f;
#pragma omp simd reduction(+ : d)
  for (int64_t j = 0; j < n; ++j) d += a[j] * b[j];
  return d;
}

// attention=spectral (spec §4.3): per (kv head, query) job, the GQA group's
// scores over the middle come from an inverse FFT of the query projected into
// coefficient space, and the compressed V dims of the output from a forward FFT
// of the middle's softmax weights mapped through the coefficients:
//   q_c . K~(l) = sum_n a_n cos(w_n l) + b_n sin(w_n l) + gamma,
//   a_n = w_n sum_j q_j s_j C_n(j), b_n = w sum_j q_j s_j S_n(j), gamma = sum_j q_j (u_j - s_j i_j);
//   sum_l p_l V~_j(l) = s_j [w0 C_0(j) A_0 + w sum_{n>=1} (C_n(j) A_n + S_n(j) B_n)] + (u_j - s_j i_j) sum_l p_l,
//   A_n = sum_l p_l cos(w_n l), B_n = sum_l p_l sin(w_n l).
// Cost per query head: O(M |Dc(h)|) + two real FFTs of length T, instead of
// O(L_mid M |Dc(h)|) for reconstructing every middle token.
void attend_spectral(const Layer& L, const Shape& s, const FourierOptions& o, int64_t n, const float* q, float* out) {
  const int hd = s.head_dim, H = s.n_kv_heads, G = s.n_heads / s.n_kv_heads, N = o.n_freq(), M = 2 * N;
  const float scale = 1.0f / std::sqrt(static_cast<float>(hd));
  const sp::InverseWeights w = weights(o, L.T);
  const int64_t jobs = static_cast<int64_t>(H) * n;
  const int64_t mid0 = o.sink, loc0 = o.sink + L.mid_len;  // positions where middle / local start
  const int64_t T_cost = 4 * L.T;                          // two FFTs per query head, roughly
#pragma omp parallel if (jobs * G * (L.mid_len + o.window + o.sink + T_cost) > kParallelMin)
  {
    sp::FftBuffer& buf = fft_scratch();
    std::vector<float> scores, qx, gamma(G), alpha, a(N), b(N), f, coef_row, acc, ab, psum(G), affs, affo;
#pragma omp for schedule(dynamic, 1)
    for (int64_t job = 0; job < jobs; ++job) {
      const int h = static_cast<int>(job % H);
      const int64_t i = job / H;
      const int64_t pos = L.len - n + i;
      const HeadState& hs = L.heads[h];
      const int64_t ns = std::min<int64_t>(o.sink, pos + 1);
      const int64_t nm = std::clamp<int64_t>(pos - mid0 + 1, 0, L.mid_len);
      const int64_t nl = std::clamp<int64_t>(pos - loc0 + 1, 0, L.lcount);
      const int64_t tot = ns + nm + nl;
      const int nkn = static_cast<int>(hs.d.kn.size()), nkc = static_cast<int>(hs.d.kc.size());
      const int nvn = static_cast<int>(hs.d.vn.size()), nvc = static_cast<int>(hs.d.vc.size());
      auto qg = [&](int g) { return q + (i * s.n_heads + h * G + g) * hd; };
      auto og = [&](int g) { return out + (i * s.n_heads + h * G + g) * hd; };
      scores.assign(static_cast<size_t>(G) * tot, 0.0f);
      // Exact tokens: sinks and local window.
      for (int64_t t = 0; t < ns; ++t) {
        const float* kr = row_at(L.sink_k, o.sink, hd, h, t);
        for (int g = 0; g < G; ++g) scores[g * tot + t] = dot(qg(g), kr, hd);
      }
      for (int64_t t = 0; t < nl; ++t) {
        const float* kr = row_at(L.loc_k, L.lcap, hd, h, L.lstart + t);
        for (int g = 0; g < G; ++g) scores[g * tot + ns + nm + t] = dot(qg(g), kr, hd);
      }
      // Middle, exact dims.
      if (nkn > 0 && nm > 0) {
        qx.resize(static_cast<size_t>(G) * nkn);
        for (int g = 0; g < G; ++g)
          for (int j = 0; j < nkn; ++j) qx[g * nkn + j] = qg(g)[hs.d.kn[j]];
        for (int j = 0; j < nkn; ++j) {  // each dim's series once, for the whole group
          const float* col = hs.mid_k.col(j);
          for (int g = 0; g < G; ++g) axpy_n(qx[g * nkn + j], col, scores.data() + g * tot + ns, nm);
        }
      }
      // Middle, compressed dims: project q into coefficient space, evaluate by FFT.
      if (nkc > 0 && nm > 0) {
        affs.resize(nkc);
        affo.resize(nkc);
        for (int j = 0; j < nkc; ++j) hs.sk.scale_offset(j, affs[j], affo[j]);
        qx.resize(static_cast<size_t>(G) * nkc);
        for (int g = 0; g < G; ++g) {
          float gm = 0.0f;
          for (int j = 0; j < nkc; ++j) {
            const float qj = qg(g)[hs.d.kc[j]];
            qx[g * nkc + j] = qj * affs[j];
            gm += qj * affo[j];
          }
          gamma[g] = gm;
        }
        alpha.assign(static_cast<size_t>(G) * M, 0.0f);
        coef_row.resize(nkc);
        for (int r = 0; r < M; ++r) {
          if (r == N) continue;  // S_0 row is zero
          const float* cr = hs.ck.is_f32() ? hs.ck.f32_row(r) : (hs.ck.row(r, coef_row.data()), coef_row.data());
          for (int g = 0; g < G; ++g) alpha[g * M + r] = dot(qx.data() + g * nkc, cr, nkc);
        }
        f.resize(nm);
        for (int g = 0; g < G; ++g) {
          for (int k = 0; k < N; ++k) {
            a[k] = static_cast<float>((k == 0 ? w.w0 : w.w) * alpha[g * M + k]);
            b[k] = static_cast<float>(w.w * alpha[g * M + N + k]);
          }
          sp::eval_trig_fft(a.data(), b.data(), N, L.T, nm, f.data(), buf);
          float* sc = scores.data() + g * tot + ns;
          for (int64_t l = 0; l < nm; ++l) sc[l] += f[l] + gamma[g];
        }
      }
      // Softmax per query head.
      for (int g = 0; g < G; ++g) {
        float* sc = scores.data() + g * tot;
#pragma omp simd
        for (int64_t t = 0; t < tot; ++t) sc[t] *= scale;
        attn::softmax(sc, tot);
        float ps = 0.0f;
        for (int64_t l = 0; l < nm; ++l) ps += sc[ns + l];
        psum[g] = ps;
        std::fill(og(g), og(g) + hd, 0.0f);
      }
      // Output: exact tokens.
      for (int64_t t = 0; t < ns; ++t) {
        const float* vr = row_at(L.sink_v, o.sink, hd, h, t);
        for (int g = 0; g < G; ++g) axpy(scores[g * tot + t], vr, og(g), hd);
      }
      for (int64_t t = 0; t < nl; ++t) {
        const float* vr = row_at(L.loc_v, L.lcap, hd, h, L.lstart + t);
        for (int g = 0; g < G; ++g) axpy(scores[g * tot + ns + nm + t], vr, og(g), hd);
      }
      // Middle, exact V dims.
      if (nvn > 0 && nm > 0) {
        for (int j = 0; j < nvn; ++j) {
          const float* col = hs.mid_v.col(j);
          for (int g = 0; g < G; ++g) og(g)[hs.d.vn[j]] += dot_n(scores.data() + g * tot + ns, col, nm);
        }
      }
      // Middle, compressed V dims: softmax weights into coefficient space by FFT.
      if (nvc > 0 && nm > 0) {
        ab.assign(static_cast<size_t>(G) * M, 0.0f);
        for (int g = 0; g < G; ++g) {
          float* abg = ab.data() + g * M;
          sp::coefficients_fft(scores.data() + g * tot + ns, nm, 1, L.T, N, abg, abg + N, 1, buf);
          abg[0] = static_cast<float>(w.w0 * abg[0]);
          for (int k = 1; k < N; ++k) {
            abg[k] = static_cast<float>(w.w * abg[k]);
            abg[N + k] = static_cast<float>(w.w * abg[N + k]);
          }
          abg[N] = 0.0f;
        }
        acc.assign(static_cast<size_t>(G) * nvc, 0.0f);
        coef_row.resize(nvc);
        for (int r = 0; r < M; ++r) {
          if (r == N) continue;
          const float* cr = hs.cv.is_f32() ? hs.cv.f32_row(r) : (hs.cv.row(r, coef_row.data()), coef_row.data());
          for (int g = 0; g < G; ++g) axpy(ab[g * M + r], cr, acc.data() + g * nvc, nvc);
        }
        for (int j = 0; j < nvc; ++j) {
          float sc, off;
          hs.sv.scale_offset(j, sc, off);
          for (int g = 0; g < G; ++g) og(g)[hs.d.vc[j]] += sc * acc[g * nvc + j] + off * psum[g];
        }
      }
    }
  }
}

}  // namespace

// ---- Policy --------------------------------------------------------------------------

void FourierCache::append(int layer, int64_t n, const float* k, const float* v) {
  if (layer < 0 || layer >= s_.n_layers) fail(ErrorKind::Internal, "kv append: layer {} out of range", layer);
  Layer& L = im_->layers[layer];
  if (L.len + n > s_.max_tokens)
    fail(ErrorKind::InvalidInput, "context full: {} tokens cached + {} new exceeds the context size {}", L.len, n,
         s_.max_tokens);
  const int hd = s_.head_dim, H = s_.n_kv_heads, kvd = H * hd;
  if (!L.compressed) {
    exact_reserve(L, s_, L.len + n);
    for (int64_t t = 0; t < n; ++t)
      for (int h = 0; h < H; ++h) {
        std::copy_n(k + (t * H + h) * hd, hd, row_at(L.ek, L.ecap, hd, h, L.len + t));
        std::copy_n(v + (t * H + h) * hd, hd, row_at(L.ev, L.ecap, hd, h, L.len + t));
      }
  } else {
    for (int64_t t = 0; t < n; ++t) {
      if (L.lcount == o_.window) evict_oldest(*im_, L, s_, o_);
      push_local(L, s_, k + t * kvd, v + t * kvd);
    }
  }
  L.len += n;
}

void FourierCache::attend(int layer, int64_t n, const float* q, float* out) {
  if (layer < 0 || layer >= s_.n_layers) fail(ErrorKind::Internal, "kv attend: layer {} out of range", layer);
  const Layer& L = im_->layers[layer];
  if (!L.compressed) {
    causal_attention(s_, n, q, L.ek.data(), L.ev.data(), L.len, L.ecap * s_.head_dim, out);
  } else if (o_.attention == FourierAttentionMode::Direct) {
    attend_direct(L, s_, o_, n, q, out);
  } else {
    attend_spectral(L, s_, o_, n, q, out);
  }
}

int64_t FourierCache::planned_period() const {
  const int64_t P = std::max<int64_t>(prompt_end_, 0);  // unplanned single-token steps: no prompt
  const int64_t mn = o_.max_new >= 0 ? o_.max_new : plan_max_new_ >= 0 ? plan_max_new_ : s_.max_tokens - P;
  const int64_t T0 = std::min(P + mn, s_.max_tokens) - o_.sink - o_.window;
  if (o_.compat_reference) return T0;  // compression happens at the prompt's end: T0 >= middle
  const int64_t T = std::max(T0, n_tokens_ - o_.sink - o_.window);
  if (o_.aligned_period) return aligned_period(T, o_.n_freq());
  return o_.smooth_period ? sp::smooth_period(T) : T;
}

void FourierCache::compress_all() {
  const int64_t T = planned_period();
  const int64_t T_fft = o_.compat_reference ? sp::reference_period(T) : T;
  for (auto& L : im_->layers)
    if (L.has_compressed) compress_layer(L, s_, o_, T, T_fft);
  compressed_ = true;
  compressed_at_ = n_tokens_;
}

void FourierCache::commit(int64_t n) {
  const int64_t pos0 = n_tokens_;
  n_tokens_ += n;
  for (int l = 0; l < s_.n_layers; ++l)
    if (im_->layers[l].len != n_tokens_)
      fail(ErrorKind::Internal, "kv ledger: layer {} holds {} tokens, logical length is {}", l, im_->layers[l].len,
           n_tokens_);
  const bool prompt_end = clock_.completes(pos0, n);
  if (prompt_end) prompt_end_ = n_tokens_;
  if (compressed_ || !clock_.done(n_tokens_)) return;
  // NOTE: the reference only looks at a prompt's end, so short prompts stay exact forever (spec §10.4).
  if (o_.compat_reference && !prompt_end) return;
  bool any = false;
  for (const auto& L : im_->layers) any = any || L.has_compressed;
  if (any && n_tokens_ - o_.sink - o_.window > o_.coeffs) compress_all();
}

int64_t FourierCache::n_stored() const { return compressed_ ? std::min(n_tokens_, o_.sink + o_.window) : n_tokens_; }

void FourierCache::truncate(int64_t n) {
  if (n < 0 || n > n_tokens_) fail(ErrorKind::Internal, "kv truncate to {} of {}", n, n_tokens_);
  if (n == n_tokens_) return;
  const int64_t r = n_tokens_ - n;
  if (compressed_) {
    if (n < compressed_at_)
      fail(ErrorKind::Unsupported, "fourier: cannot roll back to {} tokens: the cache was compressed at {}", n,
           compressed_at_);
    for (const auto& L : im_->layers)
      if (L.compressed && static_cast<int64_t>(L.undo.size()) < r)
        fail(ErrorKind::Unsupported,
             "fourier: cannot roll back {} tokens: only the last {} evictions can be undone (option rollback={}; a "
             "period re-anchor clears them)",
             r, L.undo.size(), o_.rollback);
  }
  for (auto& L : im_->layers) {
    if (L.compressed) {
      for (int64_t t = 0; t < r; ++t) {
        --L.lcount;  // drop the newest token
        unevict(*im_, L, s_, o_);
      }
    }
    L.len = n;
  }
  n_tokens_ = n;
  if (n < prompt_end_) prompt_end_ = -1;
}

FourierMemoryParams FourierCache::memory_params() const {
  FourierMemoryParams p;
  p.sink = o_.sink;
  p.window = o_.window;
  p.coeffs = o_.coeffs;
  p.exact_bytes = 4;
  p.coeff_bytes = dtype_bytes(o_.coeff_dtype);
  p.stats_bytes = dtype_bytes(o_.stats_dtype);
  p.index_bytes = sizeof(int);
  return p;
}

ByteLedger FourierCache::bytes() const {
  ByteLedger l = fourier_memory(s_, dims_, memory_params(), n_tokens_, compressed_).ledger();
  size_t undo = 0;
  for (const auto& L : im_->layers)
    for (const auto& e : L.undo) undo += (e.k.size() + e.v.size()) * sizeof(float);
  l["rollback"] = undo;
  return l;
}

ByteLedger FourierCache::bytes_at(int64_t n) const {
  bool any = false;
  for (const auto& L : im_->layers) any = any || L.has_compressed;
  const bool comp = any && n - o_.sink - o_.window > o_.coeffs;
  ByteLedger l = fourier_memory(s_, dims_, memory_params(), n, comp).ledger();
  l["rollback"] = 0;
  return l;
}

std::vector<ByteLedger> FourierCache::layer_bytes_at(int64_t n) const {
  bool any = false;
  for (const auto& L : im_->layers) any = any || L.has_compressed;
  const bool comp = any && n - o_.sink - o_.window > o_.coeffs;
  std::vector<ByteLedger> out;
  for (const FourierMemory& m : fourier_memory_layers(s_, dims_, memory_params(), n, comp)) {
    out.push_back(m.ledger());
    out.back()["rollback"] = 0;
  }
  return out;
}

ByteLedger FourierCache::held_bytes() const {
  const size_t hd = s_.head_dim, H = s_.n_kv_heads;
  ByteLedger l = {{"sinks", 0},      {"local", 0},   {"middle_exact", 0}, {"coefficients", 0},
                  {"statistics", 0}, {"indices", 0}, {"rollback", 0}};
  for (const auto& L : im_->layers) {
    for (const auto& hs : L.heads)
      l["indices"] += (hs.d.kc.size() + hs.d.kn.size() + hs.d.vc.size() + hs.d.vn.size()) * sizeof(int);
    const size_t row = 2 * H * hd * sizeof(float);
    if (!L.compressed && compressed_) {  // a layer without compressed dims, by position
      l["sinks"] += o_.sink * row;
      l["local"] += o_.window * row;
      l["middle_exact"] += (L.len - o_.sink - o_.window) * row;
      continue;
    }
    if (!L.compressed) {
      const int64_t ns = std::min(L.len, o_.sink);
      l["sinks"] += ns * row;
      l["local"] += (L.len - ns) * row;
      continue;
    }
    l["sinks"] += (L.sink_k.size() + L.sink_v.size()) * sizeof(float);
    l["local"] += L.lcount * row;
    for (const auto& hs : L.heads) {
      l["middle_exact"] += hs.mid_k.bytes() + hs.mid_v.bytes();
      l["coefficients"] += hs.ck.bytes() + hs.cv.bytes();
      l["statistics"] += hs.sk.bytes() + hs.sv.bytes();
    }
    for (const auto& e : L.undo) l["rollback"] += (e.k.size() + e.v.size()) * sizeof(float);
  }
  return l;
}

FourierCache::Segments FourierCache::segments(int layer) const {
  const Layer& L = im_->layers.at(layer);
  Segments g;
  if (!L.compressed) {
    g.sinks = std::min(L.len, o_.sink);
    g.local = L.len - g.sinks;
    return g;
  }
  g.compressed = true;
  g.sinks = o_.sink;
  g.middle = L.mid_len;
  g.local = L.lcount;
  g.coeff_rows = o_.coeffs;
  g.period = L.T;
  g.fft_period = L.T_fft;
  return g;
}

std::vector<float> FourierCache::coefficients(int layer, int kv_head, bool values) const {
  const Layer& L = im_->layers.at(layer);
  if (!L.compressed) return {};
  const HeadState& hs = L.heads.at(kv_head);
  const CoeffMatrix& cm = values ? hs.cv : hs.ck;
  std::vector<float> out(static_cast<size_t>(o_.coeffs) * cm.cols());
  for (int r = 0; r < o_.coeffs; ++r) cm.row(r, out.data() + static_cast<size_t>(r) * cm.cols());
  return out;
}

std::vector<float> FourierCache::reconstruct(int layer, int kv_head, bool values, int64_t l) const {
  const Layer& L = im_->layers.at(layer);
  if (!L.compressed) return {};
  const HeadState& hs = L.heads.at(kv_head);
  std::vector<double> c, s;
  angles(o_.n_freq(), l, L.T, c, s);
  std::vector<float> row, out(values ? hs.d.vc.size() : hs.d.kc.size());
  reconstruct_head(values ? hs.cv : hs.ck, values ? hs.sv : hs.sk, o_.n_freq(), weights(o_, L.T), c, s, row,
                   out.data());
  return out;
}

}  // namespace harmonia::kv
