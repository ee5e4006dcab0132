#include "cuda/forward_gpu.h"

#include <cublas_v2.h>
#include <cuda_runtime.h>

#include <algorithm>
#include <chrono>
#include <random>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <string>

#include "common/error.h"
#include "common/fp16.h"
#include "cuda/attention.h"
#include "cuda/forward_kernels.h"
#include "cuda/fourier_gpu.h"
#include "kv/dims.h"
#include "kv/full.h"
#include "kv/fourier.h"
#include "kv/spectral.h"
#include "model/forward.h"
#include "cuda/runtime.h"
#include "tensor/ops.h"

namespace harmonia::cuda {

using fwd::Elem;

namespace {

// Multi-token steps of at most this many tokens (speculative verify passes: 1 + draft length)
// attend through the split-KV decode kernel; longer ones (prompts) through the prefill kernel.
constexpr int64_t kMaxDecodeKernelTokens = 16;

void check_cublas(cublasStatus_t st, const char* what) {
  if (st != CUBLAS_STATUS_SUCCESS) fail(ErrorKind::Internal, "cuBLAS {}: {}", what, cublasGetStatusString(st));
}

// A weight matrix on the device, row-major [rows][cols] (out, in) of the forward's weight type.
struct Mat {
  DeviceBuffer buf;
  int64_t rows = 0, cols = 0;
};

struct Layer {
  Mat qkv;            // [q_dim + 2 kv_dim, dim]: Wq; Wk; Wv
  Mat wo;             // [dim, q_dim]
  Mat gate_up;        // [2 ffn, dim]: Wgate; Wup
  Mat down;           // [dim, ffn]
  DeviceBuffer attn_norm, ffn_norm;  // [dim] f32
  DeviceBuffer bias;                 // [q_dim + 2 kv_dim] f32 (Qwen2), or empty
  DeviceBuffer q_norm, k_norm;       // [head_dim] f32 (Qwen3), or empty
};

}  // namespace

struct GpuForward::Impl {
  const Model& m;
  GpuForwardOptions o;
  Elem wt, kt;  // weight / KV element types
  cublasHandle_t blas = nullptr;
  std::vector<Layer> layers;
  Mat embd, out;  // [vocab, dim]; out shares embd's buffer when tied
  bool tied = false;
  DeviceBuffer out_norm;  // [dim] f32
  Rope rope;
  bool dynamic_rope = false;
  bool decode_kernel = true;  // decode_attention_full has this head_dim and GQA group (else the prefill kernel)
  DeviceBuffer rope_cos, rope_sin;  // [max_tokens][n_rot/2] f32 (static scalings), or per call (DynamicNTK)
  DeviceBuffer kc, vc;              // [layer][n_kv_heads][cap][head_dim]
  int64_t len = 0;                  // tokens in the cache
  // Scratch, grown to the largest n: x [n][dim] f32, act [n][max(dim, q_dim, ffn)] weight type,
  // qkv [n][q_dim + 2 kv_dim] f32, gu [n][2 ffn] f32, att [q_dim] f32 (decode), logits [vocab] f32.
  DeviceBuffer x, act, qkv, gu, att, logits, tokens, ids, lens, qrows;
  AttentionWorkspace ws;
  // FourierAttention decode (start_fourier_random, or use_fourier after compression): one layer
  // object each (null: a layer without compressed dims, on the full cache), its exact K/V type, and
  // the last position it has room for.
  std::vector<std::unique_ptr<FourierLayer>> fourier;
  // A layer's FourierLayer::evict() (the oldest local token to the middle) needs only the previous
  // step's state: it runs on `side` while the default stream does the layer's norm and QKV projection,
  // after ev_go[l] (recorded at the layer's start: the previous attend is done) and before the new
  // token's store, which waits for ev_done[l]. Made with the first decode step on FourierLayers.
  // HARMONIA_GPU_SERIAL_EVICT=1 (benchmarks): evict() on the default stream, no overlap.
  const bool serial_evict = [] {
    const char* e = std::getenv("HARMONIA_GPU_SERIAL_EVICT");
    return e && std::string(e) == "1";
  }();
  cudaStream_t side = nullptr;
  std::vector<cudaEvent_t> ev_go, ev_done;  // [n_layers]
  Elem fourier_xt = Elem::BF16;
  int64_t fourier_end = 0;
  // use_fourier: kv::FourierCache's decisions (commit(), planned_period()) for the real cache.
  struct FourierPolicy {
    bool on = false;
    kv::FourierOptions o;
    kv::FourierDims dims;
    std::vector<char> has_compressed;  // [n_layers]
    bool any = false;                  // some layer has compressed dims
    int64_t ctx = 0;
    kv::PromptClock clock;
    int64_t plan_max_new = -1, prompt_end = -1;  // as kv::FourierCache
    int64_t period = 0;                          // T once compressed
  } pol;
  DeviceBuffer k_rows, v_rows;  // compression staging: one layer's [n_kv_heads][len][head_dim] (KV type)
  int64_t rope_rows = 0;  // positions the static RoPE table covers

