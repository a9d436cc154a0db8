// Geo-fencing integration test (docs/geo-fencing.md): three regions of four
// real bulwarkd processes, a container pinned to r1 and r2. Its names, item
// ids, partition keys and bodies are canary strings; the nodes run
// unencrypted (--benchmark-unencrypted), so any copy of them in r3's files
// would be plain to see. The scan reads every file under each node's
// directory (store, raft log, logs, backups) byte for byte. It proves the
// fenced strings are in r1's and r2's files (the scan sees them) and in no
// file of r3, nor of r4, a region added afterwards; that a configuration
// that would let the writes leave the fence (failover, priorities, an added
// region) is refused; and that a failover inside the fence keeps the
// container writable.
#include <atomic>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <set>
#include <sstream>
#include <thread>

#include <catch2/catch.hpp>
#include <nlohmann/json.hpp>

#include "chaos/local_account.h"
#include "client/client.h"
#include "tests/server/geo_account.h"
#include "tests/test_util.h"

using namespace bulwark;
using namespace bulwark::testing;
using nlohmann::json;

namespace {

namespace fs = std::filesystem;

// How many of `needles` occur in any regular file under `dir`, each counted
// once; `where` gets the first file each was found in.
std::set<std::string> FoundIn(const fs::path& dir, const std::vector<std::string>& needles,
                              std::map<std::string, std::string>* where = nullptr) {
  std::set<std::string> found;
  std::error_code ec;
  for (auto it = fs::recursive_directory_iterator(dir, ec); it != fs::recursive_directory_iterator(); ++it) {
    if (!it->is_regular_file(ec)) continue;
    std::ifstream in(it->path(), std::ios::binary);
    std::stringstream bytes;
    bytes << in.rdbuf();
    const std::string content = bytes.str();
    for (const auto& n : needles) {
      if (content.find(n) != std::string::npos && found.insert(n).second && where != nullptr) {
        (*where)[n] = it->path().string();
      }
    }
  }
  return found;
}

bool WaitFor(const std::function<bool()>& done, std::chrono::seconds within = std::chrono::seconds(30)) {
  const auto until = std::chrono::steady_clock::now() + within;
  while (std::chrono::steady_clock::now() < until) {
    if (done()) return true;
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
  return false;
}

}  // namespace

TEST_CASE("geo-fence: a fenced container's data never reaches a region outside its fence", "[geo][fence]") {
  TestAccount t(3, "Session", {"--benchmark-unencrypted"});
  const std::vector<std::string> fenced = {"collFENCEa1", "idFENCEb2", "pkFENCEc3", "bodyFENCEd4"};
  const std::string keep = "idKEEPe5";  // an unfenced item: r3 must hold it (the scan sees r3's data)
  auto writer = t.Client(1);
  REQUIRE(writer->CreateDatabase("db").ok());
  REQUIRE(writer->CreateContainer("db", "c", "/tenant").ok());

  // Refused: a fence without the write region, one that a region outside
  // it precedes in failover priority (r2 comes before r3), an unknown region.
  auto no_writer = writer->CreateContainer("db", "x", "/tenant", {"r2", "r3"});
  CHECK(no_writer.status().code() == Code::kFailedPrecondition);
  CHECK(no_writer.status().message().find("write region r1") != std::string::npos);
  auto skips_r2 = writer->CreateContainer("db", "x", "/tenant", {"r1", "r3"});
  CHECK(skips_r2.status().code() == Code::kFailedPrecondition);
  CHECK(skips_r2.status().message().find("r2") != std::string::npos);
  CHECK(writer->CreateContainer("db", "x", "/tenant", {"r1", "nowhere"}).status().code() == Code::kInvalidArgument);

  auto created = writer->CreateContainer("db", fenced[0], "/tenant", {"r2", "r1"});
  INFO(created.status().ToString());
  REQUIRE(created.ok());
  CHECK(created->allowed_regions == std::vector<std::string>{"r1", "r2"});
  for (int i = 0; i < 40; ++i) {
    const std::string doc = R"({"id":")" + fenced[1] + std::to_string(i) + R"(","tenant":")" + fenced[2] +
                            R"(","secret":")" + fenced[3] + R"("})";
    REQUIRE(writer->UpsertItem("db", fenced[0], doc).ok());
  }
  REQUIRE(writer->RotateDataKey("db", fenced[0]).ok());  // a raw data key in the stream
  REQUIRE(writer->DeleteItem("db", fenced[0], "\"" + fenced[2] + "\"", fenced[1] + "0").ok());
  REQUIRE(writer->UpsertItem("db", "c", R"({"id":")" + keep + R"(","tenant":"t"})").ok());

  // Every region follows the stream to its head: r3 by the placeholders.
  const uint64_t head = t.Glsn(1);
  for (int r = 2; r <= 3; ++r) {
    INFO("region " << r);
    REQUIRE(t.WaitRegionAt(r, head));
  }
  const client::ReadOptions eventual{ConsistencyLevel::kEventual, ""};
  auto in_r2 = t.NodeClient(2, 1)->ReadItem("db", fenced[0], "\"" + fenced[2] + "\"", fenced[1] + "1", eventual);
  INFO(in_r2.status().ToString());
  CHECK(in_r2.ok());
  // r3 has never heard of the container (asking for it by name would tell
  // it the name: the scan below would find the request in its logs).
  auto r3_lists = t.NodeClient(3, 1)->ListContainers("db");
  REQUIRE(r3_lists.ok());
  for (const auto& c : *r3_lists) CHECK(c.id == "c");
  CHECK(t.NodeClient(3, 1)->ReadItem("db", "c", "\"t\"", keep, eventual).ok());
  auto listed = writer->ReadContainer("db", fenced[0]);
  REQUIRE(listed.ok());
  CHECK(listed->allowed_regions == std::vector<std::string>{"r1", "r2"});

  // Changes that would let the fenced writes leave r1, r2: refused.
  auto to_r3 = writer->Failover("r3");
  CHECK(to_r3.status().code() == Code::kFailedPrecondition);
  CHECK(to_r3.status().message().find("geo-fence") != std::string::npos);
  auto r3_first = writer->SetRegionPriority("r3", 1);
  CHECK(r3_first.status().code() == Code::kFailedPrecondition);
  CHECK(r3_first.status().message().find("geo-fence") != std::string::npos);

  // A region added to the account later: ahead of r2, refused; last, it is
  // brought up to date without the fenced data.
  auto r4 = t.account->AddRegion();
  INFO(r4.status().ToString());
  REQUIRE(r4.ok());
  client::RegionSpec spec = t.account->region_spec(*r4);
  spec.priority = 1;
  auto ahead = writer->AddRegion(spec);
  CHECK(ahead.status().code() == Code::kFailedPrecondition);
  CHECK(ahead.status().message().find("geo-fence") != std::string::npos);
  spec.priority = 0;  // last
  auto added = writer->AddRegion(spec);
  INFO(added.status().ToString());
  REQUIRE(added.ok());
  REQUIRE(writer->UpsertItem("db", "c", R"({"id":")" + keep + R"(-2","tenant":"t"})").ok());

  // A failover inside the fence: the container takes writes in r2.
  auto moved = writer->Failover("r2");
  INFO(moved.status().ToString());
  REQUIRE(moved.ok());
  CHECK(moved->write_region == "r2");
  bool wrote = WaitFor([&] {
    const std::string doc =
        R"({"id":")" + fenced[1] + R"(-r2","tenant":")" + fenced[2] + R"(","secret":")" + fenced[3] + R"("})";
    return writer->UpsertItem("db", fenced[0], doc).ok();
  });
  CHECK(wrote);
  const uint64_t head2 = t.Glsn(2);
  for (int r : {1, 3, 4}) {
    INFO("region " << r);
    REQUIRE(t.WaitRegionAt(r, head2));
  }
  CHECK(t.NodeClient(4, 1)->ReadItem("db", "c", "\"t\"", keep, eventual).ok());

  REQUIRE(t.account->Stop().ok());
  std::vector<std::string> needles = fenced;
  needles.push_back(keep);
  for (int r = 1; r <= 4; ++r) {
    for (int i = 1; i <= 4; ++i) {
      const fs::path node = fs::path(t.account->region(r).options().dir) / ("node-" + std::to_string(i));
      std::map<std::string, std::string> where;
      const auto found = FoundIn(node, needles, &where);
      INFO("r" << r << " node " << i);
      CHECK(found.count(keep) == 1);  // the scan reads this node's data
      // The write region sent placeholders: no receiver had to make one.
      std::ifstream log(t.account->region(r).node_log_path(i));
      const std::string text((std::istreambuf_iterator<char>(log)), std::istreambuf_iterator<char>());
      CHECK(text.find("event=fenced_entry_refused") == std::string::npos);
      for (const auto& canary : fenced) {
        INFO(canary << " in " << where[canary]);
        if (r <= 2) {
          CHECK(found.count(canary) == 1);
        } else {
          CHECK(found.count(canary) == 0);
        }
      }
    }
  }
}
