#include "replication/transport.h"

#include "proto/grpc_status.h"
#include "replication/source_address.h"

#include <arpa/inet.h>
#include <grpcpp/grpcpp.h>
#include <openssl/bio.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>
#include <spdlog/spdlog.h>

#include <algorithm>
#include <atomic>
#include <climits>
#include <condition_variable>
#include <deque>
#include <mutex>
#include <optional>
#include <set>
#include <thread>
#include <utility>

#include "bulwark/v1/peer.grpc.pb.h"
#include "replication/message_codec.h"
#include "security/ip_allowlist.h"

namespace bulwark::replication {
namespace {

constexpr std::chrono::milliseconds kMaxDialBackoff{1000};
// Long enough for in-flight unary Forward calls to answer, short enough that
// Stop() stays prompt; after it, open streams are cancelled.
constexpr std::chrono::milliseconds kServerShutdownGrace{200};
// LAN peers: notice a dead connection within ~15 s even when Raft is idle.
constexpr int kKeepaliveTimeMs = 10000;
constexpr int kKeepaliveTimeoutMs = 5000;

// ---------------------------------------------------------------------------
// TLS material and peer identity.

struct X509Deleter {
  void operator()(X509* x) const { X509_free(x); }
};
using X509Ptr = std::unique_ptr<X509, X509Deleter>;

X509Ptr ParseCertificate(const std::string& pem) {
  std::unique_ptr<BIO, decltype(&BIO_free)> bio(BIO_new_mem_buf(pem.data(), static_cast<int>(pem.size())), BIO_free);
  if (!bio) return nullptr;
  return X509Ptr(PEM_read_bio_X509(bio.get(), nullptr, nullptr, nullptr));
}

// Checks the PEM text parses and that the key belongs to the certificate, so
// that bad configuration fails at Start and not at the first handshake. The
// messages never quote the material.
Status ValidateTls(const PeerTls& tls) {
  if (!ParseCertificate(tls.ca_pem)) return Status::InvalidArgument("peer TLS: the CA certificate is not valid PEM");
  X509Ptr cert = ParseCertificate(tls.cert_pem);
  if (!cert) return Status::InvalidArgument("peer TLS: the node certificate is not valid PEM");
  std::unique_ptr<BIO, decltype(&BIO_free)> bio(
      BIO_new_mem_buf(tls.key_pem.data(), static_cast<int>(tls.key_pem.size())), BIO_free);
  std::unique_ptr<EVP_PKEY, decltype(&EVP_PKEY_free)> key(
      bio ? PEM_read_bio_PrivateKey(bio.get(), nullptr, nullptr, nullptr) : nullptr, EVP_PKEY_free);
  if (!key) return Status::InvalidArgument("peer TLS: the node private key is not valid PEM");
  if (X509_check_private_key(cert.get(), key.get()) != 1) {
    return Status::InvalidArgument("peer TLS: the private key does not match the node certificate");
  }
  return Status::Ok();
}

// Whether the certificate names `host`: an IP SAN when host is an IP
// address (how members are addressed), else a DNS name.
bool CertificateNames(X509* cert, const std::string& host) {
  unsigned char ip[16];
  if (inet_pton(AF_INET, host.c_str(), ip) == 1) return X509_check_ip(cert, ip, 4, 0) == 1;
  if (inet_pton(AF_INET6, host.c_str(), ip) == 1) return X509_check_ip(cert, ip, 16, 0) == 1;
  return X509_check_host(cert, host.data(), host.size(), 0, nullptr) == 1;
}

// gRPC takes the limit as an int.
int ReceiveLimit(const TransportLimits& limits) {
  return static_cast<int>(std::min<size_t>(limits.max_receive_message_bytes, INT_MAX));
}

grpc::ChannelArguments PeerChannelArguments(const TransportLimits& limits) {
  grpc::ChannelArguments args;
  args.SetMaxReceiveMessageSize(ReceiveLimit(limits));
  args.SetInt(GRPC_ARG_KEEPALIVE_TIME_MS, kKeepaliveTimeMs);
  args.SetInt(GRPC_ARG_KEEPALIVE_TIMEOUT_MS, kKeepaliveTimeoutMs);
  args.SetInt(GRPC_ARG_KEEPALIVE_PERMIT_WITHOUT_CALLS, 1);
  args.SetInt(GRPC_ARG_HTTP2_MAX_PINGS_WITHOUT_DATA, 0);
  // Each peer gets its own connection, so one slow peer never shares a
  // transport (and its flow-control window) with another.
  args.SetInt(GRPC_ARG_USE_LOCAL_SUBCHANNEL_POOL, 1);
  // gRPC's own reconnect backoff grows to two minutes by default; a peer
  // that comes back must be reachable again within our 1 s bound.
  int backoff_ms = static_cast<int>(std::max<int64_t>(1, limits.dial_backoff.count()));
  args.SetInt(GRPC_ARG_INITIAL_RECONNECT_BACKOFF_MS, backoff_ms);
  args.SetInt(GRPC_ARG_MAX_RECONNECT_BACKOFF_MS, static_cast<int>(kMaxDialBackoff.count()));
  return args;
}

grpc::ChannelArguments ChannelArgumentsFor(const TransportOptions& options) {
  grpc::ChannelArguments args = PeerChannelArguments(options.limits);
  if (!options.source_ip.empty()) BindOutgoingConnections(args, options.source_ip);
  return args;
}

using ClientStream = grpc::ClientReaderWriter<v1::PeerFrame, v1::PeerAck>;
using ServerStream = grpc::ServerReaderWriter<v1::PeerAck, v1::PeerFrame>;

class PeerServiceImpl;

}  // namespace

std::string HostOf(const std::string& address) {
  if (!address.empty() && address.front() == '[') {
    size_t close = address.find(']');
    return close == std::string::npos ? address : address.substr(1, close - 1);
  }
  size_t colon = address.rfind(':');
  return colon == std::string::npos ? address : address.substr(0, colon);
}

// ---------------------------------------------------------------------------
// PeerSender: the outbound stream to one peer and the thread that feeds it.
//
// Invariants: only the sender thread touches stream_ (and the context's call
// state); other threads reach the context only through ctx_ under mu_, to
// cancel it. No lock is held while writing to the stream or calling the
// handler.
class PeerSender {
 public:
  PeerSender(Transport::Impl* transport, uint64_t peer, std::string address,
             std::shared_ptr<v1::PeerService::Stub> stub)
      : transport_(transport), peer_(peer), address_(std::move(address)), stub_(std::move(stub)) {}