  Impl(const Model& model, const GpuForwardOptions& opts) : m(model), o(opts), rope(model.config.rope) {}
  ~Impl() {
    for (cudaEvent_t e : ev_go) cudaEventDestroy(e);
    for (cudaEvent_t e : ev_done) cudaEventDestroy(e);
    if (side) cudaStreamDestroy(side);
  }

  void make_side_stream() {
    if (side) return;
    check(cudaStreamCreateWithFlags(&side, cudaStreamNonBlocking), "cudaStreamCreateWithFlags");
    for (auto* v : {&ev_go, &ev_done}) {
      v->resize(static_cast<size_t>(m.config.n_layers));
      for (cudaEvent_t& e : *v) check(cudaEventCreateWithFlags(&e, cudaEventDisableTiming), "cudaEventCreateWithFlags");
    }
  }

  size_t wbytes() const { return static_cast<size_t>(fwd::elem_bytes(wt)); }

  // Uploads rows [row0, row0 + t.rows()) of a device matrix from a host tensor of any dtype.
  void upload_rows(Mat& dst, int64_t row0, const Tensor& t) {
    if (t.cols() != dst.cols) fail(ErrorKind::InvalidInput, "{}: {} columns, expected {}", t.name, t.cols(), dst.cols);
    const int64_t rows = t.rows(), cols = t.cols();
    std::vector<float> f(static_cast<size_t>(cols));
    std::vector<uint8_t> host(static_cast<size_t>(rows * cols) * wbytes());
    for (int64_t r = 0; r < rows; ++r) {
      dequantize_row(t.type, t.row(r), f.data(), cols);
      if (wt == Elem::F32) {
        std::memcpy(host.data() + r * cols * 4, f.data(), cols * 4);
      } else {
        auto* h = reinterpret_cast<uint16_t*>(host.data()) + r * cols;
        for (int64_t c = 0; c < cols; ++c) h[c] = f32_to_bf16(f[c]);
      }
    }
    to_device(dst.buf.as<uint8_t>() + row0 * cols * wbytes(), host.data(), host.size());
  }

  // A device matrix [sum of the parts' rows][cols], uploaded part after part (or random).
  Mat matrix(std::initializer_list<const Tensor*> parts, int64_t rows, int64_t cols, uint64_t seed) {
    Mat mt;
    mt.rows = rows;
    mt.cols = cols;
    mt.buf.reserve(static_cast<size_t>(rows * cols) * wbytes());
    if (o.random_weights) {
      const float scale = 1.0f / std::sqrt(static_cast<float>(cols));
      if (wt == Elem::F32)
        fill_uniform_f32(mt.buf.as<float>(), static_cast<size_t>(rows * cols), seed, scale);
      else
        fill_uniform_bf16(mt.buf.get(), static_cast<size_t>(rows * cols), seed, scale);
      return mt;
    }
    int64_t r0 = 0;
    for (const Tensor* t : parts) {
      upload_rows(mt, r0, *t);
      r0 += t->rows();
    }
    if (r0 != rows) fail(ErrorKind::InvalidInput, "cuda forward: {} rows uploaded, expected {}", r0, rows);
    return mt;
  }

  // An f32 vector on the device: the concatenated tensors (f32 in the Model), or random near 1.
  DeviceBuffer vec(std::initializer_list<const Tensor*> parts, int64_t n, uint64_t seed) {
    DeviceBuffer b(static_cast<size_t>(n) * 4);
    if (o.random_weights) {
      std::vector<float> h(static_cast<size_t>(n));
      for (int64_t i = 0; i < n; ++i) h[i] = 1.0f + 0.01f * static_cast<float>((seed * 31 + i) % 17) / 17.0f;
      to_device(b.get(), h.data(), h.size() * 4);
      return b;
    }
    std::vector<float> h;
    for (const Tensor* t : parts) {
      std::vector<float> f(static_cast<size_t>(t->numel()));
      dequantize_row(t->type, t->data, f.data(), t->numel());
      h.insert(h.end(), f.begin(), f.end());
    }
    if (static_cast<int64_t>(h.size()) != n)
      fail(ErrorKind::InvalidInput, "cuda forward: vector of {} values, expected {}", h.size(), n);
    to_device(b.get(), h.data(), h.size() * 4);
    return b;
  }

  void upload_weights() {
    const ModelConfig& c = m.config;
    const ModelWeights& w = m.weights;
    const int64_t D = c.dim, QD = c.q_dim(), KVD = c.kv_dim(), F = c.ffn_dim;
    uint64_t seed = o.seed * 1000;
    layers.resize(static_cast<size_t>(c.n_layers));
    for (int l = 0; l < c.n_layers; ++l) {
      const LayerWeights& lw = w.layers[static_cast<size_t>(l)];
      Layer& L = layers[static_cast<size_t>(l)];
      L.qkv = matrix({&lw.wq, &lw.wk, &lw.wv}, QD + 2 * KVD, D, ++seed);
      L.wo = matrix({&lw.wo}, D, QD, ++seed);
      L.gate_up = matrix({&lw.w_gate, &lw.w_up}, 2 * F, D, ++seed);
      L.down = matrix({&lw.w_down}, D, F, ++seed);
      L.attn_norm = vec({&lw.attn_norm}, D, ++seed);
      L.ffn_norm = vec({&lw.ffn_norm}, D, ++seed);
      if (c.qkv_bias) L.bias = vec({&lw.bq, &lw.bk, &lw.bv}, QD + 2 * KVD, ++seed);
      if (c.qk_norm) {
        L.q_norm = vec({&lw.q_norm}, c.head_dim, ++seed);
        L.k_norm = vec({&lw.k_norm}, c.head_dim, ++seed);
      }
    }
    embd = matrix({&w.tok_embd}, c.vocab_size, D, ++seed);
    tied = c.tied_embeddings || (!o.random_weights && w.output.data == w.tok_embd.data);
    if (!tied) out = matrix({&w.output}, c.vocab_size, D, ++seed);
    out_norm = vec({&w.output_norm}, D, ++seed);
  }

