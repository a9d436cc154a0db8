#pragma once
// Outgoing peer connections from this node's own address.
//
// On one machine every node listens on its own loopback address
// (127.0.R.N), but the kernel sends loopback connections from 127.0.0.1
// unless the socket is bound first. Binding peer connections to the node's
// address makes firewall rules between node addresses (partition tests,
// nftables) mean what they say, and lets a peer see where a connection
// really comes from.
//
// Thread safety: the mutator is immutable and may be shared by channels.

#include <string>

#include <grpcpp/support/channel_arguments.h>

namespace bulwark::replication {

// Makes channels built from `args` bind their sockets to `ip` (port 0)
// before connecting. InvalidArgument-like failures are not possible here:
// an unparsable ip leaves the sockets unbound (logged once).
void BindOutgoingConnections(grpc::ChannelArguments& args, const std::string& ip);

}  // namespace bulwark::replication
