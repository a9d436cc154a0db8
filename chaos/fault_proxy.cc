#include "chaos/fault_proxy.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <atomic>
#include <cerrno>
#include <condition_variable>
#include <cstring>
#include <deque>
#include <list>
#include <mutex>
#include <random>
#include <thread>

namespace bulwark::chaos {
namespace {

using Clock = std::chrono::steady_clock;

// Threads wake at least this often to notice Cut(), a lifted blackhole or
// the proxy stopping, so no wait is unbounded.
constexpr std::chrono::milliseconds kPollInterval{20};

Result<sockaddr_in> Address(const std::string& host, int port) {
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(static_cast<uint16_t>(port));
  if (port < 0 || port > 65535 || ::inet_pton(AF_INET, host.c_str(), &addr.sin_addr) != 1) {
    return Status::InvalidArgument("not an IPv4 address and port: " + host + ":" + std::to_string(port));
  }
  return addr;
}

// Connects with a bounded wait, from `source`'s address if given; -1 on
// failure.
int ConnectTo(const sockaddr_in& addr, const sockaddr_in* source = nullptr) {
  const int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
  if (fd < 0) return -1;
  if (source != nullptr) {
    sockaddr_in from = *source;
    from.sin_port = 0;
    if (::bind(fd, reinterpret_cast<const sockaddr*>(&from), sizeof(from)) != 0) {
      ::close(fd);
      return -1;
    }
  }
  if (::connect(fd, reinterpret_cast<const sockaddr*>(&addr), sizeof(addr)) != 0 && errno != EINPROGRESS) {
    ::close(fd);
    return -1;
  }
  pollfd p{fd, POLLOUT, 0};
  int err = 0;
  socklen_t len = sizeof(err);
  if (::poll(&p, 1, static_cast<int>(kProxyConnectTimeout.count())) != 1 ||
      ::getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &len) != 0 || err != 0) {
    ::close(fd);
    return -1;
  }
  ::fcntl(fd, F_SETFL, ::fcntl(fd, F_GETFL) & ~O_NONBLOCK);
  return fd;
}

bool SendAll(int fd, const char* data, size_t size) {
  while (size > 0) {  // bounded: each pass sends at least one byte or fails
    const ssize_t n = ::send(fd, data, size, MSG_NOSIGNAL);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return false;
    data += n;
    size -= static_cast<size_t>(n);
  }
  return true;
}

struct Chunk {
  std::string data;
  Clock::time_point due;
};

// One direction of one connection.
struct Pipe {
  std::mutex mu;
  std::condition_variable cv;
  std::deque<Chunk> queue;  // GUARDED_BY(mu)
  size_t queued_bytes = 0;  // GUARDED_BY(mu)
  bool eof = false;         // GUARDED_BY(mu): the source closed its side
  Clock::time_point last_due{};
  // Token bucket (writer thread only).
  double tokens = 0;
  Clock::time_point refilled = Clock::now();
};

struct Conn {
  std::array<int, 2> fd{-1, -1};  // [0] the client, [1] the target
  std::array<Pipe, 2> pipes;      // indexed by Direction
  std::atomic<bool> closed{false};
  std::atomic<int> threads_done{0};
  std::vector<std::thread> threads;

  void Close() {
    if (closed.exchange(true)) return;
    for (int f : fd) ::shutdown(f, SHUT_RDWR);
    for (Pipe& p : pipes) {
      std::lock_guard lock(p.mu);
      p.cv.notify_all();
    }
  }
  ~Conn() {
    for (std::thread& t : threads) {
      if (t.joinable()) t.join();
    }
    for (int f : fd) {
      if (f >= 0) ::close(f);
    }
  }
};

}  // namespace

struct FaultProxy::Impl {
  Options options;
  sockaddr_in target{};
  int listen_fd = -1;
  int port = 0;
  std::atomic<bool> stop{false};
  std::array<std::atomic<bool>, 2> blackhole{};  // mirrors faults[d].blackhole for the writers' fast check

  mutable std::mutex mu;
  std::array<LinkFaults, 2> faults;        // GUARDED_BY(mu)
  bool is_cut = false;                     // GUARDED_BY(mu)
  Stats stats;                             // GUARDED_BY(mu)
  std::mt19937_64 rng;                     // GUARDED_BY(mu)
  std::list<std::unique_ptr<Conn>> conns;  // GUARDED_BY(mu)
  std::thread accept_thread;

  void AcceptLoop();
  void Reader(Conn* c, int d);
  void Writer(Conn* c, int d);
  // Joins and frees connections whose threads have all ended.
  void Reap();
};