  void StartThread() {
    thread_ = std::thread([this] { Run(); });
  }
  // Drops the messages (and flags an overflow) when the queue is full.
  void Enqueue(raft::Message m);
  // Asks the thread to finish and cancels the open stream; does not wait.
  void RequestStop();
  void Join() {
    if (thread_.joinable()) thread_.join();
  }
  bool finished() const { return finished_.load(); }
  const std::string& address() const { return address_; }
  const std::shared_ptr<v1::PeerService::Stub>& stub() const { return stub_; }

 private:
  void Run();
  bool StopRequested() {
    std::lock_guard lock(mu_);
    return stop_;
  }
  bool OpenStream();
  void CloseStream();
  // Sends everything queued; false once the stream broke.
  bool SendQueued();
  bool WriteBatch(std::vector<raft::Message>& batch);
  bool SendSnapshot(raft::Message snap);
  // The longest prefix of the queue within max_batch_bytes (at least one
  // message). A kSnap message travels alone: it is returned only when it is
  // first and include_snapshot is set.
  std::vector<raft::Message> TakeBatch(bool include_snapshot);
  // Drops the queue and tells the handler the peer is unreachable.
  void ReportUnreachable(std::string_view reason);
  void ReportOverflow();
  v1::PeerFrame NewFrame() const;

  Transport::Impl* const transport_;
  const uint64_t peer_;
  const std::string address_;
  const std::shared_ptr<v1::PeerService::Stub> stub_;
  std::thread thread_;
  std::atomic<bool> finished_{false};

  std::mutex mu_;
  std::condition_variable cv_;
  std::deque<raft::Message> queue_;           // GUARDED_BY(mu_)
  size_t dropped_on_overflow_ = 0;            // GUARDED_BY(mu_)
  bool stop_ = false;                         // GUARDED_BY(mu_)
  std::shared_ptr<grpc::ClientContext> ctx_;  // GUARDED_BY(mu_)

  // Sender thread only.
  std::unique_ptr<ClientStream> stream_;
  bool logged_down_ = false;
};

struct Transport::Impl {
  Impl(TransportOptions opts, TransportHandler* h) : options(std::move(opts)), handler(h) {}

  // Whether `from` may talk to us on this connection: from an address on the
  // peer allowlist (when there is one), a current member whose certificate
  // names its member address. Returns the member's address.
  Result<std::string> Authorize(grpc::ServerContext* ctx, uint64_t from);
  // RegionAppend's check: a configured region peer, by address and certificate.
  Status AuthorizeRegionPeer(grpc::ServerContext* ctx);
  // The stub of member `peer`'s sender; Unavailable if it is not a member
  // or the transport stopped.
  Result<std::shared_ptr<v1::PeerService::Stub>> MemberStub(uint64_t peer);
  // The cached stub for a node of another region; Unavailable once stopped.
  Result<std::shared_ptr<v1::PeerService::Stub>> RegionStub(const std::string& address);
  bool IsMemberAt(uint64_t from, const std::string& address);
  std::shared_ptr<PeerSender> NewSender(uint64_t peer, const std::string& address);

  const TransportOptions options;
  TransportHandler* const handler;
  security::IpAllowlist peer_allowlist;  // parsed from options at Start
  std::shared_ptr<grpc::ChannelCredentials> channel_credentials;
  std::unique_ptr<PeerServiceImpl> service;
  std::unique_ptr<grpc::Server> server;
  int bound_port = 0;

