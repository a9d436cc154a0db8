#include "chaos/nemesis.h"

#include "chaos/disk_faults.h"
#include "chaos/partition_plan.h"

#include <signal.h>

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <thread>

namespace bulwark::chaos {

const char* FaultKindName(FaultKind kind) {
  switch (kind) {
    case FaultKind::kKill:
      return "kill";
    case FaultKind::kStop:
      return "stop";
    case FaultKind::kPartition:
      return "partition";
    case FaultKind::kClock:
      return "clock";
    case FaultKind::kFailover:
      return "failover";
    case FaultKind::kTransfer:
      return "transfer";
    case FaultKind::kRotate:
      return "rotate";
    case FaultKind::kCutoff:
      return "cutoff";
    case FaultKind::kPower:
      return "power";
    case FaultKind::kDisk:
      return "disk";
    case FaultKind::kCorrupt:
      return "corrupt";
    case FaultKind::kWan:
      return "wan";
  }
  return "?";
}

std::optional<FaultKind> ParseFaultKind(const std::string& name) {
  for (FaultKind k : {FaultKind::kKill, FaultKind::kStop, FaultKind::kPartition, FaultKind::kClock,
                      FaultKind::kFailover, FaultKind::kTransfer, FaultKind::kRotate, FaultKind::kCutoff,
                      FaultKind::kPower, FaultKind::kDisk, FaultKind::kCorrupt, FaultKind::kWan}) {
    if (name == FaultKindName(k)) return k;
  }
  return std::nullopt;
}

Nemesis::Nemesis(LocalCluster* cluster, NftPartition* partition, NemesisOptions options,
                 std::function<int64_t()> now_ns)
    : Nemesis(std::vector<NemesisTarget>{{cluster, ""}}, partition, std::move(options), std::move(now_ns)) {}

Nemesis::Nemesis(std::vector<NemesisTarget> targets, NftPartition* partition, NemesisOptions options,
                 std::function<int64_t()> now_ns)
    : targets_(std::move(targets)),
      cluster_(targets_.front().cluster),
      partition_(partition),
      options_(std::move(options)),
      now_ns_(std::move(now_ns)),
      rng_(options_.seed) {}

Status Nemesis::WriteClockOffset(const std::string& clock_dir, int node, int seconds) {
  const std::string path = clock_dir + "/node-" + std::to_string(node);
  const std::string tmp = path + ".tmp";
  {
    std::ofstream out(tmp, std::ios::trunc);
    out << (seconds >= 0 ? "+" : "") << seconds << "\n";
    if (!out) return Status::IOError("cannot write " + tmp);
  }
  // Renamed into place, so libfaketime never reads a half-written file.
  std::error_code ec;
  std::filesystem::rename(tmp, path, ec);
  if (ec) return Status::IOError("cannot rename " + tmp + ": " + ec.message());
  return Status::Ok();
}

namespace {

// How long a node restarted after damage is given to find it (the leader
// reaches it within the transport's 1 s redial backoff).
constexpr std::chrono::seconds kDamageSettle{3};
// Status calls before a node that does not answer counts as stopped.
constexpr int kStatusAttempts = 3;

}  // namespace

template <typename Rep, typename Period>
void Nemesis::Sleep(std::chrono::duration<Rep, Period> d, const std::atomic<bool>& abort) {
  const auto until = std::chrono::steady_clock::now() + d;
  while (!abort && std::chrono::steady_clock::now() < until) {
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
}

int Nemesis::PickNode(bool prefer_leader, std::string* why) {
  if (prefer_leader && std::uniform_int_distribution<int>(0, 1)(rng_) == 1) {
    if (int lead = cluster_->Leader(); lead != 0) {
      *why = " (leader)";
      return lead;
    }
  }
  *why = "";
  return std::uniform_int_distribution<int>(1, cluster_->size())(rng_);
}

std::vector<std::pair<std::string, std::string>> Nemesis::PartitionRules(std::string* what) {
  std::vector<int> order(cluster_->size());
  for (size_t i = 0; i < order.size(); ++i) order[i] = static_cast<int>(i) + 1;
  std::shuffle(order.begin(), order.end(), rng_);
  const auto shape = static_cast<PartitionShape>(std::uniform_int_distribution<int>(0, kPartitionShapes - 1)(rng_));
  std::string why;
  const int target =
      shape == PartitionShape::kIsolate || shape == PartitionShape::kOneWay ? PickNode(true, &why) : order[0];
  const PartitionPlan plan = PlanPartition(shape, order, target);
  *what = "partition: " + plan.what + why;
  std::vector<std::pair<std::string, std::string>> rules;
  for (const auto& [from, to] : plan.block) rules.push_back({cluster_->node_ip(from), cluster_->node_ip(to)});
  return rules;
}

FaultRecord Nemesis::Inject(FaultKind kind) {
  FaultRecord f;
  f.kind = kind;
  std::string why;
  // One region draws nothing, so its seeded schedule is what it always was.
  const size_t t = targets_.size() == 1 ? 0 : std::uniform_int_distribution<size_t>(0, targets_.size() - 1)(rng_);
  cluster_ = targets_[t].cluster;
  const std::string where = targets_[t].region.empty() ? "" : targets_[t].region + ": ";
  switch (kind) {
    case FaultKind::kKill: {
      const int x = PickNode(true, &why);
      f.start_ns = now_ns_();
      cluster_->KillNode(x);
      killed_.push_back({cluster_, x});
      f.what = where + "kill -9 node " + std::to_string(x) + why;
      break;
    }
    case FaultKind::kStop: {
      const int x = PickNode(true, &why);
      f.start_ns = now_ns_();
      if (cluster_->node_running(x)) ::kill(cluster_->node_pid(x), SIGSTOP);
      stopped_.push_back({cluster_, x});
      f.what = where + "SIGSTOP node " + std::to_string(x) + why;
      break;
    }
    case FaultKind::kPartition: {
      auto rules = PartitionRules(&f.what);
      f.what = where + f.what;
      f.start_ns = now_ns_();
      if (partition_ == nullptr) {
        f.error = "no nftables table";
      } else if (Status s = partition_->Block(rules); !s.ok()) {
        f.error = s.ToString();
      }
      break;
    }
    case FaultKind::kClock: {
      const int x = PickNode(false, &why);
      int offset = std::uniform_int_distribution<int>(-kMaxClockOffsetSeconds, kMaxClockOffsetSeconds)(rng_);
      if (offset == 0) offset = 1;
      f.start_ns = now_ns_();
      if (Status s = WriteClockOffset(options_.clock_dir, x, offset); !s.ok()) f.error = s.ToString();
      skewed_.push_back(x);
      f.what =
          "clock of node " + std::to_string(x) + " moved " + (offset > 0 ? "+" : "") + std::to_string(offset) + " s";
      break;
    }
    case FaultKind::kTransfer: {
      f.start_ns = now_ns_();
      const int lead = cluster_->Leader();
      if (cluster_->size() < 2) {
        f.what = where + "leader transfer";
        f.error = "a leader transfer needs two nodes or more";
        break;
      }
      if (lead == 0) {
        f.what = where + "leader transfer";
        f.error = "no leader to transfer from";
        break;
      }
      int to = std::uniform_int_distribution<int>(1, cluster_->size() - 1)(rng_);
      if (to >= lead) ++to;
      f.what = where + "leader transfer " + std::to_string(lead) + " -> " + std::to_string(to);
      client::ClientOptions o = cluster_->node_client_options(lead);
      o.max_retries = 0;
      auto c = client::Client::Connect(o);
      auto moved = c.ok() ? (*c)->TransferLeader(static_cast<uint64_t>(to)) : Result<uint64_t>(c.status());
      // Refused or superseded by an election: a leader change either way,
      // not a harness failure.
      if (!moved.ok()) f.what += " (" + moved.status().ToString() + ")";
      break;
    }
    case FaultKind::kRotate: {
      f.start_ns = now_ns_();
      std::string what = where;
      if (options_.rotate_data_key) {
        auto r = options_.rotate_data_key();
        if (!r.ok()) {
          f.error = r.status().ToString();
        } else {
          what += *r + ", ";
        }
      }
      const int x = PickNode(false, &why);
      client::ClientOptions o = cluster_->node_client_options(x);
      o.max_retries = 0;
      auto c = client::Client::Connect(o);
      auto v = c.ok() ? (*c)->RotateStoreKey() : Result<uint32_t>(c.status());
      if (v.ok()) {
        what += "store key of node " + std::to_string(x) + " -> v" + std::to_string(*v);
      } else {
        what += "store key of node " + std::to_string(x) + " not rotated (" + v.status().ToString() + ")";
      }
      // And one node's master key, online: the node re-wraps its keys (store,
      // data, account, backups) under a new one and is restarted with it from
      // then on (a later kill's restart proves its store opens with it).
      const int y = PickNode(false, &why);
      auto uri = cluster_->NewNodeMasterKey(y);
      client::ClientOptions oy = cluster_->node_client_options(y);
      oy.max_retries = 0;
      oy.deadline = std::chrono::seconds(60);  // re-wraps every key and backup
      auto cy = client::Client::Connect(oy);
      auto id = !uri.ok() ? Result<std::string>(uri.status())
                : cy.ok() ? (*cy)->RotateMasterKey(*uri)
                          : Result<std::string>(cy.status());
      if (id.ok()) {
        cluster_->set_node_master_key_uri(y, *uri);
        what += ", master key of node " + std::to_string(y) + " -> " + *id;
      } else {
        // The outcome is unknown: its next start may need either key.
        f.error = "master key of node " + std::to_string(y) + ": " + id.status().ToString();
      }
      f.what = "rotate: " + what;
      break;
    }
    case FaultKind::kCutoff: {
      f.start_ns = now_ns_();
      auto w = options_.write_region ? options_.write_region()
                                     : Result<int>(Status::FailedPrecondition("cutoff needs regions"));
      if (!w.ok() || *w < 1 || *w > static_cast<int>(options_.region_nets.size())) {
        f.what = "cutoff";
        f.error = w.ok() ? "the write region is not one of the run's" : w.status().ToString();
        break;
      }
      const std::string& cut = options_.region_nets[*w - 1];
      std::vector<std::pair<std::string, std::string>> rules;
      std::vector<std::string> others;
      for (size_t r = 0; r < options_.region_nets.size(); ++r) {
        if (static_cast<int>(r) != *w - 1) others.push_back(options_.region_nets[r]);
      }
      if (!options_.witness_ip.empty()) others.push_back(options_.witness_ip);
      for (const auto& o : others) {
        rules.push_back({cut, o});
        rules.push_back({o, cut});
      }
      f.what = "cutoff of the write region r" + std::to_string(*w);
      if (partition_ == nullptr) {
        f.error = "no nftables table";
      } else if (Status s = partition_->Block(rules); !s.ok()) {
        f.error = s.ToString();
      }
      break;
    }
    case FaultKind::kPower: {
      const int x = PickNode(true, &why);
      f.start_ns = now_ns_();
      cluster_->KillNode(x);
      killed_.push_back({cluster_, x});
      auto dropped = DropUnsynced(cluster_->node_data_dir(x));
      f.what = where + "power cut of node " + std::to_string(x) + why + ": " +
               (dropped.ok() ? *dropped : dropped.status().ToString());
      if (!dropped.ok()) f.error = dropped.status().ToString();
      break;
    }
    case FaultKind::kDisk: {
      const int x = PickNode(true, &why);
      const storage::FsFault faults[] = {storage::FsFault::kSyncError, storage::FsFault::kWriteError,
                                         storage::FsFault::kNoSpace};
      const storage::FsFault fault = faults[std::uniform_int_distribution<int>(0, 2)(rng_)];
      f.start_ns = now_ns_();
      if (Status s = SetDiskFault(cluster_->node_data_dir(x), fault); !s.ok()) f.error = s.ToString();
      disk_faulted_.push_back({cluster_, x});
      f.what = where + "disk of node " + std::to_string(x) + why + ": " + storage::FsFaultName(fault);
      break;
    }
    case FaultKind::kCorrupt: {
      // One damaged node at a time: a node still carrying undetected damage
      // is the one damaged again, so two nodes never hold damage at once
      // (a group of four survives one bad disk, not two).
      int x = PickNode(false, &why);
      if (!latent_.empty()) {
        cluster_ = latent_.front().first;
        x = latent_.front().second;
        why = " (still damaged)";
      }
      f.start_ns = now_ns_();
      cluster_->KillNode(x);
      damaged_.push_back({cluster_, x});
      auto done = Damage(cluster_->node_data_dir(x), rng_);
      f.what = where + "node " + std::to_string(x) + why + " killed, " + (done.ok() ? *done : done.status().ToString());
      break;
    }
    case FaultKind::kWan: {
      f.start_ns = now_ns_();
      const int region = static_cast<int>(t) + 1;
      auto done = options_.wan ? options_.wan(region, rng_())
                               : Result<std::string>(Status::FailedPrecondition("wan needs regions"));
      wan_faulted_ = true;
      f.what = done.ok() ? *done : "wan";
      if (!done.ok()) f.error = done.status().ToString();
      break;
    }
    case FaultKind::kFailover: {
      f.start_ns = now_ns_();
      auto done = options_.failover ? options_.failover()
                                    : Result<std::string>(Status::FailedPrecondition("failover needs regions"));
      if (done.ok()) {
        f.what = *done;
      } else {
        f.what = "failover";
        f.error = done.status().ToString();
      }
      break;
    }
  }
  return f;
}

// Whether node x of c is down for good until someone acts: its process
// ended, or its replica stopped (a status call that keeps failing counts).
bool Nemesis::NodeStopped(LocalCluster* c, int x, std::string* why) {
  for (int attempt = 0; attempt < kStatusAttempts; ++attempt) {
    (void)c->ReapExited();
    if (!c->node_running(x)) {
      *why = "its process ended";
      return true;
    }
    auto st = NodeStatus(*c, x);
    if (st.ok()) {
      *why = st->replica_error;
      return st->role == "stopped";
    }
    *why = st.status().ToString();
    std::this_thread::sleep_for(std::chrono::seconds(1));
  }
  return true;
}

Status Nemesis::HealDisks() {
  Status worst;
  for (auto [c, x] : disk_faulted_) {
    if (Status s = SetDiskFault(c->node_data_dir(x), storage::FsFault::kNone); !s.ok()) worst = s;
    // Always restarted once the fault is lifted: after a failed write or
    // fsync RocksDB keeps a hard background error and refuses writes until
    // it reopens, and the replica may notice only at its next write.
    std::string why;
    if (NodeStopped(c, x, &why)) heal_note_ += "; node " + std::to_string(x) + " had stopped (" + why + ")";
    c->KillNode(x);
    if (Status s = c->StartNode(x, /*wait_ready=*/true); !s.ok()) {
      worst = s.WithContext("restart node " + std::to_string(x) + " after a disk fault");
    } else {
      heal_note_ += "; node " + std::to_string(x) + " restarted";
    }
  }
  disk_faulted_.clear();
  for (auto [c, x] : damaged_) {
    if (std::find(latent_.begin(), latent_.end(), std::make_pair(c, x)) == latent_.end()) latent_.push_back({c, x});
    if (c->node_running(x)) continue;
    Status s = c->StartNode(x, /*wait_ready=*/true);
    if (s.ok()) {
      heal_note_ += "; node " + std::to_string(x) + " restarted";
      continue;
    }
    // Refused to open (the damage was found): replace its disk. The node's
    // own reason is in the log tail the error carries.
    c->KillNode(x);
    const std::string& m = s.message();
    size_t at = m.find("start_failed");
    at = at == std::string::npos ? 0 : m.rfind('\n', at) + 1;
    heal_note_ +=
        "; node " + std::to_string(x) + " did not start (" + m.substr(at, m.find('\n', at) - at) + "): disk replaced";
    if (Status r = Replace(c, x); !r.ok()) worst = r;
  }
  damaged_.clear();
  // Damage may show later: a log that lost acknowledged entries stops the
  // replica at the leader's first heartbeat (raft.h), a bad SST block when
  // it is read. Every node still carrying damage is looked at again at
  // every heal.
  if (!latent_.empty()) std::this_thread::sleep_for(kDamageSettle);
  for (auto [c, x] : std::vector(latent_)) {
    std::string why;
    if (!NodeStopped(c, x, &why)) continue;
    c->KillNode(x);
    heal_note_ += "; damaged node " + std::to_string(x) + " stopped later (" + why + "): disk replaced";
    if (Status r = Replace(c, x); !r.ok()) worst = r;
  }
  return worst;
}

Status Nemesis::Replace(LocalCluster* c, int x) {
  latent_.erase(std::remove(latent_.begin(), latent_.end(), std::make_pair(c, x)), latent_.end());
  Status s = ReplaceNodeDisk(*c, x);
  return s.ok() ? s : s.WithContext("replace the disk of node " + std::to_string(x));
}

Status Nemesis::ReplaceDamagedDisks() {
  Status worst;
  for (auto [c, x] : std::vector(latent_)) {
    c->KillNode(x);
    if (Status r = Replace(c, x); !r.ok()) worst = r;
  }
  return worst;
}

Status Nemesis::HealAll() {
  Status worst;
  for (auto [c, x] : stopped_) {
    if (c->node_running(x)) ::kill(c->node_pid(x), SIGCONT);
  }
  stopped_.clear();
  if (partition_ != nullptr) {
    if (Status s = partition_->Heal(); !s.ok()) worst = s;
  }
  for (int x : skewed_) {
    if (Status s = WriteClockOffset(options_.clock_dir, x, 0); !s.ok()) worst = s;
  }
  skewed_.clear();
  if (wan_faulted_ && options_.wan) {
    if (auto r = options_.wan(0, 0); !r.ok()) worst = r.status();
  }
  wan_faulted_ = false;
  for (auto [c, x] : killed_) {
    if (c->node_running(x)) continue;
    if (Status s = c->StartNode(x, /*wait_ready=*/true); !s.ok()) {
      worst = s.WithContext("restart node " + std::to_string(x));
    }
  }
  killed_.clear();
  // Last: every other node is back, so a stopped one is the damage's doing.
  if (Status s = HealDisks(); !s.ok()) worst = s;
  return worst;
}

void Nemesis::Run(std::chrono::steady_clock::time_point until, const std::atomic<bool>& abort) {
  if (options_.kinds.empty()) {
    Sleep(until - std::chrono::steady_clock::now(), abort);
    return;
  }
  auto draw = [&](std::chrono::milliseconds lo, std::chrono::milliseconds hi) {
    return std::chrono::milliseconds(std::uniform_int_distribution<int64_t>(lo.count(), hi.count())(rng_));
  };
  // Bounded by `until`: each pass sleeps at least quiet_min.
  while (!abort && std::chrono::steady_clock::now() < until) {
    Sleep(draw(options_.quiet_min, options_.quiet_max), abort);
    if (abort || std::chrono::steady_clock::now() >= until) break;
    // A shuffled deck of the kinds, refilled when empty: every kind comes up
    // once per round, so even a short run sees each one.
    if (deck_.empty()) {
      deck_ = options_.kinds;
      std::shuffle(deck_.begin(), deck_.end(), rng_);
    }
    const FaultKind kind = deck_.back();
    deck_.pop_back();
    FaultRecord f = Inject(kind);
    auto hold = draw(options_.hold_min, options_.hold_max);
    if (kind == FaultKind::kCutoff) hold = std::max(hold, options_.cutoff_hold);
    Sleep(std::min<std::chrono::steady_clock::duration>(
              hold, until - std::chrono::steady_clock::now() + std::chrono::milliseconds(1)),
          abort);
    heal_note_.clear();
    if (Status s = HealAll(); !s.ok()) f.error += (f.error.empty() ? "" : "; ") + s.ToString();
    f.what += heal_note_;
    f.end_ns = now_ns_();
    faults_.push_back(std::move(f));
  }
}

}  // namespace bulwark::chaos
