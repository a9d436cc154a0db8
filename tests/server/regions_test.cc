// The regions record and online changes (server/regions.h): the record
// round-trips, a malformed or invalid one is refused, and each change is
// checked: names, addresses, duplicates, the write region, the strong set,
// priorities. Plus the store's side (kSetRegions): a change based on an
// older record is refused, and the record carries the GLSN that set it.
#include <catch2/catch.hpp>

#include "server/control.h"
#include "server/regions.h"
#include "storage/document_store.h"
#include "storage/records.h"
#include "tests/storage/open_store.h"
#include "tests/test_util.h"

using namespace bulwark;
using namespace bulwark::server;

namespace {

GeoConfig TwoRegions() {
  GeoConfig g;
  g.regions = {{"r1", 0, {"127.0.1.1:7101"}, {"127.0.1.1:7100"}, 0},
               {"r2", 1, {"127.0.2.1:7101"}, {"127.0.2.1:7100"}, 25}};
  NormalizeGeo(g);
  return g;
}

v1::ChangeRegionsRequest Add(const std::string& name, std::vector<std::string> peers,
                             std::vector<std::string> endpoints, uint32_t priority = 0, bool strong = false) {
  v1::ChangeRegionsRequest req;
  auto* a = req.mutable_add();
  a->set_name(name);
  for (const auto& p : peers) a->add_peers(p);
  for (const auto& e : endpoints) a->add_endpoints(e);
  a->set_priority(priority);
  a->set_strong(strong);
  return req;
}

}  // namespace

TEST_CASE("regions record: round trip, link delays kept by name, malformed records refused") {
  const GeoConfig g = TwoRegions();
  auto back = DecodeRegions(EncodeRegions(g), g);
  REQUIRE(back.ok());
  REQUIRE(back->regions.size() == 2);
  CHECK(back->regions[1].name == "r2");
  CHECK(back->regions[1].peers == g.regions[1].peers);
  CHECK(back->regions[1].link_delay_ms == 25);  // node-local test hook, not in the record
  CHECK(back->strong_regions == g.strong_regions);
  CHECK(back->write_region == "r1");
  for (const char* bad :
       {"", "[]", "{}", R"({"regions":[],"strong":["r1"]})", R"({"regions":"x","strong":[]})",
        R"({"regions":[{"name":"r1","priority":0,"peers":[1],"endpoints":[]}],"strong":["r1"]})",
        R"({"regions":[{"name":"r1","priority":0,"peers":["a:1"],"endpoints":["b:2"]}],"strong":["zz"]})",
        R"({"regions":[{"name":"r/1","priority":0,"peers":["a:1"],"endpoints":["b:2"]}],"strong":[]})"}) {
    INFO(bad);
    CHECK(DecodeRegions(bad, g).status().code() == Code::kInvalidArgument);
  }
}

