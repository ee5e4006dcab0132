#include "kv/full.h"

#include <omp.h>

#include <algorithm>
#include <cmath>
#include <cstring>

#include "common/error.h"
#include "kv/attn_kernels.h"
#include "kv/options.h"
#include "tensor/ops.h"

#if defined(__F16C__)
#include <immintrin.h>
#endif

namespace harmonia::kv {

namespace {

// Multiply-adds of q.k (one pass; the values pass doubles it) under which
// causal_attention stays on the calling thread.
constexpr int64_t kAttnParallelMin = int64_t{1} << 16;

// Query i of kv head kvh (queries of the GQA group share each key row):
// probabilities left in scores [group][n_see], output written. Key t is at
// physical row t (t < split) or t + skip: two contiguous runs (kv/attn_kernels.h).
inline void attend_query(const Shape& s, int kvh, int64_t i, int64_t n_q, const float* q, const float* k,
                         const float* v, int64_t n_keys, int64_t head_stride, int64_t split, int64_t skip,
                         std::vector<float>& scores, float* out) {
  const int hd = s.head_dim;
  const int group = s.n_heads / s.n_kv_heads;
  const float scale = 1.0f / std::sqrt(static_cast<float>(hd));
  const int64_t n_see = n_keys - n_q + i + 1;
  const int64_t n_first = std::min(split, n_see);  // keys of the first run
  const float* kh = k + kvh * head_stride;
  const float* vh = v + kvh * head_stride;
  const float* qg = q + (i * s.n_heads + kvh * group) * hd;  // [group][hd]
  float* og = out + (i * s.n_heads + kvh * group) * hd;      // [group][hd]
  scores.resize(static_cast<size_t>(group) * n_see);
  attn::scores(qg, group, kh, n_first, hd, scale, scores.data(), n_see);
  if (n_see > n_first)
    attn::scores(qg, group, kh + (n_first + skip) * hd, n_see - n_first, hd, scale, scores.data() + n_first, n_see);
  for (int g = 0; g < group; ++g) attn::softmax(scores.data() + g * n_see, n_see);
  std::fill(og, og + static_cast<size_t>(group) * hd, 0.0f);
  attn::values(scores.data(), n_see, group, vh, n_first, hd, og);
  if (n_see > n_first)
    attn::values(scores.data() + n_first, n_see, group, vh + (n_first + skip) * hd, n_see - n_first, hd, og);
}

}  // namespace

void causal_attention(const Shape& s, int64_t n_q, const float* q, const float* k, const float* v,
                      int64_t n_keys, int64_t head_stride, float* out) {
  const int64_t jobs = static_cast<int64_t>(s.n_kv_heads) * n_q;
  // Short contexts run on the calling thread: below ~64K multiply-adds (e.g. one
  // decode query of 12 heads x 64 dims over < 85 keys) the team's fork/join costs
  // more than splitting the heads saves.
#pragma omp parallel if (jobs * n_keys * s.head_dim > kAttnParallelMin)
  {
    std::vector<float> scores;  // [group][n_keys]
#pragma omp for schedule(dynamic, 1)
    for (int64_t job = 0; job < jobs; ++job)
      attend_query(s, static_cast<int>(job % s.n_kv_heads), job / s.n_kv_heads, n_q, q, k, v, n_keys, head_stride,
                   n_keys, 0, scores, out);
  }
}

namespace {

// K/V rows of one layer in element type `type`: [n_kv_heads][cap] rows of row_bytes.
struct TypedRows {
  DType type;
  const uint8_t* data;
  size_t row_bytes;
  int64_t cap;
  // Row t of head h as fp32, converted into buf ([head_dim]).
  const float* row(int h, int64_t t, int hd, float* buf) const {
    const uint8_t* p = data + (static_cast<size_t>(h) * cap + t) * row_bytes;
    switch (type) {
      case DType::F32:  // copied: the storage is bytes
        std::memcpy(buf, p, static_cast<size_t>(hd) * sizeof(float));
        return buf;
      case DType::BF16:  // the top half of an fp32: a shift the compiler vectorises
        for (int j = 0; j < hd; ++j) {
          uint16_t h16;
          std::memcpy(&h16, p + 2 * j, 2);
          const uint32_t u = static_cast<uint32_t>(h16) << 16;
          std::memcpy(buf + j, &u, 4);
        }
        return buf;
#if defined(__F16C__)
      case DType::F16: {  // 8 conversions per instruction (tensor/'s reference converts one at a time)
        int j = 0;
        for (; j + 8 <= hd; j += 8)
          _mm256_storeu_ps(buf + j, _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p + 2 * j))));
        if (j < hd) dequantize_row(type, p + 2 * j, buf + j, hd - j);
        return buf;
      }
#endif
      default:
        dequantize_row(type, p, buf, hd);
        return buf;
    }
  }
};

