// Interaction scripts: tests/testdata/raft/*.txt drive a TestCluster
// command by command, each command followed by "----" and its expected
// output, then a blank line. Set RAFT_REWRITE=1 to rewrite the expected
// output from the actual one, and review the change as a diff.
//
// Commands:
//   add-nodes N [voters=1,2,3] [learners=4] [pre-vote] [check-quorum]
//             [lease] [max-inflight=K] [max-msg-bytes=B] [max-uncommitted-bytes=B]
//             [broken-commit-old-term]
//   campaign ID | propose ID DATA | propose-conf-change ID add|remove|learner NODE
//   read-index ID CTX | transfer-leader FROM TO
//   tick ID N | tick-election ID | tick-heartbeat ID
//   process-ready ID... | deliver-msgs ID... | drop-msgs ID... | stabilize
//   partition 1,2 3,4 | isolate ID | heal | compact ID INDEX | restart ID
//   status | raft-log ID | applied ID | progress ID

#include <catch2/catch.hpp>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <sstream>

#include "tests/raft/test_cluster.h"

namespace bulwark::raft {
namespace {

using testing::TestCluster;

struct Block {
  std::vector<std::string> comments;  // lines before the command
  std::string command;
  std::string expected;
};

std::vector<Block> ParseScript(const std::string& text) {
  std::vector<Block> blocks;
  std::istringstream in(text);
  std::string line;
  Block cur;
  bool in_output = false;
  while (std::getline(in, line)) {
    if (in_output) {
      if (line.empty()) {
        blocks.push_back(cur);
        cur = Block{};
        in_output = false;
      } else {
        cur.expected += line + "\n";
      }
      continue;
    }
    if (line == "----") {
      in_output = true;
    } else if (line.empty() || line[0] == '#') {
      cur.comments.push_back(line);
    } else {
      cur.command = line;
    }
  }
  if (in_output) blocks.push_back(cur);
  return blocks;
}

std::vector<std::string> Split(const std::string& s, char sep) {
  std::vector<std::string> out;
  std::string part;
  std::istringstream in(s);
  while (std::getline(in, part, sep)) {
    if (!part.empty()) out.push_back(part);
  }
  return out;
}

uint64_t U(const std::string& s) { return std::strtoull(s.c_str(), nullptr, 10); }

std::vector<uint64_t> Ids(const std::string& csv) {
  std::vector<uint64_t> out;
  for (const std::string& p : Split(csv, ',')) out.push_back(U(p));
  return out;
}

class ScriptRunner {
 public:
  std::string Run(const std::string& command) {
    std::vector<std::string> args = Split(command, ' ');
    if (args.empty()) return "error: empty command\n";
    std::string out = Dispatch(args);
    return out.empty() ? "ok\n" : out;
  }

 private:
  std::string AddNodes(const std::vector<std::string>& args) {
    Config cfg;
    cfg.election_timeout_ticks = 10;
    cfg.heartbeat_timeout_ticks = 1;
    cfg.rng_seed = 1;
    ConfState cs;
    for (size_t i = 2; i < args.size(); ++i) {
      const std::string& a = args[i];
      if (a.rfind("voters=", 0) == 0) cs.voters = Ids(a.substr(7));
      else if (a.rfind("learners=", 0) == 0) cs.learners = Ids(a.substr(9));
      else if (a == "pre-vote") cfg.pre_vote = true;
      else if (a == "check-quorum") cfg.check_quorum = true;
      else if (a == "lease") cfg.read_only_option = ReadOnlyOption::kLeaseBased;
      else if (a == "broken-commit-old-term") cfg.testing_commit_old_term_by_counting = true;
      else if (a.rfind("max-inflight=", 0) == 0) cfg.max_inflight_msgs = U(a.substr(13));
      else if (a.rfind("max-msg-bytes=", 0) == 0) cfg.max_size_per_msg_bytes = U(a.substr(14));
      else if (a.rfind("max-uncommitted-bytes=", 0) == 0) cfg.max_uncommitted_entries_bytes = U(a.substr(22));
      else return "error: unknown argument " + a + "\n";
    }
    Config probe = cfg;
    probe.id = 1;
    Status s = probe.Validate();
    if (!s.ok()) return "error: " + s.ToString() + "\n";
    if (!cluster_) cluster_ = std::make_unique<TestCluster>(cfg);
    cluster_->AddNodes(static_cast<int>(U(args[1])), cs);
    return cluster_->Describe();
  }

  static std::string StatusLine(const Status& s) { return s.ok() ? "" : s.ToString() + "\n"; }

