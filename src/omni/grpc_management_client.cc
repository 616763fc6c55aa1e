// SPDX-License-Identifier: Apache-2.0
// management.ManagementService over gRPC: MakeGrpcManagementClient.
#include <fmt/format.h>

#include "omni/internal/connection.h"
#include "omni/management/management.grpc.pb.h"
#include "omni/management_client.h"
#include "util/status_macros.h"

namespace omni_proxmox::omni {
namespace {

using internal::Connection;

class GrpcManagementClient final : public ManagementClient {
 public:
  explicit GrpcManagementClient(std::shared_ptr<Connection> connection)
      : connection_(std::move(connection)), stub_(management::ManagementService::NewStub(connection_->channel())) {}

  absl::StatusOr<std::string> CreateSchematicFromRaw(std::string_view schematic_yaml,
                                                     std::string_view talos_version) override {
    management::CreateSchematicFromRawRequest req;
    req.set_raw_schematic(std::string(schematic_yaml));
    req.set_talos_version(std::string(talos_version));
    grpc::ClientContext context;
    constexpr std::string_view kMethod = "/management.ManagementService/CreateSchematicFromRaw";
    OP_RETURN_IF_ERROR(connection_->Prepare(context, kMethod, /*state_call=*/false, /*streaming=*/false));
    management::CreateSchematicResponse response;
    OP_RETURN_IF_ERROR(
        connection_->Finish(stub_->CreateSchematicFromRaw(&context, req, &response), kMethod, "create schematic"));
    if (response.schematic_id().empty()) {
      return absl::InternalError("create schematic: Omni returned an empty schematic ID");
    }
    return response.schematic_id();
  }

  absl::StatusOr<BootAsset> GetBootAssetURL(const BootAssetRequest& request) override {
    management::GetBootAssetURLRequest req;
    req.set_talos_version(request.talos_version);
    req.set_schematic_id(request.schematic_id);
    req.set_standalone_url(request.standalone_url);
    req.set_boot_asset_kind(static_cast<management::GetBootAssetURLRequest::Kind>(static_cast<int>(request.kind)));
    req.set_platform(request.platform);
    req.set_architecture(request.architecture);
    req.set_format(request.format);
    req.set_secure_boot(request.secure_boot);
    grpc::ClientContext context;
    constexpr std::string_view kMethod = "/management.ManagementService/GetBootAssetURL";
    OP_RETURN_IF_ERROR(connection_->Prepare(context, kMethod, /*state_call=*/false, /*streaming=*/false));
    management::GetBootAssetURLResponse response;
    OP_RETURN_IF_ERROR(connection_->Finish(stub_->GetBootAssetURL(&context, req, &response), kMethod,
                                           fmt::format("get boot asset URL for schematic {}", request.schematic_id)));
    BootAsset out;
    out.url = response.url();
    out.headers.insert(response.headers().begin(), response.headers().end());
    out.image_factory_host = response.image_factory_host();
    out.storage_key = response.storage_key();
    return out;
  }

 private:
  std::shared_ptr<Connection> connection_;
  std::unique_ptr<management::ManagementService::Stub> stub_;
};

}  // namespace

absl::StatusOr<std::unique_ptr<ManagementClient>> MakeGrpcManagementClient(const ClientOptions& options) {
  OP_ASSIGN_OR_RETURN(auto connection, Connection::Create(options));
  return std::unique_ptr<ManagementClient>(new GrpcManagementClient(std::move(connection)));
}

}  // namespace omni_proxmox::omni
