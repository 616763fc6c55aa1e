// SPDX-License-Identifier: Apache-2.0
#include "provider/cloudinit/cidata.h"

#include <stdlib.h>
#include <time.h>

#include <filesystem>
#include <fstream>
#include <map>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include <fmt/format.h>
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "sim/pve/iso9660.h"
#include "support/subprocess.h"

namespace omni_proxmox::provider {
namespace {

namespace fs = std::filesystem;
using ::omni_proxmox::testing::RunProcess;
using ::testing::HasSubstr;
using ::testing::MatchesRegex;

constexpr char kJoinConfig[] = R"(apiVersion: v1alpha1
kind: SideroLinkConfig
apiUrl: https://127.0.0.1:8099?jointoken=abcd
---
apiVersion: v1alpha1
kind: EventSinkConfig
endpoint: '[fdae:41e4:649b:9303::1]:8091'
---
apiVersion: v1alpha1
kind: KmsgLogConfig
name: omni-kmsg
url: tcp://[fdae:41e4:649b:9303::1]:8092
)";

CidataContent Sample() {
  return CidataContent{
      .user_data = kJoinConfig, .instance_id = "workers-a1b2c3", .hostname = "workers-a1b2c3", .network_config = ""};
}

class TempDir {
 public:
  TempDir() {
    std::string pattern = (fs::temp_directory_path() / "cidata_test.XXXXXX").string();
    char* made = mkdtemp(pattern.data());
    EXPECT_NE(made, nullptr);
    path_ = pattern;
  }
  ~TempDir() {
    std::error_code ec;
    fs::remove_all(path_, ec);
  }
  const fs::path& path() const { return path_; }

