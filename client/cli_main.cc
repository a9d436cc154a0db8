// bulwark: the command-line client, and `bulwark cluster up/down`.
//
// Connection: .bulwark/client.json, then BULWARK_ENDPOINT/BULWARK_CA/BULWARK_KEY,
// then --endpoint/--ca/--key. The profile lists every node of the replica
// set, so the client fails over between them; an endpoint from the
// environment or a flag means that one node only. Items print as JSON; lists
// print as tables unless --json is given. Exit codes: 0 success, 1 the
// operation failed, 2 bad usage or configuration.
// The commands live in cli_cluster.cc and cli_data.cc; shared pieces in
// cli_common.cc (client/cli.h).
#include <CLI/CLI.hpp>

#include "client/cli.h"

using namespace bulwark;
using namespace bulwark::cli;

int main(int argc, char** argv) {
  CLI::App app{"bulwark: the Bulwark command-line client"};
  app.require_subcommand(1);
  Globals g;
  int rc = 0;
  app.add_option("--profile-dir", g.profile_dir, "where client.json lives (default .bulwark)");
  app.add_option("--endpoint", g.endpoint, "host:port of a node");
  app.add_option("--ca", g.ca, "CA certificate (PEM) that signed the node's certificate");
  app.add_option("--key", g.key, "account key (base64)");
  app.add_option("--resource-token", g.resource_token, "authenticate with a resource token (from a permission)");
  app.add_option("--identity-token", g.identity_token, "authenticate with an identity token (JWT)");
  app.add_option("--cert", g.cert, "client certificate (PEM) for mutual TLS; alone, it authenticates");
  app.add_option("--cert-key", g.cert_key, "the client certificate's private key (PEM)");
  app.add_flag("--insecure", g.insecure, "plaintext (only against a node started with --insecure)");
  app.add_option("--region", g.region, "read in this region (writes always go to the write region)");

  AddDatabaseCommands(app, g, rc);
  AddContainerCommands(app, g, rc);
  AddItemCommands(app, g, rc);
  CLI::App* keys = AddKeyCommands(app, g, rc);
  AddAccessCommands(app, keys, g, rc);
  AddDefenseCommands(app, g, rc);
  AddBackupCommands(app, g, rc);
  AddFirewallCommands(app, g, rc);
  AddRegionCommands(app, g, rc);
  AddConflictCommands(app, g, rc);
  AddNodeCommands(app, g, rc);
  auto* status =
      app.add_subcommand("status", "show every node of the replica set: role, term, indexes, lag, keys")->callback([&] {
        rc = ShowStatus(g);
      });
  status->add_flag("--json", g.json_output, "print a JSON array, one object per node, for scripts");

  auto* leader = app.add_subcommand("leader", "the replica set's leader")->require_subcommand(1);
  static uint64_t to = 0;
  leader->add_subcommand("transfer", "move leadership to another node")
      ->callback([&] { rc = TransferLeader(g, to); })
      ->add_option("--to", to, "the replica id of the new leader (see: bulwark status)")
      ->required()
      ->check(CLI::PositiveNumber);

  auto* cluster = app.add_subcommand("cluster", "run a local cluster")->require_subcommand(1);
  static ClusterUpArgs up_args;
  auto* up =
      cluster->add_subcommand("up", "start a local replica set in the foreground (Ctrl-C stops it)")->callback([&] {
        rc = ClusterUp(g, up_args);
      });
  up->add_option("--regions", up_args.regions,
                 "regions: region R's nodes on 127.0.R.1.. (data in .bulwark/rR); r1 takes writes")
      ->check(CLI::Range(1, 9));
  up->add_flag("--witness", up_args.witness,
               "with --regions 2+: a control group, its witness on 127.0.9.1 (data in .bulwark/witness): automatic "
               "failover");
  up->add_flag("--control", up_args.control,
               "with --regions 3+: a control group of the regions alone (automatic failover)");
  up->add_option("--delay-ms", up_args.delay_ms, "one-way delay between regions, in ms (the WAN stand-in)")
      ->check(CLI::Range(0, 60000));
  up->add_option("--consistency", up_args.consistency,
                 "the account's default consistency: Strong, BoundedStaleness, Session, ConsistentPrefix, Eventual");
  up->add_option("--nodes", up_args.nodes, "nodes in the replica set, on consecutive loopback addresses")
      ->check(CLI::Range(1, 9));
  up->add_option("--ip", up_args.ip, "loopback address of node 1; node N gets the N-th address from it");
  up->add_option("--port", up_args.port, "client port of every node (peer link on port + 1, metrics on port + 80)")
      ->check(CLI::Range(1, 65535 - 80));
  static int down_timeout_s = 20;
  auto* down =
      cluster->add_subcommand("down", "stop the nodes `cluster up` started from this directory")->callback([&] {
        rc = ClusterDown(g, down_timeout_s);
      });
  down->add_option("--timeout", down_timeout_s, "seconds to wait for a clean stop before SIGKILL")
      ->check(CLI::Range(1, 3600));

  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    return app.exit(e) == 0 ? 0 : 2;
  }
  return rc;
}