  std::string Dispatch(const std::vector<std::string>& a) {
    const std::string& cmd = a[0];
    if (cmd == "add-nodes" && a.size() >= 2) return AddNodes(a);
    if (!cluster_) return "error: add-nodes first\n";
    TestCluster& c = *cluster_;
    if (cmd == "campaign" && a.size() == 2) return StatusLine(c.node(U(a[1])).raw->Campaign());
    if (cmd == "propose" && a.size() == 3) return StatusLine(c.node(U(a[1])).raw->Propose(a[2]));
    if (cmd == "propose-conf-change" && a.size() == 4) {
      std::optional<ConfChange> cc = ConfChange::Decode(a[2] + ":" + a[3]);
      if (!cc) return "error: bad conf change\n";
      return StatusLine(c.node(U(a[1])).raw->ProposeConfChange(*cc));
    }
    if (cmd == "read-index" && a.size() == 3) return StatusLine(c.node(U(a[1])).raw->ReadIndex(a[2]));
    if (cmd == "transfer-leader" && a.size() == 3) {
      return StatusLine(c.node(U(a[1])).raw->TransferLeader(U(a[2])));
    }
    if (cmd == "tick" && a.size() == 3) {
      c.Tick(U(a[1]), static_cast<int>(U(a[2])));
      return "";
    }
    if (cmd == "tick-election" && a.size() == 2) {
      c.TickElection(U(a[1]));
      return "";
    }
    if (cmd == "tick-heartbeat" && a.size() == 2) {
      c.TickHeartbeat(U(a[1]));
      return "";
    }
    if (cmd == "process-ready" || cmd == "deliver-msgs" || cmd == "drop-msgs") {
      std::string out;
      for (size_t i = 1; i < a.size(); ++i) {
        uint64_t id = U(a[i]);
        std::string r;
        if (cmd == "process-ready") r = c.ProcessReady(id);
        else if (cmd == "deliver-msgs") r = c.DeliverMsgs(id);
        else r = "dropped " + std::to_string(c.DropMsgs(id)) + " messages\n";
        out += "> " + std::to_string(id) + ":\n" + (r.empty() ? "nothing\n" : r);
      }
      return out;
    }
    if (cmd == "stabilize") return c.Stabilize();
    if (cmd == "partition") {
      std::vector<std::set<uint64_t>> groups;
      for (size_t i = 1; i < a.size(); ++i) {
        std::vector<uint64_t> ids = Ids(a[i]);
        groups.emplace_back(ids.begin(), ids.end());
      }
      c.Partition(groups);
      return "";
    }
    if (cmd == "isolate" && a.size() == 2) {
      c.Isolate(U(a[1]));
      return "";
    }
    if (cmd == "heal") {
      c.Heal();
      return "";
    }
    if (cmd == "compact" && a.size() == 3) return StatusLine(c.Compact(U(a[1]), U(a[2])));
    if (cmd == "restart" && a.size() == 2) {
      c.Restart(U(a[1]));
      return "";
    }
    if (cmd == "status") return c.Describe();
    if (cmd == "raft-log" && a.size() == 2) return c.RaftLog(U(a[1]));
    if (cmd == "applied" && a.size() == 2) {
      std::string out;
      for (const Entry& e : c.node(U(a[1])).applied) out += DescribeEntry(e) + "\n";
      return out;
    }
    if (cmd == "progress" && a.size() == 2) {
      std::string out;
      for (const auto& [id, pr] : c.raft(U(a[1])).tracker().progress()) {
        out += std::to_string(id) + ": " + pr.Describe() + "\n";
      }
      return out;
    }
    return "error: unknown command\n";
  }

  std::unique_ptr<TestCluster> cluster_;
};

std::string Render(const std::vector<Block>& blocks) {
  std::string out;
  for (const Block& b : blocks) {
    for (const std::string& c : b.comments) out += c + "\n";
    out += b.command + "\n----\n" + b.expected + "\n";
  }
  return out;
}

TEST_CASE("Interaction scripts produce their expected output", "[raft][interaction]") {
  // Proves each scripted scenario (elections, replication, snapshots,
  // reads, membership, transfer) still behaves exactly as reviewed.
  namespace fs = std::filesystem;
  bool rewrite = std::getenv("RAFT_REWRITE") != nullptr;
  std::vector<fs::path> files;
  for (const auto& e : fs::directory_iterator(RAFT_TESTDATA_DIR)) {
    if (e.path().extension() == ".txt") files.push_back(e.path());
  }
  std::sort(files.begin(), files.end());
  REQUIRE_FALSE(files.empty());
  for (const fs::path& path : files) {
    DYNAMIC_SECTION(path.filename().string()) {
      std::ifstream in(path);
      std::stringstream text;
      text << in.rdbuf();
      std::vector<Block> blocks = ParseScript(text.str());
      REQUIRE_FALSE(blocks.empty());
      ScriptRunner runner;
      for (Block& b : blocks) {
        std::string actual = runner.Run(b.command);
        if (rewrite) {
          b.expected = actual;
          continue;
        }
        INFO(path.filename().string() << ": " << b.command);
        CHECK(actual == b.expected);
      }
      if (rewrite) {
        std::ofstream out(path);
        out << Render(blocks);
      }
    }
  }
}

}  // namespace
}  // namespace bulwark::raft
