// FourierAttention dims files: the authors' shipped files (oracles O8, O9), the
// three schemas, validation errors, the writer and the built-in selection.
#include "kv/dims.h"

#include <gtest/gtest.h>

#include <cstdio>
#include <fstream>
#include <nlohmann/json.hpp>
#include <numeric>

#include "common/error.h"
#include "common/testing.h"

using namespace harmonia;
using namespace harmonia::kv;
using nlohmann::json;

namespace {

const char* k3bSplit = "data/fourierattention-dims/llama3.2-3b-fourier/compressed_dims_32k_1024states_splithead.json";
const char* k3bRank = "data/fourierattention-dims/llama3.2-3b-fourier/compressed_dims_32k_1024states.json";
const char* k8bSplit = "data/fourierattention-dims/llama3.1-8b-fourier/compressed_dims_32k_1024states_splithead.json";
const char* k8bRank = "data/fourierattention-dims/llama3.1-8b-fourier/compressed_dims_32k_1024states.json";

Shape llama_shape(int layers) {
  Shape s;
  s.n_layers = layers;
  s.n_heads = layers == 28 ? 24 : 32;
  s.n_kv_heads = 8;
  s.head_dim = 128;
  s.max_tokens = 131072;
  return s;
}

std::vector<size_t> counts(const FourierDims& d, bool values) {
  std::vector<size_t> c;
  for (const auto& l : d.layers) c.push_back(values ? l.v_compressed.size() : l.k_compressed.size());
  return c;
}

std::vector<size_t> expected_counts(size_t a, size_t b, size_t c, int mid_layers) {
  std::vector<size_t> v(4, a);
  v.insert(v.end(), mid_layers, b);
  v.insert(v.end(), 8, c);
  return v;
}

std::vector<int> per_head(const std::vector<int>& list, int heads, int hd) {
  std::vector<int> c(heads, 0);
  for (int g : list) ++c[g / hd];
  return c;
}

// The error message of parsing j, or "" if it parses.
std::string parse_error(const json& j, const Shape& s) {
  try {
    parse_fourier_dims(j, "test.json", s, RopeLayout::Half);
  } catch (const Error& e) {
    return e.what();
  }
  return "";
}

}  // namespace

// O9: per-layer counts, fraction, Layer_0 lists and per-head counts of the 3B files.
TEST(FourierDims, O9Llama32_3B) {
  HARMONIA_REQUIRE_SHARED(k3bSplit);
  HARMONIA_REQUIRE_SHARED(k3bRank);
  const Shape s = llama_shape(28);
  const auto split = load_fourier_dims(shared_path(k3bSplit), s, RopeLayout::Half);
  const auto rank = load_fourier_dims(shared_path(k3bRank), s, RopeLayout::Half);
  EXPECT_EQ(counts(split, false), expected_counts(921, 819, 512, 16));
  EXPECT_EQ(counts(split, true), expected_counts(972, 819, 716, 16));
  EXPECT_EQ(split.k_compressed_total(), 20884u);
  EXPECT_EQ(split.v_compressed_total(), 22720u);
  EXPECT_NEAR(split.compressed_fraction(), 0.7604, 5e-5);
  for (int l = 0; l < 28; ++l) {  // the two schemas hold the same sets
    EXPECT_EQ(split.layers[l].k_compressed, rank.layers[l].k_compressed) << l;
    EXPECT_EQ(split.layers[l].v_compressed, rank.layers[l].v_compressed) << l;
  }
  const auto& l0 = split.layers[0].k_compressed;
  EXPECT_EQ(std::vector<int>(l0.begin(), l0.begin() + 10), (std::vector<int>{1, 3, 4, 5, 6, 8, 9, 10, 11, 12}));
  const auto& r0 = rank.layers[0].k_rank;
  EXPECT_EQ(std::vector<int>(r0.begin(), r0.begin() + 10),
            (std::vector<int>{679, 39, 742, 29, 104, 95, 33, 102, 106, 613}));
  auto cum = [](std::vector<int> c) {
    std::partial_sum(c.begin(), c.end(), c.begin());
    return c;
  };
  EXPECT_EQ(cum(per_head(split.layers[0].k_compressed, 8, 128)),
            (std::vector<int>{109, 230, 322, 448, 572, 693, 810, 921}));
  EXPECT_EQ(cum(per_head(split.layers[0].v_compressed, 8, 128)),
            (std::vector<int>{117, 243, 366, 492, 611, 729, 854, 972}));
  // Degenerate heads: Layer 1 has a head with no exact K dim, Layer 24 heads with no
  // compressed V dim (and one with no exact V dim).
  const auto heads1 = split_heads(split.layers[1], 8, 128);
  std::vector<int> kn1;
  for (const auto& h : heads1) kn1.push_back(static_cast<int>(h.kn.size()));
  EXPECT_EQ(kn1, (std::vector<int>{9, 27, 0, 6, 25, 19, 6, 11}));
  EXPECT_EQ(per_head(split.layers[24].v_compressed, 8, 128), (std::vector<int>{126, 0, 114, 128, 127, 0, 104, 117}));
}