// causal_attention over typed rows. Jobs are (kv head, block of kQueryBlock
// queries): each stored row is dequantised once per job and used by every
// query of the block and every query head of the GQA group.
constexpr int64_t kQueryBlock = 8;

void typed_causal_attention(const Shape& s, int64_t n_q, const float* q, const TypedRows& K, const TypedRows& V,
                            int64_t n_keys, float* out) {
  const int hd = s.head_dim;
  const int group = s.n_heads / s.n_kv_heads;
  const float scale = 1.0f / std::sqrt(static_cast<float>(hd));
  const int64_t n_blocks = (n_q + kQueryBlock - 1) / kQueryBlock;
  const int64_t jobs = static_cast<int64_t>(s.n_kv_heads) * n_blocks;
  const int64_t base = n_keys - n_q;  // query i sees keys [0, base + i]
#pragma omp parallel
  {
    std::vector<float> scores;  // [nb][group][n_max]
    std::vector<float> kbuf(hd), vbuf(hd);
#pragma omp for schedule(dynamic, 1)
    for (int64_t job = 0; job < jobs; ++job) {
      const int kvh = static_cast<int>(job % s.n_kv_heads);
      const int64_t i0 = (job / s.n_kv_heads) * kQueryBlock;
      const int64_t i1 = std::min(n_q, i0 + kQueryBlock);
      const int64_t n_max = base + i1;  // keys seen by the block's last query
      scores.resize(static_cast<size_t>(i1 - i0) * group * n_max);
      auto sc = [&](int64_t i, int g) { return scores.data() + ((i - i0) * group + g) * n_max; };
      for (int64_t t = 0; t < n_max; ++t) {
        const float* kt = K.row(kvh, t, hd, kbuf.data());
        for (int64_t i = std::max(i0, t - base); i < i1; ++i)
          for (int g = 0; g < group; ++g) {
            const float* qh = q + (i * s.n_heads + kvh * group + g) * hd;
            float d = 0.0f;
#pragma omp simd reduction(+ : d)
            for (int j = 0; j < hd; ++j) d += qh[j] * kt[j];
            sc(i, g)[t] = d * scale;
          }
      }
      for (int64_t i = i0; i < i1; ++i)
        for (int g = 0; g < group; ++g) {
          float* p = sc(i, g);
          const int64_t n_see = base + i + 1;
          float mx = -INFINITY;
          for (int64_t t = 0; t < n_see; ++t) mx = std::max(mx, p[t]);
          float sum = 0.0f;
          for (int64_t t = 0; t < n_see; ++t) {
            p[t] = std::exp(p[t] - mx);
            sum += p[t];
          }
          const float inv = 1.0f / sum;
          for (int64_t t = 0; t < n_see; ++t) p[t] *= inv;
          float* o = out + (i * s.n_heads + kvh * group + g) * hd;
          std::fill(o, o + hd, 0.0f);
        }
      for (int64_t t = 0; t < n_max; ++t) {
        const float* vt = V.row(kvh, t, hd, vbuf.data());
        for (int64_t i = std::max(i0, t - base); i < i1; ++i)
          for (int g = 0; g < group; ++g) {
            float* o = out + (i * s.n_heads + kvh * group + g) * hd;
            const float p = sc(i, g)[t];
#pragma omp simd
            for (int j = 0; j < hd; ++j) o[j] += p * vt[j];
          }
      }
    }
  }
}

