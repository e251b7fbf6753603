// Conversions between strata.v1 protobuf messages and the transport-neutral types of
// server/generation.h, and between absl::Status and grpc::Status (absl's codes are gRPC's).
// Stateless functions; any thread.
#pragma once

#include <map>
#include <string>
#include <string_view>
#include <vector>

#include <grpcpp/grpcpp.h>

#include "common/status.h"
#include "server/generation.h"
#include "strata/v1/generation.pb.h"

namespace strata::server {

// Checks what the proto's shape leaves open (a prompt is present, not two kinds of prompt,
// logprobs not negative) and copies every field; ranges and names are left to
// GenerationService::Start. Errors are api_error.h's BadParam (INVALID_ARGUMENT naming the field).
absl::StatusOr<GenerationRequest> ToGenerationRequest(const v1::GenerateRequest& proto);

// One response per delta, in order.
std::vector<v1::GenerateResponse> ToResponses(const std::vector<CompletionDelta>& deltas);
void SetUsage(const Usage& usage, v1::GenerateResponse* response);

grpc::Status ToGrpcStatus(const absl::Status& status);

// True when `keys` is empty, or the metadata carries one of them as "authorization: Bearer KEY"
// or "x-api-key: KEY". Compares in time independent of where a key differs.
bool ApiKeyAccepted(const std::multimap<grpc::string_ref, grpc::string_ref>& metadata,
                    const std::vector<std::string>& keys);

}  // namespace strata::server
