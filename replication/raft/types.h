#pragma once
// Plain value types of the Raft core: log entries, hard state, membership,
// snapshots, messages, and the Ready batch handed to the runner.
//
// Ownership: all values; nothing here points into the core.
// Thread safety: values; distinct objects may be used from distinct threads.

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace bulwark::raft {

// Node id 0 means "nobody" (no vote, no leader).
inline constexpr uint64_t kNone = 0;
// Passed as a byte limit to mean "no limit".
inline constexpr uint64_t kNoLimit = UINT64_MAX;

enum class EntryType : uint8_t { kNormal, kConfChange };

struct Entry {
  uint64_t term = 0;
  uint64_t index = 0;
  EntryType type = EntryType::kNormal;
  std::string data;

  bool operator==(const Entry&) const = default;
};

// The bytes an entry costs against size limits: payload plus a fixed header,
// so that empty entries still count.
inline constexpr uint64_t kEntryOverheadBytes = 16;
inline uint64_t EntrySizeBytes(const Entry& e) { return e.data.size() + kEntryOverheadBytes; }
// Only the payload counts against the uncommitted-size bound, so that the
// empty entry a new leader appends always fits.
inline uint64_t PayloadSizeBytes(const std::vector<Entry>& ents) {
  uint64_t n = 0;
  for (const Entry& e : ents) n += e.data.size();
  return n;
}

// State that must be persisted before any message of the same Ready is sent.
struct HardState {
  uint64_t term = 0;
  uint64_t vote = kNone;
  uint64_t commit = 0;

  bool operator==(const HardState&) const = default;
  bool IsEmpty() const { return term == 0 && vote == kNone && commit == 0; }
};

// The membership: voters decide elections and commits; learners only receive
// the log. A node is never both.
struct ConfState {
  std::vector<uint64_t> voters;
  std::vector<uint64_t> learners;

  bool operator==(const ConfState&) const = default;
};

struct SnapshotMetadata {
  ConfState conf_state;
  uint64_t index = 0;
  uint64_t term = 0;

  bool operator==(const SnapshotMetadata&) const = default;
};

struct Snapshot {
  std::string data;  // opaque to the core: the application's state image
  SnapshotMetadata metadata;

  bool IsEmpty() const { return metadata.index == 0; }
  bool operator==(const Snapshot&) const = default;
};

enum class MessageType : uint8_t {
  kHup,             // local: start an election
  kBeat,            // local: leader sends heartbeats
  kProp,            // proposal (local or forwarded)
  kApp,             // append entries
  kAppResp,
  kVote,
  kVoteResp,
  kSnap,            // install snapshot
  kHeartbeat,
  kHeartbeatResp,
  kUnreachable,     // local: a peer could not be reached
  kSnapStatus,      // local: result of sending a snapshot
  kCheckQuorum,     // local: leader checks it still hears from a quorum
  kTransferLeader,  // local or forwarded: request leadership transfer
  kTimeoutNow,      // leader tells the transfer target to campaign now
  kReadIndex,       // local or forwarded: linearizable read request
  kReadIndexResp,
  kPreVote,
  kPreVoteResp,
};

std::string_view MessageTypeName(MessageType t);
// Messages that only ever travel from a node to itself.
bool IsLocalMessage(MessageType t);
// Requests a follower forwards to the leader (proposal, read, transfer):
// they carry no term, so that they never disturb elections.
bool IsForwardedRequest(MessageType t);
// Responses: they never raise the receiver's term through pre-vote logic.
bool IsResponseMessage(MessageType t);
// The response type for a vote request type.
MessageType VoteResponseType(MessageType t);

struct Message {
  MessageType type = MessageType::kHup;
  uint64_t to = kNone;
  uint64_t from = kNone;
  uint64_t term = 0;
  uint64_t log_term = 0;  // term of the entry at `index` (kApp: the previous entry)
  uint64_t index = 0;
  std::vector<Entry> entries;
  uint64_t commit = 0;
  std::optional<Snapshot> snapshot;  // kSnap only
  bool reject = false;
  uint64_t reject_hint = 0;
  std::string context;  // read-index context, or "transfer" on a forced vote

  bool operator==(const Message&) const = default;
};

enum class ConfChangeType : uint8_t { kAddNode, kRemoveNode, kAddLearnerNode };

// One membership change. Bulwark changes one member at a time (see
// docs/raft.md); joint consensus is not implemented.
struct ConfChange {
  ConfChangeType type = ConfChangeType::kAddNode;
  uint64_t node_id = kNone;

  bool operator==(const ConfChange&) const = default;
  std::string Encode() const;
  // Returns nullopt on malformed input (entry data comes from the log).
  static std::optional<ConfChange> Decode(std::string_view data);
};

enum class StateRole : uint8_t { kFollower, kCandidate, kLeader, kPreCandidate };
std::string_view StateRoleName(StateRole r);

// Volatile state useful to the runner; not persisted.
struct SoftState {
  uint64_t lead = kNone;
  StateRole role = StateRole::kFollower;

  bool operator==(const SoftState&) const = default;
};

// A linearizable read: once the runner has applied up to `index`, the read
// identified by `request_ctx` may be served from the local state machine.
struct ReadState {
  uint64_t index = 0;
  std::string request_ctx;

  bool operator==(const ReadState&) const = default;
};

// One batch of work. The runner must, in this order: persist hard_state and
// entries (and install snapshot), then send messages, then apply
// committed_entries, then call Advance().
struct Ready {
  std::optional<SoftState> soft_state;  // set when it changed
  std::optional<HardState> hard_state;  // set when it changed
  std::vector<Entry> entries;           // to append to stable storage
  Snapshot snapshot;                    // to install, if not empty
  std::vector<Message> messages;        // valid to send only after the persist
  std::vector<Entry> committed_entries;  // to apply, in order
  std::vector<ReadState> read_states;
};

// Deterministic pseudo-random source (SplitMix64). Injected by seed so that
// every election timeout, and so every test, replays exactly.
class Rng {
 public:
  explicit Rng(uint64_t seed) : state_(seed) {}
  uint64_t Next() {
    uint64_t z = (state_ += 0x9E3779B97F4A7C15ULL);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ULL;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBULL;
    return z ^ (z >> 31);
  }
  // Uniform-enough in [0, n); n must be > 0.
  uint64_t Uniform(uint64_t n) { return Next() % n; }

 private:
  uint64_t state_;
};

// Human-readable forms used by logs and the interaction tests.
std::string DescribeEntry(const Entry& e);
std::string DescribeMessage(const Message& m);
std::string DescribeHardState(const HardState& hs);
std::string DescribeConfState(const ConfState& cs);

}  // namespace bulwark::raft
