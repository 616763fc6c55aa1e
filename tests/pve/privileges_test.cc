// SPDX-License-Identifier: Apache-2.0
#include "pve/privileges.h"

#include <gtest/gtest.h>

#include "pve/errors.h"

namespace omni_proxmox::pve {
namespace {

TEST(PrivilegesTest, OwnEntryWinsAndAncestorsPropagateOnlyWithTheFlag) {
  Permissions perms = {{"/", {{"Sys.Audit", true}, {"Sys.Modify", false}}},
                       {"/vms", {{"VM.Audit", true}}},
                       {"/storage/local", {{"Datastore.Audit", false}}}};
  EXPECT_TRUE(HasPrivilege(perms, "/", "Sys.Modify"));  // its own entry: propagation is irrelevant
  EXPECT_TRUE(HasPrivilege(perms, "/nodes/pve1", "Sys.Audit"));
  EXPECT_FALSE(HasPrivilege(perms, "/nodes/pve1", "Sys.Modify"));
  // /vms is listed without Sys.Audit, so the root's propagation does not reach below it.
  EXPECT_FALSE(HasPrivilege(perms, "/vms/105", "Sys.Audit"));
  EXPECT_TRUE(HasPrivilege(perms, "/vms/105", "VM.Audit"));
  EXPECT_TRUE(HasPrivilege(perms, "/storage/local", "Datastore.Audit"));
  EXPECT_FALSE(HasPrivilege(perms, "/storage/local/x", "Datastore.Audit"));
  EXPECT_FALSE(HasPrivilege({}, "/", "Sys.Audit"));
}

TEST(PrivilegesTest, ReportsEveryUnmetRequirement) {
  Permissions perms;
  for (const auto& r : ProvisioningPrivileges()) {
    for (const auto& [path, priv] : r.any_of) perms[path][priv] = true;
  }
  EXPECT_TRUE(CheckPrivileges(perms, ProvisioningPrivileges(), "root@pam!omni").ok());

  perms["/vms"].erase("VM.PowerMgmt");
  perms["/nodes"].erase("Sys.AccessNetwork");  // Sys.Modify on / still satisfies download-url
  EXPECT_TRUE(CheckPrivileges(perms, {ProvisioningPrivileges().back()}, "x").ok());
  perms["/"].erase("Sys.Modify");
  absl::Status s = CheckPrivileges(perms, ProvisioningPrivileges(), "auditor@pve!ro");
  ASSERT_FALSE(s.ok());
  EXPECT_EQ(ClassifyError(s), ErrorKind::kPermission);
  std::string message(s.message());
  EXPECT_NE(message.find("'auditor@pve!ro' lacks 2 privilege(s)"), std::string::npos) << message;
  EXPECT_NE(message.find("VM.PowerMgmt on /vms (to start and stop VMs)"), std::string::npos) << message;
  EXPECT_NE(message.find("Sys.AccessNetwork on /nodes or Sys.Modify on /"), std::string::npos) << message;
}

TEST(PrivilegesTest, GrantCommandsGrantExactlyWhatIsMissingToUserAndToken) {
  Permissions perms;
  for (const auto& r : ProvisioningPrivileges()) {
    for (const auto& [path, priv] : r.any_of) perms[path][priv] = true;
  }
  EXPECT_TRUE(GrantCommands(perms, ProvisioningPrivileges(), "omni@pve!provider").empty());
  perms["/storage"].erase("Datastore.AllocateTemplate");
  perms["/sdn/zones/localnetwork"].erase("SDN.Use");
  perms["/nodes"].erase("Sys.AccessNetwork");
  perms["/"].erase("Sys.Modify");
  const std::vector<std::string> expected = {
      "pveum role add OmniProxmoxStorage --privs \"Datastore.AllocateTemplate\" || pveum role modify "
      "OmniProxmoxStorage --append 1 --privs \"Datastore.AllocateTemplate\"",
      "pveum acl modify /storage --roles OmniProxmoxStorage --users omni@pve",
      "pveum acl modify /storage --roles OmniProxmoxStorage --tokens 'omni@pve!provider'",
      "pveum role add OmniProxmoxLocalnetwork --privs \"SDN.Use\" || pveum role modify OmniProxmoxLocalnetwork "
      "--append 1 --privs \"SDN.Use\"",
      "pveum acl modify /sdn/zones/localnetwork --roles OmniProxmoxLocalnetwork --users omni@pve",
      "pveum acl modify /sdn/zones/localnetwork --roles OmniProxmoxLocalnetwork --tokens 'omni@pve!provider'",
      "pveum role add OmniProxmoxNodes --privs \"Sys.AccessNetwork\" || pveum role modify OmniProxmoxNodes --append 1 "
      "--privs \"Sys.AccessNetwork\"",
      "pveum acl modify /nodes --roles OmniProxmoxNodes --users omni@pve",
      "pveum acl modify /nodes --roles OmniProxmoxNodes --tokens 'omni@pve!provider'",
  };
  EXPECT_EQ(GrantCommands(perms, ProvisioningPrivileges(), "omni@pve!provider"), expected);
  // A user without a token gets the grants to the user only.
  EXPECT_EQ(GrantCommands(perms, ProvisioningPrivileges(), "omni@pve").size(), 6u);
}

}  // namespace
}  // namespace omni_proxmox::pve