  std::mutex mu;
  std::map<uint64_t, std::string> members;                                     // GUARDED_BY(mu)
  std::map<uint64_t, std::shared_ptr<PeerSender>> senders;                     // GUARDED_BY(mu)
  std::vector<std::shared_ptr<PeerSender>> retired;                            // GUARDED_BY(mu)
  bool stopped = false;                                                        // GUARDED_BY(mu)
  std::set<std::string> region_peer_hosts;                                     // GUARDED_BY(mu)
  std::map<std::string, std::shared_ptr<v1::PeerService::Stub>> region_stubs;  // GUARDED_BY(mu)
};

// ---------------------------------------------------------------------------
// PeerSender implementation.

void PeerSender::Enqueue(raft::Message m) {
  {
    std::lock_guard lock(mu_);
    if (stop_) return;
    if (queue_.size() >= transport_->options.limits.max_queued_messages_per_peer) {
      ++dropped_on_overflow_;
    } else {
      queue_.push_back(std::move(m));
    }
  }
  cv_.notify_one();
}

void PeerSender::RequestStop() {
  {
    std::lock_guard lock(mu_);
    stop_ = true;
    if (ctx_) ctx_->TryCancel();
  }
  cv_.notify_one();
}

v1::PeerFrame PeerSender::NewFrame() const {
  v1::PeerFrame frame;
  frame.set_from_node(transport_->options.self_id);
  frame.set_to_node(peer_);
  return frame;
}

void PeerSender::Run() {
  const auto initial_backoff = transport_->options.limits.dial_backoff;
  auto backoff = initial_backoff;
  while (true) {
    {
      std::unique_lock lock(mu_);
      cv_.wait(lock, [&] { return stop_ || !queue_.empty() || dropped_on_overflow_ > 0; });
      if (stop_) break;
    }
    ReportOverflow();
    if (!stream_ && !OpenStream()) {
      ReportUnreachable("cannot open stream");
      // Messages queued while we wait are kept (up to the bound) and tried
      // once more after the backoff.
      std::unique_lock lock(mu_);
      cv_.wait_for(lock, backoff, [&] { return stop_; });
      backoff = std::min<std::chrono::milliseconds>(backoff * 2, kMaxDialBackoff);
      continue;
    }
    backoff = initial_backoff;
    if (!SendQueued()) {
      CloseStream();
      ReportUnreachable("stream broke");
    }
  }
  CloseStream();
  finished_.store(true);
}

bool PeerSender::OpenStream() {
  auto ctx = std::make_shared<grpc::ClientContext>();
  {
    std::lock_guard lock(mu_);
    if (stop_) return false;
    ctx_ = ctx;
  }
  stream_ = stub_->Raft(ctx.get());
  v1::PeerFrame hello = NewFrame();
  hello.mutable_hello();
  v1::PeerAck ack;
  bool answered = stream_->Write(hello) && stream_->Read(&ack);
  if (answered && ack.has_accepted() && ack.accepted()) {
    if (logged_down_) spdlog::info("event=peer_reconnected peer={} address={}", peer_, address_);
    logged_down_ = false;
    return true;
  }
  // A failed Write or Read means the call is over and Finish returns the
  // peer's verdict at once; any other answer is a protocol error to cut short.
  if (answered) ctx->TryCancel();
  grpc::Status st = stream_->Finish();
  if (st.error_code() == grpc::StatusCode::PERMISSION_DENIED) {
    spdlog::warn("event=peer_refused_us peer={} address={} reason=\"{}\"", peer_, address_, st.error_message());
  } else if (!logged_down_ && !StopRequested()) {
    spdlog::warn("event=peer_unreachable peer={} address={} code={} reason=\"{}\"", peer_, address_,
                 static_cast<int>(st.error_code()), st.error_message());
    logged_down_ = true;
  }
  stream_.reset();
  std::lock_guard lock(mu_);
  ctx_.reset();
  return false;
}

void PeerSender::CloseStream() {
  if (!stream_) return;
  std::shared_ptr<grpc::ClientContext> ctx;
  {
    std::lock_guard lock(mu_);
    ctx = ctx_;
  }
  // Cancelling first makes Finish return at once even if the peer hangs.
  ctx->TryCancel();
  (void)stream_->Finish();
  stream_.reset();
  std::lock_guard lock(mu_);
  ctx_.reset();
}

void PeerSender::ReportUnreachable(std::string_view reason) {
  size_t dropped = 0;
  {
    std::lock_guard lock(mu_);
    if (stop_) return;
    dropped = queue_.size();
    queue_.clear();
  }
  spdlog::debug("event=peer_messages_dropped peer={} count={} reason=\"{}\"", peer_, dropped, reason);
  transport_->handler->OnUnreachable(peer_);
}

void PeerSender::ReportOverflow() {
  size_t dropped = 0;
  {
    std::lock_guard lock(mu_);
    if (stop_) return;
    dropped = std::exchange(dropped_on_overflow_, 0);
  }
  if (dropped == 0) return;
  spdlog::warn("event=peer_queue_overflow peer={} dropped={} max_queued_messages_per_peer={}", peer_, dropped,
               transport_->options.limits.max_queued_messages_per_peer);
  transport_->handler->OnUnreachable(peer_);
}

std::vector<raft::Message> PeerSender::TakeBatch(bool include_snapshot) {
  std::vector<raft::Message> batch;
  size_t bytes = 0;
  std::lock_guard lock(mu_);
  while (!queue_.empty()) {
    raft::Message& next = queue_.front();
    if (next.type == raft::MessageType::kSnap) {
      if (batch.empty() && include_snapshot) {
        batch.push_back(std::move(next));
        queue_.pop_front();
      }
      break;
    }
    size_t n = ApproximateWireBytes(next);
    if (!batch.empty() && bytes + n > transport_->options.limits.max_batch_bytes) break;
    bytes += n;
    batch.push_back(std::move(next));
    queue_.pop_front();
  }
  return batch;
}

bool PeerSender::WriteBatch(std::vector<raft::Message>& batch) {
  v1::PeerFrame frame = NewFrame();
  v1::RaftBatch* wire = frame.mutable_batch();
  for (const raft::Message& m : batch) EncodeMessage(m, wire->add_messages());
  return stream_->Write(frame);
}

bool PeerSender::SendQueued() {
  while (!StopRequested()) {
    std::vector<raft::Message> batch = TakeBatch(/*include_snapshot=*/true);
    if (batch.empty()) return true;
    bool ok =
        batch.front().type == raft::MessageType::kSnap ? SendSnapshot(std::move(batch.front())) : WriteBatch(batch);
    if (!ok) return false;
    ReportOverflow();
  }
  return true;
}

bool PeerSender::SendSnapshot(raft::Message snap) {
  TransportHandler* handler = transport_->handler;
  const uint64_t index = snap.snapshot ? snap.snapshot->metadata.index : 0;
  v1::PeerFrame begin = NewFrame();
  begin.mutable_snapshot_begin()->set_index(index);
  begin.mutable_snapshot_begin()->set_term(snap.snapshot ? snap.snapshot->metadata.term : 0);
  bool broken = !stream_->Write(begin);
  size_t chunks = 0;
  auto emit = [&](std::string_view chunk) -> Status {
    if (broken) return Status::Unavailable("snapshot stream to peer broke");
    if (StopRequested()) return Status::Unavailable("transport stopping");
    if (chunk.size() > transport_->options.limits.max_snapshot_frame_bytes) {
      return Status::InvalidArgument("snapshot chunk exceeds max_snapshot_frame_bytes");
    }
    v1::PeerFrame frame = NewFrame();
    frame.mutable_snapshot_chunk()->set_data(chunk.data(), chunk.size());
    // Heartbeats queued meanwhile go between chunks, so that a long transfer
    // does not look like a dead leader. Raft tolerates the reordering with
    // the kSnap message that follows.
    std::vector<raft::Message> others = TakeBatch(/*include_snapshot=*/false);
    if (!stream_->Write(frame) || (!others.empty() && !WriteBatch(others))) {
      broken = true;
      return Status::Unavailable("snapshot stream to peer broke");
    }
    ++chunks;
    return Status::Ok();
  };
  Status written = broken ? Status::Unavailable("snapshot stream to peer broke") : handler->WriteSnapshot(peer_, emit);
  if (written.ok() && !broken) {
    std::vector<raft::Message> batch;
    batch.push_back(std::move(snap));
    broken = !WriteBatch(batch);
  }
  // The receiver answers once it handed the kSnap message over (or gave up),
  // so a success here means the snapshot was installed, not merely written.
  v1::PeerAck ack;
  bool acked = false;
  while (written.ok() && !broken && stream_->Read(&ack)) {
    if (ack.has_snapshot()) {
      acked = true;
      break;
    }
  }
  bool failed = !acked || ack.snapshot().failed();
  if (failed) {
    spdlog::warn("event=snapshot_send_failed peer={} index={} chunks={} reason=\"{}\"", peer_, index, chunks,
                 written.ok() ? (acked ? "refused by receiver" : "stream broke") : written.message());
  } else {
    spdlog::info("event=snapshot_sent peer={} index={} chunks={}", peer_, index, chunks);
  }
  handler->OnSnapshotStatus(peer_, failed);
  // A failed transfer must end the stream: that is how the receiver learns
  // to discard what it staged.
  return !failed || acked;
}

// ---------------------------------------------------------------------------
// Server side.

namespace {

class PeerServiceImpl final : public v1::PeerService::Service {
 public:
  explicit PeerServiceImpl(Transport::Impl* transport) : transport_(transport) {}

