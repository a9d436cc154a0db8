#include "replication/source_address.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>

#include <cstring>

#include <grpc/support/sync.h>
#include <spdlog/spdlog.h>

// gRPC's socket mutator is a C struct whose definition lives in gRPC's
// source tree, not its installed headers (the channel argument and the init
// function are exported). This mirrors src/core/lib/iomgr/socket_mutator.h
// of the gRPC release Debian 12 ships (1.51): a vtable pointer and a
// refcount. The fourth vtable slot (mutate_fd_2) is left null, which makes
// gRPC call mutate_fd for client connections only.
struct grpc_socket_mutator_vtable {
  bool (*mutate_fd)(int fd, grpc_socket_mutator* mutator);
  int (*compare)(grpc_socket_mutator* a, grpc_socket_mutator* b);
  void (*destroy)(grpc_socket_mutator* mutator);
  void* mutate_fd_2;
};
struct grpc_socket_mutator {
  const grpc_socket_mutator_vtable* vtable;
  gpr_refcount refcount;
};
void grpc_socket_mutator_init(grpc_socket_mutator* mutator, const grpc_socket_mutator_vtable* vtable);

namespace bulwark::replication {
namespace {

struct BindMutator {
  grpc_socket_mutator base;  // first: gRPC sees only this
  sockaddr_in addr{};
  sockaddr_in6 addr6{};  // the same address, IPv4-mapped: gRPC's sockets are often dual-stack
};

bool BindFd(int fd, grpc_socket_mutator* m) {
  const auto* self = reinterpret_cast<const BindMutator*>(m);
  int domain = AF_INET;
  socklen_t len = sizeof(domain);
  ::getsockopt(fd, SOL_SOCKET, SO_DOMAIN, &domain, &len);
  const int rc = domain == AF_INET6 ? ::bind(fd, reinterpret_cast<const sockaddr*>(&self->addr6), sizeof(self->addr6))
                                    : ::bind(fd, reinterpret_cast<const sockaddr*>(&self->addr), sizeof(self->addr));
  if (rc != 0) {
    // Not fatal: the connection still works, from the kernel's address.
    spdlog::warn("event=peer_bind_failed error=\"{}\"", std::strerror(errno));
  }
  return true;
}

int Compare(grpc_socket_mutator* a, grpc_socket_mutator* b) {
  const auto* x = reinterpret_cast<const BindMutator*>(a);
  const auto* y = reinterpret_cast<const BindMutator*>(b);
  return std::memcmp(&x->addr.sin_addr, &y->addr.sin_addr, sizeof(x->addr.sin_addr));
}

void Destroy(grpc_socket_mutator* m) { delete reinterpret_cast<BindMutator*>(m); }

const grpc_socket_mutator_vtable kVtable = {BindFd, Compare, Destroy, nullptr};

}  // namespace

void BindOutgoingConnections(grpc::ChannelArguments& args, const std::string& ip) {
  auto* m = new BindMutator;
  m->addr.sin_family = AF_INET;
  m->addr.sin_port = 0;
  if (::inet_pton(AF_INET, ip.c_str(), &m->addr.sin_addr) != 1) {
    spdlog::warn("event=peer_bind_skipped ip={} reason=\"not an IPv4 address\"", ip);
    delete m;
    return;
  }
  m->addr6.sin6_family = AF_INET6;
  m->addr6.sin6_port = 0;
  m->addr6.sin6_addr.s6_addr[10] = 0xff;
  m->addr6.sin6_addr.s6_addr[11] = 0xff;
  std::memcpy(&m->addr6.sin6_addr.s6_addr[12], &m->addr.sin_addr, 4);
  grpc_socket_mutator_init(&m->base, &kVtable);
  args.SetSocketMutator(&m->base);  // the arguments take the reference
}

}  // namespace bulwark::replication
