#pragma once
// Transport: how the nodes of a replica set talk. Each node serves
// PeerService (proto/bulwark/v1/peer.proto) on its peer address with mutual
// TLS: both sides present a certificate signed by the cluster CA, and a node
// refuses a sender that is not a current member, or whose certificate does
// not name the member's address.
//
// Raft messages travel on one long-lived bidirectional stream per peer,
// opened by the sender, in batches (everything queued for that peer, up to
// TransportLimits::max_batch_bytes). A snapshot travels on the same stream:
// chunks from TransportHandler::WriteSnapshot, then the kSnap message itself;
// gRPC's flow control paces the chunks. Forwarded client requests are unary
// calls (Forward).
//
// Ownership: Start returns the owner; the handler is borrowed and must
// outlive the Transport. Stop() (or the destructor) joins every thread and
// no handler callback runs after it returns.
// Thread safety: every public method may be called from any thread.
// Errors: Send never blocks and never fails: a message that cannot be queued
// or delivered is dropped (Raft retransmits) and the peer is reported with
// OnUnreachable. Start returns IOError if the address cannot be bound, and
// InvalidArgument for bad TLS material.

#include <chrono>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "bulwark/v1/peer.pb.h"
#include "common/status.h"
#include "replication/raft/types.h"
#include "security/tls_server.h"

namespace bulwark::replication {

// The host of a peer address: "10.0.0.1:7001" -> "10.0.0.1",
// "[::1]:7001" -> "::1".
std::string HostOf(const std::string& address);

struct TransportLimits {
  size_t max_queued_messages_per_peer = 8192;  // beyond: drop, report unreachable
  size_t max_batch_bytes = 4 << 20;            // raft messages per stream write
  size_t max_snapshot_chunk_bytes = 1 << 20;   // WriteSnapshot aims for chunks no larger...
  // ... but a chunk holds whole records, and one item may be up to 2 MiB
  // (storage kMaxItemBytes) plus its sealing: chunks up to this size travel,
  // larger ones are refused (raft snapshots and region images alike).
  size_t max_snapshot_frame_bytes = 8 << 20;
  size_t max_receive_message_bytes = 64 << 20;      // gRPC's receive limit on the peer port
  std::chrono::milliseconds dial_backoff{100};      // first retry delay; doubles up to 1 s
  std::chrono::milliseconds forward_timeout{5000};  // when the request names no deadline
};

struct PeerTls {
  std::string ca_pem;     // the cluster CA: verifies every peer
  std::string cert_pem;   // this node's certificate (serverAuth and clientAuth)
  std::string key_pem;    // this node's private key
  bool insecure = false;  // tests of this module only: plaintext, no identity checks
  // The files the PEM came from, if any: the peer port then picks up a
  // rotated certificate or CA on new connections without a restart
  // (outgoing connections keep the PEM above until the node restarts).
  std::string cert_file, key_file, ca_file;
  security::TlsVersion min_version = security::TlsVersion::kTls12;
};

struct TransportOptions {
  uint64_t self_id = 0;
  std::string listen_address;  // "ip:port" of this node's peer service
  // Outgoing peer connections are bound to this address (the node's own, so
  // that firewall rules between node addresses apply); empty: the kernel's.
  std::string source_ip;
  // Addresses and CIDR ranges peers may connect from (security::ParseCidr
  // syntax); empty: any address (membership and mutual TLS still apply).
  std::vector<std::string> peer_allowlist;
  PeerTls tls;
  TransportLimits limits;
};

// Implemented by the node's runner. Called from transport threads, possibly
// concurrently with each other; each callback must be thread-safe.
class TransportHandler {
 public:
  virtual ~TransportHandler() = default;
  // A raft message from a member (already decoded and addressed to us).
  virtual void OnMessage(raft::Message m) = 0;
  virtual void OnUnreachable(uint64_t peer) = 0;
  // The result of sending a snapshot (after its kSnap message was written).
  virtual void OnSnapshotStatus(uint64_t peer, bool failed) = 0;
  // Sender side: writes the current state image for `peer` by calling `emit`
  // with chunks of at most max_snapshot_chunk_bytes. emit blocks for flow
  // control and returns an error once the stream broke; return it.
  virtual Status WriteSnapshot(uint64_t peer, const std::function<Status(std::string_view)>& emit) = 0;
  // Receiver side, per sender, in stream order: Begin, Chunk..., then End
  // with complete=true just before the kSnap message is passed to OnMessage,
  // or complete=false if the stream broke (discard what was staged).
  virtual Status BeginSnapshot(uint64_t from) = 0;
  virtual Status SnapshotChunk(uint64_t from, std::string_view chunk) = 0;
  virtual Status EndSnapshot(uint64_t from, bool complete) = 0;
  // A forwarded client request from member `from` (this node should lead).
  virtual v1::ForwardResponse OnForward(uint64_t from, const v1::ForwardRequest& request) = 0;
  // A batch of the write region's stream, from a region peer (already
  // authorized). The default refuses: geo-replication is not configured.
  virtual v1::RegionAppendResponse OnRegionAppend(const v1::RegionAppendRequest& request) {
    (void)request;
    v1::RegionAppendResponse r;
    r.set_error("this node takes no region stream");
    return r;
  }
  // A region image from a region peer (already authorized): its header,
  // then `next` yields each chunk in order (true), false once the stream
  // ended, or an error if it broke or a chunk is over the limit. The handler
  // may answer without reading every chunk. The default refuses.
  using ChunkReader = std::function<Result<bool>(std::string* chunk)>;
  virtual v1::RegionAppendResponse OnRegionImage(const v1::RegionImageHeader& header, const ChunkReader& next) {
    (void)header;
    (void)next;
    v1::RegionAppendResponse r;
    r.set_error("this node takes no region image");
    return r;
  }
  // A report to the account's control group, from a node of the account
  // (already authorized as a region peer). The default refuses.
  virtual v1::ControlAnswer OnControl(const v1::ControlReport& report) {
    (void)report;
    v1::ControlAnswer a;
    a.set_error("this node is not a control group member");
    return a;
  }
  // A member asks for staged region image `id`: call `emit` with its chunks
  // (at most max_snapshot_chunk_bytes each). NotFound if this node has none.
  virtual Status ServeRegionImage(const std::string& id, const std::function<Status(std::string_view)>& emit) {
    (void)id;
    (void)emit;
    return Status::NotFound("this node holds no region images");
  }
};

class Transport {
 public:
  // Binds listen_address and starts serving. The membership starts empty:
  // call SetPeers before anything is delivered.
  static Result<std::unique_ptr<Transport>> Start(TransportOptions options, TransportHandler* handler);
  ~Transport();
  Transport(const Transport&) = delete;
  Transport& operator=(const Transport&) = delete;

