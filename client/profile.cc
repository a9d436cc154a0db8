#include "client/profile.h"

#include <sys/stat.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <vector>

#include <nlohmann/json.hpp>

namespace bulwark::client {

Result<ClientOptions> LoadProfile(const std::string& dir) {
  ClientOptions options;
  const std::filesystem::path path = std::filesystem::path(dir) / kProfileFile;
  std::ifstream in(path);
  if (in) {
    const nlohmann::json j = nlohmann::json::parse(in, nullptr, false);
    if (j.is_discarded() || !j.is_object()) {
      return Status::InvalidArgument(path.string() + " is not a JSON object; delete it or run: bulwark cluster up");
    }
    auto text = [&](const char* name) -> Result<std::string> {
      if (!j.contains(name)) return std::string();
      if (!j[name].is_string()) return Status::InvalidArgument(path.string() + ": '" + name + "' must be a string");
      return j[name].get<std::string>();
    };
    BULWARK_ASSIGN_OR_RETURN(options.endpoint, text("endpoint"));
    BULWARK_ASSIGN_OR_RETURN(options.ca_file, text("ca_file"));
    BULWARK_ASSIGN_OR_RETURN(options.key, text("key"));
    if (j.contains("endpoints")) {
      const auto& list = j["endpoints"];
      if (!list.is_array()) return Status::InvalidArgument(path.string() + ": 'endpoints' must be an array");
      for (const auto& e : list) {
        if (!e.is_string()) return Status::InvalidArgument(path.string() + ": 'endpoints' must hold strings");
        options.endpoints.push_back(e.get<std::string>());
      }
    }
    if (j.contains("insecure") && j["insecure"].is_boolean()) options.insecure = j["insecure"].get<bool>();
    if (j.contains("preferred_regions")) {
      const auto& list = j["preferred_regions"];
      if (!list.is_array()) return Status::InvalidArgument(path.string() + ": 'preferred_regions' must be an array");
      for (const auto& e : list) {
        if (!e.is_string()) return Status::InvalidArgument(path.string() + ": 'preferred_regions' must hold strings");
        options.preferred_regions.push_back(e.get<std::string>());
      }
    }
  }
  // An endpoint from the environment names the one node to talk to: the
  // profile's other nodes are dropped, so the client cannot fail over to a
  // node of some other cluster.
  if (const char* v = std::getenv("BULWARK_ENDPOINT"); v && *v) {
    options.endpoint = v;
    options.endpoints.clear();
  }
  if (const char* v = std::getenv("BULWARK_CA"); v && *v) options.ca_file = v;
  if (const char* v = std::getenv("BULWARK_KEY"); v && *v) options.key = v;
  return options;
}

Status WriteProfile(const std::string& dir, const ClientOptions& options) {
  const std::filesystem::path path = std::filesystem::path(dir) / kProfileFile;
  // `endpoint` stays (the first node) for readers of the older one-node
  // profile; `endpoints` lists every node for failover and `bulwark status`.
  std::vector<std::string> endpoints = options.endpoints;
  if (endpoints.empty() && !options.endpoint.empty()) endpoints.push_back(options.endpoint);
  const std::string first = options.endpoint.empty() && !endpoints.empty() ? endpoints.front() : options.endpoint;
  nlohmann::json j = {
      {"endpoint", first}, {"endpoints", endpoints}, {"ca_file", options.ca_file}, {"key", options.key}};
  if (!options.preferred_regions.empty()) j["preferred_regions"] = options.preferred_regions;
  const mode_t old_mask = ::umask(077);
  std::ofstream out(path);
  out << j.dump(2) << "\n";
  out.close();
  ::umask(old_mask);
  if (!out) return Status::IOError("cannot write " + path.string());
  return Status::Ok();
}

}  // namespace bulwark::client
