// SPDX-License-Identifier: Apache-2.0
// `omni-proxmox selector eval`, run as a real process.

#include <string>

#include <gtest/gtest.h>

#include "support/subprocess.h"

namespace omni_proxmox {
namespace {

using testing::RunProcess;

constexpr char kVmSsd[] =
    R"({"storage":"vm_ssd","node":"pve1","type":"rbd","content":"images,rootdir","avail":"2199023255552",)"
    R"("total":4398046511104,"used":2199023255552,"active":1,"enabled":"1","shared":0})";

TEST(SelectorCommandTest, EvalPrintsTypedValue) {
  auto r = RunProcess(
      {OP_BINARY, "selector", "eval", "--expr", R"(type == "rbd" && name == "vm_ssd")", "--storage", kVmSsd});
  EXPECT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(r.out, "{\"type\":\"bool\",\"value\":true}\n");
  r = RunProcess({OP_BINARY, "selector", "eval", "--expr", "availableSpace / GiB", "--storage", kVmSsd});
  EXPECT_EQ(r.out, "{\"type\":\"uint\",\"value\":2048}\n");
  r = RunProcess({OP_BINARY, "selector", "eval", "--expr", "content", "--storage", kVmSsd});
  EXPECT_EQ(r.out, "{\"type\":\"list\",\"value\":[\"images\",\"rootdir\"]}\n");
}

TEST(SelectorCommandTest, EvalReportsCompileAndEvalErrors) {
  auto r = RunProcess({OP_BINARY, "selector", "eval", "--expr", "availableSpace > 100", "--storage", kVmSsd});
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_NE(r.out.find(R"("kind":"compile")"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("ERROR: <input>:1:16: found no matching overload for '_>_' applied to '(uint, int)'"),
            std::string::npos)
      << r.out;
  r = RunProcess({OP_BINARY, "selector", "eval", "--expr", "availableSpace - 3u * TiB > 0u", "--storage", kVmSsd});
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_EQ(r.out, "{\"error\":\"unsigned integer overflow\",\"kind\":\"eval\"}\n");
  r = RunProcess({OP_BINARY, "selector", "eval", "--expr", "name", "--storage", R"({"active":"yes"})"});
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_EQ(r.out, "{\"error\":\"storage field 'active': \\\"yes\\\" is not 0 or 1\",\"kind\":\"input\"}\n");
}

TEST(SelectorCommandTest, BatchWritesOneLinePerRequest) {
  const std::string input = std::string(R"x({"expr":"name.startsWith(\"vm\")","storage":)x") + kVmSsd + "}\n" +
                            R"({"expr":"1/0 == 0","storage":{}})" + "\n\n" + "garbage\n";
  auto r = RunProcess({OP_BINARY, "selector", "eval", "--batch"}, input);
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_EQ(r.out,
            "{\"type\":\"bool\",\"value\":true}\n"
            "{\"error\":\"division by zero\",\"kind\":\"eval\"}\n"
            "{\"error\":\"line 4: expected a JSON object {\\\"expr\\\": \\\"...\\\", \\\"storage\\\": {...}}\","
            "\"kind\":\"input\"}\n");
  r = RunProcess({OP_BINARY, "selector", "eval", "--batch"}, R"({"expr":"total > used"})"
                                                             "\n");
  EXPECT_EQ(r.exit_code, 0);
  EXPECT_EQ(r.out, "{\"type\":\"bool\",\"value\":false}\n");
}

TEST(SelectorCommandTest, UsageErrors) {
  auto r = RunProcess({OP_BINARY, "selector", "eval"});
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_NE(r.err.find("--selector is required"), std::string::npos);
  r = RunProcess({OP_BINARY, "selector", "eval", "--expr", "true", "--storage", "{not json"});
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_NE(r.err.find("--storage is not valid JSON"), std::string::npos);
}

}  // namespace
}  // namespace omni_proxmox