TEST_CASE("region changes: add, remove and reorder, each refused when it would break the topology") {
  const GeoConfig g = TwoRegions();
  auto added = ChangeRegions(g, Add("r3", {"127.0.3.1:7101"}, {"127.0.3.1:7100"}, 0, true));
  REQUIRE(added.ok());
  REQUIRE(added->regions.size() == 3);
  CHECK(added->regions[2].name == "r3");
  CHECK(added->regions[2].priority == 2);
  CHECK(std::find(added->strong_regions.begin(), added->strong_regions.end(), "r3") != added->strong_regions.end());
  auto first = ChangeRegions(g, Add("r3", {"127.0.3.1:7101"}, {"127.0.3.1:7100"}, 1));
  REQUIRE(first.ok());
  CHECK(first->regions[1].name == "r3");  // placed at priority 1
  CHECK(first->regions[2].name == "r2");

  CHECK(ChangeRegions(g, Add("r2", {"127.0.3.1:7101"}, {"127.0.3.1:7100"})).status().code() == Code::kAlreadyExists);
  CHECK(ChangeRegions(g, Add("r3", {"127.0.2.1:7101"}, {"127.0.3.1:7100"})).status().code() == Code::kAlreadyExists);
  CHECK(ChangeRegions(g, Add("r 3", {"127.0.3.1:7101"}, {"127.0.3.1:7100"})).status().code() == Code::kInvalidArgument);
  CHECK(ChangeRegions(g, Add("r3", {}, {"127.0.3.1:7100"})).status().code() == Code::kInvalidArgument);
  for (const char* bad : {"127.0.3.1", "127.0.3.1:", ":7101", "127.0.3.1:0", "127.0.3.1:99999", "127.0.3.1:7x"}) {
    INFO(bad);
    CHECK(ChangeRegions(g, Add("r3", {bad}, {"127.0.3.1:7100"})).status().code() == Code::kInvalidArgument);
  }

  v1::ChangeRegionsRequest remove;
  remove.set_remove("r1");
  CHECK(ChangeRegions(g, remove).status().code() == Code::kFailedPrecondition);  // the write region
  remove.set_remove("r9");
  CHECK(ChangeRegions(g, remove).status().code() == Code::kNotFound);
  remove.set_remove("r2");
  auto removed = ChangeRegions(g, remove);
  REQUIRE(removed.ok());
  CHECK(removed->regions.size() == 1);
  CHECK(removed->strong_regions == std::vector<std::string>{"r1"});
  // The last region of the strong set cannot go.
  GeoConfig only_r2_strong = g;
  only_r2_strong.strong_regions = {"r2"};
  CHECK(ChangeRegions(only_r2_strong, remove).status().code() == Code::kFailedPrecondition);

  v1::ChangeRegionsRequest prio;
  prio.mutable_set_priority()->set_name("r3");
  prio.mutable_set_priority()->set_priority(1);
  CHECK(ChangeRegions(g, prio).status().code() == Code::kNotFound);
  prio.mutable_set_priority()->set_name("r1");
  CHECK(ChangeRegions(g, prio).status().code() == Code::kFailedPrecondition);  // the write region stays first
  prio.mutable_set_priority()->set_name("r2");
  prio.mutable_set_priority()->set_priority(0);
  CHECK(ChangeRegions(g, prio).status().code() == Code::kInvalidArgument);
  CHECK(ChangeRegions(g, v1::ChangeRegionsRequest{}).status().code() == Code::kInvalidArgument);
}

TEST_CASE("kSetRegions: a change based on an older record is refused, the record keeps the GLSN that set it") {
  testing::TempDir dir;
  auto store = testing::OpenTestStore(dir.sub("s"), crypto::MasterKey::Generate());
  REQUIRE(!store->Regions()->has_value());
  const std::string v1_text = EncodeRegions(TwoRegions());
  REQUIRE(store->Apply(5, *store->PrepareCreateDatabase("db")).ok());
  auto set = store->Apply(6, *store->PrepareSetRegions(v1_text, storage::kNoRegionsVersion));
  REQUIRE(set.ok());
  REQUIRE(set->status.ok());
  auto rec = store->Regions();
  REQUIRE(rec.ok());
  REQUIRE(rec->has_value());
  CHECK((*rec)->json == v1_text);
  CHECK((*rec)->glsn == 2);
  // Two changes based on the same record: the second is refused, nothing lost.
  GeoConfig next = TwoRegions();
  next.regions.pop_back();
  next.strong_regions = {"r1"};
  const std::string stale_base = storage::kNoRegionsVersion.data();
  auto stale = store->Apply(7, *store->PrepareSetRegions(EncodeRegions(next), stale_base));
  REQUIRE(stale.ok());
  CHECK(stale->status.code() == Code::kFailedPrecondition);
  CHECK((*store->Regions())->json == v1_text);
  auto fresh =
      store->Apply(8, *store->PrepareSetRegions(EncodeRegions(next), storage::DocumentStore::RegionsVersion(v1_text)));
  REQUIRE(fresh.ok());
  CHECK(fresh->status.ok());
  CHECK((*store->Regions())->glsn == 4);
  // The change named what it removed: its stream ends at that change.
  GeoConfig before = TwoRegions();
  const std::string with_removal = EncodeRegions(next, &before);
  CHECK(with_removal.find("\"removed\":[\"r2\"]") != std::string::npos);
  auto removal = store->Apply(
      9, *store->PrepareSetRegions(with_removal, storage::DocumentStore::RegionsVersion(EncodeRegions(next))));
  REQUIRE(removal.ok());
  REQUIRE(removal->status.ok());
  CHECK((*store->Regions())->removed == std::map<std::string, uint64_t>{{"r2", 5}});
  // Added back: its removal point is forgotten.
  const std::string back = EncodeRegions(TwoRegions(), &next);
  REQUIRE(store->Apply(10, *store->PrepareSetRegions(back, storage::DocumentStore::RegionsVersion(with_removal)))
              ->status.ok());
  CHECK((*store->Regions())->removed.empty());
  CHECK(*storage::DocumentStore::RegionNames(back) == std::set<std::string>{"r1", "r2"});
  CHECK(!storage::IsAccountCommand(storage::WriteCommand::Kind::kInstallRegionImage));
  CHECK(storage::IsAccountCommand(storage::WriteCommand::Kind::kSetRegions));
}

