// SPDX-License-Identifier: Apache-2.0
// The garbage rules with plain values: what is an orphan, which ISOs are unused, and everything
// that must be kept.

#include "provider/gc/garbage.h"

#include <map>
#include <set>

#include <fmt/format.h>
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "provider/ownership/iso_names.h"
#include "provider/ownership/markers.h"

namespace omni_proxmox::provider {
namespace {

using ::testing::HasSubstr;
using ::testing::IsEmpty;
using ::testing::SizeIs;

constexpr std::int64_t kNow = 1'800'000'000;
constexpr const char* kInstance = "0a1b2c3d4e5f";
const Scope kOurs{.provider_id = "proxmox", .instance = kInstance};
// Our names carry the scope: "<stem>.proxmox.<instance>.iso".
std::string Scoped(const std::string& file) { return ScopedIsoName(file, kOurs); }
const std::string kTalosFile = Scoped("talos-376567988ad37013-v1.9.5-nocloud-amd64.iso");
const std::string kTalosFile2 = Scoped("talos-aaaabbbbccccdddd-v1.10.0-nocloud-amd64.iso");

std::string Tags(const std::string& provider, const std::string& request, const std::string& instance = kInstance) {
  return fmt::format("{};{};{};{};{}", kManagedTag, ProviderTag(provider), InstanceTag(instance), RequestTag(request),
                     RequestSetTag("workers"));
}

ObservedVm OurVm(pve::Vmid vmid, const std::string& request, std::int64_t age_seconds,
                 const std::string& provider = "proxmox") {
  return {.node = "pve1",
          .vmid = vmid,
          .name = VmNameFor(request),
          .tags = Tags(provider, request),
          .lock = "",
          .config_read = true,
          .created_unix = kNow - age_seconds,
          .media = {"local:iso/" + std::string(kTalosFile),
                    "local:iso/" + Scoped("omni-cidata-" + request + "-0123abcd.iso")}};
}

ObservedIso Iso(const std::string& file, std::int64_t age_seconds, const std::string& node = "pve1",
                bool shared = false, const std::string& storage = "local") {
  return {.node = node,
          .storage = storage,
          .shared = shared,
          .volid = storage + ":iso/" + file,
          .created_unix = kNow - age_seconds};
}

GarbageInputs Inputs() {
  GarbageInputs in;
  in.scope = kOurs;
  in.now_unix = kNow;
  in.grace_period = std::chrono::seconds{600};
  return in;
}

TEST(GarbageTest, VmWithoutRequestPastGraceIsAnOrphanAtTheEdge) {
  auto in = Inputs();
  in.vms = {OurVm(101, "workers-old", 600), OurVm(102, "workers-young", 599)};
  auto report = FindGarbage(in);
  ASSERT_FALSE(report.skipped);
  ASSERT_THAT(report.found, SizeIs(1));
  EXPECT_EQ(report.found[0].kind, GarbageKind::kOrphanVm);
  EXPECT_EQ(report.found[0].vmid, 101);
  EXPECT_EQ(report.found[0].request_id, "workers-old");
  EXPECT_EQ(report.found[0].age_seconds, 600);
  ASSERT_THAT(report.kept, SizeIs(1));
  EXPECT_THAT(report.kept[0], HasSubstr("only 599s old"));
}

TEST(GarbageTest, VmWhoseRequestExistsIsNotAnOrphanEvenWithUppercaseRequestId) {
  auto in = Inputs();
  in.requests = {{.id = "Workers-ABC", .volumes = {}, .iso_files = {}}};
  in.vms = {OurVm(101, "Workers-ABC", 100'000)};
  EXPECT_THAT(FindGarbage(in).found, IsEmpty());
}

TEST(GarbageTest, InFlightRequestIsNotAnOrphan) {
  auto in = Inputs();
  in.in_flight = {"workers-new"};
  in.vms = {OurVm(101, "workers-new", 100'000)};
  EXPECT_THAT(FindGarbage(in).found, IsEmpty());
}

TEST(GarbageTest, ForeignAndOtherProviderVmsAreNeverOrphans) {
  auto in = Inputs();
  ObservedVm foreign{.node = "pve1",
                     .vmid = 200,
                     .name = "database",
                     .tags = "prod",
                     .lock = "",
                     .config_read = true,
                     .created_unix = kNow - 100'000,
                     .media = {}};
  ObservedVm other = OurVm(201, "workers-x", 100'000, "proxmox-lab");
  // Our markers on a VM whose name does not match them: edited by someone, never guessed about.
  ObservedVm renamed = OurVm(202, "workers-y", 100'000);
  renamed.name = "my-renamed-vm";
  in.vms = {foreign, other, renamed};
  EXPECT_THAT(FindGarbage(in).found, IsEmpty());
}

TEST(GarbageTest, LockedOrAgelessVmsAreKept) {
  auto in = Inputs();
  ObservedVm locked = OurVm(101, "workers-a", 100'000);
  locked.lock = "migrate";
  ObservedVm unreadable = OurVm(102, "workers-b", 100'000);
  unreadable.config_read = false;
  ObservedVm no_meta = OurVm(103, "workers-c", 100'000);
  no_meta.created_unix.reset();
  in.vms = {locked, unreadable, no_meta};
  auto report = FindGarbage(in);
  EXPECT_THAT(report.found, IsEmpty());
  EXPECT_THAT(report.kept, SizeIs(3));
}

TEST(GarbageTest, OmniReadFailureSkipsTheWholeCycle) {
  auto in = Inputs();
  in.omni_error = "listing MachineRequests: Omni unreachable";
  in.vms = {OurVm(101, "workers-old", 100'000)};
  in.isos = {Iso(kTalosFile2, 100'000)};
  auto report = FindGarbage(in);
  EXPECT_TRUE(report.skipped);
  EXPECT_THAT(report.skip_reason, HasSubstr("Omni unreachable"));
  EXPECT_THAT(report.found, IsEmpty());

  in.omni_error.clear();
  in.proxmox_error = "connection refused";
  report = FindGarbage(in);
  EXPECT_TRUE(report.skipped);
  EXPECT_THAT(report.found, IsEmpty());
}

TEST(GarbageTest, ReferencedIsosAreKeptAndUnreferencedOnesFound) {
  auto in = Inputs();
  in.requests = {{.id = "workers-live", .volumes = {}, .iso_files = {}}};
  in.vms = {OurVm(101, "workers-live", 100'000)};
  in.isos = {
      Iso(kTalosFile, 100'000),                                       // attached to VM 101
      Iso(Scoped("omni-cidata-workers-live-0123abcd.iso"), 100'000),  // attached to VM 101
      Iso(kTalosFile2, 100'000),                                      // nothing uses it
      Iso(Scoped("omni-cidata-workers-gone-89abcdef.iso"), 100'000),  // nothing uses it
      Iso(Scoped("omni-cidata-workers-fresh-89abcdef.iso"), 599),     // too young
      Iso("debian-12.iso", 100'000),                                  // not ours
      Iso("talos-v1.9.5-metal-amd64.iso", 100'000),                   // the Go provider's or a person's: not ours
      Iso(kTalosFile, 100'000, "pve2"),                               // local file on pve2: VM 101 is on pve1
  };
  auto report = FindGarbage(in);
  ASSERT_THAT(report.found, SizeIs(3));
  EXPECT_EQ(report.found[0].kind, GarbageKind::kTalosIso);
  EXPECT_EQ(report.found[0].volid, "local:iso/" + kTalosFile2);
  EXPECT_EQ(report.found[1].kind, GarbageKind::kCidataIso);
  EXPECT_EQ(report.found[1].volid, "local:iso/" + Scoped("omni-cidata-workers-gone-89abcdef.iso"));
  EXPECT_EQ(report.found[2].kind, GarbageKind::kTalosIso);
  EXPECT_EQ(report.found[2].node, "pve2");
}

TEST(GarbageTest, UnusedTimeDecidesTheGraceWhateverTheNodesClocksSay) {
  auto in = Inputs();
  // The nodes' clocks run an hour ahead of the provider's: by ctime everything looks unborn.
  const std::int64_t ahead = -3600;
  in.vms = {OurVm(101, "workers-gone", ahead), OurVm(102, "workers-new", ahead)};
  const auto gone_iso = Iso(Scoped("omni-cidata-workers-x-89abcdef.iso"), ahead);
  const auto new_iso = Iso(kTalosFile2, 10 * 3600);  // and one whose ctime says it is ancient
  in.isos = {gone_iso, new_iso};

  // Without history (one-shot commands) ctime decides: nothing is old enough, the ancient ISO is found.
  auto by_ctime = FindGarbage(in);
  ASSERT_THAT(by_ctime.found, SizeIs(1));
  EXPECT_EQ(by_ctime.found[0].volid, new_iso.volid);

  // With history, only what was seen unused for the grace period, whatever ctime says.
  const std::map<std::string, std::int64_t> unused_for = {{VmGarbageKey(101, VmNameFor("workers-gone")), 600},
                                                          {VmGarbageKey(102, VmNameFor("workers-new")), 599},
                                                          {IsoGarbageKey(gone_iso), 601}};
  in.unused_for = &unused_for;
  auto by_history = FindGarbage(in);
  ASSERT_THAT(by_history.found, SizeIs(2));
  EXPECT_EQ(by_history.found[0].vmid, 101);
  EXPECT_EQ(by_history.found[0].age_seconds, 600);
  EXPECT_THAT(by_history.found[0].media, SizeIs(2));
  EXPECT_EQ(by_history.found[1].volid, gone_iso.volid);
  // Every unused item is a candidate to track, found or not; the untracked ISO counts as just seen.
  EXPECT_EQ(by_history.candidates, (std::set<std::string>{VmGarbageKey(101, VmNameFor("workers-gone")),
                                                          VmGarbageKey(102, VmNameFor("workers-new")),
                                                          IsoGarbageKey(gone_iso), IsoGarbageKey(new_iso)}));
  EXPECT_THAT(by_history.kept, ::testing::Contains(HasSubstr("only 0s old")));
}

TEST(GarbageTest, IsoKeysTellLocalCopiesApartAndSharedOnesNot) {
  EXPECT_NE(IsoGarbageKey(Iso(kTalosFile, 0, "pve1")), IsoGarbageKey(Iso(kTalosFile, 0, "pve2")));
  EXPECT_EQ(IsoGarbageKey(Iso(kTalosFile, 0, "pve1", true, "cephfs")),
            IsoGarbageKey(Iso(kTalosFile, 0, "pve2", true, "cephfs")));
}

TEST(GarbageTest, IsosNeededByALiveRequestAreKept) {
  auto in = Inputs();
  // The state names the cloud-init ISO; the Talos ISO is still downloading (file name only).
  in.requests = {{.id = "workers-new",
                  .volumes = {"local:iso/" + Scoped("omni-cidata-workers-new-0123abcd.iso")},
                  .iso_files = {kTalosFile2}}};
  in.isos = {Iso(Scoped("omni-cidata-workers-new-0123abcd.iso"), 100'000), Iso(kTalosFile2, 100'000)};
  EXPECT_THAT(FindGarbage(in).found, IsEmpty());
}

TEST(GarbageTest, SharedIsoIsReportedOnceAndKeptWhileAnyVmConfigIsUnreadable) {
  auto in = Inputs();
  in.isos = {Iso(kTalosFile2, 100'000, "pve1", true, "cephfs"), Iso(kTalosFile2, 100'000, "pve2", true, "cephfs")};
  auto report = FindGarbage(in);
  ASSERT_THAT(report.found, SizeIs(1));
  EXPECT_EQ(report.found[0].storage, "cephfs");

  // A VM on an offline node might use the shared file.
  ObservedVm offline = OurVm(300, "workers-z", 100'000);
  offline.node = "pve3";
  offline.config_read = false;
  in.requests = {{.id = "workers-z", .volumes = {}, .iso_files = {}}};
  in.vms = {offline};
  in.unreadable_nodes = {"pve3"};
  EXPECT_THAT(FindGarbage(in).found, IsEmpty());
}

TEST(GarbageTest, NamingPatternsAreStrict) {
  EXPECT_TRUE(IsTalosIsoStem("talos-aaaabbbbccccdddd-v1.10.0-nocloud-amd64.iso"));
  EXPECT_TRUE(IsTalosIsoStem("talos-0123456789abcdef-v1.9.0-beta.1-nocloud-amd64.iso"));
  EXPECT_FALSE(IsTalosIsoStem("talos-0123456789ABCDEF-v1.9.0-nocloud-amd64.iso"));
  EXPECT_FALSE(IsTalosIsoStem("talos-0123456789abcde-v1.9.0-nocloud-amd64.iso"));
  EXPECT_FALSE(IsTalosIsoStem("talos-0123456789abcdef-v1.9.0-metal-amd64.iso"));
  EXPECT_TRUE(IsCidataIsoStem("omni-cidata-workers-abc123-0123abcd.iso"));
  EXPECT_FALSE(IsCidataIsoStem("omni-cidata-workers-abc123-0123abc.iso"));
  EXPECT_FALSE(IsCidataIsoStem("omni-cidata-x y-0123abcd.iso"));
  EXPECT_FALSE(IsCidataIsoStem("cidata.iso"));
}

TEST(GarbageTest, IsoNamesSayWhoseTheyAre) {
  EXPECT_EQ(kTalosFile, "talos-376567988ad37013-v1.9.5-nocloud-amd64.proxmox.0a1b2c3d4e5f.iso");
  EXPECT_EQ(TalosIsoFileName("376567988ad37013ffff", "v1.9.5", kOurs), kTalosFile);
  const IsoName talos = ParseIsoName(kTalosFile);
  EXPECT_EQ(talos.kind, IsoName::Kind::kTalos);
  EXPECT_EQ(talos.provider, "proxmox");
  EXPECT_EQ(talos.instance, kInstance);
  EXPECT_TRUE(InScope(talos, kOurs));
  EXPECT_FALSE(InScope(talos, {.provider_id = "proxmox", .instance = "ffffeeeedddd"}));
  EXPECT_FALSE(InScope(talos, {.provider_id = "lab", .instance = kInstance}));
  EXPECT_EQ(ScopedIsoName("omni-cidata-r1-0123abcd.iso", {.provider_id = "Lab.West", .instance = kInstance}),
            "omni-cidata-r1-0123abcd.lab_west.0a1b2c3d4e5f.iso")
      << "a provider ID with dots cannot be mistaken for the instance";
  const IsoName cidata = ParseIsoName("omni-cidata-r1-0123abcd.lab_west.0a1b2c3d4e5f.iso");
  EXPECT_EQ(cidata.kind, IsoName::Kind::kCidata);
  EXPECT_EQ(cidata.provider, "lab_west");
  const IsoName old = ParseIsoName("talos-376567988ad37013-v1.9.5-nocloud-amd64.iso");
  EXPECT_EQ(old.kind, IsoName::Kind::kTalos);
  EXPECT_TRUE(old.provider.empty()) << "a name from before the scope names nobody";
  EXPECT_FALSE(InScope(old, kOurs));
  const IsoName go = ParseIsoName("user-data-104.iso");
  EXPECT_EQ(go.kind, IsoName::Kind::kGoCidata);
  EXPECT_EQ(go.vmid, 104u);
  EXPECT_EQ(GoCidataIsoFileName(104), "user-data-104.iso");
  EXPECT_EQ(ParseIsoName("user-data-x.iso").kind, IsoName::Kind::kOther);
  EXPECT_EQ(ParseIsoName("user-data-1.iso").kind, IsoName::Kind::kOther) << "below Proxmox's VMID range";
}

TEST(GarbageTest, AnotherOmnisVmsAndIsosAreNeverCandidates) {
  auto in = Inputs();
  ObservedVm theirs = OurVm(401, "workers-theirs", 100'000);
  theirs.tags = Tags("proxmox", "workers-theirs", "ffffeeeedddd");
  in.vms = {theirs};
  const Scope other{.provider_id = "proxmox", .instance = "ffffeeeedddd"};
  in.isos = {Iso(ScopedIsoName("omni-cidata-workers-theirs-89abcdef.iso", other), 100'000),
             Iso(TalosIsoFileName("aaaabbbbccccdddd", "1.10.0", other), 100'000)};
  for (bool include_unscoped : {false, true}) {
    in.include_unscoped = include_unscoped;
    const auto report = FindGarbage(in);
    EXPECT_THAT(report.found, IsEmpty());
    EXPECT_TRUE(report.candidates.empty());
  }
}

TEST(GarbageTest, WhatNamesNoOmniIsKeptUnlessAskedFor) {
  auto in = Inputs();
  ObservedVm old = OurVm(402, "workers-old", 100'000);
  old.tags = fmt::format("{};{};{}", kManagedTag, ProviderTag("proxmox"), RequestTag("workers-old"));
  in.vms = {old};
  in.isos = {Iso("talos-aaaabbbbccccdddd-v1.10.0-nocloud-amd64.iso", 100'000),
             Iso("omni-cidata-workers-old-89abcdef.iso", 100'000), Iso("user-data-402.iso", 100'000)};
  auto report = FindGarbage(in);
  EXPECT_THAT(report.found, IsEmpty());
  ASSERT_THAT(report.kept, SizeIs(4));
  EXPECT_THAT(report.kept[0], HasSubstr("--include-unscoped"));
  EXPECT_THAT(report.kept[3], HasSubstr("the Go provider's name"));
  in.include_unscoped = true;
  report = FindGarbage(in);
  EXPECT_THAT(report.found, SizeIs(4));
}

TEST(GarbageTest, ConfigHelpers) {
  EXPECT_EQ(CreatedUnixFromMeta("creation-qemu=9.2.0,ctime=1700000000"), 1700000000);
  EXPECT_EQ(CreatedUnixFromMeta("ctime=12"), 12);
  EXPECT_FALSE(CreatedUnixFromMeta("creation-qemu=9.2.0").has_value());
  EXPECT_FALSE(CreatedUnixFromMeta("ctime=abc").has_value());
  const std::map<std::string, std::string> config = {{"ide2", "local:iso/a.iso,media=cdrom"},
                                                     {"ide3", "none,media=cdrom"},
                                                     {"scsi0", "vm_ssd:vm-101-disk-0,size=40G"},
                                                     {"name", "local:iso/not-a-drive.iso"},
                                                     {"scsihw", "virtio-scsi-single"}};
  EXPECT_EQ(AttachedVolumes(config), (std::vector<std::string>{"local:iso/a.iso", "vm_ssd:vm-101-disk-0"}));
}

TEST(GarbageTest, ModesAndDurationsParseWithClearErrors) {
  EXPECT_EQ(*ParseGcMode("delete"), GcMode::kDelete);
  EXPECT_EQ(GcModeName(GcMode::kReport), "report");
  auto bad = ParseGcMode("purge");
  ASSERT_FALSE(bad.ok());
  EXPECT_THAT(std::string(bad.status().message()), HasSubstr("--gc-mode 'purge'"));
  EXPECT_EQ(*ParseGcDuration("10m", "--gc-grace-period"), std::chrono::seconds{600});
  EXPECT_EQ(*ParseGcDuration("90s", "--gc-grace-period"), std::chrono::seconds{90});
  EXPECT_EQ(*ParseGcDuration("2h", "--gc-grace-period"), std::chrono::seconds{7200});
  EXPECT_EQ(*ParseGcDuration("45", "--gc-grace-period"), std::chrono::seconds{45});
  for (const char* text : {"", "m", "-5m", "10 m", "1d", "ten"}) {
    auto parsed = ParseGcDuration(text, "--gc-grace-period");
    ASSERT_FALSE(parsed.ok()) << text;
    EXPECT_THAT(std::string(parsed.status().message()), HasSubstr("--gc-grace-period"));
  }
}

}  // namespace
}  // namespace omni_proxmox::provider
