#pragma once
// Where the CLI finds its connection: `.bulwark/client.json` (written by
// `bulwark cluster up`), overridden by the environment (BULWARK_ENDPOINT,
// BULWARK_CA, BULWARK_KEY), overridden by flags. Thread-safe (pure).
//
// client.json: {"endpoint": first node, "endpoints": [every node],
// "ca_file", "key", "insecure", "preferred_regions" (an account of several
// regions: reads go to the first that exists, writes to the write region)}. A profile without "endpoints" (written
// before replica sets) still loads, as a set of one.

#include <string>

#include "client/client.h"
#include "common/status.h"

namespace bulwark::client {

constexpr const char* kDefaultProfileDir = ".bulwark";
constexpr const char* kProfileFile = "client.json";

// Reads `dir`/client.json if it exists (a missing file is not an error;
// a malformed one is InvalidArgument), then applies the environment.
Result<ClientOptions> LoadProfile(const std::string& dir);

// Writes the profile, mode 0600 (it holds the account key).
Status WriteProfile(const std::string& dir, const ClientOptions& options);

}  // namespace bulwark::client
