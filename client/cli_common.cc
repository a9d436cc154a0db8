// The `bulwark` CLI's shared pieces (client/cli.h).
#include <algorithm>
#include <ctime>
#include <iomanip>
#include <iostream>
#include <iterator>
#include <sstream>

#include "client/cli.h"

namespace fs = std::filesystem;

namespace bulwark::cli {
using namespace bulwark::client;

int Fail(const Status& s) {
  std::cerr << "error: " << s.ToString() << "\n";
  switch (s.code()) {
    case Code::kUnavailable:
    case Code::kDeadlineExceeded:
      std::cerr << "hint: is the cluster running and reachable? Start one with: bulwark cluster up\n";
      break;
    case Code::kUnauthenticated:
      std::cerr << "hint: check the account key (--key, BULWARK_KEY or .bulwark/client.json) and this machine's "
                   "clock\n";
      break;
    case Code::kNotFound:
      std::cerr << "hint: list what exists with: bulwark db list / bulwark container list DB\n";
      break;
    default:
      break;
  }
  return 1;
}

// The profile, then the environment (in LoadProfile), then the flags.
Result<ClientOptions> Options(const Globals& g) {
  BULWARK_ASSIGN_OR_RETURN(ClientOptions options, LoadProfile(g.profile_dir));
  if (!g.endpoint.empty()) {
    // One node by name: the profile's others could belong to another cluster.
    options.endpoint = g.endpoint;
    options.endpoints.clear();
  }
  if (!g.ca.empty()) options.ca_file = g.ca;
  if (!g.key.empty()) options.key = g.key;
  if (!g.resource_token.empty() || !g.identity_token.empty() || !g.cert.empty()) {
    options.key.clear();  // the profile's key would take precedence
    options.resource_token = g.resource_token;
    options.identity_token = g.identity_token;
    options.cert_file = g.cert;
    options.key_file = g.cert_key;
  }
  if (g.insecure) options.insecure = true;
  if (!g.region.empty()) options.preferred_regions = {g.region};
  if ((options.endpoint.empty() && options.endpoints.empty()) ||
      (options.key.empty() && options.resource_token.empty() && options.identity_token.empty() &&
       options.cert_file.empty())) {
    return Status::InvalidArgument(
        "no connection details: run `bulwark cluster up` here, or give --endpoint, --ca and --key");
  }
  return options;
}

// Every node the options name, in profile order (node 1 first).
std::vector<std::string> NodeAddresses(const ClientOptions& options) {
  std::vector<std::string> out = options.endpoints;
  if (!options.endpoint.empty() && std::find(out.begin(), out.end(), options.endpoint) == out.end()) {
    out.insert(out.begin(), options.endpoint);
  }
  return out;
}

// Options for talking to exactly one node, with no failover to the others.
ClientOptions OneNode(ClientOptions options, const std::string& address) {
  options.endpoint = address;
  options.endpoints.clear();
  options.discover_topology = false;  // this node, not the region the topology would pick
  options.preferred_regions.clear();
  return options;
}

Result<std::unique_ptr<Client>> Open(const Globals& g) {
  BULWARK_ASSIGN_OR_RETURN(ClientOptions options, Options(g));
  return Client::Connect(options);
}

// Pads each column to its widest cell.
void PrintTable(const std::vector<std::string>& header, const std::vector<std::vector<std::string>>& rows) {
  std::vector<size_t> width(header.size());
  for (size_t i = 0; i < header.size(); ++i) width[i] = header[i].size();
  for (const auto& r : rows) {
    for (size_t i = 0; i < r.size(); ++i) width[i] = std::max(width[i], r[i].size());
  }
  auto line = [&](const std::vector<std::string>& cells) {
    for (size_t i = 0; i < cells.size(); ++i) {
      std::cout << cells[i] << (i + 1 < cells.size() ? std::string(width[i] - cells[i].size() + 2, ' ') : "");
    }
    std::cout << "\n";
  };
  line(header);
  for (const auto& r : rows) line(r);
}

std::vector<std::string> SplitCommaList(const std::string& text) {
  std::vector<std::string> out;
  size_t start = 0;
  while (start <= text.size()) {
    const size_t comma = text.find(',', start);
    std::string item = text.substr(start, comma == std::string::npos ? std::string::npos : comma - start);
    if (!item.empty()) out.push_back(std::move(item));
    if (comma == std::string::npos) break;
    start = comma + 1;
  }
  return out;
}

std::string Clip(const std::string& s, size_t n) { return s.size() <= n ? s : s.substr(0, n - 3) + "..."; }

Result<std::string> ReadJsonArg(const std::string& arg) {
  if (arg != "-") return arg;
  std::string text((std::istreambuf_iterator<char>(std::cin)), std::istreambuf_iterator<char>());
  if (text.empty()) return Status::InvalidArgument("--json - read nothing from standard input");
  return text;
}

std::optional<ConsistencyLevel> LevelArg(const std::string& s) {
  if (s.empty()) return std::nullopt;
  return ParseConsistency(s);
}

fs::path SelfDir() {
  std::error_code ec;
  const fs::path exe = fs::read_symlink("/proc/self/exe", ec);
  return ec ? fs::current_path() : exe.parent_path();
}

Result<int64_t> ParseTimeArg(const std::string& text) {
  constexpr const char* kForms = "a time is YYYY-MM-DD, YYYY-MM-DDTHH:MM:SS[.mmm]Z (UTC) or Unix milliseconds";
  if (!text.empty() && text.size() < 19 && text.find_first_not_of("0123456789") == std::string::npos) {
    return std::stoll(text);
  }
  std::tm tm{};
  std::istringstream in(text);
  in >> std::get_time(&tm, text.size() > 10 ? "%Y-%m-%dT%H:%M:%S" : "%Y-%m-%d");
  if (in.fail()) return Status::InvalidArgument(kForms);
  int64_t ms = 0;
  if (in.peek() == '.') {
    in.get();
    std::string frac;
    while (std::isdigit(in.peek()) && frac.size() < 3) frac.push_back(static_cast<char>(in.get()));
    if (frac.empty()) return Status::InvalidArgument(kForms);
    while (frac.size() < 3) frac.push_back('0');
    ms = std::stoi(frac);
  }
  if (text.size() > 10) {
    if (in.get() != 'Z' || in.peek() != std::char_traits<char>::eof()) return Status::InvalidArgument(kForms);
  }
  return static_cast<int64_t>(timegm(&tm)) * 1000 + ms;
}

}  // namespace bulwark::cli