bool block_type(DType t) { return dtype_info(t).block_elems > 1; }

}  // namespace

void causal_attention_ex(const Shape& s, int64_t n_q, const float* q, const float* k, const float* v,
                         int64_t n_keys, int64_t head_stride, int64_t split, int64_t skip, float* out,
                         float* score_sum) {
  if (skip == 0 && !score_sum) return causal_attention(s, n_q, q, k, v, n_keys, head_stride, out);
  const int group = s.n_heads / s.n_kv_heads;
  if (score_sum) {
    std::fill(score_sum, score_sum + static_cast<size_t>(s.n_kv_heads) * n_keys, 0.0f);
#pragma omp parallel
    {
      std::vector<float> scores;
#pragma omp for schedule(dynamic, 1)
      for (int kvh = 0; kvh < s.n_kv_heads; ++kvh) {
        float* acc = score_sum + static_cast<size_t>(kvh) * n_keys;
        for (int64_t i = 0; i < n_q; ++i) {
          attend_query(s, kvh, i, n_q, q, k, v, n_keys, head_stride, split, skip, scores, out);
          const int64_t n_see = n_keys - n_q + i + 1;
          for (int g = 0; g < group; ++g) {
            const float* p = scores.data() + g * n_see;
            for (int64_t t = 0; t < n_see; ++t) acc[t] += p[t];
          }
        }
      }
    }
    return;
  }
  const int64_t jobs = static_cast<int64_t>(s.n_kv_heads) * n_q;
#pragma omp parallel
  {
    std::vector<float> scores;
#pragma omp for schedule(dynamic, 1)
    for (int64_t job = 0; job < jobs; ++job)
      attend_query(s, static_cast<int>(job % s.n_kv_heads), job / s.n_kv_heads, n_q, q, k, v, n_keys, head_stride,
                   split, skip, scores, out);
  }
}

void check_shape(const std::string& policy, const Shape& s) {
  if (s.n_layers <= 0 || s.n_heads <= 0 || s.n_kv_heads <= 0 || s.head_dim <= 0 || s.max_tokens <= 0 ||
      s.n_heads % s.n_kv_heads != 0)
    fail(ErrorKind::InvalidInput,
         "kv cache '{}': invalid shape (layers {}, heads {}, kv heads {}, head_dim {}, max {})", policy, s.n_layers,
         s.n_heads, s.n_kv_heads, s.head_dim, s.max_tokens);
}

// ---- FullCache -----------------------------------------------------------------------

FullCache::FullCache(const Shape& s, const FullOptions& o)
    : s_(s), o_(o), layer_len_(s.n_layers, 0), k_(s.n_layers), v_(s.n_layers), kb_(s.n_layers), vb_(s.n_layers) {
  if (s.n_layers <= 0 || s.n_heads <= 0 || s.n_kv_heads <= 0 || s.head_dim <= 0 || s.max_tokens <= 0 ||
      s.n_heads % s.n_kv_heads != 0)
    fail(ErrorKind::InvalidInput, "kv cache: invalid shape (layers {}, heads {}, kv heads {}, head_dim {}, max {})",
         s.n_layers, s.n_heads, s.n_kv_heads, s.head_dim, s.max_tokens);
  for (auto [key, t] : {std::pair{"k_type", o.k_type}, std::pair{"v_type", o.v_type}}) {
    if (t != DType::F32 && t != DType::F16 && t != DType::BF16 && t != DType::Q8_0 && t != DType::Q4_0)
      fail(ErrorKind::InvalidInput, "kv policy 'full': {}={} is not a KV element type (f32, f16, bf16, q8_0, q4_0)",
           key, dtype_name(t));
    if (block_type(t) && s.head_dim % dtype_info(t).block_elems != 0)
      fail(ErrorKind::InvalidInput,
           "kv policy 'full': {}={} stores blocks of {} elements but head_dim is {} (not a multiple of {})", key,
           dtype_name(t), dtype_info(t).block_elems, s.head_dim, dtype_info(t).block_elems);
  }
  typed_ = o.k_type != DType::F32 || o.v_type != DType::F32;
  k_row_bytes_ = row_bytes(o.k_type, s.head_dim);
  v_row_bytes_ = row_bytes(o.v_type, s.head_dim);
}

