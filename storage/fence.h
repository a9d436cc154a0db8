#pragma once
// Geo-fences (docs/geo-fencing.md): a database or container pinned to a set
// of regions. Its items, data keys, change-log records and stream entries
// stay in those regions; a region outside the set receives, at each of its
// commands' stream positions, a placeholder (FencedOutPlaceholder) that
// carries the position, the fence and the container's internal id, and no
// name or data.
//
// The textual form, carried by WriteCommand::fence and stored in the
// "f/fence/<rid hex>" records: region names, sorted, comma-separated; empty
// means "not fenced".
//
// Thread safety: pure functions.

#include <string>
#include <string_view>
#include <vector>

namespace bulwark::storage {

struct WriteCommand;

// One live fence, as DocumentStore::Fences lists it.
struct GeoFence {
  std::string
      resource;  // "dbs/<db>" or "dbs/<db>/colls/<c>"; "a fenced container (rid <hex>)" where only the record is here
  std::string regions;  // the fence (JoinFence form)
};

// Sorted, without duplicates or empty names.
std::string JoinFence(std::vector<std::string> regions);
std::vector<std::string> SplitFence(std::string_view fence);
// True if `region` may hold what `fence` covers (an empty fence: any region).
bool FenceAllows(std::string_view fence, std::string_view region);
// True if every region of `inner` is in `outer` (an empty `outer` holds all).
bool FenceWithin(std::string_view inner, std::string_view outer);

// The placeholder a region outside cmd.fence applies instead of `cmd`
// (WriteCommand::Kind::kFencedOut): the same kind of stream position (GLSN,
// epoch, source index, proposal time and request id, so it takes the GLSN
// `cmd` takes and deduplicates a retry alike), the
// fence, and for the fence records (storage/records.h, kFenceMetaPrefix) the
// rids `cmd` creates ("create:<hex>") or drops ("drop:<hex>,<hex>..") in
// `setting`. Nothing else: no names, ids, keys or sealed values.
WriteCommand FencedOutPlaceholder(const WriteCommand& cmd);

// The rids a fence-record `setting` lists after its "create:"/"drop:" verb
// (hex); empty for any other text.
std::vector<std::string> FenceRecordRids(std::string_view setting, std::string_view verb);

}  // namespace bulwark::storage