TEST_CASE("failover change: the target goes first at the next epoch, recorded, and the record round-trips it") {
  GeoConfig g = TwoRegions();
  g.regions.push_back({"r3", 2, {"127.0.3.1:7101"}, {"127.0.3.1:7100"}, 0});
  NormalizeGeo(g);
  v1::ChangeRegionsRequest to3;
  to3.set_failover_to("r3");
  auto moved = ChangeRegions(g, to3);
  REQUIRE(moved.ok());
  CHECK(moved->write_region == "r3");
  CHECK(moved->epoch == 2);
  REQUIRE(moved->regions.size() == 3);
  CHECK(moved->regions[0].name == "r3");
  CHECK(moved->regions[0].priority == 0);
  CHECK(moved->regions[1].name == "r1");  // the old write region is next in line
  CHECK(moved->regions[2].name == "r2");
  CHECK(moved->last_failover.from == "r1");
  CHECK(moved->last_failover.to == "r3");
  CHECK(moved->last_failover.epoch == 2);
  CHECK(moved->last_failover.reason.find("manual") != std::string::npos);
  CHECK(moved->last_failover.at_unix_ms > 0);
  // The record keeps all of it; a record from before failover existed
  // means the configuration's write region at epoch 1.
  auto decoded = DecodeRegions(EncodeRegions(*moved), g);
  REQUIRE(decoded.ok());
  CHECK(decoded->write_region == "r3");
  CHECK(decoded->epoch == 2);
  CHECK(decoded->regions[0].name == "r3");
  CHECK(decoded->last_failover.from == "r1");
  CHECK(decoded->last_failover.at_unix_ms == moved->last_failover.at_unix_ms);
  const auto writer = storage::DocumentStore::RegionsWriterOf(EncodeRegions(*moved));
  CHECK(writer.write == "r3");
  CHECK(writer.epoch == 2);
  auto old_format = DecodeRegions(R"({"regions":[{"name":"r1","priority":0,"peers":["127.0.1.1:7101"],
      "endpoints":["127.0.1.1:7100"]}],"strong":["r1"]})",
                                  g);
  REQUIRE(old_format.ok());
  CHECK(old_format->write_region == "r1");
  CHECK(old_format->epoch == 1);
  CHECK(storage::DocumentStore::RegionsWriterOf("{}").epoch == 1);
  // Refused: the write region itself, an unknown region; a record naming a
  // write region it does not have, or epoch 0.
  v1::ChangeRegionsRequest to1;
  to1.set_failover_to("r1");
  CHECK(ChangeRegions(g, to1).status().code() == Code::kFailedPrecondition);
  v1::ChangeRegionsRequest to9;
  to9.set_failover_to("r9");
  CHECK(ChangeRegions(g, to9).status().code() == Code::kNotFound);
  std::string bad = EncodeRegions(*moved);
  bad.replace(bad.find("\"write\":\"r3\""), 12, "\"write\":\"r9\"");
  CHECK(DecodeRegions(bad, g).status().code() == Code::kInvalidArgument);
  std::string zero = EncodeRegions(*moved);
  zero.replace(zero.find("\"epoch\":2"), 9, "\"epoch\":0");
  CHECK(DecodeRegions(zero, g).status().code() == Code::kInvalidArgument);
}