void FullCache::reserve(int64_t tokens) {
  tokens = std::min(tokens, s_.max_tokens);
  if (tokens <= cap_) return;
  // Grow geometrically (at least 256 tokens) up to max_tokens; re-lay each head.
  int64_t nc = std::max<int64_t>({tokens, cap_ * 2, 256});
  nc = std::min(nc, s_.max_tokens);
  const size_t hd = static_cast<size_t>(s_.head_dim);
  for (int l = 0; l < s_.n_layers; ++l) {
    const int64_t used = layer_len_[l];
    if (!typed_) {
      for (auto* buf : {&k_[l], &v_[l]}) {
        HugeVector<float> nb(static_cast<size_t>(s_.n_kv_heads) * nc * hd);
        for (int h = 0; h < s_.n_kv_heads && used > 0; ++h)
          std::copy_n(buf->data() + h * cap_ * hd, used * hd, nb.data() + h * nc * hd);
        buf->swap(nb);
      }
    } else {
      for (auto [buf, rb] : {std::pair{&kb_[l], k_row_bytes_}, std::pair{&vb_[l], v_row_bytes_}}) {
        HugeVector<uint8_t> nb(static_cast<size_t>(s_.n_kv_heads) * nc * rb);
        for (int h = 0; h < s_.n_kv_heads && used > 0; ++h)
          std::copy_n(buf->data() + h * cap_ * rb, used * rb, nb.data() + h * nc * rb);
        buf->swap(nb);
      }
    }
  }
  cap_ = nc;
}

void FullCache::append(int layer, int64_t n, const float* k, const float* v) {
  if (layer < 0 || layer >= s_.n_layers) fail(ErrorKind::Internal, "kv append: layer {} out of range", layer);
  const int64_t len = layer_len_[layer];
  if (len + n > s_.max_tokens)
    fail(ErrorKind::InvalidInput, "context full: {} tokens cached + {} new exceeds the context size {}", len, n,
         s_.max_tokens);
  reserve(len + n);
  const int hd = s_.head_dim;
  if (!typed_) {
    for (int64_t t = 0; t < n; ++t)
      for (int h = 0; h < s_.n_kv_heads; ++h) {
        const size_t dst = (static_cast<size_t>(h) * cap_ + len + t) * hd;
        std::copy_n(k + (t * s_.n_kv_heads + h) * hd, hd, k_[layer].data() + dst);
        std::copy_n(v + (t * s_.n_kv_heads + h) * hd, hd, v_[layer].data() + dst);
      }
  } else {
    for (int64_t t = 0; t < n; ++t)
      for (int h = 0; h < s_.n_kv_heads; ++h) {
        const size_t row = static_cast<size_t>(h) * cap_ + len + t;
        quantize_row(o_.k_type, k + (t * s_.n_kv_heads + h) * hd, kb_[layer].data() + row * k_row_bytes_, hd);
        quantize_row(o_.v_type, v + (t * s_.n_kv_heads + h) * hd, vb_[layer].data() + row * v_row_bytes_, hd);
      }
  }
  layer_len_[layer] = len + n;
}

void FullCache::attend(int layer, int64_t n, const float* q, float* out) {
  if (!typed_) {
    causal_attention(s_, n, q, k_[layer].data(), v_[layer].data(), layer_len_[layer], cap_ * s_.head_dim, out);
    return;
  }
  const TypedRows K{o_.k_type, kb_[layer].data(), k_row_bytes_, cap_};
  const TypedRows V{o_.v_type, vb_[layer].data(), v_row_bytes_, cap_};
  typed_causal_attention(s_, n, q, K, V, layer_len_[layer], out);
}

void FullCache::commit(int64_t n) {
  n_tokens_ += n;
  for (int l = 0; l < s_.n_layers; ++l)
    if (layer_len_[l] != n_tokens_)
      fail(ErrorKind::Internal, "kv ledger: layer {} holds {} tokens, logical length is {}", l, layer_len_[l],
           n_tokens_);
}