  // The current members other than self: id -> "ip:port". Streams to removed
  // peers close; inbound streams from non-members are refused
  // (PERMISSION_DENIED).
  void SetPeers(std::map<uint64_t, std::string> peers);
  // Queues messages for their peers (m.to); see the class comment.
  void Send(std::vector<raft::Message> messages);
  // Runs a client request on member `peer` (the leader), waiting up to the
  // request's deadline (or forward_timeout). Unavailable if the peer cannot
  // be reached; the peer's own answer otherwise.
  Result<v1::ForwardResponse> Forward(uint64_t peer, const v1::ForwardRequest& request);
  // The peer addresses ("ip:port") of the account's nodes in other regions:
  // the only senders RegionAppend accepts (with a certificate naming the
  // address's host, as for members). Empty: RegionAppend is refused.
  void SetRegionPeers(std::vector<std::string> addresses);
  // Sends a stream batch to `address` (a node of another region), waiting
  // up to the request's deadline. Channels are cached per address.
  // Unavailable if it cannot be reached; the receiver's answer otherwise.
  Result<v1::RegionAppendResponse> RegionAppend(const std::string& address, const v1::RegionAppendRequest& request);
  // Sends a region image to `address` (a node of another region): `produce`
  // gets a sink for the image's chunks and must call it for all of them.
  // Waits up to the header's deadline for the answer. Unavailable if the
  // receiver cannot be reached or the stream broke; `produce`'s own error if
  // it failed; the receiver's answer otherwise.
  using ChunkSink = std::function<Status(std::string_view chunk)>;
  Result<v1::RegionAppendResponse> SendRegionImage(const std::string& address, const v1::RegionImageHeader& header,
                                                   const std::function<Status(const ChunkSink&)>& produce);
  // Sends a report to the control group member at `address` (a node of the
  // account), waiting up to the report's deadline. Unavailable if it cannot
  // be reached; the member's answer otherwise.
  Result<v1::ControlAnswer> Control(const std::string& address, const v1::ControlReport& report);
  // Fetches staged region image `id` from member `peer`, handing each chunk
  // to `sink` in order, within `timeout`. NotFound if the peer has none;
  // Unavailable if it cannot be reached; `sink`'s own error if it failed.
  Status FetchRegionImage(uint64_t peer, const std::string& id, const ChunkSink& sink,
                          std::chrono::milliseconds timeout);
  // The port actually bound (listen_address may name port 0).
  int bound_port() const;
  void Stop();

  struct Impl;

 private:
  explicit Transport(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

}  // namespace bulwark::replication