TEST_CASE(
    "epoch fence: a write stamped with an ended epoch is refused and takes no GLSN, the epoch survives a "
    "reopen and never goes back") {
  testing::TempDir dir;
  const auto key = crypto::MasterKey::Generate();
  auto store = testing::OpenTestStore(dir.sub("s"), key);
  CHECK(store->write_epoch() == 1);
  auto stamped = [&](uint64_t epoch) {
    auto c = store->PrepareCreateDatabase("db" + std::to_string(store->applied_index()));
    REQUIRE(c.ok());
    c->geo_epoch = epoch;
    // The stamp survives the log: a local command (GLSN 0) with an epoch.
    auto decoded = storage::WriteCommand::Decode(c->Encode());
    REQUIRE(decoded.ok());
    CHECK(decoded->geo_epoch == epoch);
    CHECK(decoded->geo_glsn == 0);
    return *decoded;
  };
  REQUIRE(store->Apply(1, stamped(1))->status.ok());
  CHECK(store->geo_position().glsn == 1);
  const std::string v1_text = EncodeRegions(TwoRegions());
  auto first = store->PrepareSetRegions(v1_text, storage::kNoRegionsVersion);
  first->geo_epoch = 1;
  REQUIRE(store->Apply(2, *first)->status.ok());
  CHECK(store->write_epoch() == 1);
  CHECK(!store->EpochStartOf(2)->has_value());

  // A failover to r2 at GLSN 3, raft index 3: epoch 2 begins there.
  v1::ChangeRegionsRequest to2;
  to2.set_failover_to("r2");
  auto moved = ChangeRegions(TwoRegions(), to2);
  REQUIRE(moved.ok());
  const std::string v2_text = EncodeRegions(*moved);
  auto change = store->PrepareSetRegions(v2_text, storage::DocumentStore::RegionsVersion(v1_text));
  change->geo_epoch = 1;
  REQUIRE(store->Apply(3, *change)->status.ok());
  CHECK(store->write_epoch() == 2);
  auto start = store->EpochStartOf(2);
  REQUIRE(start.ok());
  REQUIRE(start->has_value());
  CHECK((*start)->glsn == 3);
  CHECK((*start)->index == 3);

  // After it: writes of the old epoch, or of a region that knew it was not
  // the write region, are refused and take no GLSN.
  for (uint64_t stale : {uint64_t{1}, storage::kNotWriterEpoch}) {
    auto refused = store->Apply(store->applied_index() + 1, stamped(stale));
    REQUIRE(refused.ok());
    CHECK(refused->status.code() == Code::kFailedPrecondition);
    CHECK(refused->status.message().find("does not take writes") != std::string::npos);
    CHECK(store->geo_position().glsn == 3);
  }
  auto ok = store->Apply(store->applied_index() + 1, stamped(2));
  REQUIRE(ok.ok());
  CHECK(ok->status.ok());
  CHECK(store->geo_position().glsn == 4);
  CHECK(store->geo_position().epoch == 2);
  // Unstamped (no geo-replication): never fenced.
  CHECK(store->Apply(store->applied_index() + 1, stamped(0))->status.ok());
  CHECK(store->geo_position().glsn == 5);

  // A record naming an older epoch is refused.
  GeoConfig back = *moved;
  back.epoch = 1;
  auto regress =
      store->Apply(store->applied_index() + 1,
                   *store->PrepareSetRegions(EncodeRegions(back), storage::DocumentStore::RegionsVersion(v2_text)));
  REQUIRE(regress.ok());
  CHECK(regress->status.code() == Code::kFailedPrecondition);
  CHECK(store->write_epoch() == 2);

  // A record no region stamped (the control group's store) may jump epochs
  // (the group started on an account at epoch 4, or missed a failover) ...
  GeoConfig ahead = *moved;
  ahead.epoch = 4;
  auto jumped =
      store->Apply(store->applied_index() + 1,
                   *store->PrepareSetRegions(EncodeRegions(ahead), storage::DocumentStore::RegionsVersion(v2_text)));
  REQUIRE(jumped.ok());
  CHECK(jumped->status.ok());
  CHECK(store->write_epoch() == 4);
  // ... but never go back.
  auto back_again = store->Apply(
      store->applied_index() + 1,
      *store->PrepareSetRegions(EncodeRegions(*moved), storage::DocumentStore::RegionsVersion(EncodeRegions(ahead))));
  REQUIRE(back_again.ok());
  CHECK(back_again->status.code() == Code::kFailedPrecondition);
  CHECK(store->write_epoch() == 4);
  // Reopened: the epoch and where it began are still there.
  const uint64_t applied = store->applied_index();
  store.reset();
  store = testing::OpenTestStore(dir.sub("s"), key);
  CHECK(store->applied_index() == applied);
  CHECK(store->write_epoch() == 4);
  CHECK((*store->EpochStartOf(2))->glsn == 3);
  CHECK(store->Apply(applied + 1, stamped(1))->status.code() == Code::kFailedPrecondition);
}

