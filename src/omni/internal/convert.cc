// SPDX-License-Identifier: Apache-2.0
#include "omni/internal/convert.h"

#include <chrono>
#include <cstdint>

namespace omni_proxmox::omni::internal {
namespace {

util::Clock::SystemTime FromTimestamp(const google::protobuf::Timestamp& ts) {
  using SystemTime = util::Clock::SystemTime;
  // A Timestamp on the wire may be anything (protobuf allows years 1-9999; a broken peer sends more), but
  // SystemTime counts nanoseconds in 64 bits (about 1678-2262): saturate instead of overflowing. The margin
  // leaves room for up to 2^31 nanoseconds on top of the seconds.
  constexpr std::int64_t kMargin = 3;
  constexpr std::int64_t kMaxSeconds =
      std::chrono::duration_cast<std::chrono::seconds>(SystemTime::duration::max()).count() - kMargin;
  constexpr std::int64_t kMinSeconds =
      std::chrono::duration_cast<std::chrono::seconds>(SystemTime::duration::min()).count() + kMargin;
  if (ts.seconds() > kMaxSeconds) return SystemTime::max();
  if (ts.seconds() < kMinSeconds) return SystemTime::min();
  return SystemTime{std::chrono::duration_cast<SystemTime::duration>(std::chrono::seconds{ts.seconds()} +
                                                                     std::chrono::nanoseconds{ts.nanos()})};
}

void ToTimestamp(util::Clock::SystemTime t, google::protobuf::Timestamp& out) {
  auto ns = std::chrono::duration_cast<std::chrono::nanoseconds>(t.time_since_epoch()).count();
  auto seconds = ns / 1'000'000'000;
  auto nanos = ns % 1'000'000'000;
  if (nanos < 0) {
    nanos += 1'000'000'000;
    --seconds;
  }
  out.set_seconds(seconds);
  out.set_nanos(static_cast<int32_t>(nanos));
}

}  // namespace

Resource FromProto(const cosi::resource::Resource& proto) {
  Resource out;
  const auto& md = proto.metadata();
  out.metadata.ns = md.namespace_();
  out.metadata.type = md.type();
  out.metadata.id = md.id();
  out.metadata.version = md.version();
  out.metadata.owner = md.owner();
  out.metadata.phase = md.phase();
  if (md.has_created()) out.metadata.created = FromTimestamp(md.created());
  if (md.has_updated()) out.metadata.updated = FromTimestamp(md.updated());
  out.metadata.finalizers.assign(md.finalizers().begin(), md.finalizers().end());
  out.metadata.labels.insert(md.labels().begin(), md.labels().end());
  out.metadata.annotations.insert(md.annotations().begin(), md.annotations().end());
  out.proto_spec = proto.spec().proto_spec();
  out.yaml_spec = proto.spec().yaml_spec();
  return out;
}

cosi::resource::Resource ToProto(const Resource& resource) {
  cosi::resource::Resource out;
  auto* md = out.mutable_metadata();
  const auto& in = resource.metadata;
  md->set_namespace_(in.ns);
  md->set_type(in.type);
  md->set_id(in.id);
  md->set_version(in.version.empty() ? std::string(kVersionUndefined) : in.version);
  md->set_owner(in.owner);
  md->set_phase(in.phase.empty() ? std::string(kPhaseRunning) : in.phase);
  ToTimestamp(in.created, *md->mutable_created());
  ToTimestamp(in.updated, *md->mutable_updated());
  for (const auto& f : in.finalizers) md->add_finalizers(f);
  md->mutable_labels()->insert(in.labels.begin(), in.labels.end());
  md->mutable_annotations()->insert(in.annotations.begin(), in.annotations.end());
  auto* spec = out.mutable_spec();
  spec->set_proto_spec(resource.proto_spec);
  spec->set_yaml_spec(resource.yaml_spec);
  return out;
}

void ToProto(const LabelQuery& query, cosi::resource::LabelQuery& out) {
  for (const auto& term : query) {
    auto* t = out.add_terms();
    t->set_key(term.key);
    t->set_op(static_cast<cosi::resource::LabelTerm::Operation>(static_cast<int>(term.op)));
    for (const auto& v : term.values) t->add_value(v);
    t->set_invert(term.invert);
  }
}

}  // namespace omni_proxmox::omni::internal