void FullCache::truncate(int64_t n) {
  if (n < 0 || n > n_tokens_) fail(ErrorKind::Internal, "kv truncate to {} of {}", n, n_tokens_);
  n_tokens_ = n;
  std::fill(layer_len_.begin(), layer_len_.end(), n);
}

void FullCache::clear() { truncate(0); }

ByteLedger FullCache::bytes() const { return bytes_at(n_tokens_); }

ByteLedger FullCache::bytes_at(int64_t n_tokens) const {
  const size_t rows = static_cast<size_t>(s_.n_layers) * s_.n_kv_heads * n_tokens;
  return {{"keys", rows * k_row_bytes_}, {"values", rows * v_row_bytes_}};
}

std::unique_ptr<Policy> make_full(const Shape& s, const Options& opts) {
  OptionReader r("full", opts);
  const std::set<std::string> types = {"f32", "f16", "bf16", "q8_0", "q4_0"};
  FullOptions o;
  o.k_type = *dtype_from_name(r.get_choice("k_type", "f32", types));
  o.v_type = *dtype_from_name(r.get_choice("v_type", "f32", types));
  r.finish();
  return std::make_unique<FullCache>(s, o);
}

// ---- RowStore ------------------------------------------------------------------------

RowStore::RowStore(const Shape& s) : s_(s), layers_(s.n_layers) {}

void RowStore::realloc(Layer& L, int64_t cap) {
  const size_t hd = static_cast<size_t>(s_.head_dim);
  for (auto* buf : {&L.k, &L.v}) {
    HugeVector<float> nb(static_cast<size_t>(s_.n_kv_heads) * cap * hd);
    for (int h = 0; h < s_.n_kv_heads && L.rows > 0; ++h)
      std::copy_n(buf->data() + h * L.cap * hd, L.rows * hd, nb.data() + h * cap * hd);
    buf->swap(nb);
  }
  L.cap = cap;
}

void RowStore::squeeze(Layer& L) {
  if (L.skip == 0) return;
  const size_t hd = static_cast<size_t>(s_.head_dim);
  for (auto* buf : {&L.k, &L.v})
    for (int h = 0; h < s_.n_kv_heads; ++h) {
      float* head = buf->data() + h * L.cap * hd;
      std::memmove(head + L.split * hd, head + (L.split + L.skip) * hd, (L.rows - L.split) * hd * sizeof(float));
    }
  L.skip = 0;
  L.split = 0;
}

void RowStore::append(int layer, int64_t n, const float* k, const float* v) {
  Layer& L = layers_[layer];
  if (L.rows + L.skip + n > L.cap) {
    squeeze(L);
    if (L.rows + n > L.cap) {
      int64_t nc = std::max<int64_t>({L.rows + n, L.cap * 2, 256});
      nc = std::max(std::min(nc, s_.max_tokens), L.rows + n);
      realloc(L, nc);
    }
  }
  const int hd = s_.head_dim;
  const int64_t first = L.rows + L.skip;  // physical row of the first new token
  for (int64_t t = 0; t < n; ++t)
    for (int h = 0; h < s_.n_kv_heads; ++h) {
      const size_t dst = (static_cast<size_t>(h) * L.cap + first + t) * hd;
      std::copy_n(k + (t * s_.n_kv_heads + h) * hd, hd, L.k.data() + dst);
      std::copy_n(v + (t * s_.n_kv_heads + h) * hd, hd, L.v.data() + dst);
    }
  L.rows += n;
}

void RowStore::drop_after(int layer, int64_t split, int64_t count) {
  Layer& L = layers_[layer];
  if (count <= 0) return;
  if (split < 0 || split + count > L.rows)
    fail(ErrorKind::Internal, "row store: drop rows [{}, {}) of {}", split, split + count, L.rows);
  if (L.skip > 0 && split != L.split) squeeze(L);
  L.split = split;
  L.skip += count;
  L.rows -= count;
  if (L.skip >= L.rows) {  // the hole outgrew the data: close it, give back memory
    squeeze(L);
    if (L.cap > 2 * L.rows + 256) realloc(L, 2 * L.rows + 256);
  }
}