TEST_CASE(
    "takeover: a region named by the control group proposes the record at the next epoch: only that command, "
    "only one epoch ahead") {
  testing::TempDir dir;
  const auto key = crypto::MasterKey::Generate();
  auto store = testing::OpenTestStore(dir.sub("s"), key);
  const std::string v1_text = EncodeRegions(TwoRegions());
  auto first = store->PrepareSetRegions(v1_text, storage::kNoRegionsVersion);
  first->geo_epoch = 1;
  REQUIRE(store->Apply(1, *first)->status.ok());
  // The read region r2 (stamping kNotWriterEpoch) is refused as ever ...
  auto db = store->PrepareCreateDatabase("db");
  db->geo_epoch = storage::kNotWriterEpoch;
  CHECK(store->Apply(2, *db)->status.code() == Code::kFailedPrecondition);
  // ... and so is anything but the record at epoch 2, even stamped 2.
  db->geo_epoch = 2;
  CHECK(store->Apply(3, *db)->status.code() == Code::kFailedPrecondition);
  v1::ChangeRegionsRequest to2;
  to2.set_failover_to("r2");
  auto moved = ChangeRegions(TwoRegions(), to2);
  REQUIRE(moved.ok());
  GeoConfig jump = *moved;
  jump.epoch = 3;
  auto too_far = store->PrepareSetRegions(EncodeRegions(jump), storage::DocumentStore::RegionsVersion(v1_text));
  too_far->geo_epoch = 3;
  CHECK(store->Apply(4, *too_far)->status.code() == Code::kFailedPrecondition);
  // A record naming epoch 2 stamped with another epoch is no takeover either.
  const std::string v2_text = EncodeRegions(*moved);
  auto mismatched = store->PrepareSetRegions(v2_text, storage::DocumentStore::RegionsVersion(v1_text));
  mismatched->geo_epoch = 3;
  CHECK(store->Apply(5, *mismatched)->status.code() == Code::kFailedPrecondition);
  CHECK(store->write_epoch() == 1);
  CHECK(store->geo_position().glsn == 1);
  // The takeover: the record at epoch 2, stamped 2. It is GLSN 2, epoch 2
  // begins there, and the old epoch's stamps are refused after it.
  auto takeover = store->PrepareSetRegions(v2_text, storage::DocumentStore::RegionsVersion(v1_text));
  takeover->geo_epoch = 2;
  REQUIRE(store->Apply(6, *takeover)->status.ok());
  CHECK(store->write_epoch() == 2);
  CHECK(store->geo_position().glsn == 2);
  CHECK(store->geo_position().epoch == 2);
  CHECK((*store->EpochStartOf(2))->glsn == 2);
  db->geo_epoch = 1;
  CHECK(store->Apply(7, *db)->status.code() == Code::kFailedPrecondition);
  db->geo_epoch = 2;
  CHECK(store->Apply(8, *db)->status.ok());
  CHECK(store->geo_position().glsn == 3);
}

TEST_CASE("control group: automatic failover needs three fault domains, none with a majority") {
  auto voters = [](std::vector<std::string> domains) {
    std::vector<ControlVoter> out;
    for (size_t i = 0; i < domains.size(); ++i) {
      out.push_back({i + 1, domains[i], "127.0.0." + std::to_string(i + 1) + ":7102"});
    }
    return out;
  };
  CHECK(AutomaticFailoverOff(voters({"r1", "r2", "witness"})).empty());
  CHECK(AutomaticFailoverOff(voters({"r1", "r2", "r3"})).empty());
  CHECK(AutomaticFailoverOff(voters({"r1", "r2", "r3", "r3", "r3"})).find("holds 3 of the 5") != std::string::npos);
  CHECK(AutomaticFailoverOff(voters({"r1", "r2"})).find("2 fault domains (r1, r2)") != std::string::npos);
  CHECK(AutomaticFailoverOff(voters({"r1", "r1", "r2", "r2"})).find("2 fault domains") != std::string::npos);
  CHECK(AutomaticFailoverOff({}).find("no control group") != std::string::npos);
}

