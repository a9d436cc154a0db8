#pragma once
// The chaos nemesis's disk faults, on a node of a LocalCluster:
//   power    kill -9, then put the node's stores back to what they had
//            synced (storage/fault_fs.h's journal), as a power cut would;
//   disk     fsync errors, write errors or a full disk for a while, through
//            the nodes' FileSystem test hook;
//   corrupt  while the node is down, flip a byte of one of its store's
//            files (SST, WAL, MANIFEST) or cut the tail off its newest WAL.
// A node whose store refuses to open after damage is brought back the way
// an operator replaces a lost disk (docs/replication.md, "Membership"):
// removed from the replica set, its data wiped, restarted with --join and
// added back.
//
// The power and disk faults need the nodes started with
// BULWARK_TEST_FS_FAULTS=1 (EnableFsFaultHook, before the cluster starts).
//
// Thread safety: one nemesis thread drives these; the node must not be
// running for DropUnsynced and Damage.

#include <random>
#include <string>

#include "chaos/local_cluster.h"
#include "common/status.h"
#include "storage/fault_fs.h"

namespace bulwark::chaos {

// Node x's own status, asked once (no retries, no failover to another node).
Result<client::NodeStatus> NodeStatus(const LocalCluster& cluster, int x);

// Sets the environment the nodes inherit so their stores take the hook.
void EnableFsFaultHook();

// DropUnsyncedData over every store of the node (its store and control
// store). Returns what was dropped, in words.
Result<std::string> DropUnsynced(const std::string& data_dir);

// Injects `fault` into every store of the node (kNone lifts it).
Status SetDiskFault(const std::string& data_dir, storage::FsFault fault);

// Damages one file of the node's store (`data_dir`/store), chosen with
// `rng`. Returns what it did. NotFound if the store has no file to damage.
Result<std::string> Damage(const std::string& data_dir, std::mt19937_64& rng);

// Brings node `x` back after its store refused to open: RemoveNode through
// the set's leader, wipes its data directory (all but a control voter's
// store), starts it with --join and adds it back (the leader then sends it
// a snapshot).
Status ReplaceNodeDisk(LocalCluster& cluster, int x);

}  // namespace bulwark::chaos