  const Mat& output() const { return tied ? embd : out; }

  // RoPE cos/sin rows for positions 0 .. rows-1 (scalings that do not depend on the sequence length).
  void upload_rope_table(int64_t rows) {
    if (rows <= rope_rows) return;
    rope_rows = rows;
    const int half = m.config.rope.n_rot / 2;
    std::vector<float> cs(static_cast<size_t>(rows) * half), sn(cs.size());
    for (int64_t p = 0; p < rows; ++p) rope.cos_sin(p, p + 1, cs.data() + p * half, sn.data() + p * half);
    rope_cos.reserve(std::max<size_t>(cs.size(), 1) * 4);
    rope_sin.reserve(std::max<size_t>(sn.size(), 1) * 4);
    to_device(rope_cos.get(), cs.data(), cs.size() * 4);
    to_device(rope_sin.get(), sn.data(), sn.size() * 4);
  }

  // y[n][W.rows] = x[n][W.cols] W^T + beta * y (f32 accumulation; x of the weight type).
  void gemm(const Mat& W, const void* x, int64_t n, float* y, float beta) {
    const float alpha = 1.0f;
    const cudaDataType t = wt == Elem::F32 ? CUDA_R_32F : CUDA_R_16BF;
    check_cublas(cublasGemmEx(blas, CUBLAS_OP_T, CUBLAS_OP_N, static_cast<int>(W.rows), static_cast<int>(n),
                              static_cast<int>(W.cols), &alpha, W.buf.get(), t, static_cast<int>(W.cols), x, t,
                              static_cast<int>(W.cols), &beta, y, CUDA_R_32F, static_cast<int>(W.rows),
                              CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT),
                 "cublasGemmEx");
  }

  size_t kv_layer_elems() const {
    return static_cast<size_t>(m.config.n_kv_heads) * static_cast<size_t>(o.max_tokens) * m.config.head_dim;
  }
  void* kv_layer(const DeviceBuffer& b, int l) const {
    return b.as<uint8_t>() + static_cast<size_t>(l) * kv_layer_elems() * fwd::elem_bytes(kt);
  }

  // kv::FourierCache::commit(): the step [pos0, pos0 + n) is in the cache; compress once no prompt
  // is pending and the middle exceeds M.
  void commit_fourier(int64_t pos0, int64_t n) {
    if (pol.clock.completes(pos0, n)) pol.prompt_end = len;
    if (!fourier.empty() || !pol.clock.done(len)) return;
    if (pol.any && len - pol.o.sink - pol.o.window > pol.o.coeffs) compress();
  }

  // kv::FourierCache::planned_period() and compress_all(): every layer with compressed dims
  // becomes a FourierLayer prefilled from its len K/V rows of the full cache.
  void compress() {
    const ModelConfig& c = m.config;
    const kv::FourierOptions& f = pol.o;
    const int64_t P = std::max<int64_t>(pol.prompt_end, 0);
    const int64_t mn = f.max_new >= 0 ? f.max_new : pol.plan_max_new >= 0 ? pol.plan_max_new : pol.ctx - P;
    const int64_t T0 = std::min(P + mn, pol.ctx) - f.sink - f.window;
    int64_t T = std::max(T0, len - f.sink - f.window);
    if (f.smooth_period) T = kv::spectral::smooth_period(T);
    FourierConfig cfg;
    cfg.shape = {1, c.n_heads, c.n_kv_heads, c.head_dim};
    cfg.sink = f.sink;
    cfg.window = f.window;
    cfg.coeffs = f.coeffs;
    cfg.coeff_bf16 = f.coeff_dtype == kv::CoeffDtype::BF16;
    cfg.period = T;
    cfg.w0 = 1.0 / static_cast<double>(T);  // the proper inverse
    cfg.w = 2.0 / static_cast<double>(T);
    cfg.mid_capacity = T;  // the middle index never reaches T (append refuses: the CPU re-anchors)
    cfg.exact_f32 = kt == Elem::F32;
    const size_t row = static_cast<size_t>(c.head_dim) * fwd::elem_bytes(kt);
    const size_t rows_bytes = static_cast<size_t>(c.n_kv_heads) * static_cast<size_t>(len) * row;
    k_rows.reserve(rows_bytes);
    v_rows.reserve(rows_bytes);
    fourier.clear();
    for (int l = 0; l < c.n_layers; ++l) {
      if (!pol.has_compressed[static_cast<size_t>(l)]) {
        fourier.emplace_back(nullptr);
        continue;
      }
      std::vector<FourierHeadDims> heads;
      for (const kv::HeadDims& h : kv::split_heads(pol.dims.layers[static_cast<size_t>(l)], c.n_kv_heads, c.head_dim))
        heads.push_back({h.kc, h.kn, h.vc, h.vn});
      auto fl = std::make_unique<FourierLayer>(cfg, heads);
      // [n_kv_heads][cap][head_dim] -> [n_kv_heads][len][head_dim]
      for (auto [dst, src] : {std::pair{&k_rows, &kc}, std::pair{&v_rows, &vc}})
        check(cudaMemcpy2D(dst->get(), len * row, kv_layer(*src, l), static_cast<size_t>(o.max_tokens) * row, len * row,
                           static_cast<size_t>(c.n_kv_heads), cudaMemcpyDeviceToDevice),
              "cudaMemcpy2D (fourier compression)");
      if (kt == Elem::F32)
        fl->prefill(k_rows.as<float>(), v_rows.as<float>(), len);
      else
        fl->prefill(k_rows.as<uint16_t>(), v_rows.as<uint16_t>(), len);
      fourier.push_back(std::move(fl));
    }
    fourier_xt = kt;
    fourier_end = o.max_tokens;
    pol.period = T;
  }