TEST(FourierDims, O9Llama31_8B) {
  HARMONIA_REQUIRE_SHARED(k8bSplit);
  HARMONIA_REQUIRE_SHARED(k8bRank);
  const Shape s = llama_shape(32);
  const auto split = load_fourier_dims(shared_path(k8bSplit), s, RopeLayout::Half);
  const auto rank = load_fourier_dims(shared_path(k8bRank), s, RopeLayout::Half);
  EXPECT_EQ(counts(split, false), expected_counts(921, 819, 512, 20));
  EXPECT_EQ(counts(split, true), expected_counts(972, 819, 716, 20));
  EXPECT_EQ(split.k_compressed_total(), 24160u);
  EXPECT_EQ(split.v_compressed_total(), 25996u);
  EXPECT_NEAR(split.compressed_fraction(), 0.7653, 5e-5);
  for (int l = 0; l < 32; ++l) EXPECT_EQ(split.layers[l].k_compressed, rank.layers[l].k_compressed) << l;
}

// O8: the Fig. 7 histogram. The 4k files of the spec's numbers are not shipped,
// so check the function's invariants on the 32k files and on a hand-made case.
TEST(FourierDims, O8RopePairHistogram) {
  // One head of 16 dims, 4 bins of 4 reordered positions [0, 8, 1, 9 | 2, 10, 3, 11 | ...].
  int counted = 0;
  auto h = rope_pair_histogram({0, 8, 1, 2, 16 + 15}, 2, 16, 4, &counted);
  EXPECT_EQ(counted, 2);
  EXPECT_EQ(h, (std::vector<double>{1.5, 0.5, 0.0, 0.5}));
  HARMONIA_REQUIRE_SHARED(k3bSplit);
  const auto d = load_fourier_dims(shared_path(k3bSplit), llama_shape(28), RopeLayout::Half);
  for (int layer : {0, 24, 26}) {
    for (bool values : {false, true}) {
      const auto& c = values ? d.layers[layer].v_compressed : d.layers[layer].k_compressed;
      h = rope_pair_histogram(c, 8, 128, 8, &counted);
      int nonempty = 0;
      for (int x : per_head(c, 8, 128)) nonempty += x > 0;
      EXPECT_EQ(counted, nonempty);
      double sum = 0;
      for (double x : h) {
        EXPECT_GE(x, 0.0);
        EXPECT_LE(x, 16.0);
        sum += x;
      }
      EXPECT_NEAR(sum, static_cast<double>(c.size()) / counted, 1e-9);
      if (layer == 26 && values) {
        std::printf("[ O8 ] 3B 32k Layer 26 V (%d heads):", counted);
        for (double x : h) std::printf(" %.3f", x);
        std::printf("\n");
      }
    }
  }
  // Upper layers keep low-frequency K pairs (the last bins) exact more than the first.
  const auto k26 = rope_pair_histogram(d.layers[26].k_compressed, 8, 128);
  EXPECT_GT(k26[0], k26[7]);
}

TEST(FourierDims, InterleavedLayoutPermutesKeysOnly) {
  HARMONIA_REQUIRE_SHARED(k3bSplit);
  const Shape s = llama_shape(28);
  const auto half = load_fourier_dims(shared_path(k3bSplit), s, RopeLayout::Half);
  const auto inter = load_fourier_dims(shared_path(k3bSplit), s, RopeLayout::Interleaved);
  EXPECT_EQ(half.layers[3].v_compressed, inter.layers[3].v_compressed);
  EXPECT_NE(half.layers[3].k_compressed, inter.layers[3].k_compressed);
  for (int g : half.layers[3].k_compressed) {
    const int d = g % 128, h = g / 128;
    const int e = d < 64 ? 2 * d : 2 * (d - 64) + 1;
    EXPECT_TRUE(std::binary_search(inter.layers[3].k_compressed.begin(), inter.layers[3].k_compressed.end(),
                                   h * 128 + e));
  }
  for (int d = 0; d < 128; ++d)
    EXPECT_EQ(rope_permute(rope_permute(d, 128, RopeLayout::Half, RopeLayout::Interleaved), 128,
                           RopeLayout::Interleaved, RopeLayout::Half),
              d);
}

// The writer's splithead file reads back to the same sets, in either layout.
TEST(FourierDims, WriteSplitheadRoundTrip) {
  Shape s;
  s.n_layers = 3;
  s.n_heads = 4;
  s.n_kv_heads = 2;
  s.head_dim = 8;
  s.max_tokens = 64;
  for (RopeLayout lay : {RopeLayout::Half, RopeLayout::Interleaved}) {
    const auto d = default_fourier_dims(s, lay);
    const std::string p = ::testing::TempDir() + "fourier_dims_roundtrip.json";
    write_splithead_dims(p, d, 2, 8, lay);
    const auto back = load_fourier_dims(p, s, lay);
    for (int l = 0; l < 3; ++l) {
      EXPECT_EQ(back.layers[l].k_compressed, d.layers[l].k_compressed);
      EXPECT_EQ(back.layers[l].v_compressed, d.layers[l].v_compressed);
    }
    const auto ours = parse_fourier_dims(harmonia_dims_json(d, 8, lay), "ours", s, lay);
    for (int l = 0; l < 3; ++l) EXPECT_EQ(ours.layers[l].k_compressed, d.layers[l].k_compressed);
    std::remove(p.c_str());
  }
}

