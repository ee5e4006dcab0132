#include "kv/dims.h"

#include <algorithm>
#include <cmath>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>

#include "common/error.h"

namespace harmonia::kv {

using nlohmann::json;

size_t FourierDims::k_compressed_total() const {
  size_t s = 0;
  for (const auto& l : layers) s += l.k_compressed.size();
  return s;
}

size_t FourierDims::v_compressed_total() const {
  size_t s = 0;
  for (const auto& l : layers) s += l.v_compressed.size();
  return s;
}

double FourierDims::compressed_fraction() const {
  if (n_layers == 0 || kv_dim == 0) return 0;
  return static_cast<double>(k_compressed_total() + v_compressed_total()) / (2.0 * kv_dim * n_layers);
}

int rope_permute(int d, int head_dim, RopeLayout from, RopeLayout to) {
  if (from == to || head_dim % 2) return d;
  const int half = head_dim / 2;
  if (from == RopeLayout::Half)  // (i, i+half) -> (2i, 2i+1)
    return d < half ? 2 * d : 2 * (d - half) + 1;
  return d % 2 == 0 ? d / 2 : d / 2 + half;  // (2i, 2i+1) -> (i, i+half)
}

std::vector<HeadDims> split_heads(const LayerDims& layer, int n_kv_heads, int head_dim) {
  std::vector<HeadDims> heads(n_kv_heads);
  auto split = [&](const std::vector<int>& compressed, auto member_c, auto member_n) {
    std::vector<char> is_c(static_cast<size_t>(n_kv_heads) * head_dim, 0);
    for (int g : compressed) is_c[g] = 1;
    for (int h = 0; h < n_kv_heads; ++h)
      for (int d = 0; d < head_dim; ++d)
        (is_c[h * head_dim + d] ? heads[h].*member_c : heads[h].*member_n).push_back(d);
  };
  split(layer.k_compressed, &HeadDims::kc, &HeadDims::kn);
  split(layer.v_compressed, &HeadDims::vc, &HeadDims::vn);
  return heads;
}

// ---- Loading -----------------------------------------------------------------------

namespace {

struct Ctx {
  const std::string& source;
  const Shape& shape;
  RopeLayout layout;
  int kv_dim() const { return shape.n_kv_heads * shape.head_dim; }
};

template <typename... Args>
[[noreturn]] void bad(const Ctx& c, const std::string& where, fmt::format_string<Args...> f, Args&&... args) {
  fail(ErrorKind::InvalidInput, "fourier dims {}: {}{}", c.source, where.empty() ? "" : where + ": ",
       fmt::format(f, std::forward<Args>(args)...));
}

std::vector<int> int_list(const Ctx& c, const std::string& where, const json& obj, const std::string& key) {
  if (!obj.is_object() || !obj.contains(key)) bad(c, where, "missing \"{}\"", key);
  const json& a = obj.at(key);
  if (!a.is_array()) bad(c, where, "\"{}\" must be a list of integers", key);
  std::vector<int> v;
  v.reserve(a.size());
  for (size_t i = 0; i < a.size(); ++i) {
    if (!a[i].is_number_integer()) bad(c, where, "\"{}\"[{}] is not an integer", key, i);
    const int64_t x = a[i].get<int64_t>();
    if (x < 0 || x >= c.kv_dim())
      bad(c, where, "\"{}\"[{}] = {} is outside [0, {}) (n_kv_heads {} x head_dim {})", key, i, x, c.kv_dim(),
          c.shape.n_kv_heads, c.shape.head_dim);
    v.push_back(static_cast<int>(x));
  }
  return v;
}

// Sorted copy; rejects duplicates.
std::vector<int> as_set(const Ctx& c, const std::string& where, const std::string& key, std::vector<int> v) {
  std::sort(v.begin(), v.end());
  auto dup = std::adjacent_find(v.begin(), v.end());
  if (dup != v.end()) bad(c, where, "\"{}\" lists dim {} twice", key, *dup);
  return v;
}

// File (rotate_half) order -> engine layout, sorted.
std::vector<int> to_engine(const Ctx& c, std::vector<int> k) {
  const int hd = c.shape.head_dim;
  for (int& g : k) g = (g / hd) * hd + rope_permute(g % hd, hd, RopeLayout::Half, c.layout);
  std::sort(k.begin(), k.end());
  return k;
}

void check_partition(const Ctx& c, const std::string& where, const std::vector<int>& comp,
                     const std::vector<int>& exact, const char* ckey, const char* nkey) {
  if (comp.size() + exact.size() != static_cast<size_t>(c.kv_dim()))
    bad(c, where, "\"{}\" ({}) and \"{}\" ({}) must together hold {} dims", ckey, comp.size(), nkey, exact.size(),
        c.kv_dim());
  std::vector<int> all(comp);
  all.insert(all.end(), exact.begin(), exact.end());
  std::sort(all.begin(), all.end());
  for (int i = 0; i < c.kv_dim(); ++i)
    if (all[i] != i)
      bad(c, where, "\"{}\" and \"{}\" do not partition [0, {}): dim {} is missing or repeated", ckey, nkey, c.kv_dim(),
          i);
}

// Inclusive per-head prefix counts (spec §7.2) must match the list.
void check_h_list(const Ctx& c, const std::string& where, const json& obj, const std::string& key,
                  const std::vector<int>& list) {
  const int H = c.shape.n_kv_heads, hd = c.shape.head_dim;
  if (!obj.contains(key)) bad(c, where, "missing \"{}\"", key);
  const json& a = obj.at(key);
  if (!a.is_array() || a.size() != static_cast<size_t>(H))
    bad(c, where, "\"{}\" must list {} per-head cumulative counts (one per KV head), has {}", key, H,
        a.is_array() ? a.size() : 0);
  int64_t prev = 0;
  for (int h = 0; h < H; ++h) {
    if (!a[h].is_number_integer()) bad(c, where, "\"{}\"[{}] is not an integer", key, h);
    const int64_t cum = a[h].get<int64_t>();
    const int64_t want = std::count_if(list.begin(), list.end(), [&](int g) { return g / hd == h; });
    if (cum - prev != want) bad(c, where, "\"{}\" says head {} has {} dims, the list has {}", key, h, cum - prev, want);
    prev = cum;
  }
}

std::string layer_key(int i) { return "Layer_" + std::to_string(i); }

void check_layer_keys(const Ctx& c, const json& j) {
  for (int i = 0; i < c.shape.n_layers; ++i)
    if (!j.contains(layer_key(i)))
      bad(c, "", "has no \"{}\" (the model has {} layers)", layer_key(i), c.shape.n_layers);
  if (j.size() != static_cast<size_t>(c.shape.n_layers))
    bad(c, "", "has {} entries, the model has {} layers", j.size(), c.shape.n_layers);
}

FourierDims parse_splithead(const Ctx& c, const json& j) {
  check_layer_keys(c, j);
  FourierDims d;
  for (int i = 0; i < c.shape.n_layers; ++i) {
    const std::string w = layer_key(i);
    const json& L = j.at(w);
    auto kc = as_set(c, w, "kc_list", int_list(c, w, L, "kc_list"));
    auto kn = as_set(c, w, "kn_list", int_list(c, w, L, "kn_list"));
    auto vc = as_set(c, w, "vc_list", int_list(c, w, L, "vc_list"));
    auto vn = as_set(c, w, "vn_list", int_list(c, w, L, "vn_list"));
    check_partition(c, w, kc, kn, "kc_list", "kn_list");
    check_partition(c, w, vc, vn, "vc_list", "vn_list");
    check_h_list(c, w, L, "kc_h_list", kc);
    check_h_list(c, w, L, "kn_h_list", kn);
    check_h_list(c, w, L, "vc_h_list", vc);
    check_h_list(c, w, L, "vn_h_list", vn);
    LayerDims ld;
    ld.k_compressed = to_engine(c, kc);
    ld.v_compressed = vc;
    d.layers.push_back(std::move(ld));
  }
  return d;
}

FourierDims parse_ranking(const Ctx& c, const json& j) {
  check_layer_keys(c, j);
  FourierDims d;
  for (int i = 0; i < c.shape.n_layers; ++i) {
    const std::string w = layer_key(i);
    const json& L = j.at(w);
    LayerDims ld;
    ld.k_rank = int_list(c, w, L, "self_attn.k_proj");
    ld.v_rank = int_list(c, w, L, "self_attn.v_proj");
    ld.k_compressed = to_engine(c, as_set(c, w, "self_attn.k_proj", ld.k_rank));
    ld.v_compressed = as_set(c, w, "self_attn.v_proj", ld.v_rank);
    d.layers.push_back(std::move(ld));
  }
  return d;
}

FourierDims parse_ours(const Ctx& c0, const json& j) {
  const std::string fmt_name = j.value("format", std::string());
  if (fmt_name != "harmonia-fourier-dims-v1")
    bad(c0, "", "unknown format \"{}\" (expected \"harmonia-fourier-dims-v1\")", fmt_name);
  auto get_int = [&](const char* key) -> int64_t {
    if (!j.contains(key) || !j.at(key).is_number_integer()) bad(c0, "", "missing integer \"{}\"", key);
    return j.at(key).get<int64_t>();
  };
  const int64_t nl = get_int("n_layers"), kvd = get_int("kv_dim");
  if (nl != c0.shape.n_layers) bad(c0, "", "is for {} layers, the model has {}", nl, c0.shape.n_layers);
  if (kvd != c0.kv_dim())
    bad(c0, "", "is for kv_dim {}, the model has {} (n_kv_heads {} x head_dim {})", kvd, c0.kv_dim(),
        c0.shape.n_kv_heads, c0.shape.head_dim);
  if (j.contains("head_dim") && get_int("head_dim") != c0.shape.head_dim)
    bad(c0, "", "is for head_dim {}, the model has {}", get_int("head_dim"), c0.shape.head_dim);
  const std::string lay = j.value("rope_layout", std::string("half"));
  if (lay != "half" && lay != "interleaved") bad(c0, "", "rope_layout \"{}\" must be \"half\" or \"interleaved\"", lay);
  // The file's K order: convert file -> rotate_half -> engine.
  const RopeLayout file_layout = lay == "half" ? RopeLayout::Half : RopeLayout::Interleaved;
  const json& layers = j.contains("layers") ? j.at("layers") : json();
  if (!layers.is_array() || layers.size() != static_cast<size_t>(nl))
    bad(c0, "", "\"layers\" must be a list of {} entries", nl);
  FourierDims d;
  const int hd = c0.shape.head_dim;
  for (int i = 0; i < nl; ++i) {
    const std::string w = "layers[" + std::to_string(i) + "]";
    LayerDims ld;
    auto k = as_set(c0, w, "k_compressed", int_list(c0, w, layers[i], "k_compressed"));
    for (int& g : k) g = (g / hd) * hd + rope_permute(g % hd, hd, file_layout, RopeLayout::Half);
    ld.k_compressed = to_engine(c0, k);
    ld.v_compressed = as_set(c0, w, "v_compressed", int_list(c0, w, layers[i], "v_compressed"));
    d.layers.push_back(std::move(ld));
  }
  return d;
}

}  // namespace

FourierDims parse_fourier_dims(const json& j, const std::string& source, const Shape& shape, RopeLayout layout) {
  const Ctx c{source, shape, layout};
  if (shape.n_layers <= 0 || shape.n_kv_heads <= 0 || shape.head_dim <= 0)
    fail(ErrorKind::InvalidInput, "fourier dims {}: invalid model shape", source);
  if (!j.is_object()) bad(c, "", "must be a JSON object");
  FourierDims d;
  if (j.contains("format")) {
    d = parse_ours(c, j);
  } else if (j.contains("Layer_0") && j.at("Layer_0").is_object() && j.at("Layer_0").contains("kc_list")) {
    d = parse_splithead(c, j);
  } else if (j.contains("Layer_0") && j.at("Layer_0").is_object() && j.at("Layer_0").contains("self_attn.k_proj")) {
    d = parse_ranking(c, j);
  } else {
    bad(c, "",
        "unrecognised format: expected the authors' splithead (\"Layer_0\": {{\"kc_list\", ...}}), their ranking "
        "(\"Layer_0\": {{\"self_attn.k_proj\", ...}}) or {{\"format\": \"harmonia-fourier-dims-v1\", ...}}");
  }
  d.n_layers = shape.n_layers;
  d.kv_dim = c.kv_dim();
  d.source = source;
  return d;
}

FourierDims load_fourier_dims(const std::string& path, const Shape& shape, RopeLayout layout) {
  std::ifstream f(path);
  if (!f) fail(ErrorKind::Io, "fourier dims {}: cannot open the file", path);
  json j;
  try {
    f >> j;
  } catch (const json::exception& e) {
    fail(ErrorKind::InvalidInput, "fourier dims {}: not valid JSON ({})", path, e.what());
  }
  return parse_fourier_dims(j, path, shape, layout);
}

// ---- Built-in selections -------------------------------------------------------------

namespace {
void check_shape(const Shape& s) {
  if (s.n_layers <= 0 || s.n_kv_heads <= 0 || s.head_dim <= 0)
    fail(ErrorKind::InvalidInput, "fourier dims: invalid model shape (layers {}, kv heads {}, head_dim {})", s.n_layers,
         s.n_kv_heads, s.head_dim);
}
}  // namespace

FourierDims no_compressed_dims(const Shape& shape) {
  check_shape(shape);
  FourierDims d;
  d.n_layers = shape.n_layers;
  d.kv_dim = shape.n_kv_heads * shape.head_dim;
  d.layers.resize(shape.n_layers);
  d.source = "none";
  return d;
}

FourierDims default_fourier_dims(const Shape& shape, RopeLayout layout) {
  check_shape(shape);
  const int H = shape.n_kv_heads, hd = shape.head_dim, L = shape.n_layers, kvd = H * hd;
  const int early = (L + 7) / 8, late = (L + 3) / 4;
  // Exact within-head offsets of each head, `exact` in total over the layer.
  auto exact_split = [&](int exact, bool keys) {
    std::vector<std::vector<int>> per_head(H);
    for (int h = 0; h < H; ++h) {
      const int e = exact / H + (h < exact % H ? 1 : 0);
      auto& v = per_head[h];
      if (keys && hd % 2 == 0) {  // slowest RoPE pairs first: pair i rotates at theta^(-2i/hd)
        const int half = hd / 2;
        for (int i = half - 1; i >= 0 && static_cast<int>(v.size()) < e; --i) {
          const int a = layout == RopeLayout::Half ? i : 2 * i;
          const int b = layout == RopeLayout::Half ? i + half : 2 * i + 1;
          v.push_back(a);
          if (static_cast<int>(v.size()) < e) v.push_back(b);
        }
      } else {
        for (int k = 0; k < e; ++k) v.push_back(static_cast<int>(std::floor((k + 0.5) * hd / e)));
      }
    }
    return per_head;
  };
  auto compressed = [&](const std::vector<std::vector<int>>& exact) {
    std::vector<int> c;
    for (int h = 0; h < H; ++h)
      for (int d = 0; d < hd; ++d)
        if (std::find(exact[h].begin(), exact[h].end(), d) == exact[h].end()) c.push_back(h * hd + d);
    return c;
  };
  FourierDims out;
  out.n_layers = L;
  out.kv_dim = kvd;
  out.source = "built-in default";
  for (int l = 0; l < L; ++l) {
    double pk = 0.80, pv = 0.80;
    if (l < early) {
      pk = 0.90;
      pv = 0.95;
    } else if (l >= L - late) {
      pk = 0.50;
      pv = 0.70;
    }
    const int ck = static_cast<int>(std::floor(pk * kvd)), cv = static_cast<int>(std::floor(pv * kvd));
    LayerDims ld;
    ld.k_compressed = compressed(exact_split(kvd - ck, true));
    ld.v_compressed = compressed(exact_split(kvd - cv, false));
    out.layers.push_back(std::move(ld));
  }
  return out;
}

// ---- Writing -------------------------------------------------------------------------

namespace {

std::vector<int> to_half(std::vector<int> k, int head_dim, RopeLayout layout) {
  for (int& g : k) g = (g / head_dim) * head_dim + rope_permute(g % head_dim, head_dim, layout, RopeLayout::Half);
  std::sort(k.begin(), k.end());
  return k;
}

std::vector<int> complement(const std::vector<int>& c, int n) {
  std::vector<char> in(n, 0);
  for (int g : c) in[g] = 1;
  std::vector<int> r;
  for (int i = 0; i < n; ++i)
    if (!in[i]) r.push_back(i);
  return r;
}

std::vector<int> head_prefix(const std::vector<int>& list, int n_kv_heads, int head_dim) {
  std::vector<int> cum(n_kv_heads, 0);
  for (int g : list) ++cum[g / head_dim];
  for (int h = 1; h < n_kv_heads; ++h) cum[h] += cum[h - 1];
  return cum;
}

}  // namespace

json splithead_json(const FourierDims& dims, int n_kv_heads, int head_dim, RopeLayout layout) {
  if (dims.kv_dim != n_kv_heads * head_dim)
    fail(ErrorKind::InvalidInput, "fourier dims: kv_dim {} is not {} heads x {}", dims.kv_dim, n_kv_heads, head_dim);
  json j = json::object();
  for (int i = 0; i < dims.n_layers; ++i) {
    const auto kc = to_half(dims.layers[i].k_compressed, head_dim, layout);
    std::vector<int> vc = dims.layers[i].v_compressed;
    std::sort(vc.begin(), vc.end());
    const auto kn = complement(kc, dims.kv_dim), vn = complement(vc, dims.kv_dim);
    json L;
    L["kc_list"] = kc;
    L["kn_list"] = kn;
    L["vc_list"] = vc;
    L["vn_list"] = vn;
    L["kc_h_list"] = head_prefix(kc, n_kv_heads, head_dim);
    L["kn_h_list"] = head_prefix(kn, n_kv_heads, head_dim);
    L["vc_h_list"] = head_prefix(vc, n_kv_heads, head_dim);
    L["vn_h_list"] = head_prefix(vn, n_kv_heads, head_dim);
    j["Layer_" + std::to_string(i)] = std::move(L);
  }
  return j;
}

void write_splithead_dims(const std::string& path, const FourierDims& dims, int n_kv_heads, int head_dim,
                          RopeLayout layout) {
  const json j = splithead_json(dims, n_kv_heads, head_dim, layout);
  std::ofstream f(path);
  if (!f) fail(ErrorKind::Io, "fourier dims {}: cannot create the file", path);
  f << j.dump(4) << "\n";
  if (!f) fail(ErrorKind::Io, "fourier dims {}: write failed", path);
}

json harmonia_dims_json(const FourierDims& dims, int head_dim, RopeLayout layout) {
  json j;
  j["format"] = "harmonia-fourier-dims-v1";
  j["n_layers"] = dims.n_layers;
  j["kv_dim"] = dims.kv_dim;
  j["head_dim"] = head_dim;
  j["rope_layout"] = "half";
  json layers = json::array();
  for (const auto& l : dims.layers) {
    std::vector<int> vc = l.v_compressed;
    std::sort(vc.begin(), vc.end());
    layers.push_back({{"k_compressed", to_half(l.k_compressed, head_dim, layout)}, {"v_compressed", vc}});
  }
  j["layers"] = std::move(layers);
  return j;
}

std::vector<double> rope_pair_histogram(const std::vector<int>& compressed, int n_kv_heads, int head_dim, int bins,
                                        int* heads_counted) {
  if (bins <= 0 || head_dim % bins || head_dim % 2)
    fail(ErrorKind::InvalidInput, "rope_pair_histogram: {} bins do not divide head_dim {} (even)", bins, head_dim);
  const int width = head_dim / bins;
  std::vector<std::vector<int>> counts(n_kv_heads, std::vector<int>(bins, 0));
  std::vector<int> per_head(n_kv_heads, 0);
  for (int g : compressed) {
    const int h = g / head_dim, d = g % head_dim;
    if (h < 0 || h >= n_kv_heads)
      fail(ErrorKind::InvalidInput, "rope_pair_histogram: dim {} outside {} heads", g, n_kv_heads);
    const int pos = rope_permute(d, head_dim, RopeLayout::Half, RopeLayout::Interleaved);  // [0, h/2, 1, h/2+1, ...]
    ++counts[h][pos / width];
    ++per_head[h];
  }
  std::vector<double> hist(bins, 0.0);
  int counted = 0;
  for (int h = 0; h < n_kv_heads; ++h) {
    if (per_head[h] == 0) continue;
    ++counted;
    for (int b = 0; b < bins; ++b) hist[b] += counts[h][b];
  }
  if (counted)
    for (double& x : hist) x /= counted;
  if (heads_counted) *heads_counted = counted;
  return hist;
}

}  // namespace harmonia::kv
