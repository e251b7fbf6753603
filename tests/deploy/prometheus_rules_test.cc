// deploy/prometheus: the recording and alert rules pass `promtool check rules`, cover what issue
// 10 asks to alert on, and fire (and stay quiet) on the scenarios of
// deploy/prometheus/tests/strata-alerts.test.yaml under `promtool test rules`.
#include <gtest/gtest.h>

#include <set>

#include "tests/deploy/deploy_util.h"

namespace strata::testing {
namespace {

TEST(PrometheusRulesTest, RecordingAndAlertRulesPassPromtool) {
  int status = -1;
  const std::string out =
      Shell("promtool check rules " + SourcePath("deploy/prometheus/strata-rules.yaml") + " " +
                SourcePath("deploy/prometheus/strata-alerts.yaml") + " 2>&1",
            &status);
  EXPECT_EQ(status, 0) << out;
}

TEST(PrometheusRulesTest, AlertsCoverSloTierErrorsKvPressureAndDownTargets) {
  std::set<std::string> alerts;
  for (const YAML::Node& group :
       YAML::LoadFile(SourcePath("deploy/prometheus/strata-alerts.yaml"))["groups"]) {
    for (const YAML::Node& rule : group["rules"]) {
      alerts.insert(rule["alert"].as<std::string>(""));
      EXPECT_TRUE(rule["labels"]["severity"].IsDefined()) << rule["alert"];
      EXPECT_TRUE(rule["annotations"]["summary"].IsDefined()) << rule["alert"];
    }
  }
  for (const char* name : {"StrataSloAttainmentLow", "StrataKvTierErrors", "StrataKvCachePressure",
                           "StrataTargetDown"}) {
    EXPECT_TRUE(alerts.count(name)) << name;
  }
}

TEST(PrometheusRulesTest, AlertsFireOnTheirScenariosAndNotOnHealthySeries) {
  int status = -1;
  const std::string out =
      Shell("promtool test rules " + SourcePath("deploy/prometheus/tests/strata-alerts.test.yaml") +
                " 2>&1",
            &status);
  EXPECT_EQ(status, 0) << out;
  EXPECT_NE(out.find("SUCCESS"), std::string::npos) << out;
}

}  // namespace
}  // namespace strata::testing