TEST_CASE("control group: promotion picks the first healthy region in priority order that keeps the promise") {
  GeoConfig g;
  g.regions = {{"r1", 0, {"127.0.1.1:7101"}, {"127.0.1.1:7100"}, 0},
               {"r2", 1, {"127.0.2.1:7101"}, {"127.0.2.1:7100"}, 0},
               {"r3", 2, {"127.0.3.1:7101"}, {"127.0.3.1:7100"}, 0}};
  g.strong_regions = {"r1", "r3"};
  NormalizeGeo(g);
  g.bounded_max_writes = 100;
  const auto now = std::chrono::steady_clock::now();
  auto heard = [&](int ms_ago, uint64_t lag, bool listed = true, uint64_t epoch = 1) {
    RegionHealth h;
    h.heard = now - std::chrono::milliseconds(ms_ago);
    h.report.set_lag_writes(lag);
    h.report.set_strong_member(listed);
    h.report.set_epoch(epoch);
    return h;
  };
  std::map<std::string, RegionHealth> health = {{"r2", heard(100, 500)}, {"r3", heard(100, 5)}};
  // Priority first: r2 under the levels that promise no recency.
  CHECK(ChoosePromotion(g, ConsistencyLevel::kSession, health, {}, now).region == "r2");
  CHECK(ChoosePromotion(g, ConsistencyLevel::kEventual, health, {}, now).region == "r2");
  // Strong: only a member of the quorum set (the record's, or as the write
  // region last reported it).
  CHECK(ChoosePromotion(g, ConsistencyLevel::kStrong, health, {}, now).region == "r3");
  CHECK(ChoosePromotion(g, ConsistencyLevel::kStrong, health, {"r1", "r2"}, now).region == "r2");
  // BoundedStaleness: r2 is 500 writes behind, over K = 100.
  auto bounded = ChoosePromotion(g, ConsistencyLevel::kBoundedStaleness, health, {}, now);
  CHECK(bounded.region == "r3");
  // Strong also needs the candidate's own word that it is listed in the set.
  health["r3"] = heard(100, 5, /*listed=*/false);
  CHECK(ChoosePromotion(g, ConsistencyLevel::kStrong, health, {}, now).region.empty());
  CHECK(ChoosePromotion(g, ConsistencyLevel::kStrong, health, {}, now).why_none.find("r3: not in the strong") !=
        std::string::npos);
  // A region that has not applied the record in force (an older epoch) lacks
  // writes of the current write region: never promoted.
  health["r2"] = heard(100, 0, true, /*epoch=*/0);
  health["r3"] = heard(100, 0);
  CHECK(ChoosePromotion(g, ConsistencyLevel::kSession, health, {}, now).region == "r3");
  // Not heard from lately: not healthy.
  health["r2"] = heard(5000, 0);
  CHECK(ChoosePromotion(g, ConsistencyLevel::kSession, health, {}, now).region == "r3");
  health["r3"] = heard(4000, 0);
  auto none = ChoosePromotion(g, ConsistencyLevel::kSession, health, {}, now);
  CHECK(none.region.empty());
  CHECK(none.why_none.find("r2: not heard from lately") != std::string::npos);
  CHECK(none.why_none.find("r3: not heard from lately") != std::string::npos);
  // The write region itself is never chosen.
  health["r1"] = heard(0, 0);
  CHECK(ChoosePromotion(g, ConsistencyLevel::kSession, health, {}, now).region.empty());

  // Geo-fences: never a region outside one, whether the write region said
  // so (the regions inside every fence) or the region itself did.
  health = {{"r2", heard(100, 0)}, {"r3", heard(100, 0)}};
  const std::vector<std::string> inside = {"r1", "r3"};
  CHECK(ChoosePromotion(g, ConsistencyLevel::kSession, health, {}, now, &inside).region == "r3");
  const std::vector<std::string> only_writer = {"r1"};
  auto fenced = ChoosePromotion(g, ConsistencyLevel::kSession, health, {}, now, &only_writer);
  CHECK(fenced.region.empty());
  CHECK(fenced.why_none.find("r2: outside a geo-fence") != std::string::npos);
  health["r2"].report.set_fenced_out(true);
  CHECK(ChoosePromotion(g, ConsistencyLevel::kSession, health, {}, now).region == "r3");
}

