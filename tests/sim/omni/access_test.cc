// SPDX-License-Identifier: Apache-2.0
#include "sim/omni/access.h"

#include "gtest/gtest.h"

namespace omni_proxmox::sim::omni {
namespace {

Caller Provider(const std::string& id = "proxmox") {
  return Caller{id + kInfraProviderEmailSuffix, Role::kInfraProvider, id};
}

absl::StatusCode Code(const Caller& caller, Verb verb, const std::string& ns, const std::string& type,
                      const std::string& id = "x") {
  return Authorize(caller, verb, ns, type, id).status().code();
}

TEST(AccessTest, SharedNamespacesAreLabelScopedAndNeedARegisteredProvider) {
  auto scope = Authorize(Provider(), Verb::kList, kInfraProviderNs, kMachineRequestType, "");
  ASSERT_TRUE(scope.ok());
  EXPECT_EQ(scope->label_provider_id, "proxmox");
  EXPECT_TRUE(scope->requires_registered_provider);
  EXPECT_FALSE(scope->finalizer_only_update);
  auto ephemeral =
      Authorize(Provider(), Verb::kUpdate, kInfraProviderEphemeralNs, kInfraProviderHealthStatusType, "proxmox");
  ASSERT_TRUE(ephemeral.ok());
  EXPECT_EQ(ephemeral->label_provider_id, "proxmox");
}

TEST(AccessTest, ReadOnlyInfraTypesAllowOnlyFinalizerUpdates) {
  for (const char* type :
       {kMachineRequestType, kInfraMachineRegistrationType, kProviderJoinConfigType, kInfraMachineType}) {
    EXPECT_EQ(Code(Provider(), Verb::kGet, kInfraProviderNs, type), absl::StatusCode::kOk) << type;
    EXPECT_EQ(Code(Provider(), Verb::kCreate, kInfraProviderNs, type), absl::StatusCode::kPermissionDenied) << type;
    EXPECT_EQ(Code(Provider(), Verb::kDestroy, kInfraProviderNs, type), absl::StatusCode::kPermissionDenied) << type;
    EXPECT_EQ(Code(Provider(), Verb::kTeardown, kInfraProviderNs, type), absl::StatusCode::kPermissionDenied) << type;
    auto update = Authorize(Provider(), Verb::kUpdate, kInfraProviderNs, type, "x");
    ASSERT_TRUE(update.ok()) << type;
    EXPECT_TRUE(update->finalizer_only_update) << type;
  }
  // BMC configs are read-only outright.
  EXPECT_EQ(Code(Provider(), Verb::kList, kInfraProviderNs, kBmcConfigType), absl::StatusCode::kOk);
  EXPECT_EQ(Code(Provider(), Verb::kUpdate, kInfraProviderNs, kBmcConfigType), absl::StatusCode::kPermissionDenied);
}

TEST(AccessTest, ProviderOutputsAreFullCrud) {
  for (const char* type : {kMachineRequestStatusType, kConfigPatchRequestType, kInfraMachineStatusType}) {
    for (Verb verb :
         {Verb::kGet, Verb::kList, Verb::kWatch, Verb::kCreate, Verb::kUpdate, Verb::kDestroy, Verb::kTeardown}) {
      EXPECT_EQ(Code(Provider(), verb, kInfraProviderNs, type), absl::StatusCode::kOk) << type;
    }
  }
}

TEST(AccessTest, IdBoundTypesNeedTheProviderId) {
  for (const char* type : {kInfraProviderStatusType, kInfraProviderHealthStatusType, kInfraProviderType}) {
    EXPECT_EQ(Code(Provider(), Verb::kCreate, kInfraProviderNs, type, "other"), absl::StatusCode::kInvalidArgument);
    EXPECT_EQ(Code(Provider(), Verb::kGet, kInfraProviderNs, type, "other"), absl::StatusCode::kInvalidArgument);
    EXPECT_EQ(Code(Provider(), Verb::kUpdate, kInfraProviderNs, type, "proxmox"), absl::StatusCode::kOk);
    EXPECT_EQ(Code(Provider(), Verb::kList, kInfraProviderNs, type, ""), absl::StatusCode::kOk);
  }
}

TEST(AccessTest, UnknownTypesInSharedNamespacesAreDenied) {
  EXPECT_EQ(Code(Provider(), Verb::kGet, kInfraProviderNs, "Clusters.omni.sidero.dev"),
            absl::StatusCode::kPermissionDenied);
}

TEST(AccessTest, PrivateNamespaceRules) {
  auto own =
      Authorize(Provider(), Verb::kCreate, "infra-provider:proxmox", "Machine.proxmox.infraprovider.sidero.dev", "r1");
  ASSERT_TRUE(own.ok());
  EXPECT_EQ(own->label_provider_id, "");  // private resources are not label-scoped
  EXPECT_TRUE(own->requires_registered_provider);
  EXPECT_EQ(Code(Provider(), Verb::kCreate, "infra-provider:proxmox", "Machine.omni.sidero.dev"),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(Code(Provider(), Verb::kCreate, "infra-provider:proxmox", ".proxmox.infraprovider.sidero.dev"),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(Code(Provider(), Verb::kGet, "infra-provider:other", "Machine.other.infraprovider.sidero.dev"),
            absl::StatusCode::kPermissionDenied);
}

TEST(AccessTest, OtherNamespacesAllowSomeReadsOnly) {
  for (const auto& [ns, type] : std::vector<std::pair<std::string, std::string>>{{kDefaultNs, kMachineType},
                                                                                 {kDefaultNs, kSiderolinkApiConfigType},
                                                                                 {kDefaultNs, kConnectionParamsType},
                                                                                 {kDefaultNs, kFeaturesConfigType},
                                                                                 {kDefaultNs, kTalosVersionType},
                                                                                 {kMetaNs, kResourceDefinitionType},
                                                                                 {kMetaNs, kNamespaceType}}) {
    EXPECT_EQ(Code(Provider(), Verb::kGet, ns, type), absl::StatusCode::kOk) << type;
    EXPECT_EQ(Code(Provider(), Verb::kWatch, ns, type, ""), absl::StatusCode::kOk) << type;
    EXPECT_EQ(Code(Provider(), Verb::kUpdate, ns, type), absl::StatusCode::kPermissionDenied) << type;
  }
  auto denied = Authorize(Provider(), Verb::kList, kDefaultNs, kMachineClassType, "");
  EXPECT_EQ(denied.status().code(), absl::StatusCode::kPermissionDenied);
  EXPECT_NE(std::string(denied.status().message()).find("InfraProvider"), std::string::npos);
}

TEST(AccessTest, RolesOtherThanInfraProvider) {
  const Caller admin{"admin@serviceaccount.omni.sidero.dev", Role::kAdmin, ""};
  auto scope = Authorize(admin, Verb::kDestroy, kInfraProviderNs, kMachineRequestType, "x");
  ASSERT_TRUE(scope.ok());
  EXPECT_EQ(scope->label_provider_id, "");
  EXPECT_FALSE(scope->requires_registered_provider);
  const Caller reader{"r@serviceaccount.omni.sidero.dev", Role::kReader, ""};
  EXPECT_EQ(Code(reader, Verb::kGet, kDefaultNs, kMachineClassType), absl::StatusCode::kOk);
  EXPECT_EQ(Code(reader, Verb::kCreate, kDefaultNs, kMachineClassType), absl::StatusCode::kPermissionDenied);
  const Caller none{"n@serviceaccount.omni.sidero.dev", Role::kNone, ""};
  EXPECT_EQ(Code(none, Verb::kGet, kDefaultNs, kMachineType), absl::StatusCode::kPermissionDenied);
  // An InfraProvider role without a provider identity gets nothing.
  const Caller odd{"x@serviceaccount.omni.sidero.dev", Role::kInfraProvider, ""};
  EXPECT_EQ(Code(odd, Verb::kGet, kDefaultNs, kMachineType), absl::StatusCode::kPermissionDenied);
}

TEST(AccessTest, FinalizerOnlyUpdateComparesEverythingButFinalizersAndVersion) {
  Resource current;
  current.type = kMachineRequestType;
  current.id = "r";
  current.version = 3;
  current.labels = {{"a", "b"}};
  Resource proposed = current;
  proposed.version = 4;
  proposed.finalizers = {"proxmox.ProvisionController"};
  EXPECT_TRUE(CheckFinalizerOnlyUpdate(current, proposed, true).ok());
  EXPECT_EQ(CheckFinalizerOnlyUpdate(current, proposed, false).code(), absl::StatusCode::kPermissionDenied);
  Resource owner = proposed;
  owner.owner = "me";
  EXPECT_EQ(CheckFinalizerOnlyUpdate(current, owner, true).code(), absl::StatusCode::kPermissionDenied);
  Resource phase = proposed;
  phase.phase = Phase::kTearingDown;
  auto refused = CheckFinalizerOnlyUpdate(current, phase, true);
  EXPECT_EQ(refused.code(), absl::StatusCode::kPermissionDenied);
  EXPECT_NE(std::string(refused.message()).find("phase"), std::string::npos);
}

}  // namespace
}  // namespace omni_proxmox::sim::omni
