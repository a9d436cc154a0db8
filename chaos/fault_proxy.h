#pragma once
// FaultProxy: a TCP proxy that injects network faults, for links where the
// kernel cannot (this kernel has no netem). It listens on one address and
// forwards every connection to a target; each direction of each connection
// is a reader and a writer thread with a bounded queue between them, so a
// delay is latency, not a throughput cap.
//
// Faults, per direction, adjustable while connections run:
//   - delay + uniform jitter per chunk read (order is kept: TCP is in order);
//   - loss: with a probability, a chunk is held for `loss_penalty` more, as
//     TCP's retransmission after a lost segment would (dropping bytes from a
//     stream would corrupt it, which no real network does to TCP);
//   - stall: with a probability, the direction stops for `stall`;
//   - bandwidth: a token bucket in bytes per second (0: unlimited);
//   - blackhole: bytes are held, not delivered, until it is lifted (a
//     partition; one-way if set on one direction). Held bytes count against
//     the queue bound, so the sender eventually blocks, as over a real link.
// And for the whole proxy: Cut() closes every connection and refuses new
// ones (accepts and closes at once) until Restore().
//
// Ownership: Start returns the only owner; destroying it stops the proxy,
// closes every connection and joins every thread.
// Thread safety: every public method may be called from any thread.
// Errors: Start returns InvalidArgument for bad addresses, IOError if it
// cannot listen. Connection failures only close that connection (counted in
// stats()).

#include <chrono>
#include <cstdint>
#include <memory>
#include <string>

#include "common/status.h"

namespace bulwark::chaos {

// Bytes queued per direction of one connection before the reader stops
// reading (back-pressure to the sender).
constexpr size_t kProxyMaxQueuedBytes = 8 << 20;
// Connections open at once; more are accepted and closed at once.
constexpr int kProxyMaxConnections = 256;
// Bytes read per chunk.
constexpr size_t kProxyChunkBytes = 16 << 10;
// How long Start waits to connect to the target for each new connection.
constexpr std::chrono::milliseconds kProxyConnectTimeout{2000};

struct LinkFaults {
  std::chrono::microseconds delay{0};
  std::chrono::microseconds jitter{0};              // uniform in [0, jitter], added to delay
  double loss_probability = 0;                      // per chunk, 0..1
  std::chrono::microseconds loss_penalty{200'000};  // Linux's minimum retransmission timeout
  double stall_probability = 0;                     // per chunk, 0..1
  std::chrono::microseconds stall{0};
  uint64_t bandwidth_bytes_per_s = 0;  // 0: unlimited
  bool blackhole = false;
};

class FaultProxy {
 public:
  struct Options {
    std::string listen_host = "127.0.0.1";
    int listen_port = 0;  // 0: the kernel picks; see port()
    std::string target_host;
    int target_port = 0;
    uint64_t seed = 1;  // for jitter, loss and stalls, so a run replays
    // Connect to the target from the client's own address (every 127/8
    // address is local), so the target still sees who is calling: source
    // address checks and firewall rules between node addresses keep working.
    bool bind_to_client_ip = false;
  };
  enum class Direction { kToTarget = 0, kToClient = 1 };

  struct Stats {
    uint64_t connections = 0;          // accepted and forwarded
    uint64_t refused = 0;              // accepted and closed (cut, over the limit, target down)
    uint64_t bytes[2] = {0, 0};        // forwarded (handed to the socket), per Direction
    uint64_t chunks_lost[2] = {0, 0};  // chunks that paid the loss penalty
    uint64_t stalls[2] = {0, 0};
    int open = 0;  // connections open now
  };

  static Result<std::unique_ptr<FaultProxy>> Start(const Options& options);
  ~FaultProxy();
  FaultProxy(const FaultProxy&) = delete;
  FaultProxy& operator=(const FaultProxy&) = delete;

  int port() const;
  std::string listen_address() const;  // host:port

  void SetFaults(Direction direction, const LinkFaults& faults);
  void SetFaults(const LinkFaults& both);
  LinkFaults faults(Direction direction) const;
  // Closes every connection and refuses new ones until Restore().
  void Cut();
  void Restore();
  bool cut() const;
  Stats stats() const;

  struct Impl;

 private:
  explicit FaultProxy(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

}  // namespace bulwark::chaos