  grpc::Status Forward(grpc::ServerContext* ctx, const v1::ForwardRequest* request,
                       v1::ForwardResponse* response) override {
    Result<std::string> member = transport_->Authorize(ctx, request->from_node());
    if (!member.ok()) return ToGrpcStatus(member.status());
    *response = transport_->handler->OnForward(request->from_node(), *request);
    return grpc::Status::OK;
  }

  grpc::Status RegionAppend(grpc::ServerContext* ctx, const v1::RegionAppendRequest* request,
                            v1::RegionAppendResponse* response) override {
    if (Status st = transport_->AuthorizeRegionPeer(ctx); !st.ok()) return ToGrpcStatus(st);
    *response = transport_->handler->OnRegionAppend(*request);
    return grpc::Status::OK;
  }

  grpc::Status Control(grpc::ServerContext* ctx, const v1::ControlReport* report, v1::ControlAnswer* answer) override {
    if (Status st = transport_->AuthorizeRegionPeer(ctx); !st.ok()) return ToGrpcStatus(st);
    // The sender's address as authenticated here, not as it claims: the
    // control group checks it belongs to the region the report names.
    v1::ControlReport checked = *report;
    checked.set_node_address(std::string(security::PeerHost(ctx->peer())));
    *answer = transport_->handler->OnControl(checked);
    return grpc::Status::OK;
  }

  grpc::Status RegionImage(grpc::ServerContext* ctx, grpc::ServerReader<v1::RegionImageFrame>* reader,
                           v1::RegionAppendResponse* response) override {
    if (Status st = transport_->AuthorizeRegionPeer(ctx); !st.ok()) return ToGrpcStatus(st);
    v1::RegionImageFrame frame;
    if (!reader->Read(&frame) || !frame.has_header()) {
      return grpc::Status(grpc::StatusCode::INVALID_ARGUMENT, "a region image stream starts with its header");
    }
    const size_t max_chunk = transport_->options.limits.max_snapshot_frame_bytes;
    TransportHandler::ChunkReader next = [&](std::string* chunk) -> Result<bool> {
      v1::RegionImageFrame f;
      if (!reader->Read(&f)) return ctx->IsCancelled() ? Result<bool>(Status::Unavailable("the stream broke")) : false;
      if (f.body_case() != v1::RegionImageFrame::kChunk)
        return Status::InvalidArgument("a second header in the stream");
      if (f.chunk().size() > max_chunk) return Status::InvalidArgument("a region image chunk is over the limit");
      *chunk = std::move(*f.mutable_chunk());
      return true;
    };
    *response = transport_->handler->OnRegionImage(frame.header(), next);
    return grpc::Status::OK;
  }

  grpc::Status FetchRegionImage(grpc::ServerContext* ctx, const v1::FetchRegionImageRequest* request,
                                grpc::ServerWriter<v1::SnapshotChunk>* writer) override {
    Result<std::string> member = transport_->Authorize(ctx, request->from_node());
    if (!member.ok()) return ToGrpcStatus(member.status());
    Status st = transport_->handler->ServeRegionImage(request->id(), [&](std::string_view chunk) {
      v1::SnapshotChunk out;
      out.set_data(std::string(chunk));
      return writer->Write(out) ? Status::Ok() : Status::Unavailable("the fetching node went away");
    });
    return st.ok() ? grpc::Status::OK : ToGrpcStatus(st);
  }

  grpc::Status Raft(grpc::ServerContext* ctx, ServerStream* stream) override;