TEST_CASE("geo-fences: the write region inside every fence, and a fence's regions first in failover priority") {
  GeoConfig g;
  g.regions = {{"r1", 0, {"127.0.1.1:7101"}, {"127.0.1.1:7100"}, 0},
               {"r2", 1, {"127.0.2.1:7101"}, {"127.0.2.1:7100"}, 0},
               {"r3", 2, {"127.0.3.1:7101"}, {"127.0.3.1:7100"}, 0}};
  g.strong_regions = {"r1"};
  NormalizeGeo(g);
  using storage::GeoFence;
  CHECK(CheckFences(g, {}).ok());
  CHECK(CheckFences(g, {GeoFence{"dbs/d", "r1"}, GeoFence{"dbs/d/colls/c", "r1,r2"}}).ok());
  CHECK(CheckFences(g, {GeoFence{"dbs/d", "r1,r2,r3"}}).ok());
  // A removed region's name does not count.
  CHECK(CheckFences(g, {GeoFence{"dbs/d", "r1,r2,r9"}}).ok());
  auto no_writer = CheckFences(g, {GeoFence{"dbs/d", "r2,r3"}});
  CHECK(no_writer.code() == Code::kFailedPrecondition);
  CHECK(no_writer.message().find("write region r1 would be outside the geo-fence of dbs/d (r2,r3)") !=
        std::string::npos);
  auto skipped = CheckFences(g, {GeoFence{"dbs/d/colls/c", "r1,r3"}});
  CHECK(skipped.code() == Code::kFailedPrecondition);
  CHECK(skipped.message().find("region r2, outside the geo-fence of dbs/d/colls/c (r1,r3), would come before r3") !=
        std::string::npos);

  CHECK(FenceWriters(g, {}).empty());
  CHECK(FenceWriters(g, {GeoFence{"a", "r1,r2,r3"}, GeoFence{"b", "r1,r2"}}) == std::vector<std::string>{"r1", "r2"});

  // What a change would do, checked before it is made: a failover out of
  // the fence, and a priority that puts an outside region first.
  v1::ChangeRegionsRequest to_r3;
  to_r3.set_failover_to("r3");
  auto moved = ChangeRegions(g, to_r3);
  REQUIRE(moved.ok());
  CHECK(CheckFences(*moved, {GeoFence{"c", "r1,r2"}}).code() == Code::kFailedPrecondition);
  v1::ChangeRegionsRequest r3_first;
  r3_first.mutable_set_priority()->set_name("r3");
  r3_first.mutable_set_priority()->set_priority(1);
  auto reordered = ChangeRegions(g, r3_first);
  REQUIRE(reordered.ok());
  CHECK(CheckFences(*reordered, {GeoFence{"c", "r1,r2"}}).code() == Code::kFailedPrecondition);
  CHECK(CheckFences(*reordered, {GeoFence{"c", "r1,r3"}}).ok());
}

TEST_CASE("conflict feed records: a change's GLSN and the conflict round trip, malformed ones are refused") {
  storage::ChangeRecord c;
  c.lsn = 7;
  c.op = storage::ChangeOp::kPutItem;
  c.database = "db";
  c.container = "c";
  c.container_rid = std::string(8, '\x01');
  c.partition_key = "\"t\"";
  c.item_id = "a1";
  c.etag = "\"e\"";
  c.ts = 1795946717;
  c.sealed_value = "sealed";
  // Without a GLSN (before geo-replication) the encoding is the old one.
  const std::string old_form = c.Encode();
  auto back = storage::ChangeRecord::Decode(7, old_form);
  REQUIRE(back.ok());
  CHECK(back->glsn == 0);
  c.glsn = 42;
  auto with = storage::ChangeRecord::Decode(7, c.Encode());
  REQUIRE(with.ok());
  CHECK(with->glsn == 42);
  CHECK(with->item_id == "a1");
  CHECK(c.Encode().size() == old_form.size() + 8);
  CHECK_FALSE(storage::ChangeRecord::Decode(7, c.Encode() + "x").ok());

  storage::ConflictRecord r;
  r.epoch = 3;
  r.captured_unix_ms = 1234;
  r.change = c;
  auto decoded = storage::ConflictRecord::Decode(r.Encode());
  REQUIRE(decoded.ok());
  CHECK(decoded->epoch == 3);
  CHECK(decoded->captured_unix_ms == 1234);
  CHECK(decoded->change.lsn == 7);
  CHECK(decoded->change.glsn == 42);
  CHECK(decoded->change.sealed_value == "sealed");
  CHECK_FALSE(storage::ConflictRecord::Decode("").ok());
  CHECK_FALSE(storage::ConflictRecord::Decode(r.Encode().substr(0, 10)).ok());
  // Keys of one container sort apart from a container whose name extends it.
  CHECK(storage::ConflictPrefix("db", "c").rfind(std::string(storage::kConflictMetaPrefix), 0) == 0);
  CHECK(storage::ConflictPrefix("db", "c") != storage::ConflictPrefix("db", "c2").substr(0, 15));
}
