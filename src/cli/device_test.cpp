// gpu_kv_policy: which KV policies and fourier options `generate --device cuda` takes. Pure
// option handling: runs without a GPU (the GPU side is src/cuda/forward_gpu_test.cpp).
#include <gtest/gtest.h>

#include <string>

#include "cli/device.h"
#include "common/error.h"

using namespace harmonia;

namespace {

// The Error's kind and that its message contains `part`.
void expect_error(const std::string& name, const kv::Options& opts, ErrorKind kind, const std::string& part) {
  try {
    cli::gpu_kv_policy(name, opts, kv::RopeLayout::Half);
    ADD_FAILURE() << name << ": accepted";
  } catch (const Error& e) {
    EXPECT_EQ(e.kind(), kind) << e.what();
    EXPECT_NE(std::string(e.what()).find(part), std::string::npos) << e.what();
  }
}

}  // namespace

TEST(GpuKvPolicy, FullAndFourierOptions) {
  EXPECT_FALSE(cli::gpu_kv_policy("full", {}, kv::RopeLayout::Half).has_value());
  const auto f = cli::gpu_kv_policy("fourier", {{"sink", "4"}, {"window", "32"}, {"coeffs", "64"}, {"coeff_dtype", "bf16"}},
                                    kv::RopeLayout::Interleaved);
  ASSERT_TRUE(f.has_value());
  EXPECT_EQ(f->sink, 4);
  EXPECT_EQ(f->window, 32);
  EXPECT_EQ(f->coeffs, 64);
  EXPECT_EQ(f->coeff_dtype, kv::CoeffDtype::BF16);
  EXPECT_EQ(f->rope, kv::RopeLayout::Interleaved) << "the model's RoPE layout unless given";
  EXPECT_EQ(cli::gpu_kv_policy("fourier", {{"rope", "half"}}, kv::RopeLayout::Interleaved)->rope, kv::RopeLayout::Half);
  EXPECT_EQ(cli::gpu_kv_policy("fourier", {}, kv::RopeLayout::Half)->coeffs, 1024) << "kv::FourierCache's defaults";
}

TEST(GpuKvPolicy, RefusalsNameTheLimit) {
  expect_error("h2o", {}, ErrorKind::Unsupported, "KV policy 'h2o' is not on the GPU yet (have: full, fourier)");
  expect_error("fourier", {{"coeff_dtype", "f16"}}, ErrorKind::Unsupported, "coeff_dtype f16 (have f32, bf16)");
  expect_error("fourier", {{"stats_dtype", "bf16"}}, ErrorKind::Unsupported, "stats_dtype bf16 (have f32)");
  expect_error("fourier", {{"compat", "reference"}}, ErrorKind::Unsupported, "compat=reference runs on the CPU only");
  expect_error("fourier", {{"coeffs", "7"}}, ErrorKind::InvalidInput, "coeffs=7 must be even");
  expect_error("fourier", {{"bogus", "1"}}, ErrorKind::InvalidInput, "bogus");
}
