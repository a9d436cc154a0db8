#pragma once
// The account's regions as replicated state: once changed online
// (`bulwark region add|remove`), the topology is a record in the store
// (storage kSetRegions, applied in every region in GLSN order) rather than
// each node's geo.regions configuration. This module is the record's JSON
// form and the changes' rules (docs/geo-replication.md, "Adding and
// removing regions").
//
// Thread safety: pure functions.

#include <string>
#include <string_view>
#include <vector>

#include "bulwark/v1/admin.pb.h"
#include "common/status.h"
#include "server/config.h"
#include "storage/fence.h"

namespace bulwark::server {

// {"regions":[{"name","priority","peers":[..],"endpoints":[..]}],"strong":[..],
// "removed":[..],"write":W,"epoch":E[,"last_failover":{..}]} in priority
// order; "removed" names the regions of `before` (the topology changed)
// that `geo` no longer has: the store records where their stream ends. The
// write region and epoch move with a failover; every other geo.* setting
// stays configuration.
std::string EncodeRegions(const GeoConfig& geo, const GeoConfig* before = nullptr);
// `geo` with its regions and strong set replaced by the record's (a
// region's test-only link delay is kept by name), normalized and
// validated. InvalidArgument for a malformed or invalid record.
Result<GeoConfig> DecodeRegions(std::string_view record, const GeoConfig& geo);

// The topology after a change, validated. Add: InvalidArgument for a bad
// name, address or priority, AlreadyExists for a known region (by name or by
// any peer address). Remove: NotFound for an unknown region,
// FailedPrecondition for the write region or the last region of the strong
// set. A priority change (`set_priority`) moves a region in the order. A
// failover (`failover_to`) makes that region the write region, first in the
// order, at the next epoch, and records it as last_failover: NotFound for an
// unknown region, FailedPrecondition for the write region itself.
Result<GeoConfig> ChangeRegions(const GeoConfig& current, const v1::ChangeRegionsRequest& change);

// Geo-fences against a topology (docs/geo-fencing.md): the write region
// must be inside every fence, and in failover priority order every region
// of a fence must come before every region outside it, so that the writes
// only ever move inside the fence. FailedPrecondition naming the first
// fence `geo` breaks and what would mend it. Fence names that are not
// regions of `geo` (a region since removed) are ignored.
Status CheckFences(const GeoConfig& geo, const std::vector<storage::GeoFence>& fences);
// The regions inside every fence, in priority order (the regions the writes
// may move to); empty when there is no fence.
std::vector<std::string> FenceWriters(const GeoConfig& geo, const std::vector<storage::GeoFence>& fences);

}  // namespace bulwark::server