 private:
  fs::path path_;
};

void WriteFile(const fs::path& path, const std::string& data) {
  std::ofstream out(path, std::ios::binary);
  out.write(data.data(), static_cast<std::streamsize>(data.size()));
  ASSERT_TRUE(out.good()) << path;
}

std::string ReadFile(const fs::path& path) {
  std::ifstream in(path, std::ios::binary);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

// Extracts the whole image with xorriso (an implementation independent of the libisofs writer
// path we use) and returns file name -> contents for the root directory.
std::map<std::string, std::string> ExtractWithXorriso(const std::string& iso, const TempDir& dir) {
  const fs::path image = dir.path() / "cidata.iso";
  WriteFile(image, iso);
  const fs::path out = dir.path() / "extracted";
  auto r = RunProcess(
      {"xorriso", "-abort_on", "FAILURE", "-indev", image.string(), "-osirrox", "on", "-extract", "/", out.string()});
  EXPECT_EQ(r.exit_code, 0) << r.err;
  std::map<std::string, std::string> files;
  for (const auto& entry : fs::directory_iterator(out)) {
    files[entry.path().filename().string()] = ReadFile(entry.path());
  }
  return files;
}

TEST(CidataMetaData, RendersInstanceIdAndHostname) {
  EXPECT_EQ(RenderMetaData(Sample()),
            "instance-id: workers-a1b2c3\nlocal-hostname: workers-a1b2c3\nhostname: workers-a1b2c3\n");
}

TEST(CidataMetaData, OmitsHostnameWhenEmpty) {
  CidataContent c = Sample();
  c.hostname.clear();
  EXPECT_EQ(RenderMetaData(c), "instance-id: workers-a1b2c3\n");
}

TEST(CidataMetaData, QuotesValuesYamlWouldNotReadAsTheSameString) {
  CidataContent c = Sample();
  c.hostname.clear();
  c.instance_id = "123";
  EXPECT_EQ(RenderMetaData(c), "instance-id: '123'\n");
  c.instance_id = "yes";
  EXPECT_EQ(RenderMetaData(c), "instance-id: 'yes'\n");
  c.instance_id = "it's: odd";
  EXPECT_EQ(RenderMetaData(c), "instance-id: 'it''s: odd'\n");
  c.instance_id = "3f0c1a52-9d1e";
  EXPECT_EQ(RenderMetaData(c), "instance-id: '3f0c1a52-9d1e'\n");
}

TEST(CidataNetworkConfig, DefaultIsDhcpOnEveryEthernetNic) {
  EXPECT_EQ(DefaultNetworkConfig(),
            "version: 2\nethernets:\n  all-ethernet:\n    match:\n      name: \"e*\"\n    dhcp4: true\n");
}

TEST(CidataValidate, ErrorsNameTheField) {
  CidataContent c = Sample();
  c.user_data.clear();
  auto s = ValidateCidataContent(c);
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(s.message()), HasSubstr("user_data"));

  c = Sample();
  c.instance_id.clear();
  s = ValidateCidataContent(c);
  EXPECT_THAT(std::string(s.message()), HasSubstr("instance_id"));

  c = Sample();
  c.instance_id = "a\nb";
  s = ValidateCidataContent(c);
  EXPECT_THAT(std::string(s.message()), HasSubstr("instance_id"));

  c = Sample();
  c.hostname = "bad_host";
  s = ValidateCidataContent(c);
  EXPECT_THAT(std::string(s.message()), HasSubstr("hostname 'bad_host'"));

  c = Sample();
  c.hostname = "-leading.example";
  EXPECT_FALSE(ValidateCidataContent(c).ok());
  c.hostname = std::string(64, 'a');
  EXPECT_FALSE(ValidateCidataContent(c).ok());
  c.hostname = "a..b";
  EXPECT_FALSE(ValidateCidataContent(c).ok());
  c.hostname = "node-1.lab.example";
  EXPECT_TRUE(ValidateCidataContent(c).ok());

  c = Sample();
  c.user_data = std::string(kMaxCidataUserDataBytes + 1, 'x');
  s = ValidateCidataContent(c);
  EXPECT_THAT(std::string(s.message()), HasSubstr("user_data"));

  // BuildCidataIso refuses the same input instead of writing a broken image.
  c = Sample();
  c.instance_id.clear();
  EXPECT_EQ(BuildCidataIso(c).status().code(), absl::StatusCode::kInvalidArgument);
}

TEST(CidataIso, XorrisoReadsTheThreeFilesVerbatim) {
  auto iso = BuildCidataIso(Sample());
  ASSERT_TRUE(iso.ok()) << iso.status();
  EXPECT_EQ(iso->size() % 2048, 0u);
  TempDir dir;
  auto files = ExtractWithXorriso(*iso, dir);
  ASSERT_EQ(files.size(), 3u);
  EXPECT_EQ(files["user-data"], kJoinConfig);
  EXPECT_EQ(files["meta-data"], RenderMetaData(Sample()));
  EXPECT_EQ(files["network-config"], DefaultNetworkConfig());
}

TEST(CidataIso, XorrisoReportsVolumeIdCidata) {
  auto iso = BuildCidataIso(Sample());
  ASSERT_TRUE(iso.ok()) << iso.status();
  TempDir dir;
  const fs::path image = dir.path() / "cidata.iso";
  WriteFile(image, *iso);
  auto r = RunProcess({"xorriso", "-indev", image.string(), "-pvd_info"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_THAT(r.out, MatchesRegex("(.|\n)*Volume Id *: cidata\n(.|\n)*")) << r.out;
  // The creation date is the fixed one, not the build time.
  EXPECT_THAT(r.out, HasSubstr("2000010100000000")) << r.out;
}

TEST(CidataIso, IsoinfoSeesVolumeIdRockRidgeAndJoliet) {
  auto iso = BuildCidataIso(Sample());
  ASSERT_TRUE(iso.ok()) << iso.status();
  TempDir dir;
  const fs::path image = dir.path() / "cidata.iso";
  WriteFile(image, *iso);

  auto d = RunProcess({"isoinfo", "-d", "-i", image.string()});
  ASSERT_EQ(d.exit_code, 0) << d.err;
  EXPECT_THAT(d.out, HasSubstr("Volume id: cidata\n"));
  EXPECT_THAT(d.out, HasSubstr("Rock Ridge signatures version 1 found"));
  EXPECT_THAT(d.out, HasSubstr("Joliet with UCS level 3 found"));

  auto rr = RunProcess({"isoinfo", "-R", "-f", "-i", image.string()});
  ASSERT_EQ(rr.exit_code, 0) << rr.err;
  EXPECT_THAT(rr.out, HasSubstr("/user-data\n"));
  EXPECT_THAT(rr.out, HasSubstr("/meta-data\n"));
  EXPECT_THAT(rr.out, HasSubstr("/network-config\n"));

  auto joliet = RunProcess({"isoinfo", "-J", "-f", "-i", image.string()});
  ASSERT_EQ(joliet.exit_code, 0) << joliet.err;
  EXPECT_THAT(joliet.out, HasSubstr("/user-data\n"));

  auto user_data = RunProcess({"isoinfo", "-J", "-i", image.string(), "-x", "/user-data"});
  ASSERT_EQ(user_data.exit_code, 0) << user_data.err;
  EXPECT_EQ(user_data.out, kJoinConfig);
  auto meta_data = RunProcess({"isoinfo", "-J", "-i", image.string(), "-x", "/meta-data"});
  EXPECT_EQ(meta_data.out, RenderMetaData(Sample()));
}

TEST(CidataIso, SimulatorReaderExtractsTheSameFiles) {
  CidataContent c = Sample();
  c.network_config = "version: 2\nethernets:\n  eth0:\n    addresses: [10.0.0.5/24]\n";
  auto iso = BuildCidataIso(c);
  ASSERT_TRUE(iso.ok()) << iso.status();
  auto image = sim::pve::ReadIsoImage(*iso);
  ASSERT_TRUE(image.ok()) << image.status();
  EXPECT_EQ(image->volume_id, "cidata");
  EXPECT_EQ(image->files["user-data"], kJoinConfig);
  EXPECT_EQ(image->files["meta-data"], RenderMetaData(c));
  EXPECT_EQ(image->files["network-config"], c.network_config);
}

TEST(CidataIso, SameInputGivesIdenticalBytesAndName) {
  auto a = BuildCidataIso(Sample());
  auto b = BuildCidataIso(Sample());
  ASSERT_TRUE(a.ok() && b.ok());
  EXPECT_TRUE(*a == *b) << "two builds of the same content differ";
  EXPECT_EQ(CidataIsoFileName("workers-a1b2c3", *a), CidataIsoFileName("workers-a1b2c3", *b));

  CidataContent other = Sample();
  other.user_data += "# changed\n";
  auto c = BuildCidataIso(other);
  ASSERT_TRUE(c.ok());
  EXPECT_NE(*a, *c);
  EXPECT_NE(CidataIsoFileName("workers-a1b2c3", *a), CidataIsoFileName("workers-a1b2c3", *c));
}

TEST(CidataIso, BytesDoNotDependOnTheLocalTimeZone) {
  const char* old_tz = getenv("TZ");
  const std::string saved = old_tz != nullptr ? old_tz : "";
  setenv("TZ", "UTC", 1);
  tzset();
  auto utc = BuildCidataIso(Sample());
  setenv("TZ", "America/New_York", 1);
  tzset();
  auto new_york = BuildCidataIso(Sample());
  if (old_tz != nullptr) {
    setenv("TZ", saved.c_str(), 1);
  } else {
    unsetenv("TZ");
  }
  tzset();
  ASSERT_TRUE(utc.ok() && new_york.ok());
  EXPECT_TRUE(*utc == *new_york) << "the image records local time somewhere";
}

TEST(CidataIso, ConcurrentBuildsAreIdentical) {
  auto reference = BuildCidataIso(Sample());
  ASSERT_TRUE(reference.ok());
  constexpr int kThreads = 4;
  std::vector<std::string> results(kThreads);
  {
    std::vector<std::jthread> threads;
    for (int i = 0; i < kThreads; ++i) {
      threads.emplace_back([&results, i] {
        auto iso = BuildCidataIso(Sample());
        results[i] = iso.ok() ? *iso : std::string(iso.status().message());
      });
    }
  }
  for (const auto& r : results) EXPECT_TRUE(r == *reference);
}

TEST(CidataIso, OneMebibyteUserDataRoundTrips) {
  CidataContent c = Sample();
  std::string big;
  big.reserve(1u << 20);
  for (std::size_t i = 0; big.size() < (1u << 20); ++i) big += fmt::format("# line {}\n", i);
  big.resize(1u << 20);
  c.user_data = big;
  auto iso = BuildCidataIso(c);
  ASSERT_TRUE(iso.ok()) << iso.status();
  EXPECT_GT(iso->size(), 1u << 20);

  TempDir dir;
  auto files = ExtractWithXorriso(*iso, dir);
  EXPECT_TRUE(files["user-data"] == big) << "xorriso read " << files["user-data"].size() << " bytes";
  auto image = sim::pve::ReadIsoImage(*iso);
  ASSERT_TRUE(image.ok()) << image.status();
  EXPECT_TRUE(image->files["user-data"] == big);
}

TEST(CidataFileName, SanitizesTheIdAndAppendsAContentHash) {
  // sha256("abc") = ba7816bf...
  EXPECT_EQ(CidataIsoFileName("workers-a1b2c3", "abc"), "omni-cidata-workers-a1b2c3-ba7816bf.iso");
  EXPECT_EQ(CidataIsoFileName("a/b c.d;e_f", "abc"), "omni-cidata-a-b-c-d-e_f-ba7816bf.iso");
  EXPECT_EQ(CidataIsoFileName("", "abc"), "omni-cidata-unnamed-ba7816bf.iso");
  EXPECT_EQ(CidataIsoFileName(std::string(100, 'x'), "abc"), "omni-cidata-" + std::string(64, 'x') + "-ba7816bf.iso");
  EXPECT_THAT(CidataIsoFileName("r1", ""), MatchesRegex("omni-cidata-r1-e3b0c442\\.iso"));
}

}  // namespace
}  // namespace omni_proxmox::provider
