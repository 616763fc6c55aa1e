// SPDX-License-Identifier: Apache-2.0
#include "util/metrics.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <variant>

#include <fmt/format.h>

#include "util/escape.h"

namespace omni_proxmox::util {
namespace {

[[noreturn]] void Die(const std::string& message) {
  std::fprintf(stderr, "metrics: %s\n", message.c_str());
  std::abort();
}

bool IsValidMetricName(std::string_view name) {
  if (name.empty()) return false;
  for (std::size_t i = 0; i < name.size(); ++i) {
    const char c = name[i];
    const bool ok =
        (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_' || c == ':' || (i > 0 && c >= '0' && c <= '9');
    if (!ok) return false;
  }
  return true;
}

bool IsValidLabelName(std::string_view name) {
  if (name.empty() || name.starts_with("__")) return false;
  for (std::size_t i = 0; i < name.size(); ++i) {
    const char c = name[i];
    const bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_' || (i > 0 && c >= '0' && c <= '9');
    if (!ok) return false;
  }
  return true;
}

// Go's strconv.FormatFloat(v, 'g', -1, 64) is what the reference client writes; fmt's shortest
// round-trip form reads back to the same double, and the special values use Prometheus' spelling.
std::string FormatValue(double value) {
  if (std::isnan(value)) return "NaN";
  if (std::isinf(value)) return value > 0 ? "+Inf" : "-Inf";
  return fmt::format("{}", value);
}

std::string EscapeLabelValue(std::string_view value) {
  std::string out;
  AppendEscaped(out, value, kPrometheusLabelRules);
  return out;
}

std::string EscapeHelp(std::string_view help) {
  std::string out;
  AppendEscaped(out, help, kPrometheusHelpRules);
  return out;
}

// {a="x",b="y"} plus an optional trailing le label; empty when there are no labels at all.
std::string RenderLabels(const MetricLabels& labels, const std::string* le = nullptr) {
  if (labels.empty() && le == nullptr) return "";
  std::string out = "{";
  bool first = true;
  for (const auto& [name, value] : labels) {
    if (!first) out += ',';
    first = false;
    out += fmt::format("{}=\"{}\"", name, EscapeLabelValue(value));
  }
  if (le != nullptr) {
    if (!first) out += ',';
    out += fmt::format("le=\"{}\"", *le);
  }
  out += '}';
  return out;
}

void AtomicAdd(std::atomic<double>& target, double amount) { target.fetch_add(amount, std::memory_order_relaxed); }

}  // namespace

void Counter::Increment(double amount) {
  if (!(amount > 0)) return;  // also drops NaN
  AtomicAdd(value_, amount);
}

Histogram::Histogram(std::vector<double> upper_bounds)
    : upper_bounds_(std::move(upper_bounds)),
      buckets_(std::make_unique<std::atomic<std::uint64_t>[]>(upper_bounds_.size() + 1)) {}

void Histogram::Observe(double value) {
  // upper_bound semantics: a value equal to a bound belongs to that bucket (le = less or equal).
  // NaN compares false everywhere and lands in +Inf, as in the Go client.
  std::size_t i = 0;
  while (i < upper_bounds_.size() && !(value <= upper_bounds_[i])) ++i;
  buckets_[i].fetch_add(1, std::memory_order_relaxed);
  AtomicAdd(sum_, value);
}

Histogram::Snapshot Histogram::Read() const {
  Snapshot s;
  s.upper_bounds = upper_bounds_;
  std::uint64_t running = 0;
  for (std::size_t i = 0; i <= upper_bounds_.size(); ++i) {
    running += buckets_[i].load(std::memory_order_relaxed);
    s.cumulative.push_back(running);
  }
  s.count = running;
  s.sum = sum_.load(std::memory_order_relaxed);
  return s;
}

std::vector<double> DefaultHistogramBuckets() { return {.005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10}; }

std::vector<double> ExponentialHistogramBuckets(double start, double factor, int count) {
  if (!(start > 0) || !(factor > 1) || count < 1) {
    Die(
        fmt::format("ExponentialHistogramBuckets(start={}, factor={}, count={}): need start > 0, factor > 1, "
                    "count >= 1",
                    start, factor, count));
  }
  std::vector<double> out;
  double bound = start;
  for (int i = 0; i < count; ++i) {
    out.push_back(bound);
    bound *= factor;
  }
  return out;
}

struct MetricsRegistry::Series {
  std::variant<std::unique_ptr<Counter>, std::unique_ptr<Gauge>, std::unique_ptr<Histogram>> metric;
};

struct MetricsRegistry::Family {
  Type type;
  std::string help;
  std::vector<double> upper_bounds;                        // histograms only
  std::map<MetricLabels, std::unique_ptr<Series>> series;  // key: labels sorted by name
};

MetricsRegistry::MetricsRegistry() = default;
MetricsRegistry::~MetricsRegistry() = default;

MetricsRegistry::Series& MetricsRegistry::FindOrCreate(Type type, std::string_view name, std::string_view help,
                                                       const MetricLabels& labels,
                                                       const std::vector<double>* upper_bounds) {
  if (!IsValidMetricName(name)) {
    Die(fmt::format("metric name '{}' is invalid; use [a-zA-Z_:][a-zA-Z0-9_:]*", name));
  }
  MetricLabels sorted = labels;
  std::sort(sorted.begin(), sorted.end());
  for (std::size_t i = 0; i < sorted.size(); ++i) {
    const std::string& label = sorted[i].first;
    if (!IsValidLabelName(label)) {
      Die(fmt::format("metric '{}': label name '{}' is invalid; use [a-zA-Z_][a-zA-Z0-9_]* not starting with __", name,
                      label));
    }
    if (type == Type::kHistogram && label == "le") {
      Die(fmt::format("histogram '{}': the label name 'le' is reserved for buckets", name));
    }
    if (i > 0 && sorted[i - 1].first == label) {
      Die(fmt::format("metric '{}': label '{}' given twice", name, label));
    }
  }
  if (upper_bounds != nullptr) {
    for (std::size_t i = 0; i < upper_bounds->size(); ++i) {
      const double b = (*upper_bounds)[i];
      if (!std::isfinite(b) || (i > 0 && !(b > (*upper_bounds)[i - 1]))) {
        Die(fmt::format("histogram '{}': bucket bounds must be finite and strictly increasing", name));
      }
    }
  }

  std::lock_guard lock(mu_);
  auto it = families_.find(name);
  if (it == families_.end()) {
    auto family = std::make_unique<Family>();
    family->type = type;
    family->help = std::string(help);
    if (upper_bounds != nullptr) family->upper_bounds = *upper_bounds;
    it = families_.emplace(std::string(name), std::move(family)).first;
  }
  Family& family = *it->second;
  if (family.type != type) Die(fmt::format("metric '{}' is already registered with another type", name));
  if (family.help != help) {
    Die(fmt::format("metric '{}' is already registered with help '{}', not '{}'", name, family.help, help));
  }
  if (upper_bounds != nullptr && family.upper_bounds != *upper_bounds) {
    Die(fmt::format("histogram '{}' is already registered with other bucket bounds", name));
  }
  auto& slot = family.series[sorted];
  if (slot == nullptr) {
    slot = std::make_unique<Series>();
    switch (type) {
      case Type::kCounter:
        slot->metric = std::make_unique<Counter>();
        break;
      case Type::kGauge:
        slot->metric = std::make_unique<Gauge>();
        break;
      case Type::kHistogram:
        slot->metric = std::make_unique<Histogram>(family.upper_bounds);
        break;
    }
  }
  return *slot;
}

Counter& MetricsRegistry::GetCounter(std::string_view name, std::string_view help, const MetricLabels& labels) {
  return *std::get<std::unique_ptr<Counter>>(FindOrCreate(Type::kCounter, name, help, labels, nullptr).metric);
}

Gauge& MetricsRegistry::GetGauge(std::string_view name, std::string_view help, const MetricLabels& labels) {
  return *std::get<std::unique_ptr<Gauge>>(FindOrCreate(Type::kGauge, name, help, labels, nullptr).metric);
}

Histogram& MetricsRegistry::GetHistogram(std::string_view name, std::string_view help, const MetricLabels& labels,
                                         std::vector<double> upper_bounds) {
  return *std::get<std::unique_ptr<Histogram>>(
      FindOrCreate(Type::kHistogram, name, help, labels, &upper_bounds).metric);
}

std::string MetricsRegistry::RenderText() const {
  std::string out;
  std::lock_guard lock(mu_);
  for (const auto& [name, family] : families_) {
    const char* type = family->type == Type::kCounter ? "counter"
                       : family->type == Type::kGauge ? "gauge"
                                                      : "histogram";
    out += fmt::format("# HELP {} {}\n# TYPE {} {}\n", name, EscapeHelp(family->help), name, type);
    for (const auto& [labels, series] : family->series) {
      switch (family->type) {
        case Type::kCounter:
          out += fmt::format("{}{} {}\n", name, RenderLabels(labels),
                             FormatValue(std::get<std::unique_ptr<Counter>>(series->metric)->Value()));
          break;
        case Type::kGauge:
          out += fmt::format("{}{} {}\n", name, RenderLabels(labels),
                             FormatValue(std::get<std::unique_ptr<Gauge>>(series->metric)->Value()));
          break;
        case Type::kHistogram: {
          const Histogram::Snapshot s = std::get<std::unique_ptr<Histogram>>(series->metric)->Read();
          for (std::size_t i = 0; i < s.cumulative.size(); ++i) {
            const std::string le = i < s.upper_bounds.size() ? FormatValue(s.upper_bounds[i]) : "+Inf";
            out += fmt::format("{}_bucket{} {}\n", name, RenderLabels(labels, &le), s.cumulative[i]);
          }
          out += fmt::format("{}_sum{} {}\n", name, RenderLabels(labels), FormatValue(s.sum));
          out += fmt::format("{}_count{} {}\n", name, RenderLabels(labels), s.count);
          break;
        }
      }
    }
  }
  return out;
}

}  // namespace omni_proxmox::util