TEST(FourierDims, BuiltInDefaultFollowsTheInvertedPyramid) {
  Shape s = llama_shape(28);
  const auto d = default_fourier_dims(s, RopeLayout::Half);
  EXPECT_EQ(counts(d, false), (std::vector<size_t>{921, 921, 921, 921, 819, 819, 819, 819, 819, 819,
                                                   819, 819, 819, 819, 819, 819, 819, 819, 819, 819,
                                                   819, 512, 512, 512, 512, 512, 512, 512}));
  EXPECT_EQ(d.layers[0].v_compressed.size(), 972u);
  EXPECT_EQ(d.layers[27].v_compressed.size(), 716u);
  // Layer 27 keeps 512 K dims exact: 64 per head, the 32 slowest RoPE pairs (i = 32..63).
  const auto heads = split_heads(d.layers[27], 8, 128);
  for (const auto& h : heads) {
    ASSERT_EQ(h.kn.size(), 64u);
    for (int x : h.kn) EXPECT_GE(x % 64, 32) << x;
  }
  // Interleaved layout: the same pairs, as (2i, 2i+1).
  const auto di = default_fourier_dims(s, RopeLayout::Interleaved);
  for (const auto& h : split_heads(di.layers[27], 8, 128))
    for (int x : h.kn) EXPECT_GE(x, 64) << x;
  // Small models: every layer compresses something, counts floor(p * kv_dim).
  s.n_layers = 5;
  s.n_kv_heads = 4;
  s.head_dim = 8;
  const auto small = default_fourier_dims(s, RopeLayout::Interleaved);
  EXPECT_EQ(counts(small, false), (std::vector<size_t>{28, 25, 25, 16, 16}));
  EXPECT_EQ(counts(small, true), (std::vector<size_t>{30, 25, 25, 22, 22}));
}

TEST(FourierDims, ValidationErrorsNameFileLayerAndProblem) {
  Shape s;
  s.n_layers = 2;
  s.n_heads = 2;
  s.n_kv_heads = 2;
  s.head_dim = 4;
  s.max_tokens = 64;
  const json ok_layer = {{"kc_list", {0, 1, 4}},        {"kn_list", {2, 3, 5, 6, 7}}, {"vc_list", {7}},
                         {"vn_list", {0, 1, 2, 3, 4, 5, 6}}, {"kc_h_list", {2, 3}},    {"kn_h_list", {2, 5}},
                         {"vc_h_list", {0, 1}},          {"vn_h_list", {4, 7}}};
  json j = {{"Layer_0", ok_layer}, {"Layer_1", ok_layer}};
  EXPECT_EQ(parse_error(j, s), "");
  auto has = [&](const json& jj, const std::string& what) {
    const std::string e = parse_error(jj, s);
    EXPECT_NE(e.find("test.json"), std::string::npos) << e;
    EXPECT_NE(e.find(what), std::string::npos) << e;
  };
  auto bad = j;
  bad["Layer_1"]["kc_list"] = {0, 1, 9};
  has(bad, "Layer_1: \"kc_list\"[2] = 9 is outside [0, 8)");
  bad = j;
  bad["Layer_0"]["kn_list"] = {2, 3, 5, 6};
  has(bad, "Layer_0: \"kc_list\" (3) and \"kn_list\" (4) must together hold 8 dims");
  bad = j;
  bad["Layer_1"]["kc_h_list"] = {1, 3};
  has(bad, "Layer_1: \"kc_h_list\" says head 0 has 1 dims, the list has 2");
  bad = j;
  bad["Layer_0"]["vc_list"] = {7, 7};
  has(bad, "\"vc_list\" lists dim 7 twice");
  bad = j;
  bad.erase("Layer_1");
  has(bad, "has no \"Layer_1\" (the model has 2 layers)");
  has(json{{"Layer_0", {{"foo", 1}}}}, "unrecognised format");
  const json rank = {{"Layer_0", {{"self_attn.k_proj", {5, 1}}, {"self_attn.v_proj", json::array()}}},
                     {"Layer_1", {{"self_attn.k_proj", {0}}, {"self_attn.v_proj", {"x"}}}}};
  has(rank, "Layer_1: \"self_attn.v_proj\"[0] is not an integer");
  json ours = {{"format", "harmonia-fourier-dims-v1"}, {"n_layers", 2}, {"kv_dim", 16}, {"layers", json::array()}};
  has(ours, "is for kv_dim 16, the model has 8");
  ours["kv_dim"] = 8;
  ours["layers"] = {{{"k_compressed", {1}}, {"v_compressed", json::array()}}, {{"k_compressed", json::array()}}};
  has(ours, "layers[1]: missing \"v_compressed\"");
  try {
    load_fourier_dims("/nonexistent/dims.json", s, RopeLayout::Half);
    ADD_FAILURE();
  } catch (const Error& e) {
    EXPECT_EQ(e.kind(), ErrorKind::Io);
  }
}
