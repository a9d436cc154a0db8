// The regions record and online changes (server/regions.h): the record
// round-trips, a malformed or invalid one is refused, and each change is
// checked: names, addresses, duplicates, the write region, the strong set,
// priorities. Plus the store's side (kSetRegions): a change based on an
// older record is refused, and the record carries the GLSN that set it.
#include <catch2/catch.hpp>

#include "server/regions.h"
#include "storage/document_store.h"
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
