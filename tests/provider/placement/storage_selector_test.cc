// SPDX-License-Identifier: Apache-2.0
#include "provider/placement/storage_selector.h"

#include <cstdlib>
#include <new>
#include <string>
#include <thread>
#include <vector>

#include <gtest/gtest.h>

// Counts heap allocations made by the current thread while counting is on, to hold the evaluator to its
// "no allocation for a typical selector" promise.
namespace {
thread_local bool g_counting = false;
thread_local long g_allocations = 0;
}  // namespace

#if defined(__GNUC__) && !defined(__clang__)
// GCC 12 at -O2 and above reports the std::free in our replaced operator delete as mismatched with our
// replaced operator new after inlining; both are ours and match.
#pragma GCC diagnostic ignored "-Wmismatched-new-delete"
#endif

void* operator new(std::size_t n) {
  if (g_counting) ++g_allocations;
  if (void* p = std::malloc(n == 0 ? 1 : n)) return p;
  throw std::bad_alloc();
}
void operator delete(void* p) noexcept { std::free(p); }
void operator delete(void* p, std::size_t) noexcept { std::free(p); }

namespace omni_proxmox::provider {
namespace {

using cel::Compile;
using cel::Env;
using cel::Kind;
using cel::Type;
using cel::Value;
using cel::VectorActivation;

constexpr std::uint64_t kGiB = 1ull << 30;

StorageFacts LocalLvm() {
  StorageFacts s;
  s.name = "local-lvm";
  s.node = "pve1";
  s.type = "lvmthin";
  s.avail_bytes = 200 * kGiB;
  s.total_bytes = 500 * kGiB;
  s.used_bytes = 300 * kGiB;
  s.enabled = s.active = true;
  s.content = {"images", "rootdir"};
  return s;
}

StorageFacts VmSsd() {
  StorageFacts s;
  s.name = "vm_ssd";
  s.node = "pve1";
  s.type = "rbd";
  s.avail_bytes = 2048 * kGiB;
  s.total_bytes = 4096 * kGiB;
  s.used_bytes = 2048 * kGiB;
  s.enabled = s.active = s.shared = true;
  s.content = {"images"};
  return s;
}

StorageFacts Local() {
  StorageFacts s;
  s.name = "local";
  s.node = "pve1";
  s.type = "dir";
  s.avail_bytes = 50 * kGiB;
  s.enabled = true;
  s.content = {"iso", "vztmpl", "backup"};
  return s;
}

bool MustMatch(std::string_view src, const StorageFacts& facts) {
  auto selector = StorageSelector::Compile(src);
  EXPECT_TRUE(selector.ok()) << src << ": " << selector.status().message();
  if (!selector.ok()) return false;
  auto match = selector->Matches(facts);
  EXPECT_TRUE(match.ok()) << src << ": " << match.status().message();
  return match.ok() && *match;
}

std::string CompileError(std::string_view src) {
  auto selector = StorageSelector::Compile(src);
  return selector.ok() ? "<ok>" : std::string(selector.status().message());
}

TEST(SelectorTest, TypeWorksAsAVariable) {
  // The operator documentation's example, which the Go provider rejects.
  EXPECT_TRUE(MustMatch(R"(type == "rbd" && name == "vm_ssd")", VmSsd()));
  EXPECT_FALSE(MustMatch(R"(type == "rbd" && name == "vm_ssd")", LocalLvm()));
  EXPECT_TRUE(MustMatch(R"(storageType == type)", LocalLvm()));
}

TEST(SelectorTest, EveryVariableIsBound) {
  const StorageFacts s = VmSsd();
  EXPECT_TRUE(MustMatch(R"(name == "vm_ssd" && node == "pve1" && storageType == "rbd")", s));
  EXPECT_TRUE(MustMatch("availableSpace == 2048u * GiB && total == 4u * TiB && used == total - availableSpace", s));
  EXPECT_TRUE(MustMatch("enabled && active && shared", s));
  EXPECT_FALSE(MustMatch("shared", LocalLvm()));
  EXPECT_TRUE(MustMatch(R"("images" in content && !("iso" in content))", s));
  EXPECT_TRUE(MustMatch(R"(content.exists(c, c == "rootdir") && size(content) == 2)", LocalLvm()));
  EXPECT_TRUE(MustMatch("KiB == 1024u && MiB == 1024u * KiB && GiB == 1024u * MiB && TiB == 1024u * GiB", s));
  EXPECT_TRUE(MustMatch("availableSpace > 100u * GiB", LocalLvm()));
  EXPECT_FALSE(MustMatch("availableSpace > 100u * GiB", Local()));
}

TEST(SelectorTest, StringExtensionsAreAvailable) {
  EXPECT_TRUE(MustMatch(R"(name.upperAscii().startsWith("LOCAL") && name.split("-")[1] == "lvm")", LocalLvm()));
}

TEST(SelectorTest, NonBoolSelectorsGetTheHint) {
  EXPECT_EQ(CompileError("name"),
            "storage_selector must be a boolean expression such as name == \"local-lvm\"; this one yields string");
  EXPECT_EQ(CompileError("availableSpace"),
            "storage_selector must be a boolean expression such as name == \"local-lvm\"; this one yields uint");
  EXPECT_EQ(CompileError("dyn(true)"),
            "storage_selector must be a boolean expression such as name == \"local-lvm\"; this one yields dyn");
  EXPECT_EQ(CompileError(R"(name == "x" ? "yes" : "no")"),
            "storage_selector must be a boolean expression such as name == \"local-lvm\"; this one yields string");
  EXPECT_EQ(CompileError("[true][0]"), "<ok>");
}

TEST(SelectorTest, CompileErrorsAreCelGoShapedWithHints) {
  EXPECT_EQ(CompileError(R"(nme == "local-lvm")"),
            "ERROR: <input>:1:1: undeclared reference to 'nme' (in container '')\n"
            " | nme == \"local-lvm\"\n"
            " | ^\n"
            "hint: 'nme' is not declared; did you mean 'name'?");
  EXPECT_EQ(CompileError("availableSpace > 100 * GiB"),
            "ERROR: <input>:1:22: found no matching overload for '_*_' applied to '(int, uint)'\n"
            " | availableSpace > 100 * GiB\n"
            " | .....................^\n"
            "hint: availableSpace, total and used are uint: write uint literals such as 100u * GiB, or convert with "
            "uint(...) / int(...)");
  EXPECT_EQ(CompileError("name == "),
            "ERROR: <input>:1:9: Syntax error: mismatched input '<EOF>' expecting {'[', '{', '(', '.', '-', '!', "
            "'true', 'false', 'null', NUM_FLOAT, NUM_INT, NUM_UINT, STRING, BYTES, IDENTIFIER}\n"
            " | name == \n"
            " | ........^");
  EXPECT_NE(CompileError("zzzz == 1").find("the variables are name, node, type"), std::string::npos);
  // A bare storage name is explained as such, not as an undeclared `local` minus `lvm`.
  EXPECT_EQ(CompileError("local-lvm"),
            "'local-lvm' is a storage name, not a selector: a selector is a CEL expression over the storage; to "
            "pick this storage by name write name == \"local-lvm\"");
  EXPECT_NE(CompileError(R"("lvm" in name)")
                .find("hint: `in` tests list elements and map keys; for a substring write "
                      "name.contains(\"lvm\")"),
            std::string::npos);
  auto status = StorageSelector::Compile("name ==").status();
  EXPECT_EQ(status.code(), absl::StatusCode::kInvalidArgument);
}

TEST(SelectorTest, EvalErrorsNameTheStorageAndTheProblem) {
  auto selector = StorageSelector::Compile("availableSpace - 300u * GiB > 0u");
  ASSERT_TRUE(selector.ok());
  auto match = selector->Matches(LocalLvm());
  ASSERT_FALSE(match.ok());
  EXPECT_EQ(match.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(match.status().message(),
            "storage_selector failed on storage 'local-lvm' of node 'pve1': unsigned integer overflow");
  auto by_zero = StorageSelector::Compile("availableSpace / 0u > 0u");
  EXPECT_NE(by_zero->Matches(LocalLvm()).status().message().find("division by zero"), absl::string_view::npos);
  auto no_key = StorageSelector::Compile(R"({"other": 1u}[name] > 0u)");
  EXPECT_NE(no_key->Matches(LocalLvm()).status().message().find("no such key: local-lvm"), absl::string_view::npos);
  auto regex = StorageSelector::Compile(R"(name.matches("("))");
  EXPECT_NE(regex->Matches(LocalLvm()).status().message().find("error parsing regexp"), absl::string_view::npos);
}

TEST(SelectorTest, SelectFirstFollowsTheGoProvider) {
  const std::vector<StorageFacts> storages = {Local(), LocalLvm(), VmSsd()};
  auto big = StorageSelector::Compile("availableSpace > 100u * GiB");
  auto first = SelectFirst(*big, storages);
  ASSERT_TRUE(first.ok());
  EXPECT_EQ(first->value(), 1u);
  auto none = SelectFirst(*StorageSelector::Compile(R"(name == "nope")"), storages);
  ASSERT_TRUE(none.ok());
  EXPECT_FALSE(none->has_value());
  // An evaluation error on any entry aborts the pick, even if a later entry would match.
  auto aborting = SelectFirst(*StorageSelector::Compile("availableSpace - 100u * GiB > 0u"), storages);
  EXPECT_FALSE(aborting.ok());
  EXPECT_NE(aborting.status().message().find("storage 'local'"), absl::string_view::npos);
}

// Everything that evaluates in the Go provider's four-variable environment evaluates the same here.
TEST(SelectorTest, SupersetOfTheGoProviderEnvironment) {
  Env go;
  const int name = go.AddVariable("name", Type::String());
  const int node = go.AddVariable("node", Type::String());
  const int storage_type = go.AddVariable("storageType", Type::String());
  const int avail = go.AddVariable("availableSpace", Type::Uint());
  const char* const exprs[] = {
      R"(name == "local-lvm")",
      R"(storageType == "lvmthin" && availableSpace > 100u * 1024u * 1024u * 1024u)",
      R"(name.startsWith("ceph") || name in ["local-lvm","fast"])",
      R"(name.matches("^local-.*$") && node == "pve1")",
      R"(1/0 == 0 || name == "local-lvm")",
      R"(1/0 == 0 && name == "nope")",
      R"(dyn(availableSpace) > 100)",
      R"(int(availableSpace) > 100)",
      R"(availableSpace > uint(100))",
      R"(name.matches("(?i)LOCAL") && matches(name, "^local"))",
      R"(availableSpace - 300u * 1024u * 1024u * 1024u > 0u)",
      R"(size(name) > 3 && ["a", "b"].exists(x, x == storageType))",
      R"({"local-lvm": 1, "vm_ssd": 2}[name] == 1)",
      R"(type(availableSpace) == uint && string(availableSpace).size() > 3)",
  };
  for (const StorageFacts& facts : {LocalLvm(), VmSsd(), Local()}) {
    VectorActivation act(go);
    act.Set(name, Value::StringView(facts.name));
    act.Set(node, Value::StringView(facts.node));
    act.Set(storage_type, Value::StringView(facts.type));
    act.Set(avail, Value::Uint(facts.avail_bytes));
    StorageActivation ours(facts);
    for (const char* src : exprs) {
      auto in_go = Compile(go, src);
      ASSERT_TRUE(in_go.ok()) << src << ": " << in_go.status().message();
      auto in_ours = CompileStorageExpression(src);
      ASSERT_TRUE(in_ours.ok()) << src << ": " << in_ours.status().message();
      EXPECT_EQ(in_go->Evaluate(act).DebugString(), in_ours->Evaluate(ours).DebugString()) << src;
      EXPECT_EQ(in_go->result_type().ToString(), in_ours->result_type().ToString()) << src;
    }
  }
}

TEST(SelectorTest, TypicalSelectorsDoNotAllocate) {
  const StorageFacts facts = LocalLvm();
  for (const char* src :
       {R"(type == "rbd" && name == "vm_ssd")", R"(storageType == "lvmthin" && availableSpace > 100u * GiB)",
        R"(name.startsWith("ceph") || name in ["local-lvm", "fast"])",
        R"(name.matches("^local-.*$") && node == "pve1")", "enabled && active && !shared"}) {
    auto selector = StorageSelector::Compile(src);
    ASSERT_TRUE(selector.ok()) << src;
    ASSERT_TRUE(selector->Matches(facts).ok());  // warm-up (RE2 builds its DFA lazily)
    g_allocations = 0;
    g_counting = true;
    auto match = selector->Matches(facts);
    g_counting = false;
    ASSERT_TRUE(match.ok());
    EXPECT_EQ(g_allocations, 0) << src;
  }
  // The counter works: reading `content` materialises a list.
  auto content = StorageSelector::Compile(R"("images" in content)");
  g_allocations = 0;
  g_counting = true;
  auto match = content->Matches(facts);
  g_counting = false;
  EXPECT_TRUE(match.ok() && *match);
  EXPECT_GT(g_allocations, 0);
}

TEST(SelectorTest, CopiesShareTheProgramAndAreThreadSafe) {
  auto selector = StorageSelector::Compile(R"(name.matches("^vm_") && availableSpace > GiB)");
  ASSERT_TRUE(selector.ok());
  const StorageSelector copy = *selector;
  EXPECT_EQ(copy.source(), selector->source());
  EXPECT_EQ(&copy.program().source(), &selector->program().source());
  std::vector<std::thread> threads;
  std::vector<int> hits(4, 0);
  for (int t = 0; t < 4; ++t) {
    threads.emplace_back([&, t] {
      const StorageFacts yes = VmSsd(), no = LocalLvm();
      for (int i = 0; i < 1000; ++i) {
        hits[static_cast<std::size_t>(t)] += *copy.Matches(yes) ? 1 : 0;
        hits[static_cast<std::size_t>(t)] += *copy.Matches(no) ? 1 : 0;
      }
    });
  }
  for (auto& th : threads) th.join();
  for (int h : hits) EXPECT_EQ(h, 1000);
}

}  // namespace
}  // namespace omni_proxmox::provider