void RowStore::keep(int layer, const std::vector<std::vector<int64_t>>& keep) {
  Layer& L = layers_[layer];
  squeeze(L);
  if (static_cast<int>(keep.size()) != s_.n_kv_heads)
    fail(ErrorKind::Internal, "row store: keep lists for {} heads, shape has {}", keep.size(), s_.n_kv_heads);
  const int64_t m = static_cast<int64_t>(keep[0].size());
  const size_t hd = static_cast<size_t>(s_.head_dim);
  for (int h = 0; h < s_.n_kv_heads; ++h) {
    if (static_cast<int64_t>(keep[h].size()) != m)
      fail(ErrorKind::Internal, "row store: head {} keeps {} rows, head 0 keeps {}", h, keep[h].size(), m);
    for (auto* buf : {&L.k, &L.v}) {
      float* head = buf->data() + h * L.cap * hd;
      for (int64_t j = 0; j < m; ++j) {
        const int64_t src = keep[h][j];
        if (src < j || src >= L.rows || (j > 0 && src <= keep[h][j - 1]))
          fail(ErrorKind::Internal, "row store: keep list of head {} not ascending within {} rows", h, L.rows);
        if (src != j) std::copy_n(head + src * hd, hd, head + j * hd);
      }
    }
  }
  L.rows = m;
  if (L.cap > 2 * L.rows + 256) realloc(L, 2 * L.rows + 256);
}

void RowStore::truncate(int layer, int64_t rows) {
  Layer& L = layers_[layer];
  if (rows < 0 || rows > L.rows) fail(ErrorKind::Internal, "row store: truncate to {} of {} rows", rows, L.rows);
  if (rows <= L.split) L.skip = 0, L.split = 0;
  L.rows = rows;
}

void RowStore::clear() {
  for (auto& L : layers_) L = Layer{};
}

void RowStore::attend(int layer, int64_t n_q, const float* q, float* out, float* score_sum) const {
  const Layer& L = layers_[layer];
  causal_attention_ex(s_, n_q, q, L.k.data(), L.v.data(), L.rows, L.cap * s_.head_dim, L.split, L.skip, out,
                      score_sum);
}

void RowStore::attend_window(int layer, int64_t n_q, const float* q, float* out, int64_t head,
                             const int64_t* first) const {
  const Layer& L = layers_[layer];
  if (L.skip > 0 && L.split != head)
    fail(ErrorKind::Internal, "row store: window attention with a hole at row {}, not at {}", L.split, head);
  const int64_t qd = static_cast<int64_t>(s_.n_heads) * s_.head_dim;
  for (int64_t i = 0; i < n_q; ++i) {
    const int64_t own = L.rows - n_q + i;
    if (first[i] < head || (first[i] > head && first[i] > own))
      fail(ErrorKind::Internal, "row store: window of query {} starts at row {} (head {}, own row {})", i, first[i],
           head, own);
    // Logical key t < head is row t; key t >= head is row first[i] + (t - head),
    // i.e. a hole of first[i] - head rows on top of the store's own.
    causal_attention_ex(s_, 1, q + i * qd, L.k.data(), L.v.data(), head + (own - first[i] + 1), L.cap * s_.head_dim,
                        head, L.skip + (first[i] - head), out + i * qd, nullptr);
  }
}

const float* RowStore::key(int layer, int h, int64_t r) const {
  const Layer& L = layers_[layer];
  return L.k.data() + (h * L.cap + phys(L, r)) * s_.head_dim;
}

const float* RowStore::value(int layer, int h, int64_t r) const {
  const Layer& L = layers_[layer];
  return L.v.data() + (h * L.cap + phys(L, r)) * s_.head_dim;
}

size_t RowStore::layer_bytes(int layer) const {
  return static_cast<size_t>(layers_[layer].rows) * s_.n_kv_heads * s_.head_dim * sizeof(float) * 2;
}

}  // namespace harmonia::kv
