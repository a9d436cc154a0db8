#include "chaos/nftables.h"

#include <sys/wait.h>
#include <unistd.h>

#include <array>
#include <cstdio>
#include <cstdlib>

namespace bulwark::chaos {
namespace {

const std::string kTable = std::string("inet ") + kNftTable;

}  // namespace

Status RunNft(const std::string& script) {
  // Output goes to a temporary file so nft's error message can be returned.
  char path[] = "/tmp/bulwark-chaos-nft-XXXXXX";
  const int fd = ::mkstemp(path);
  if (fd < 0) return Status::IOError("cannot create a temporary file for nft's output");
  ::close(fd);
  const std::string command = "nft -f - >" + std::string(path) + " 2>&1";
  FILE* p = ::popen(command.c_str(), "w");
  if (p == nullptr) return Status::Unavailable("cannot run nft");
  std::fputs(script.c_str(), p);
  const int rc = ::pclose(p);
  std::string output;
  if (FILE* f = std::fopen(path, "r")) {
    std::array<char, 512> buf{};
    size_t n = 0;
    while ((n = std::fread(buf.data(), 1, buf.size(), f)) > 0 && output.size() < 4096) output.append(buf.data(), n);
    std::fclose(f);
  }
  std::remove(path);
  if (rc != 0) {
    return Status::Unavailable("nft failed (exit " + std::to_string(WIFEXITED(rc) ? WEXITSTATUS(rc) : -1) +
                               "; is nftables installed and are we root?): " + output + "script:\n" + script);
  }
  return Status::Ok();
}

Result<std::unique_ptr<NftPartition>> NftPartition::Open() {
  BULWARK_RETURN_IF_ERROR(RemoveTable());
  BULWARK_RETURN_IF_ERROR(RunNft("add table " + kTable + "\nadd chain " + kTable +
                                 " input { type filter hook input priority 0; policy accept; }\n"));
  return std::unique_ptr<NftPartition>(new NftPartition());
}

NftPartition::~NftPartition() { (void)RemoveTable(); }

Status NftPartition::Block(const std::vector<std::pair<std::string, std::string>>& from_to) {
  std::string script;
  for (const auto& [from, to] : from_to) {
    script += "add rule " + kTable + " input ip saddr " + from + " ip daddr " + to + " drop\n";
  }
  if (script.empty()) return Status::Ok();
  return RunNft(script);
}

Status NftPartition::Heal() { return RunNft("flush chain " + kTable + " input\n"); }

Status NftPartition::RemoveTable() {
  // `destroy` would ignore a missing table but needs nft >= 1.0.8; Debian 12
  // has 1.0.6, so add-then-delete: adding an existing table is a no-op.
  return RunNft("add table " + kTable + "\ndelete table " + kTable + "\n");
}

}  // namespace bulwark::chaos
