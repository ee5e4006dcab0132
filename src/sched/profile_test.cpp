#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>

#include "common/error.h"
#include "sched/profile.h"

using namespace harmonia;
using namespace harmonia::sched;
using nlohmann::json;

namespace {

json small_profile() {
  return json::parse(R"({
    "format": "harmonia.sd_profile", "version": 1, "target": "t", "draft": "d", "device": "cpu",
    "batch": [1, 4], "draft_len": [1, 4], "context": [100, 1100],
    "draft_ms_per_token": [[1.0, 2.0], [4.0, 6.0]],
    "verify_ms": [[[10, 20], [16, 26]], [[40, 60], [52, 72]]],
    "prefill": {"tokens": [0, 1000], "ms": [5, 105]},
    "preempt_ms": 3
  })");
}

std::string error_of(const json& j) {
  try {
    CostProfile::from_json(j, "p.json");
  } catch (const Error& e) {
    return e.what();
  }
  return "";
}

}  // namespace

TEST(SchedProfile, Interpolation) {
  const CostProfile p = CostProfile::from_json(small_profile(), "p.json");
  EXPECT_DOUBLE_EQ(p.draft_ms(1, 100), 1.0);
  EXPECT_DOUBLE_EQ(p.draft_ms(1, 600), 1.5);      // midway in context
  EXPECT_DOUBLE_EQ(p.draft_ms(2, 100), 2.0);      // batch 2 is 1/3 of the way from 1 to 4
  EXPECT_DOUBLE_EQ(p.draft_ms(1, 10), 1.0);       // below the first bucket: clamped
  EXPECT_DOUBLE_EQ(p.draft_ms(1, 2100), 3.0);     // beyond the last: linear extrapolation
  EXPECT_DOUBLE_EQ(p.verify_ms(1, 1, 100), 10);
  EXPECT_DOUBLE_EQ(p.verify_ms(1, 2, 100), 12);   // draft_len 2 of 1..4
  EXPECT_DOUBLE_EQ(p.verify_ms(4, 4, 1100), 72);
  EXPECT_DOUBLE_EQ(p.step_ms(1, 4, 100), 4 * 1.0 + 16);
  EXPECT_DOUBLE_EQ(p.prefill_ms(500), 55);
  EXPECT_DOUBLE_EQ(p.prefill_ms(3000), 305);
  EXPECT_DOUBLE_EQ(p.preempt_ms(), 3);
  const PolicyContext c = p.policy_context(4);
  EXPECT_NEAR(c.step_s, p.step_ms(1, 4, 512) / 1000, 1e-12);
  EXPECT_NEAR(c.prefill_s(1000), 0.105, 1e-12);
}

TEST(SchedProfile, RoundTripAndDefault) {
  const CostProfile d = CostProfile::synthetic_default();
  const auto path = (std::filesystem::temp_directory_path() / "harmonia_sched_profile.json").string();
  d.save(path);
  const CostProfile e = CostProfile::load(path);
  EXPECT_EQ(d.to_json(), e.to_json());
  EXPECT_NEAR(d.step_ms(1, 4, 256), 4 * (1.5 + 0.005) + 7 + 0.2 + 0.015, 1e-9);
  EXPECT_GT(d.step_ms(8, 4, 4096), d.step_ms(1, 4, 4096));
  EXPECT_GT(d.step_ms(1, 4, 16384), d.step_ms(1, 4, 256));
  std::filesystem::remove(path);
}

TEST(SchedProfile, ErrorsNameTheField) {
  json j = small_profile();
  j["verify_ms"][1][0] = json::array({1});
  EXPECT_NE(error_of(j).find("verify_ms[1][0] has 1 entries"), std::string::npos) << error_of(j);
  j = small_profile();
  j["batch"] = json::array({4, 1});
  EXPECT_NE(error_of(j).find("strictly increasing"), std::string::npos);
  j = small_profile();
  j.erase("prefill");
  EXPECT_NE(error_of(j).find("missing field 'prefill'"), std::string::npos);
  j = small_profile();
  j["draft_ms_per_token"][0][1] = "x";
  EXPECT_NE(error_of(j).find("draft_ms_per_token[0][1] must be a number"), std::string::npos);
  j = small_profile();
  j["format"] = "other";
  EXPECT_NE(error_of(j).find("expected \"harmonia.sd_profile\""), std::string::npos);
  try {
    CostProfile::load("/nonexistent/profile.json");
    FAIL();
  } catch (const Error& e) {
    EXPECT_EQ(e.kind(), ErrorKind::Io);
  }
}