  // host_all_ids: every token's greedy id ([n], host; a speculative verify pass), else the last token's only.
  void run(const int32_t* tok, int64_t n, float* host_logits, int32_t* host_id, int32_t* host_all_ids = nullptr) {
    const ModelConfig& c = m.config;
    if (n <= 0) fail(ErrorKind::InvalidInput, "cuda forward: {} tokens in a step (need >= 1)", n);
    for (int64_t i = 0; i < n; ++i)
      if (tok[i] < 0 || tok[i] >= c.vocab_size)
        fail(ErrorKind::InvalidInput, "token id {} is outside the vocabulary [0, {})", tok[i], c.vocab_size);
    if (!fourier.empty() && n > 1)
      fail(ErrorKind::Unsupported, "cuda forward: a {}-token step on the FourierAttention cache (decode only)", n);
    const int64_t end = fourier.empty() ? o.max_tokens : fourier_end;
    const int64_t pos0 = len;
    if (len + n > end)
      fail(ErrorKind::InvalidInput, "context full: {} tokens in the cache + {} new exceed the context size {}", len, n,
           end);
    const int64_t D = c.dim, QD = c.q_dim(), F = c.ffn_dim, V = c.vocab_size;
    const fwd::QkvShape qs{c.n_heads, c.n_kv_heads, c.head_dim};
    const int64_t QKV = qs.stride();
    x.reserve(static_cast<size_t>(n * D) * 4);
    act.reserve(static_cast<size_t>(n * std::max({D, QD, F})) * wbytes());
    qkv.reserve(static_cast<size_t>(n * QKV) * 4);
    gu.reserve(static_cast<size_t>(n * 2 * F) * 4);
    att.reserve(static_cast<size_t>(n * QD) * 4);
    const int64_t out_rows = host_all_ids ? n : 1;  // rows that get logits
    logits.reserve(static_cast<size_t>(out_rows * V) * 4);
    tokens.reserve(static_cast<size_t>(n) * 4);
    ids.reserve(static_cast<size_t>(out_rows) * 4);
    lens.reserve(static_cast<size_t>(n) * 4);
    // A short multi-token step (a speculative verify pass) attends through the split-KV decode
    // kernel, one query per token over the shared cache; longer ones through the prefill kernel.
    const bool multi_decode = n > 1 && n <= kMaxDecodeKernelTokens && decode_kernel && fourier.empty();
    if (multi_decode) qrows.reserve(static_cast<size_t>(n * QD) * 4);
    to_device(tokens.get(), tok, static_cast<size_t>(n) * 4);

    // RoPE rows for this step: the static table at row len, or this step's rows (DynamicNTK:
    // the base depends on the sequence length, len + n for every token of the step, as on the CPU).
    const float *cs = rope_cos.as<float>(), *sn = rope_sin.as<float>();
    int64_t row0 = len;
    if (dynamic_rope) {
      const int half = c.rope.n_rot / 2;
      std::vector<float> hc(static_cast<size_t>(n * half)), hs(hc.size());
      for (int64_t i = 0; i < n; ++i) rope.cos_sin(len + i, len + n, hc.data() + i * half, hs.data() + i * half);
      rope_cos.reserve(hc.size() * 4);
      rope_sin.reserve(hs.size() * 4);
      to_device(rope_cos.get(), hc.data(), hc.size() * 4);
      to_device(rope_sin.get(), hs.data(), hs.size() * 4);
      cs = rope_cos.as<float>();
      sn = rope_sin.as<float>();
      row0 = 0;
    }

    if (!fourier.empty()) make_side_stream();
    float* xf = x.as<float>();
    fwd::embed(tokens.as<int>(), n, embd.buf.get(), wt, static_cast<int>(D), xf);
    if (n == 1) fwd::set_int(lens.as<int>(), static_cast<int>(len + 1));
    if (multi_decode) {  // token i sees the cache up to itself
      std::vector<int> hl(static_cast<size_t>(n));
      for (int64_t i = 0; i < n; ++i) hl[static_cast<size_t>(i)] = static_cast<int>(len + i + 1);
      to_device(lens.get(), hl.data(), hl.size() * 4);
    }
    for (int l = 0; l < c.n_layers; ++l) {
      const Layer& L = layers[static_cast<size_t>(l)];
      FourierLayer* fl = fourier.empty() ? nullptr : fourier[static_cast<size_t>(l)].get();
      int64_t slot = 0;  // fl: the window ring row the new token goes to
      if (fl && serial_evict) {
        slot = fl->evict();
      } else if (fl) {
        const size_t li = static_cast<size_t>(l);
        check(cudaEventRecord(ev_go[li], 0), "cudaEventRecord");
        check(cudaStreamWaitEvent(side, ev_go[li], 0), "cudaStreamWaitEvent");
        slot = fl->evict(side);
        check(cudaEventRecord(ev_done[li], side), "cudaEventRecord");
      }
      fwd::rmsnorm(xf, n, D, static_cast<int>(D), L.attn_norm.as<float>(), c.norm_eps, act.get(), wt);
      gemm(L.qkv, act.get(), n, qkv.as<float>(), 0.0f);
      fwd::qkv_post(qkv.as<float>(), n, qs, c.qkv_bias ? L.bias.as<float>() : nullptr,
                    c.qk_norm ? L.q_norm.as<float>() : nullptr, c.qk_norm ? L.k_norm.as<float>() : nullptr,
                    c.norm_eps, cs, sn, row0, c.rope.n_rot, c.rope.style == RopeConfig::Style::Interleaved);
      void *kl = kv_layer(kc, l), *vl = kv_layer(vc, l);
      if (fl) {  // FourierAttention decode: the token joins the local window (in the ring row the
                 // oldest one left for the middle, above), then attention
        FourierLayer& f = *fl;
        if (!serial_evict) check(cudaStreamWaitEvent(0, ev_done[static_cast<size_t>(l)], 0), "cudaStreamWaitEvent");
        fwd::store_kv(qkv.as<float>(), 1, qs, f.exact_k(), f.exact_v(), fourier_xt, f.exact_rows(), slot);
        float* out = wt == Elem::F32 ? act.as<float>() : att.as<float>();
        f.attend(qkv.as<float>(), out, ws);
        if (wt != Elem::F32) fwd::convert(out, QD, act.get(), wt);
      } else if ((n == 1 && decode_kernel) || multi_decode) {
        fwd::store_kv(qkv.as<float>(), n, qs, kl, vl, kt, o.max_tokens, len);
        DecodeShape ds{static_cast<int>(n), c.n_heads, c.n_kv_heads, c.head_dim};  // (K/V stored above)
        ds.shared_kv = true;
        const float* q = qkv.as<float>();
        if (n > 1) {  // the queries of the n rows [n][QKV] as one [n][QD] block
          check(cudaMemcpy2DAsync(qrows.get(), static_cast<size_t>(QD) * 4, q, static_cast<size_t>(QKV) * 4,
                                  static_cast<size_t>(QD) * 4, static_cast<size_t>(n), cudaMemcpyDeviceToDevice, nullptr),
                "cudaMemcpy2DAsync (verify queries)");
          q = qrows.as<float>();
        }
        float* out = wt == Elem::F32 ? act.as<float>() : att.as<float>();
        decode_attention_full(ds, kt == Elem::F32 ? KvType::F32 : KvType::BF16, q, kl, vl, o.max_tokens,
                              lens.as<int>(), len + n, out, ws);
        if (wt != Elem::F32) fwd::convert(out, n * QD, act.get(), wt);
      } else {
        fwd::store_kv(qkv.as<float>(), n, qs, kl, vl, kt, o.max_tokens, len);
        fwd::prefill_attention(qkv.as<float>(), n, qs, kl, vl, kt, o.max_tokens, len, act.get(), wt);
      }
      gemm(L.wo, act.get(), n, xf, 1.0f);
      fwd::rmsnorm(xf, n, D, static_cast<int>(D), L.ffn_norm.as<float>(), c.norm_eps, act.get(), wt);
      gemm(L.gate_up, act.get(), n, gu.as<float>(), 0.0f);
      fwd::swiglu(gu.as<float>(), n, static_cast<int>(F), act.get(), wt);
      gemm(L.down, act.get(), n, xf, 1.0f);
    }
    len += n;
    if (pol.on) commit_fourier(pos0, n);
    if (host_all_ids) {  // final norm, logits and greedy id of every token
      fwd::rmsnorm(xf, n, D, static_cast<int>(D), out_norm.as<float>(), c.norm_eps, act.get(), wt);
      gemm(output(), act.get(), n, logits.as<float>(), 0.0f);
      for (int64_t i = 0; i < n; ++i) fwd::argmax(logits.as<float>() + i * V, static_cast<int>(V), ids.as<int>() + i);
      to_host(host_all_ids, ids.get(), static_cast<size_t>(n) * 4);
      return;
    }
    // Final norm and logits of the last token only.
    fwd::rmsnorm(xf + (n - 1) * D, 1, D, static_cast<int>(D), out_norm.as<float>(), c.norm_eps, act.get(), wt);
    gemm(output(), act.get(), 1, logits.as<float>(), 0.0f);
    if (host_id) {
      fwd::argmax(logits.as<float>(), static_cast<int>(V), ids.as<int>());
      to_host(host_id, ids.get(), 4);
    }
    if (host_logits) to_host(host_logits, logits.get(), static_cast<size_t>(V) * 4);
    if (!host_id && !host_logits) synchronize();
  }
};

GpuForward::GpuForward(const Model& m, const GpuForwardOptions& o) : im_(std::make_unique<Impl>(m, o)) {
  const ModelConfig& c = m.config;
  if (device_count() == 0) fail(ErrorKind::Unsupported, "--device cuda: no CUDA device found");
  if (o.max_tokens <= 0 || o.max_tokens > INT32_MAX)
    fail(ErrorKind::InvalidInput, "cuda forward: KV capacity of {} tokens (need 1 .. 2^31-1)", o.max_tokens);
  if (c.head_dim < 8 || c.head_dim > 128 || c.head_dim % 8)
    fail(ErrorKind::Unsupported, "cuda forward: head_dim {} (have multiples of 8 up to 128)", c.head_dim);
  if (c.rope.n_rot > c.head_dim || c.rope.n_rot % 2)
    fail(ErrorKind::Unsupported, "cuda forward: RoPE over {} of {} dims per head", c.rope.n_rot, c.head_dim);
  Impl& im = *im_;
  im.wt = o.f32_weights ? Elem::F32 : Elem::BF16;
  im.kt = o.f32_kv ? Elem::F32 : Elem::BF16;
  check_cublas(cublasCreate(&im.blas), "cublasCreate");
  // f32 weights: pedantic math (no TF32, no reduced-precision reductions), the exact-match mode.
  if (o.f32_weights) check_cublas(cublasSetMathMode(im.blas, CUBLAS_PEDANTIC_MATH), "cublasSetMathMode");
  im.decode_kernel = (c.head_dim & (c.head_dim - 1)) == 0 && c.head_dim >= 8 && c.n_kv_heads > 0 &&
                     c.n_heads % c.n_kv_heads == 0 && c.n_heads / c.n_kv_heads <= 8 &&
                     ((c.n_heads / c.n_kv_heads) & (c.n_heads / c.n_kv_heads - 1)) == 0;
  im.upload_weights();
  im.dynamic_rope = c.rope.scaling == RopeConfig::Scaling::DynamicNTK;
  if (!im.dynamic_rope) im.upload_rope_table(o.max_tokens);
  const size_t kv = static_cast<size_t>(c.n_layers) * im.kv_layer_elems() * fwd::elem_bytes(im.kt);
  im.kc.reserve(kv);
  im.vc.reserve(kv);
}

GpuForward::~GpuForward() {
  if (im_ && im_->blas) cublasDestroy(im_->blas);
}

void GpuForward::run_verify(const int32_t* tokens, int64_t n, int32_t* argmax) {
  if (!argmax) fail(ErrorKind::InvalidInput, "cuda forward: run_verify needs an output array");
  im_->run(tokens, n, nullptr, nullptr, argmax);
}

void GpuForward::run(const int32_t* tokens, int64_t n, float* logits, int32_t* argmax) {
  im_->run(tokens, n, logits, argmax);
}

int64_t GpuForward::n_tokens() const { return im_->len; }
int64_t GpuForward::capacity() const { return im_->o.max_tokens; }
size_t GpuForward::kv_bytes_per_token() const {
  const ModelConfig& c = im_->m.config;
  return static_cast<size_t>(c.n_layers) * 2 * c.n_kv_heads * c.head_dim * fwd::elem_bytes(im_->kt);
}

void GpuForward::reset(int64_t len) {
  if (len < 0 || len > im_->o.max_tokens)
    fail(ErrorKind::InvalidInput, "cuda forward: reset to {} tokens, the capacity is {}", len, im_->o.max_tokens);
  Impl& im = *im_;
  im.fourier.clear();
  im.len = len;
  im.pol.clock.reset();
  im.pol.plan_max_new = im.pol.prompt_end = -1;
  im.pol.period = 0;
}

void GpuForward::use_fourier(const kv::FourierOptions& f, int64_t ctx) {
  Impl& im = *im_;
  const ModelConfig& c = im.m.config;
  // (cli::gpu_kv_policy gives the same refusals one by one before any GPU work.)
  if (f.compat_reference || f.coeff_dtype == kv::CoeffDtype::F16 || f.stats_dtype != kv::CoeffDtype::F32)
    fail(ErrorKind::Unsupported,
         "cuda fourier: compat={}, coeff_dtype={}, stats_dtype={} (the GPU has compat=none, f32 or bf16 coefficients, "
         "f32 statistics)",
         f.compat_reference ? "reference" : "none", kv::dtype_name(f.coeff_dtype), kv::dtype_name(f.stats_dtype));
  if (ctx < 1) fail(ErrorKind::InvalidInput, "cuda fourier: context of {} tokens", ctx);
  const kv::Shape shape = kv_shape(c, ctx);
  Impl::FourierPolicy p;
  p.on = true;
  p.o = f;
  p.ctx = ctx;
  p.dims = f.dims.empty()     ? kv::default_fourier_dims(shape, f.rope)
           : f.dims == "none" ? kv::no_compressed_dims(shape)
                              : kv::load_fourier_dims(f.dims, shape, f.rope);
  for (const kv::LayerDims& L : p.dims.layers) {
    p.has_compressed.push_back(!L.k_compressed.empty() || !L.v_compressed.empty());
    p.any = p.any || p.has_compressed.back();
  }
  const int G = c.n_kv_heads > 0 && c.n_heads % c.n_kv_heads == 0 ? c.n_heads / c.n_kv_heads : 0;
  if (p.any && (c.head_dim < 8 || c.head_dim > 128 || (c.head_dim & (c.head_dim - 1))))
    fail(ErrorKind::Unsupported, "cuda fourier: head_dim {} (FourierLayer has 8, 16, 32, 64, 128)", c.head_dim);
  if (p.any && G != 1 && G != 2 && G != 4 && G != 8)
    fail(ErrorKind::Unsupported, "cuda fourier: {} query heads per KV head (FourierLayer has 1, 2, 4, 8)", G);
  im.pol = std::move(p);
  reset(0);
}

void GpuForward::plan(int64_t prompt_tokens, int64_t max_new_tokens) {
  if (prompt_tokens < 0 || max_new_tokens < 0)
    fail(ErrorKind::InvalidInput, "kv plan: prompt {} and max_new {} must be >= 0", prompt_tokens, max_new_tokens);
  im_->pol.clock.plan(im_->len, prompt_tokens);
  im_->pol.plan_max_new = max_new_tokens;
}

GpuForward::FourierState GpuForward::fourier_state() const {
  FourierState s;
  const Impl& im = *im_;
  if (!im.pol.on || im.fourier.empty()) return s;
  s.compressed = true;
  s.period = im.pol.period;
  for (const auto& f : im.fourier)
    if (f) {
      ++s.compressed_layers;
      s.mid_len = f->mid_len();
    }
  return s;
}

void GpuForward::start_fourier_random(const GpuFourierOptions& f, int64_t len, int64_t max_new, uint64_t seed) {
  Impl& im = *im_;
  const ModelConfig& c = im.m.config;
  if (c.head_dim != 64 && c.head_dim != 128)
    fail(ErrorKind::Unsupported, "cuda fourier: head_dim {} (the benchmark mode has 64 and 128)", c.head_dim);
  im.pol = Impl::FourierPolicy{};  // the benchmark state replaces use_fourier's policy
  if (len <= f.sink + f.window || max_new < 1)
    fail(ErrorKind::InvalidInput, "cuda fourier: {} tokens do not reach past sink {} + window {} (or max_new {} < 1)",
         len, f.sink, f.window, max_new);
  const int64_t mid = len - f.sink - f.window;
  FourierConfig cfg;
  cfg.shape = {1, c.n_heads, c.n_kv_heads, c.head_dim};
  cfg.sink = f.sink;
  cfg.window = f.window;
  cfg.coeffs = f.coeffs;
  cfg.coeff_bf16 = f.coeff_bf16;
  cfg.period = f.aligned_period ? kv::aligned_period(mid + max_new, static_cast<int>(f.coeffs / 2))
                               : kv::spectral::smooth_period(mid + max_new);  // kv::FourierCache's planned T
  cfg.w0 = 1.0 / static_cast<double>(cfg.period);            // the proper inverse
  cfg.w = 2.0 / static_cast<double>(cfg.period);
  cfg.mid_capacity = mid + max_new;
  const kv::Shape shape = kv_shape(c, len + max_new);
  const kv::FourierDims dims = kv::default_fourier_dims(shape, shape.rope_layout);
  im.fourier.clear();
  for (int l = 0; l < c.n_layers; ++l) {
    std::vector<FourierHeadDims> heads;
    for (const kv::HeadDims& h : kv::split_heads(dims.layers[static_cast<size_t>(l)], c.n_kv_heads, c.head_dim))
      heads.push_back({h.kc, h.kn, h.vc, h.vn});
    im.fourier.push_back(std::make_unique<FourierLayer>(cfg, heads));
    im.fourier.back()->fill_random(mid, seed + static_cast<uint64_t>(l));
  }
  im.fourier_xt = Elem::BF16;
  if (!im.dynamic_rope) im.upload_rope_table(len + max_new);
  im.len = len;
  im.fourier_end = len + max_new;
  synchronize();
}

bool GpuForward::fourier_active() const { return !im_->fourier.empty(); }

size_t GpuForward::kv_bytes_read() const {
  if (im_->fourier.empty()) return kv_bytes();
  const size_t layer_rows = kv_bytes_per_token() / im_->m.config.n_layers * static_cast<size_t>(im_->len);
  size_t b = 0;
  for (const auto& f : im_->fourier) b += f ? f->attention_bytes() : layer_rows;
  return b;
}

void GpuForward::fill_kv_random(uint64_t seed) {
  const size_t n = static_cast<size_t>(im_->m.config.n_layers) * im_->kv_layer_elems();
  if (im_->kt == Elem::F32) {
    fill_uniform_f32(im_->kc.as<float>(), n, seed);
    fill_uniform_f32(im_->vc.as<float>(), n, seed + 1);
  } else {
    fill_uniform_bf16(im_->kc.get(), n, seed);
    fill_uniform_bf16(im_->vc.get(), n, seed + 1);
  }
  synchronize();
}

const Model& GpuForward::model() const { return im_->m; }

size_t GpuForward::weight_bytes() const {
  size_t b = im_->embd.buf.bytes() + im_->out.buf.bytes();
  for (const Layer& L : im_->layers) b += L.qkv.buf.bytes() + L.wo.buf.bytes() + L.gate_up.buf.bytes() + L.down.buf.bytes();
  return b;
}

size_t GpuForward::kv_bytes() const {
  if (im_->fourier.empty()) return kv_bytes_per_token() * static_cast<size_t>(im_->len);
  const size_t layer_rows = kv_bytes_per_token() / im_->m.config.n_layers * static_cast<size_t>(im_->len);
  size_t b = 0;
  for (const auto& f : im_->fourier) b += f ? f->held_bytes() : layer_rows;
  return b;
}

size_t GpuForward::kv_capacity_bytes() const { return im_->kc.bytes() + im_->vc.bytes(); }

namespace {
double median_of(std::vector<double> v) {
  if (v.empty()) return 0;
  std::sort(v.begin(), v.end());
  const size_t h = v.size() / 2;
  return v.size() % 2 ? v[h] : 0.5 * (v[h - 1] + v[h]);
}
double seconds_since(std::chrono::steady_clock::time_point t0) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}
}  // namespace