void FaultProxy::Impl::AcceptLoop() {
  while (!stop) {
    Reap();
    pollfd p{listen_fd, POLLIN, 0};
    if (::poll(&p, 1, static_cast<int>(kPollInterval.count())) != 1) continue;
    sockaddr_in peer{};
    socklen_t peer_len = sizeof(peer);
    const int client = ::accept4(listen_fd, reinterpret_cast<sockaddr*>(&peer), &peer_len, SOCK_CLOEXEC);
    if (client < 0) continue;
    bool refuse = false;
    {
      std::lock_guard lock(mu);
      refuse = is_cut || static_cast<int>(conns.size()) >= kProxyMaxConnections;
    }
    const int server = refuse ? -1 : ConnectTo(target, options.bind_to_client_ip ? &peer : nullptr);
    if (server < 0) {
      {
        std::lock_guard lock(mu);
        ++stats.refused;  // counted before the close the client sees
      }
      ::close(client);
      continue;
    }
    for (int fd : {client, server}) {
      int one = 1;
      ::setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    }
    auto conn = std::make_unique<Conn>();
    conn->fd = {client, server};
    Conn* c = conn.get();
    std::lock_guard lock(mu);
    ++stats.connections;
    for (int d = 0; d < 2; ++d) {
      c->threads.emplace_back([this, c, d] { Reader(c, d); });
      c->threads.emplace_back([this, c, d] { Writer(c, d); });
    }
    conns.push_back(std::move(conn));
  }
}

void FaultProxy::Impl::Reap() {
  std::list<std::unique_ptr<Conn>> done;
  {
    std::lock_guard lock(mu);
    for (auto it = conns.begin(); it != conns.end();) {
      if ((*it)->threads_done == 4) {
        done.push_back(std::move(*it));
        it = conns.erase(it);
      } else {
        ++it;
      }
    }
  }
  // Destroyed outside the lock: ~Conn joins threads that may take it.
}

void FaultProxy::Impl::Reader(Conn* c, int d) {
  const int src = c->fd[d == 0 ? 0 : 1];
  Pipe& pipe = c->pipes[d];
  std::string buffer(kProxyChunkBytes, '\0');
  while (!c->closed && !stop) {
    {
      std::unique_lock lock(pipe.mu);
      if (pipe.queued_bytes >= kProxyMaxQueuedBytes) {
        pipe.cv.wait_for(lock, kPollInterval);
        continue;
      }
    }
    pollfd p{src, POLLIN, 0};
    if (::poll(&p, 1, static_cast<int>(kPollInterval.count())) != 1) continue;
    const ssize_t n = ::recv(src, buffer.data(), buffer.size(), 0);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) {
      c->Close();
      break;
    }
    if (n == 0) {
      std::lock_guard lock(pipe.mu);
      pipe.eof = true;
      pipe.cv.notify_all();
      break;
    }
    const auto now = Clock::now();
    auto due = now;
    {
      std::lock_guard lock(mu);
      const LinkFaults& f = faults[d];
      due += f.delay;
      if (f.jitter.count() > 0) {
        due += std::chrono::microseconds(std::uniform_int_distribution<int64_t>(0, f.jitter.count())(rng));
      }
      std::uniform_real_distribution<double> coin(0, 1);
      if (f.loss_probability > 0 && coin(rng) < f.loss_probability) {
        due += f.loss_penalty;
        ++stats.chunks_lost[d];
      }
      if (f.stall_probability > 0 && coin(rng) < f.stall_probability) {
        due += f.stall;
        ++stats.stalls[d];
      }
    }
    std::lock_guard lock(pipe.mu);
    due = std::max(due, pipe.last_due);  // in order, as TCP delivers
    pipe.last_due = due;
    pipe.queue.push_back({buffer.substr(0, static_cast<size_t>(n)), due});
    pipe.queued_bytes += static_cast<size_t>(n);
    pipe.cv.notify_all();
  }
  ++c->threads_done;
}

