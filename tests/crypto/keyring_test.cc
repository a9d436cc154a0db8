// Proves the keyring creates, rotates, persists and re-wraps data keys, and
// that a key record loads only under its own container and master key.
#include <catch2/catch.hpp>

#include "crypto/keyring.h"

using namespace bulwark;
using namespace bulwark::crypto;

namespace {
// A round trip through the persistent encoding, as the store does it.
WrappedDataKey Persist(const WrappedDataKey& r) {
  auto back = WrappedDataKey::DecodeValue(r.container_rid, r.version, r.EncodeValue());
  REQUIRE(back.ok());
  return std::move(back).value();
}
}  // namespace

TEST_CASE("Keyring: create and rotate, every version stays usable", "[crypto][keyring]") {
  Keyring ring(MasterKey::Generate());
  auto v1 = ring.CreateDataKey("c1", 100);
  REQUIRE(v1.ok());
  CHECK(v1->version == 1);
  CHECK(ring.CreateDataKey("c1", 100).status().code() == Code::kAlreadyExists);
  auto v2 = ring.RotateDataKey("c1", 200);
  REQUIRE(v2.ok());
  CHECK(v2->version == 2);
  CHECK(ring.Current("c1")->version == 2);
  REQUIRE(ring.Find("c1", 1) != nullptr);
  CHECK_FALSE(ring.Find("c1", 1)->key.Equals(ring.Find("c1", 2)->key));
  CHECK(ring.Versions("c1") == std::vector<uint32_t>{1, 2});
  CHECK(ring.Current("c2") == nullptr);
  CHECK(ring.RotateDataKey("c2", 1).status().code() == Code::kNotFound);
}

TEST_CASE("Keyring: records reload into a new ring with the same master key", "[crypto][keyring]") {
  const MasterKey master = MasterKey::Generate();
  Keyring a(master.Clone());
  auto rec = a.CreateDataKey("c1", 100);
  REQUIRE(rec.ok());
  Keyring b(master.Clone());
  REQUIRE(b.Load(Persist(*rec)).ok());
  CHECK(b.Current("c1")->key.Equals(a.Current("c1")->key));
  CHECK(b.Current("c1")->created_unix_s == 100);
}

TEST_CASE("Keyring: a record does not load under another container or master key", "[crypto][keyring]") {
  const MasterKey master = MasterKey::Generate();
  Keyring a(master.Clone());
  auto rec = a.CreateDataKey("c1", 1);
  REQUIRE(rec.ok());
  WrappedDataKey moved = *rec;
  moved.container_rid = "c2";
  Keyring b(master.Clone());
  CHECK(b.Load(moved).code() == Code::kCorruption);
  WrappedDataKey other_version = *rec;
  other_version.version = 5;
  CHECK(b.Load(other_version).code() == Code::kCorruption);
  Keyring c(MasterKey::Generate());
  CHECK(c.Load(*rec).code() == Code::kFailedPrecondition);
  CHECK(WrappedDataKey::DecodeValue("c1", 1, "\x01garbage").status().code() == Code::kCorruption);
  CHECK(WrappedDataKey::DecodeValue("c1", 1, "").status().code() == Code::kCorruption);
}

TEST_CASE("Keyring: master-key rotation re-wraps every version", "[crypto][keyring]") {
  Keyring ring(MasterKey::Generate());
  REQUIRE(ring.CreateDataKey("c1", 1).ok());
  REQUIRE(ring.RotateDataKey("c1", 2).ok());
  REQUIRE(ring.CreateDataKey("c2", 3).ok());
  const MasterKey next = MasterKey::Generate();
  const auto records = ring.RewrapAll(next, 10);
  REQUIRE(records.size() == 3);
  CHECK(ring.master_key_id() != next.id());  // nothing changes before the commit
  ring.CommitMasterKey(next.Clone());
  CHECK(ring.master_key_id() == next.id());

  Keyring fresh(next.Clone());  // only the new key
  for (const auto& r : records) {
    CHECK(r.master_key_id == next.id());
    REQUIRE(fresh.Load(Persist(r)).ok());
  }
  CHECK(fresh.Find("c1", 1)->key.Equals(ring.Find("c1", 1)->key));
  CHECK(fresh.Find("c1", 2)->created_unix_s == 2);  // creation time survives the re-wrap
}
