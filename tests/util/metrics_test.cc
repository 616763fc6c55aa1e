// SPDX-License-Identifier: Apache-2.0
#include "util/metrics.h"

#include <cmath>
#include <limits>
#include <string>
#include <thread>
#include <vector>

#include <gmock/gmock.h>
#include <gtest/gtest.h>

namespace omni_proxmox::util {
namespace {

using ::testing::HasSubstr;

TEST(Metrics, EmptyRegistryRendersNothing) {
  MetricsRegistry registry;
  EXPECT_EQ(registry.RenderText(), "");
}

TEST(Metrics, CounterAndGaugeExposition) {
  MetricsRegistry registry;
  Counter& ok = registry.GetCounter("omni_proxmox_proxmox_requests_total", "Proxmox API requests.",
                                    {{"result", "ok"}, {"endpoint", "qemu"}});
  Counter& failed = registry.GetCounter("omni_proxmox_proxmox_requests_total", "Proxmox API requests.",
                                        {{"endpoint", "qemu"}, {"result", "error"}});
  Gauge& queue = registry.GetGauge("omni_proxmox_queue_depth", "Keys waiting in the reconciler queue.");
  ok.Increment();
  ok.Increment(2);
  failed.Increment(0.5);
  queue.Set(7);
  queue.Decrement(2.25);

  // Families by name; series by sorted labels (endpoint before result, "error" before "ok").
  EXPECT_EQ(registry.RenderText(),
            "# HELP omni_proxmox_proxmox_requests_total Proxmox API requests.\n"
            "# TYPE omni_proxmox_proxmox_requests_total counter\n"
            "omni_proxmox_proxmox_requests_total{endpoint=\"qemu\",result=\"error\"} 0.5\n"
            "omni_proxmox_proxmox_requests_total{endpoint=\"qemu\",result=\"ok\"} 3\n"
            "# HELP omni_proxmox_queue_depth Keys waiting in the reconciler queue.\n"
            "# TYPE omni_proxmox_queue_depth gauge\n"
            "omni_proxmox_queue_depth 4.75\n");
}

TEST(Metrics, SameLabelsInAnyOrderAreTheSameSeries) {
  MetricsRegistry registry;
  Counter& a = registry.GetCounter("c_total", "h", {{"x", "1"}, {"y", "2"}});
  Counter& b = registry.GetCounter("c_total", "h", {{"y", "2"}, {"x", "1"}});
  EXPECT_EQ(&a, &b);
  Counter& c = registry.GetCounter("c_total", "h", {{"x", "1"}, {"y", "3"}});
  EXPECT_NE(&a, &c);
}

TEST(Metrics, CounterIgnoresNegativeAndNaN) {
  MetricsRegistry registry;
  Counter& c = registry.GetCounter("c_total", "h");
  c.Increment(-1);
  c.Increment(std::numeric_limits<double>::quiet_NaN());
  c.Increment(3);
  EXPECT_EQ(c.Value(), 3);
}

TEST(Metrics, EscapesLabelValuesAndHelp) {
  MetricsRegistry registry;
  registry.GetCounter("esc_total", "a \\ back\nslash", {{"path", "C:\\dir \"q\"\nnext"}}).Increment();
  EXPECT_EQ(registry.RenderText(),
            "# HELP esc_total a \\\\ back\\nslash\n"
            "# TYPE esc_total counter\n"
            "esc_total{path=\"C:\\\\dir \\\"q\\\"\\nnext\"} 1\n");
}

TEST(Metrics, SpecialFloatValues) {
  MetricsRegistry registry;
  registry.GetGauge("g_a", "h").Set(std::numeric_limits<double>::infinity());
  registry.GetGauge("g_b", "h").Set(-std::numeric_limits<double>::infinity());
  registry.GetGauge("g_c", "h").Set(std::numeric_limits<double>::quiet_NaN());
  registry.GetGauge("g_d", "h").Set(1e21);
  registry.GetGauge("g_e", "h").Set(-0.001);
  const std::string text = registry.RenderText();
  EXPECT_THAT(text, HasSubstr("g_a +Inf\n"));
  EXPECT_THAT(text, HasSubstr("g_b -Inf\n"));
  EXPECT_THAT(text, HasSubstr("g_c NaN\n"));
  EXPECT_THAT(text, HasSubstr("g_d 1e+21\n"));
  EXPECT_THAT(text, HasSubstr("g_e -0.001\n"));
}

TEST(Metrics, HistogramExposition) {
  MetricsRegistry registry;
  Histogram& h = registry.GetHistogram("omni_proxmox_task_seconds", "Proxmox task duration.", {{"type", "qmcreate"}},
                                       {0.5, 1, 2.5});
  h.Observe(0.25);
  h.Observe(0.5);  // equal to a bound: counts in that bucket (le)
  h.Observe(2);
  h.Observe(100);
  EXPECT_EQ(registry.RenderText(),
            "# HELP omni_proxmox_task_seconds Proxmox task duration.\n"
            "# TYPE omni_proxmox_task_seconds histogram\n"
            "omni_proxmox_task_seconds_bucket{type=\"qmcreate\",le=\"0.5\"} 2\n"
            "omni_proxmox_task_seconds_bucket{type=\"qmcreate\",le=\"1\"} 2\n"
            "omni_proxmox_task_seconds_bucket{type=\"qmcreate\",le=\"2.5\"} 3\n"
            "omni_proxmox_task_seconds_bucket{type=\"qmcreate\",le=\"+Inf\"} 4\n"
            "omni_proxmox_task_seconds_sum{type=\"qmcreate\"} 102.75\n"
            "omni_proxmox_task_seconds_count{type=\"qmcreate\"} 4\n");
}

TEST(Metrics, UnlabelledHistogramWithDefaultBuckets) {
  MetricsRegistry registry;
  registry.GetHistogram("lat_seconds", "h").Observe(0.007);
  const std::string text = registry.RenderText();
  EXPECT_THAT(text, HasSubstr("lat_seconds_bucket{le=\"0.005\"} 0\n"));
  EXPECT_THAT(text, HasSubstr("lat_seconds_bucket{le=\"0.01\"} 1\n"));
  EXPECT_THAT(text, HasSubstr("lat_seconds_bucket{le=\"10\"} 1\n"));
  EXPECT_THAT(text, HasSubstr("lat_seconds_bucket{le=\"+Inf\"} 1\n"));
  EXPECT_THAT(text, HasSubstr("lat_seconds_sum 0.007\n"));
  EXPECT_THAT(text, HasSubstr("lat_seconds_count 1\n"));
}

TEST(Metrics, ExponentialBuckets) {
  EXPECT_EQ(ExponentialHistogramBuckets(1, 2, 4), (std::vector<double>{1, 2, 4, 8}));
  EXPECT_EQ(DefaultHistogramBuckets().size(), 11u);
}

TEST(Metrics, ConcurrentIncrementsAreNotLost) {
  MetricsRegistry registry;
  constexpr int kThreads = 8;
  constexpr int kPerThread = 20000;
  {
    std::vector<std::jthread> threads;
    for (int t = 0; t < kThreads; ++t) {
      threads.emplace_back([&registry, t] {
        // Lookups race with increments and with rendering on purpose.
        Counter& shared = registry.GetCounter("shared_total", "h", {{"k", "v"}});
        Counter& own = registry.GetCounter("own_total", "h", {{"thread", std::to_string(t)}});
        Gauge& gauge = registry.GetGauge("g", "h");
        Histogram& hist = registry.GetHistogram("h_seconds", "h", {}, {1, 2});
        for (int i = 0; i < kPerThread; ++i) {
          shared.Increment();
          own.Increment();
          gauge.Increment();
          gauge.Decrement(0.5);
          hist.Observe(i % 3);
          if (i % 5000 == 0) (void)registry.RenderText();
        }
      });
    }
  }
  EXPECT_EQ(registry.GetCounter("shared_total", "h", {{"k", "v"}}).Value(), kThreads * kPerThread);
  for (int t = 0; t < kThreads; ++t) {
    EXPECT_EQ(registry.GetCounter("own_total", "h", {{"thread", std::to_string(t)}}).Value(), kPerThread);
  }
  EXPECT_EQ(registry.GetGauge("g", "h").Value(), kThreads * kPerThread * 0.5);
  const Histogram::Snapshot s = registry.GetHistogram("h_seconds", "h", {}, {1, 2}).Read();
  EXPECT_EQ(s.count, static_cast<std::uint64_t>(kThreads * kPerThread));
  EXPECT_EQ(s.cumulative.back(), s.count);
  // i % 3 over 20000 values: 6667 zeros, 6667 ones, 6666 twos per thread.
  EXPECT_EQ(s.cumulative[0], static_cast<std::uint64_t>(kThreads * (6667 + 6667)));
  EXPECT_EQ(s.sum, kThreads * (6667.0 * 1 + 6666.0 * 2));
}

using MetricsDeathTest = ::testing::Test;

TEST(MetricsDeathTest, MisuseAbortsNamingTheMetric) {
  GTEST_FLAG_SET(death_test_style, "threadsafe");
  EXPECT_DEATH(
      {
        MetricsRegistry r;
        r.GetCounter("bad name", "h");
      },
      "metric name 'bad name' is invalid");
  EXPECT_DEATH(
      {
        MetricsRegistry r;
        r.GetCounter("x_total", "h");
        r.GetGauge("x_total", "h");
      },
      "'x_total' is already registered with another type");
  EXPECT_DEATH(
      {
        MetricsRegistry r;
        r.GetCounter("x_total", "h", {{"a", "1"}, {"a", "2"}});
      },
      "label 'a' given twice");
  EXPECT_DEATH(
      {
        MetricsRegistry r;
        r.GetHistogram("x_seconds", "h", {{"le", "1"}});
      },
      "'le' is reserved");
  EXPECT_DEATH(
      {
        MetricsRegistry r;
        r.GetHistogram("x_seconds", "h", {}, {2, 1});
      },
      "strictly increasing");
  EXPECT_DEATH(
      {
        MetricsRegistry r;
        r.GetCounter("x_total", "one");
        r.GetCounter("x_total", "two");
      },
      "already registered with help 'one'");
  EXPECT_DEATH(
      {
        MetricsRegistry r;
        r.GetCounter("x_total", "h", {{"__x", "1"}});
      },
      "label name '__x' is invalid");
}

}  // namespace
}  // namespace omni_proxmox::util