void FaultProxy::Impl::Writer(Conn* c, int d) {
  const int dst = c->fd[d == 0 ? 1 : 0];
  Pipe& pipe = c->pipes[d];
  while (!c->closed && !stop) {
    Chunk chunk;
    {
      std::unique_lock lock(pipe.mu);
      if (pipe.queue.empty()) {
        if (pipe.eof) {
          ::shutdown(dst, SHUT_WR);  // pass the half-close on
          break;
        }
        pipe.cv.wait_for(lock, kPollInterval);
        continue;
      }
      if (blackhole[d]) {
        pipe.cv.wait_for(lock, kPollInterval);
        continue;
      }
      const auto now = Clock::now();
      if (now < pipe.queue.front().due) {
        pipe.cv.wait_until(lock, std::min(pipe.queue.front().due, now + kPollInterval));
        continue;
      }
      chunk = std::move(pipe.queue.front());
      pipe.queue.pop_front();
      pipe.queued_bytes -= chunk.data.size();
      pipe.cv.notify_all();  // the reader may read again
    }
    uint64_t rate = 0;
    {
      std::lock_guard lock(mu);
      rate = faults[d].bandwidth_bytes_per_s;
    }
    if (rate > 0) {
      // Token bucket with a burst of a tenth of a second (at least a chunk).
      const double burst = std::max<double>(static_cast<double>(rate) / 10, kProxyChunkBytes);
      const auto now = Clock::now();
      pipe.tokens = std::min(burst, pipe.tokens + std::chrono::duration<double>(now - pipe.refilled).count() * rate);
      pipe.refilled = now;
      const double need = static_cast<double>(chunk.data.size());
      if (pipe.tokens < need) {
        std::this_thread::sleep_for(std::chrono::duration<double>((need - pipe.tokens) / rate));
        pipe.refilled = Clock::now();
        pipe.tokens = 0;
      } else {
        pipe.tokens -= need;
      }
    }
    {
      // Counted before the send, so a reader who has the bytes sees them counted.
      std::lock_guard lock(mu);
      stats.bytes[d] += chunk.data.size();
    }
    if (!SendAll(dst, chunk.data.data(), chunk.data.size())) {
      c->Close();
      break;
    }
  }
  ++c->threads_done;
}

Result<std::unique_ptr<FaultProxy>> FaultProxy::Start(const Options& options) {
  auto impl = std::make_unique<Impl>();
  impl->options = options;
  impl->rng.seed(options.seed);
  BULWARK_ASSIGN_OR_RETURN(impl->target, Address(options.target_host, options.target_port));
  BULWARK_ASSIGN_OR_RETURN(sockaddr_in listen_addr, Address(options.listen_host, options.listen_port));
  impl->listen_fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (impl->listen_fd < 0) return Status::IOError(std::string("socket: ") + std::strerror(errno));
  int one = 1;
  ::setsockopt(impl->listen_fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
  socklen_t len = sizeof(listen_addr);
  if (::bind(impl->listen_fd, reinterpret_cast<sockaddr*>(&listen_addr), sizeof(listen_addr)) != 0 ||
      ::listen(impl->listen_fd, 128) != 0 ||
      ::getsockname(impl->listen_fd, reinterpret_cast<sockaddr*>(&listen_addr), &len) != 0) {
    const std::string err = std::strerror(errno);
    ::close(impl->listen_fd);
    return Status::IOError("cannot listen on " + options.listen_host + ":" + std::to_string(options.listen_port) +
                           ": " + err);
  }
  impl->port = ntohs(listen_addr.sin_port);
  Impl* raw = impl.get();
  impl->accept_thread = std::thread([raw] { raw->AcceptLoop(); });
  return std::unique_ptr<FaultProxy>(new FaultProxy(std::move(impl)));
}

FaultProxy::FaultProxy(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}

FaultProxy::~FaultProxy() {
  impl_->stop = true;
  if (impl_->accept_thread.joinable()) impl_->accept_thread.join();
  std::list<std::unique_ptr<Conn>> conns;
  {
    std::lock_guard lock(impl_->mu);
    conns.swap(impl_->conns);
  }
  for (auto& c : conns) c->Close();
  conns.clear();  // joins
  ::close(impl_->listen_fd);
}

int FaultProxy::port() const { return impl_->port; }

std::string FaultProxy::listen_address() const {
  return impl_->options.listen_host + ":" + std::to_string(impl_->port);
}

void FaultProxy::SetFaults(Direction direction, const LinkFaults& faults) {
  const int d = static_cast<int>(direction);
  std::lock_guard lock(impl_->mu);
  impl_->faults[d] = faults;
  impl_->blackhole[d] = faults.blackhole;
}

void FaultProxy::SetFaults(const LinkFaults& both) {
  SetFaults(Direction::kToTarget, both);
  SetFaults(Direction::kToClient, both);
}

LinkFaults FaultProxy::faults(Direction direction) const {
  std::lock_guard lock(impl_->mu);
  return impl_->faults[static_cast<int>(direction)];
}

void FaultProxy::Cut() {
  std::lock_guard lock(impl_->mu);
  impl_->is_cut = true;
  for (auto& c : impl_->conns) c->Close();
}

void FaultProxy::Restore() {
  std::lock_guard lock(impl_->mu);
  impl_->is_cut = false;
}

bool FaultProxy::cut() const {
  std::lock_guard lock(impl_->mu);
  return impl_->is_cut;
}

FaultProxy::Stats FaultProxy::stats() const {
  std::lock_guard lock(impl_->mu);
  Stats s = impl_->stats;
  s.open = static_cast<int>(impl_->conns.size());
  return s;
}

}  // namespace bulwark::chaos
