// SPDX-License-Identifier: Apache-2.0
#pragma once

// A small, dependency-free Prometheus metrics registry: counters, gauges and histograms with label
// sets, rendered in the text exposition format 0.0.4 for the status server's /metrics.
//
//   util::MetricsRegistry registry;
//   util::Counter& ok = registry.GetCounter("omni_proxmox_proxmox_requests_total", "Proxmox API requests.",
//                                           {{"endpoint", "qemu"}, {"result", "ok"}});
//   ok.Increment();
//
// Looking a series up takes the registry mutex; keep the returned reference (it lives as long as
// the registry) and the hot path is one atomic operation.
//
// Thread safety: MetricsRegistry, Counter, Gauge and Histogram are thread-safe.
//
// Misuse that is a programming error, not input (an invalid metric or label name, one name
// registered with two types, two helps or two bucket layouts, a duplicate label name, a label named
// "le" on a histogram), aborts with a message naming the metric: it would otherwise corrupt the
// exposition, and metric names are compile-time constants in this code base.

#include <atomic>
#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace omni_proxmox::util {

// Label name -> value pairs. Order does not matter: a series is identified by its sorted labels.
using MetricLabels = std::vector<std::pair<std::string, std::string>>;

// A monotonically increasing value.
class Counter {
 public:
  // Adds `amount`; negative or NaN amounts are ignored, since a counter must never go down.
  void Increment(double amount = 1.0);
  double Value() const { return value_.load(std::memory_order_relaxed); }

 private:
  std::atomic<double> value_{0.0};
};

// A value that can go up and down.
class Gauge {
 public:
  void Set(double value) { value_.store(value, std::memory_order_relaxed); }
  void Increment(double amount = 1.0) { value_.fetch_add(amount, std::memory_order_relaxed); }
  void Decrement(double amount = 1.0) { value_.fetch_sub(amount, std::memory_order_relaxed); }
  double Value() const { return value_.load(std::memory_order_relaxed); }

 private:
  std::atomic<double> value_{0.0};
};

// Counts observations into buckets with fixed, sorted, finite upper bounds (the +Inf bucket is
// implicit) and keeps their sum.
class Histogram {
 public:
  // REQUIRES: `upper_bounds` strictly increasing and finite (checked by the registry).
  explicit Histogram(std::vector<double> upper_bounds);

  void Observe(double value);

  struct Snapshot {
    std::vector<double> upper_bounds;       // without +Inf
    std::vector<std::uint64_t> cumulative;  // one per bound, then the +Inf bucket (== count)
    double sum = 0;
    std::uint64_t count = 0;
  };
  // The count is derived from the buckets, so _count always equals the +Inf bucket even while
  // other threads observe.
  Snapshot Read() const;

 private:
  const std::vector<double> upper_bounds_;
  std::unique_ptr<std::atomic<std::uint64_t>[]> buckets_;  // upper_bounds_.size() + 1, not cumulative
  std::atomic<double> sum_{0.0};
};

// The Prometheus client libraries' default buckets, in seconds: .005 .01 .025 .05 .1 .25 .5 1 2.5 5 10.
std::vector<double> DefaultHistogramBuckets();
// `count` buckets starting at `start`, each `factor` times the previous.
// REQUIRES: start > 0, factor > 1, count >= 1.
std::vector<double> ExponentialHistogramBuckets(double start, double factor, int count);

// Owns every metric; references it hands out stay valid for its lifetime.
class MetricsRegistry {
 public:
  MetricsRegistry();
  MetricsRegistry(const MetricsRegistry&) = delete;
  MetricsRegistry& operator=(const MetricsRegistry&) = delete;
  ~MetricsRegistry();

  // Returns the series `name`{labels}, creating it (at zero) on first use. Later calls with the
  // same name must pass the same help text.
  Counter& GetCounter(std::string_view name, std::string_view help, const MetricLabels& labels = {});
  Gauge& GetGauge(std::string_view name, std::string_view help, const MetricLabels& labels = {});
  // `upper_bounds` must be the same for every series of one histogram name.
  Histogram& GetHistogram(std::string_view name, std::string_view help, const MetricLabels& labels = {},
                          std::vector<double> upper_bounds = DefaultHistogramBuckets());

  // The text exposition format 0.0.4: families sorted by name, series by their sorted labels.
  std::string RenderText() const;

 private:
  enum class Type { kCounter, kGauge, kHistogram };
  struct Series;
  struct Family;

  Series& FindOrCreate(Type type, std::string_view name, std::string_view help, const MetricLabels& labels,
                       const std::vector<double>* upper_bounds);

  mutable std::mutex mu_;
  std::map<std::string, std::unique_ptr<Family>, std::less<>> families_;  // guarded by mu_
};

// The content type of RenderText(), for the HTTP response.
inline constexpr char kPrometheusTextContentType[] = "text/plain; version=0.0.4; charset=utf-8";

}  // namespace omni_proxmox::util