 private:
  enum class Staging { kNone, kStaging, kFailed };
  struct Inbound {
    uint64_t from = 0;
    std::string address;
    Staging staging = Staging::kNone;
  };
  void HandleFrame(const v1::PeerFrame& frame, Inbound& in, ServerStream* stream);
  void HandleMessage(const v1::RaftMessage& wire, Inbound& in, ServerStream* stream);
  void HandleSnapshotMessage(std::optional<raft::Message> deliver, const raft::Message& received, Inbound& in,
                             ServerStream* stream);

  Transport::Impl* const transport_;
};

grpc::Status PeerServiceImpl::Raft(grpc::ServerContext* ctx, ServerStream* stream) {
  const uint64_t self = transport_->options.self_id;
  v1::PeerFrame frame;
  if (!stream->Read(&frame)) return grpc::Status::OK;
  Inbound in;
  in.from = frame.from_node();
  if (frame.to_node() != self || !frame.has_hello()) {
    spdlog::warn("event=peer_refused from={} peer={} reason=\"stream not opened with a hello to node {}\"", in.from,
                 ctx->peer(), self);
    return {grpc::StatusCode::PERMISSION_DENIED,
            "stream must open with a hello addressed to node " + std::to_string(self)};
  }
  Result<std::string> member = transport_->Authorize(ctx, in.from);
  if (!member.ok()) return ToGrpcStatus(member.status());
  in.address = std::move(member).value();
  v1::PeerAck accepted;
  accepted.set_accepted(true);
  if (!stream->Write(accepted)) return grpc::Status::OK;

  grpc::Status result = grpc::Status::OK;
  while (stream->Read(&frame)) {
    if (frame.from_node() != in.from || frame.to_node() != self) {
      spdlog::warn("event=peer_refused from={} reason=\"frame names from={} to={} within the stream\"", in.from,
                   frame.from_node(), frame.to_node());
      result = {grpc::StatusCode::PERMISSION_DENIED, "sender or receiver changed within the stream"};
      break;
    }
    // Membership can change while a stream is open; a removed (or moved)
    // member loses its stream at its next frame.
    if (!transport_->IsMemberAt(in.from, in.address)) {
      spdlog::warn("event=peer_refused from={} reason=\"no longer a member at {}\"", in.from, in.address);
      result = {grpc::StatusCode::PERMISSION_DENIED, "sender is no longer a member"};
      break;
    }
    HandleFrame(frame, in, stream);
  }
  if (in.staging == Staging::kStaging) {
    spdlog::warn("event=snapshot_receive_aborted from={}", in.from);
    (void)transport_->handler->EndSnapshot(in.from, false);
  }
  return result;
}

void PeerServiceImpl::HandleFrame(const v1::PeerFrame& frame, Inbound& in, ServerStream* stream) {
  TransportHandler* handler = transport_->handler;
  switch (frame.body_case()) {
    case v1::PeerFrame::kBatch:
      for (const v1::RaftMessage& wire : frame.batch().messages()) HandleMessage(wire, in, stream);
      return;
    case v1::PeerFrame::kSnapshotBegin: {
      if (in.staging == Staging::kStaging) (void)handler->EndSnapshot(in.from, false);
      Status s = handler->BeginSnapshot(in.from);
      in.staging = s.ok() ? Staging::kStaging : Staging::kFailed;
      if (s.ok()) {
        spdlog::info("event=snapshot_receive_begin from={} index={}", in.from, frame.snapshot_begin().index());
      } else {
        spdlog::warn("event=snapshot_receive_failed from={} reason=\"{}\"", in.from, s.ToString());
      }
      return;
    }
    case v1::PeerFrame::kSnapshotChunk: {
      if (in.staging != Staging::kStaging) return;  // no transfer open, or it already failed
      Status s = handler->SnapshotChunk(in.from, frame.snapshot_chunk().data());
      if (!s.ok()) {
        spdlog::warn("event=snapshot_receive_failed from={} reason=\"{}\"", in.from, s.ToString());
        (void)handler->EndSnapshot(in.from, false);
        in.staging = Staging::kFailed;
      }
      return;
    }
    case v1::PeerFrame::kHello:
    case v1::PeerFrame::BODY_NOT_SET:
      return;
  }
}

void PeerServiceImpl::HandleMessage(const v1::RaftMessage& wire, Inbound& in, ServerStream* stream) {
  Result<raft::Message> decoded = DecodeMessage(wire);
  if (!decoded.ok()) {
    spdlog::warn("event=message_dropped from={} reason=\"{}\"", in.from, decoded.status().ToString());
    return;
  }
  raft::Message m = std::move(decoded).value();
  // A forwarded leadership transfer names the transferee in `from`, not the
  // member that forwarded it (the Raft core's convention); every other
  // message must come from the authenticated sender.
  const bool from_ok = m.from == in.from || m.type == raft::MessageType::kTransferLeader;
  if (m.to != transport_->options.self_id || !from_ok || raft::IsLocalMessage(m.type)) {
    spdlog::warn("event=message_dropped from={} reason=\"misaddressed {} from={} to={}\"", in.from,
                 raft::MessageTypeName(m.type), m.from, m.to);
    // The sender still waits for a verdict on its snapshot.
    if (m.type == raft::MessageType::kSnap) HandleSnapshotMessage(std::nullopt, m, in, stream);
    return;
  }
  if (m.type == raft::MessageType::kSnap) {
    const raft::Message copy_for_ack = m;
    HandleSnapshotMessage(std::move(m), copy_for_ack, in, stream);
    return;
  }
  transport_->handler->OnMessage(std::move(m));
}

// Ends the staged transfer and hands the kSnap message over (none: it was
// refused, discard what was staged), then tells the sender how it went.
void PeerServiceImpl::HandleSnapshotMessage(std::optional<raft::Message> deliver, const raft::Message& received,
                                            Inbound& in, ServerStream* stream) {
  TransportHandler* handler = transport_->handler;
  bool ok = deliver.has_value() && in.staging == Staging::kStaging;
  if (in.staging == Staging::kStaging) {
    Status s = handler->EndSnapshot(in.from, ok);
    if (!s.ok()) {
      spdlog::warn("event=snapshot_receive_failed from={} reason=\"{}\"", in.from, s.ToString());
      ok = false;
    }
  }
  in.staging = Staging::kNone;
  const uint64_t index = received.snapshot ? received.snapshot->metadata.index : 0;
  if (ok) {
    spdlog::info("event=snapshot_received from={} index={}", in.from, index);
    handler->OnMessage(std::move(*deliver));
  }
  v1::PeerAck ack;
  ack.mutable_snapshot()->set_index(index);
  ack.mutable_snapshot()->set_failed(!ok);
  (void)stream->Write(ack);
}

}  // namespace

namespace {
constexpr std::string_view kNotNamed = "not named";

// Why the caller's client certificate does not speak for `host` (empty: it
// does). The chain itself was verified against the CA in the handshake.
std::string CertificateProblem(grpc::ServerContext* ctx, const std::string& host) {
  std::shared_ptr<const grpc::AuthContext> auth = ctx->auth_context();
  std::vector<grpc::string_ref> pems =
      auth ? auth->FindPropertyValues(GRPC_X509_PEM_CERT_PROPERTY_NAME) : std::vector<grpc::string_ref>{};
  if (pems.empty()) return "no client certificate";
  X509Ptr cert = ParseCertificate(std::string(pems.front().data(), pems.front().size()));
  if (!cert) return "unreadable client certificate";
  if (!CertificateNames(cert.get(), host)) return std::string(kNotNamed);
  return {};
}
}  // namespace

Result<std::string> Transport::Impl::Authorize(grpc::ServerContext* ctx, uint64_t from) {
  std::string address;
  {
    std::lock_guard lock(mu);
    auto it = members.find(from);
    if (it != members.end()) address = it->second;
  }
  auto refuse = [&](std::string reason) -> Status {
    spdlog::warn("event=peer_refused from={} peer={} reason=\"{}\"", from, ctx->peer(), reason);
    return Status::PermissionDenied("node " + std::to_string(options.self_id) + " refused sender " +
                                    std::to_string(from) + ": " + reason);
  };
  // The connection's source address first: the peer allowlist holds even
  // for a member with a valid certificate.
  if (!peer_allowlist.Allows(ctx->peer())) return refuse("its address is not on the peer allowlist");
  if (address.empty()) return refuse("not a current member");
  if (options.tls.insecure) return address;
  const std::string host = HostOf(address);
  if (std::string why = CertificateProblem(ctx, host); !why.empty()) {
    return refuse(why == kNotNamed ? "certificate does not name the member address " + host : why);
  }
  return address;
}

Status Transport::Impl::AuthorizeRegionPeer(grpc::ServerContext* ctx) {
  const std::string host(security::PeerHost(ctx->peer()));
  bool known = false;
  {
    std::lock_guard lock(mu);
    known = region_peer_hosts.count(host) > 0;
  }
  auto refuse = [&](const std::string& reason) {
    spdlog::warn("event=region_peer_refused peer={} reason=\"{}\"", ctx->peer(), reason);
    return Status::PermissionDenied("node " + std::to_string(options.self_id) + " refused a region stream: " + reason);
  };
  if (!peer_allowlist.Allows(ctx->peer())) return refuse("its address is not on the peer allowlist");
  if (!known) return refuse("not a configured region peer");
  if (options.tls.insecure) return Status::Ok();
  if (std::string why = CertificateProblem(ctx, host); !why.empty()) {
    return refuse(why == kNotNamed ? "certificate does not name " + host : why);
  }
  return Status::Ok();
}

bool Transport::Impl::IsMemberAt(uint64_t from, const std::string& address) {
  std::lock_guard lock(mu);
  auto it = members.find(from);
  return it != members.end() && it->second == address;
}

std::shared_ptr<PeerSender> Transport::Impl::NewSender(uint64_t peer, const std::string& address) {
  std::shared_ptr<grpc::Channel> channel =
      grpc::CreateCustomChannel(address, channel_credentials, ChannelArgumentsFor(options));
  auto sender = std::make_shared<PeerSender>(this, peer, address, v1::PeerService::NewStub(channel));
  sender->StartThread();
  return sender;
}

// ---------------------------------------------------------------------------
// Transport.

Result<std::unique_ptr<Transport>> Transport::Start(TransportOptions options, TransportHandler* handler) {
  if (options.self_id == raft::kNone) return Status::InvalidArgument("transport: self_id must not be 0");
  if (handler == nullptr) return Status::InvalidArgument("transport: handler must not be null");
  std::shared_ptr<grpc::ServerCredentials> server_credentials;
  auto impl = std::make_unique<Impl>(std::move(options), handler);
  BULWARK_ASSIGN_OR_RETURN(impl->peer_allowlist, security::IpAllowlist::Parse(impl->options.peer_allowlist));
  const TransportOptions& opts = impl->options;
  if (opts.tls.insecure) {
    spdlog::warn("event=insecure note=\"peer transport in PLAINTEXT without identity checks; tests only\"");
    server_credentials = grpc::InsecureServerCredentials();
    impl->channel_credentials = grpc::InsecureChannelCredentials();
  } else {
    BULWARK_RETURN_IF_ERROR(ValidateTls(opts.tls));
    security::TlsServerConfig server_tls;
    server_tls.cert_file = opts.tls.cert_file;
    server_tls.key_file = opts.tls.key_file;
    server_tls.ca_file = opts.tls.ca_file;
    server_tls.cert_pem = opts.tls.cert_pem;
    server_tls.key_pem = opts.tls.key_pem;
    server_tls.ca_pem = opts.tls.ca_pem;
    server_tls.min_version = opts.tls.min_version;
    server_tls.client_certificates = security::ClientCertificates::kRequired;
    server_tls.name = "peer port";
    BULWARK_ASSIGN_OR_RETURN(server_credentials, security::MakeTlsServerCredentials(server_tls));
    grpc::SslCredentialsOptions client_tls;
    client_tls.pem_root_certs = opts.tls.ca_pem;
    client_tls.pem_private_key = opts.tls.key_pem;
    client_tls.pem_cert_chain = opts.tls.cert_pem;
    impl->channel_credentials = grpc::SslCredentials(client_tls);
  }
  impl->service = std::make_unique<PeerServiceImpl>(impl.get());
  grpc::ServerBuilder builder;
  builder.AddListeningPort(opts.listen_address, server_credentials, &impl->bound_port);
  builder.RegisterService(impl->service.get());
  builder.SetMaxReceiveMessageSize(ReceiveLimit(opts.limits));
  builder.AddChannelArgument(GRPC_ARG_KEEPALIVE_TIME_MS, kKeepaliveTimeMs);
  builder.AddChannelArgument(GRPC_ARG_KEEPALIVE_TIMEOUT_MS, kKeepaliveTimeoutMs);
  builder.AddChannelArgument(GRPC_ARG_KEEPALIVE_PERMIT_WITHOUT_CALLS, 1);
  // Peers ping every 10 s; gRPC's default would call that abuse and close the
  // connection (too_many_pings).
  builder.AddChannelArgument(GRPC_ARG_HTTP2_MIN_RECV_PING_INTERVAL_WITHOUT_DATA_MS, kKeepaliveTimeMs / 2);
  builder.AddChannelArgument(GRPC_ARG_HTTP2_MAX_PING_STRIKES, 0);
  impl->server = builder.BuildAndStart();
  if (!impl->server || impl->bound_port == 0) {
    return Status::IOError("transport: cannot listen on peer address " + opts.listen_address);
  }
  spdlog::info("event=transport_started node={} address={} port={} tls={}", opts.self_id, opts.listen_address,
               impl->bound_port, !opts.tls.insecure);
  return std::unique_ptr<Transport>(new Transport(std::move(impl)));
}

Transport::Transport(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}

Transport::~Transport() { Stop(); }

void Transport::SetPeers(std::map<uint64_t, std::string> peers) {
  peers.erase(impl_->options.self_id);
  std::vector<std::shared_ptr<PeerSender>> finished;
  std::lock_guard lock(impl_->mu);
  if (impl_->stopped) return;
  for (auto it = impl_->senders.begin(); it != impl_->senders.end();) {
    auto wanted = peers.find(it->first);
    if (wanted == peers.end() || wanted->second != it->second->address()) {
      spdlog::info("event=peer_removed peer={} address={}", it->first, it->second->address());
      // Joined later (here once finished, or in Stop): the thread may be
      // inside a handler callback that waits for our caller.
      it->second->RequestStop();
      impl_->retired.push_back(std::move(it->second));
      it = impl_->senders.erase(it);
    } else {
      ++it;
    }
  }
  for (const auto& [id, address] : peers) {
    if (impl_->senders.count(id) == 0) {
      spdlog::info("event=peer_added peer={} address={}", id, address);
      impl_->senders.emplace(id, impl_->NewSender(id, address));
    }
  }
  impl_->members = std::move(peers);
  std::erase_if(impl_->retired, [](const std::shared_ptr<PeerSender>& s) {
    if (!s->finished()) return false;
    s->Join();
    return true;
  });
}

void Transport::Send(std::vector<raft::Message> messages) {
  std::lock_guard lock(impl_->mu);
  if (impl_->stopped) return;
  for (raft::Message& m : messages) {
    auto it = impl_->senders.find(m.to);
    if (it == impl_->senders.end()) {
      spdlog::debug("event=message_dropped to={} reason=\"not a member\"", m.to);
      continue;
    }
    it->second->Enqueue(std::move(m));
  }
}

Result<v1::ForwardResponse> Transport::Forward(uint64_t peer, const v1::ForwardRequest& request) {
  BULWARK_ASSIGN_OR_RETURN(std::shared_ptr<v1::PeerService::Stub> stub, impl_->MemberStub(peer));
  v1::ForwardRequest outgoing = request;
  outgoing.set_from_node(impl_->options.self_id);
  grpc::ClientContext ctx;
  if (request.deadline_unix_ms() > 0) {
    ctx.set_deadline(std::chrono::system_clock::time_point(std::chrono::milliseconds(request.deadline_unix_ms())));
  } else {
    ctx.set_deadline(std::chrono::system_clock::now() + impl_->options.limits.forward_timeout);
  }
  v1::ForwardResponse response;
  grpc::Status st = stub->Forward(&ctx, outgoing, &response);
  if (!st.ok()) return FromGrpcStatus(st.error_code(), "peer " + std::to_string(peer) + ": " + st.error_message());
  return response;
}

void Transport::SetRegionPeers(std::vector<std::string> addresses) {
  std::lock_guard lock(impl_->mu);
  impl_->region_peer_hosts.clear();
  for (const std::string& a : addresses) impl_->region_peer_hosts.insert(HostOf(a));
}

Result<std::shared_ptr<v1::PeerService::Stub>> Transport::Impl::MemberStub(uint64_t peer) {
  std::lock_guard lock(mu);
  if (stopped) return Status::Unavailable("transport stopped");
  auto it = senders.find(peer);
  if (it == senders.end()) return Status::Unavailable("node " + std::to_string(peer) + " is not a member");
  return it->second->stub();
}

Result<std::shared_ptr<v1::PeerService::Stub>> Transport::Impl::RegionStub(const std::string& address) {
  std::lock_guard lock(mu);
  if (stopped) return Status::Unavailable("transport stopped");
  auto& cached = region_stubs[address];
  if (!cached) {
    cached =
        v1::PeerService::NewStub(grpc::CreateCustomChannel(address, channel_credentials, ChannelArgumentsFor(options)));
  }
  return cached;
}

Result<v1::RegionAppendResponse> Transport::RegionAppend(const std::string& address,
                                                         const v1::RegionAppendRequest& request) {
  BULWARK_ASSIGN_OR_RETURN(std::shared_ptr<v1::PeerService::Stub> stub, impl_->RegionStub(address));
  grpc::ClientContext ctx;
  ctx.set_deadline(request.deadline_unix_ms() > 0
                       ? std::chrono::system_clock::time_point(std::chrono::milliseconds(request.deadline_unix_ms()))
                       : std::chrono::system_clock::now() + impl_->options.limits.forward_timeout);
  v1::RegionAppendResponse response;
  grpc::Status st = stub->RegionAppend(&ctx, request, &response);
  if (!st.ok()) return FromGrpcStatus(st.error_code(), "region peer " + address + ": " + st.error_message());
  return response;
}

Result<v1::ControlAnswer> Transport::Control(const std::string& address, const v1::ControlReport& report) {
  BULWARK_ASSIGN_OR_RETURN(std::shared_ptr<v1::PeerService::Stub> stub, impl_->RegionStub(address));
  grpc::ClientContext ctx;
  ctx.set_deadline(report.deadline_unix_ms() > 0
                       ? std::chrono::system_clock::time_point(std::chrono::milliseconds(report.deadline_unix_ms()))
                       : std::chrono::system_clock::now() + impl_->options.limits.forward_timeout);
  v1::ControlAnswer answer;
  grpc::Status st = stub->Control(&ctx, report, &answer);
  if (!st.ok()) return FromGrpcStatus(st.error_code(), "control member " + address + ": " + st.error_message());
  return answer;
}

Result<v1::RegionAppendResponse> Transport::SendRegionImage(const std::string& address,
                                                            const v1::RegionImageHeader& header,
                                                            const std::function<Status(const ChunkSink&)>& produce) {
  BULWARK_ASSIGN_OR_RETURN(std::shared_ptr<v1::PeerService::Stub> stub, impl_->RegionStub(address));
  grpc::ClientContext ctx;
  ctx.set_deadline(std::chrono::system_clock::time_point(std::chrono::milliseconds(header.deadline_unix_ms())));
  v1::RegionAppendResponse response;
  std::unique_ptr<grpc::ClientWriter<v1::RegionImageFrame>> writer = stub->RegionImage(&ctx, &response);
  v1::RegionImageFrame first;
  *first.mutable_header() = header;
  bool broken = !writer->Write(first);
  Status produced = Status::Ok();
  if (!broken) {
    produced = produce([&](std::string_view chunk) -> Status {
      v1::RegionImageFrame f;
      f.set_chunk(std::string(chunk));
      if (!writer->Write(f)) {
        broken = true;
        return Status::Unavailable("the region image stream to " + address + " broke");
      }
      return Status::Ok();
    });
  }
  if (!produced.ok() && !broken) {
    ctx.TryCancel();  // the receiver must not take a partial image as whole
    (void)writer->Finish();
    return produced;
  }
  (void)writer->WritesDone();
  grpc::Status st = writer->Finish();
  if (!st.ok()) return FromGrpcStatus(st.error_code(), "region peer " + address + ": " + st.error_message());
  if (!produced.ok()) return produced;
  return response;
}

Status Transport::FetchRegionImage(uint64_t peer, const std::string& id, const ChunkSink& sink,
                                   std::chrono::milliseconds timeout) {
  BULWARK_ASSIGN_OR_RETURN(std::shared_ptr<v1::PeerService::Stub> stub, impl_->MemberStub(peer));
  grpc::ClientContext ctx;
  ctx.set_deadline(std::chrono::system_clock::now() + timeout);
  v1::FetchRegionImageRequest request;
  request.set_from_node(impl_->options.self_id);
  request.set_id(id);
  std::unique_ptr<grpc::ClientReader<v1::SnapshotChunk>> reader = stub->FetchRegionImage(&ctx, request);
  v1::SnapshotChunk chunk;
  Status sunk = Status::Ok();
  while (reader->Read(&chunk)) {
    sunk = sink(chunk.data());
    if (!sunk.ok()) {
      ctx.TryCancel();
      break;
    }
  }
  grpc::Status st = reader->Finish();
  if (!sunk.ok()) return sunk;
  if (!st.ok()) return FromGrpcStatus(st.error_code(), "peer " + std::to_string(peer) + ": " + st.error_message());
  return Status::Ok();
}

int Transport::bound_port() const { return impl_->bound_port; }

void Transport::Stop() {
  std::vector<std::shared_ptr<PeerSender>> senders;
  {
    std::lock_guard lock(impl_->mu);
    if (impl_->stopped) return;
    impl_->stopped = true;
    for (auto& [id, sender] : impl_->senders) senders.push_back(std::move(sender));
    impl_->senders.clear();
    for (auto& sender : impl_->retired) senders.push_back(std::move(sender));
    impl_->retired.clear();
    // An empty membership refuses every frame still arriving.
    impl_->members.clear();
  }
  for (auto& sender : senders) sender->RequestStop();
  // Shutdown cancels the calls still open at the deadline and, for the
  // synchronous server, returns only once every handler has returned.
  impl_->server->Shutdown(std::chrono::system_clock::now() + kServerShutdownGrace);
  impl_->server->Wait();
  for (auto& sender : senders) sender->Join();
  spdlog::info("event=transport_stopped node={}", impl_->options.self_id);
}

}  // namespace bulwark::replication
