#pragma once
// Network partitions between loopback node addresses, as nftables rules in
// one dedicated table, `bulwark_chaos` (inet family, an input-hook chain).
// Dropping at input cuts traffic between two addresses both ways when a rule
// is added for each direction, or one way with one rule; client traffic
// (from 127.0.0.1) is untouched, since nodes bind their outgoing peer
// connections to their own address (docs/replication.md).
//
// The table is created by Open and deleted by the destructor and by
// RemoveTable (for `bulwark-chaos cleanup`, or a run that was killed), so no
// rule outlives a run that ends in any way but SIGKILL; the next Open
// removes a leftover table first. One chaos run at a time per machine.
//
// Requires root and the nft binary (scripts/install-deps installs nftables).
// Thread safety: not thread-safe; one nemesis drives it.
// Errors: Unavailable with nft's output if nft fails.

#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "common/status.h"

namespace bulwark::chaos {

constexpr const char* kNftTable = "bulwark_chaos";

class NftPartition {
 public:
  static Result<std::unique_ptr<NftPartition>> Open();
  ~NftPartition();

  // Drops packets from `from` to `to` (one direction) for each pair.
  Status Block(const std::vector<std::pair<std::string, std::string>>& from_to);
  // Removes every rule (the table stays).
  Status Heal();
  // Deletes the table if it exists; OK if it did not.
  static Status RemoveTable();

 private:
  NftPartition() = default;
};

// Runs `script` through `nft -f -`; Unavailable with its output on failure.
Status RunNft(const std::string& script);

}  // namespace bulwark::chaos