GpuBenchResult bench_forward(GpuForward& fw, const GpuBenchOptions& o) {
  const ModelConfig& c = fw.model().config;
  const int64_t need = o.fourier ? std::max(o.n_prompt, o.n_gen) : o.depth + std::max(o.n_prompt, o.n_gen);
  if (o.reps < 1 || o.n_prompt < 0 || o.n_gen < 0 || o.depth < 0)
    fail(ErrorKind::InvalidInput, "cuda bench: reps {} / n_prompt {} / n_gen {} / depth {} out of range", o.reps,
         o.n_prompt, o.n_gen, o.depth);
  if (need > fw.capacity())
    fail(ErrorKind::InvalidInput, "cuda bench: depth {} + {} tokens exceed the KV capacity {}", o.depth,
         std::max(o.n_prompt, o.n_gen), fw.capacity());
  std::mt19937_64 rng(o.seed);
  std::uniform_int_distribution<int32_t> tok(0, c.vocab_size - 1);
  std::vector<int32_t> prompt(static_cast<size_t>(std::max(o.n_prompt, 1)));
  for (auto& t : prompt) t = tok(rng);
  fw.fill_kv_random(o.seed);
  int32_t id = 0;
  // Decode starts from `depth` tokens: the full cache's length, or a random FourierAttention state.
  auto start_decode = [&] {
    if (o.fourier)
      fw.start_fourier_random(o.fourier_options, o.depth, std::max(o.n_gen, 1) + 1, o.seed);
    else
      fw.reset(o.depth);
  };
  fw.reset(o.fourier ? 0 : o.depth);  // warm-up: cuBLAS heuristics, workspace sizes, lazy module loading
  fw.run(prompt.data(), std::min<int64_t>(std::max(o.n_prompt, 1), 16), nullptr, &id);
  start_decode();
  fw.run(&id, 1, nullptr, &id);
  GpuBenchResult r;
  for (int rep = 0; rep < o.reps; ++rep) {
    if (o.n_prompt > 0 && !o.fourier) {
      fw.reset(o.depth);
      const auto t0 = std::chrono::steady_clock::now();
      fw.run(prompt.data(), o.n_prompt, nullptr, &id);
      r.prefill_samples.push_back(o.n_prompt / seconds_since(t0));
    }
    if (o.n_gen > 0) {
      start_decode();
      id = prompt[0];
      const auto t0 = std::chrono::steady_clock::now();
      for (int i = 0; i < o.n_gen; ++i) fw.run(&id, 1, nullptr, &id);
      r.decode_samples.push_back(o.n_gen / seconds_since(t0));
    }
  }
  r.prefill_tok_s = median_of(r.prefill_samples);
  r.decode_tok_s = median_of(r.decode_samples);
  r.weight_bytes = fw.weight_bytes();
  r.kv_bytes_read = fw.kv_bytes_read();
  r.kv_bytes_held = fw.kv_bytes();
  r.device_memory_bytes = device_memory_used();
  fw.reset(0);
  return r;
}

size_t device_memory_used() {
  size_t free_b = 0, total_b = 0;
  check(cudaMemGetInfo(&free_b, &total_b), "cudaMemGetInfo");
  return total_b - free_b;
}

}  // namespace harmonia::cuda
