#include "storage/archive.h"

#include <algorithm>
#include <chrono>
#include <cinttypes>
#include <cstdio>
#include <filesystem>

#include <spdlog/spdlog.h>
#include <nlohmann/json.hpp>

#include "common/clock.h"
#include "common/coding.h"
#include "storage/commands.h"
#include "storage/document_store.h"
#include "storage/sealed_dir.h"

namespace bulwark::storage {
namespace {

namespace fs = std::filesystem;
using nlohmann::json;

constexpr std::string_view kWhat = "archive segment";
constexpr size_t kIdDigits = 20;

std::string SegmentId(uint64_t first, uint64_t last) {
  char buf[64];
  std::snprintf(buf, sizeof(buf), "l-%020" PRIu64 "-%020" PRIu64, first, last);
  return buf;
}

bool ValidSegmentId(const std::string& id) {
  if (id.size() != 2 + kIdDigits + 1 + kIdDigits || id.rfind("l-", 0) != 0 || id[2 + kIdDigits] != '-') return false;
  for (size_t i = 2; i < id.size(); ++i) {
    if (i != 2 + kIdDigits && !std::isdigit(static_cast<unsigned char>(id[i]))) return false;
  }
  return true;
}

fs::path ArchivePath(const std::string& location) { return fs::path(location) / kArchiveDir; }

Result<ArchiveSegment> SegmentFrom(const sealed::Manifest& m) {
  ArchiveSegment s;
  s.id = m.id;
  s.created_unix_ms = m.created_unix_ms;
  s.bytes = m.bytes;
  s.master_key_id = m.master_key_id;
  try {
    s.first_index = m.fields.at("first_index").get<uint64_t>();
    s.last_index = m.fields.at("last_index").get<uint64_t>();
    s.commands = m.fields.at("commands").get<uint64_t>();
    s.first_unix_ms = m.fields.at("first_unix_ms").get<int64_t>();
    s.last_unix_ms = m.fields.at("last_unix_ms").get<int64_t>();
  } catch (const json::exception& e) {
    return Status::Corruption("archive segment " + m.id + ": its manifest is missing a field: " + e.what());
  }
  if (s.id != SegmentId(s.first_index, s.last_index) || s.first_index > s.last_index) {
    return Status::Corruption("archive segment " + m.id + ": its manifest names other indexes");
  }
  return s;
}

// Reads a segment, authenticating it whole before handing out any command:
// a replay never applies part of a segment that turns out to be damaged.
Status ReadSegment(const std::string& location, const ArchiveSegment& seg, const crypto::MasterKey& master,
                   std::vector<ArchivedCommand>* out) {
  const fs::path dir = ArchivePath(location) / seg.id;
  BULWARK_ASSIGN_OR_RETURN(sealed::Manifest m, sealed::ReadManifest(dir, kWhat));
  std::string buffer;
  out->clear();
  uint64_t last = 0;
  auto parse = [&]() -> Status {
    std::string_view in(buffer);
    for (;;) {
      std::string_view rest = in;
      uint64_t index = 0;
      std::string_view bytes;
      if (!GetFixed64(rest, index) || !GetLengthPrefixed(rest, bytes, kMaxSegmentBytes)) break;
      if (index < seg.first_index || index > seg.last_index || index <= last) {
        return Status::Corruption("archive segment " + seg.id + " holds raft index " + std::to_string(index) +
                                  " out of order or outside its range");
      }
      last = index;
      out->push_back({index, std::string(bytes)});
      in = rest;
    }
    if (in.size() > kMaxSegmentBytes + 12) return Status::Corruption("archive segment " + seg.id + " is malformed");
    buffer.erase(0, buffer.size() - in.size());
    return Status::Ok();
  };
  BULWARK_RETURN_IF_ERROR(sealed::ReadData(dir, m, master, kWhat, [&](std::string_view chunk) {
    buffer.append(chunk);
    return parse();
  }));
  if (!buffer.empty()) return Status::Corruption("archive segment " + seg.id + " ends inside a command");
  if (out->size() != seg.commands) {
    return Status::Corruption("archive segment " + seg.id + " holds " + std::to_string(out->size()) +
                              " commands; its manifest says " + std::to_string(seg.commands));
  }
  return Status::Ok();
}

// The segment that continues the archive after raft index `pos` (the one
// reaching furthest, if several overlap), or null.
const ArchiveSegment* Next(const std::vector<ArchiveSegment>& segments, uint64_t pos) {
  const ArchiveSegment* best = nullptr;
  for (const auto& s : segments) {
    if (s.first_index <= pos + 1 && s.last_index > pos && (!best || s.last_index > best->last_index)) best = &s;
  }
  return best;
}

// Follows the archive from `pos` as far as it is contiguous: returns the
// last index reached and the newest creation time among the segments that
// reach it (0 if no segment continues `pos`).
std::pair<uint64_t, int64_t> ChainEnd(const std::vector<ArchiveSegment>& segments, uint64_t pos) {
  int64_t created = 0;
  while (const ArchiveSegment* s = Next(segments, pos)) pos = s->last_index;
  for (const auto& s : segments) {
    if (s.last_index == pos) created = std::max(created, s.created_unix_ms);
  }
  return {pos, created};
}

}  // namespace

Result<ArchiveSegment> WriteArchiveSegment(const std::string& location, const crypto::MasterKey& master,
                                           uint64_t first_index, uint64_t last_index,
                                           const std::vector<ArchivedCommand>& commands) {
  if (first_index == 0 || first_index > last_index) {
    return Status::InvalidArgument("an archive segment needs 0 < first index <= last index");
  }
  int64_t first_ms = 0, last_ms = 0;
  uint64_t prev = 0;
  for (const ArchivedCommand& c : commands) {
    if (c.index < first_index || c.index > last_index || c.index <= prev) {
      return Status::InvalidArgument("archive segment commands must be in index order inside its range");
    }
    prev = c.index;
    auto cmd = WriteCommand::Decode(c.command);
    if (!cmd.ok()) return Status(cmd.status()).WithContext("archiving raft index " + std::to_string(c.index));
    cmd->WipeKey();
    if (first_ms == 0) first_ms = cmd->proposed_unix_ms;
    last_ms = cmd->proposed_unix_ms;
  }
  const std::string id = SegmentId(first_index, last_index);
  const fs::path dir = ArchivePath(location);
  // Archived already (by this node before a restart, or by another that also
  // believed it led: committed entries are the same everywhere).
  std::error_code ec;
  if (fs::exists(dir / id, ec)) {
    BULWARK_ASSIGN_OR_RETURN(sealed::Manifest m, sealed::ReadManifest(dir / id, kWhat));
    return SegmentFrom(m);
  }
  auto produce = [&](const sealed::ChunkSink& push) -> Status {
    std::string buffer;
    for (const ArchivedCommand& c : commands) {
      PutFixed64(buffer, c.index);
      PutLengthPrefixed(buffer, c.command);
      while (buffer.size() >= sealed::kChunkBytes) {
        BULWARK_RETURN_IF_ERROR(push(std::string_view(buffer).substr(0, sealed::kChunkBytes)));
        buffer.erase(0, sealed::kChunkBytes);
      }
    }
    if (!buffer.empty()) BULWARK_RETURN_IF_ERROR(push(buffer));
    return Status::Ok();
  };
  auto fields = [&] {
    return json{{"first_index", first_index},
                {"last_index", last_index},
                {"commands", commands.size()},
                {"first_unix_ms", first_ms},
                {"last_unix_ms", last_ms}};
  };
  BULWARK_ASSIGN_OR_RETURN(sealed::Manifest m, sealed::Write(dir.string(), id, master, kWhat, produce, fields));
  return SegmentFrom(m);
}

Result<std::vector<ArchiveSegment>> ListArchive(const std::string& location) {
  std::vector<ArchiveSegment> out;
  const fs::path dir = ArchivePath(location);
  std::error_code ec;
  if (!fs::exists(dir, ec)) return out;
  for (const auto& entry : fs::directory_iterator(dir, ec)) {
    const std::string name = entry.path().filename().string();
    if (!entry.is_directory() || !ValidSegmentId(name)) continue;  // .partial, or not ours
    auto m = sealed::ReadManifest(entry.path(), kWhat);
    auto s = m.ok() ? SegmentFrom(*m) : Result<ArchiveSegment>(m.status());
    if (!s.ok()) {
      // Left out (a restore that needs it finds a hole and says so); one
      // damaged segment must not stop archiving, pruning or shredding.
      spdlog::warn("event=archive_segment_unreadable dir={} error=\"{}\"", entry.path().string(),
                   s.status().ToString());
      continue;
    }
    out.push_back(std::move(s).value());
  }
  if (ec) return Status::IOError("cannot list " + dir.string() + ": " + ec.message());
  std::sort(out.begin(), out.end(), [](const ArchiveSegment& a, const ArchiveSegment& b) { return a.id < b.id; });
  return out;
}

namespace {
// By directory name (which carries the range), so a segment whose manifest
// cannot be read is removed too.
Result<size_t> RemoveSegments(const std::string& location, const std::function<bool(uint64_t, uint64_t)>& remove) {
  const fs::path dir = ArchivePath(location);
  std::error_code ec;
  if (!fs::exists(dir, ec)) return size_t{0};
  std::vector<fs::path> doomed;
  for (const auto& entry : fs::directory_iterator(dir, ec)) {
    const std::string name = entry.path().filename().string();
    if (!entry.is_directory() || !ValidSegmentId(name)) continue;
    const uint64_t first = std::stoull(name.substr(2, kIdDigits));
    const uint64_t last = std::stoull(name.substr(3 + kIdDigits));
    if (remove(first, last)) doomed.push_back(entry.path());
  }
  if (ec) return Status::IOError("cannot list " + dir.string() + ": " + ec.message());
  for (const auto& path : doomed) {
    fs::remove_all(path, ec);
    if (ec) return Status::IOError("cannot remove archive segment " + path.string() + ": " + ec.message());
  }
  return doomed.size();
}
}  // namespace

Result<size_t> PruneArchiveBefore(const std::string& location, uint64_t index) {
  return RemoveSegments(location, [&](uint64_t, uint64_t last) { return last < index; });
}

Result<size_t> ForgetArchiveThrough(const std::string& location, uint64_t purge_index) {
  return RemoveSegments(location, [&](uint64_t first, uint64_t) { return purge_index == 0 || first <= purge_index; });
}

Result<size_t> RewrapArchive(const std::string& location, const crypto::MasterKey& old_master,
                             const crypto::MasterKey& new_master) {
  BULWARK_ASSIGN_OR_RETURN(auto all, ListArchive(location));
  std::vector<fs::path> dirs;
  for (const auto& s : all) dirs.push_back(ArchivePath(location) / s.id);
  return sealed::RewrapAll(dirs, kWhat, old_master, new_master);
}

Status CopyArchiveSegment(const std::string& from_location, const std::string& to_location,
                          const std::string& segment_id) {
  if (!ValidSegmentId(segment_id)) return Status::InvalidArgument("'" + segment_id + "' is not a segment id");
  return sealed::Copy(ArchivePath(from_location).string(), ArchivePath(to_location).string(), segment_id);
}

Result<ArchiveCheck> VerifyArchive(const std::string& location, const crypto::MasterKey& master) {
  BULWARK_ASSIGN_OR_RETURN(auto segments, ListArchive(location));
  BULWARK_ASSIGN_OR_RETURN(auto backups, ListBackups(location));
  ArchiveCheck check;
  std::vector<ArchivedCommand> commands;
  for (const auto& seg : segments) {
    BULWARK_RETURN_IF_ERROR(ReadSegment(location, seg, master, &commands));
    for (const ArchivedCommand& c : commands) {
      auto cmd = WriteCommand::Decode(c.command);
      if (!cmd.ok()) {
        return Status::Corruption("archive segment " + seg.id + ": raft index " + std::to_string(c.index) +
                                  " is not a command");
      }
      cmd->WipeKey();
    }
    ++check.segments;
    check.commands += commands.size();
    check.first_index = check.first_index == 0 ? seg.first_index : std::min(check.first_index, seg.first_index);
    check.last_index = std::max(check.last_index, seg.last_index);
  }
  if (segments.empty()) return check;
  uint64_t pos = backups.empty() ? check.first_index - 1 : backups.front().applied_index;
  for (;;) {
    pos = ChainEnd(segments, pos).first;
    const ArchiveSegment* after = nullptr;
    for (const auto& seg : segments) {
      if (seg.first_index > pos + 1 && (!after || seg.first_index < after->first_index)) after = &seg;
    }
    if (!after) break;
    check.holes.push_back("after raft index " + std::to_string(pos) + " (the next segment starts at " +
                          std::to_string(after->first_index) + ")");
    pos = after->first_index - 1;
  }
  return check;
}

Result<std::optional<RestoreWindow>> RestorableWindow(const std::string& location) {
  BULWARK_ASSIGN_OR_RETURN(auto backups, ListBackups(location));
  if (backups.empty()) return std::optional<RestoreWindow>();
  BULWARK_ASSIGN_OR_RETURN(auto segments, ListArchive(location));
  RestoreWindow w;
  w.from_unix_ms = backups.front().image_unix_ms;
  const BackupInfo& newest = backups.back();
  const auto [end, created] = ChainEnd(segments, newest.applied_index);
  w.to_unix_ms =
      end > newest.applied_index ? std::max(newest.image_unix_ms, created - kArchiveSettleMs) : newest.image_unix_ms;
  return std::optional<RestoreWindow>(w);
}

Result<PointInTimeResult> RestoreToTime(const std::string& location, const crypto::MasterKey& master,
                                        const PointInTimeRequest& request, const std::string& target,
                                        const RestoreProgress& progress) {
  const int64_t t = request.to_unix_ms;
  if (t <= 0) return Status::InvalidArgument("a point-in-time restore needs a time");
  if (request.database.empty() && !request.container.empty()) {
    return Status::InvalidArgument("a container to restore needs its database");
  }
  std::error_code ec;
  if (fs::exists(target, ec)) {
    return Status::InvalidArgument("restore target " + target + " exists: restore only into a new directory");
  }
  BULWARK_ASSIGN_OR_RETURN(auto backups, ListBackups(location));
  const BackupInfo* base = nullptr;
  for (const auto& b : backups) {
    if (b.image_unix_ms <= t) base = &b;
  }
  if (!base) {
    return Status::FailedPrecondition(
        "no backup in " + location + " was taken before " + FormatUnixMillis(t) +
        (backups.empty()
             ? std::string(" (there are none)")
             : " (the oldest restores to " + FormatUnixMillis(backups.front().image_unix_ms) + " or later)"));
  }
  BULWARK_ASSIGN_OR_RETURN(auto segments, ListArchive(location));
  // Decided before anything is written: is `t` covered from this backup on?
  const auto [chain_end, chain_created] = ChainEnd(segments, base->applied_index);
  bool later_command_known = false;  // a command after `t` lies in the chain: it ends the replay
  for (const auto& s : segments) {
    if (s.first_index <= chain_end && s.last_index > base->applied_index && s.commands > 0 && s.last_unix_ms > t) {
      later_command_known = true;
    }
  }
  if (!later_command_known && t > base->image_unix_ms && t > chain_created - kArchiveSettleMs) {
    std::string why;
    if (chain_end == base->applied_index) {
      why = "the archive does not continue backup " + base->id + " yet (continuous backup off, or not archived yet)";
      for (const auto& s : segments) {
        if (s.first_index > chain_end + 1) {
          why = "the archive has a hole after raft index " + std::to_string(chain_end) +
                " (the next segment starts at " + std::to_string(s.first_index) + ")";
          break;
        }
      }
    } else {
      why = "the archive continuing backup " + base->id + " vouches for writes up to " +
            FormatUnixMillis(chain_created - kArchiveSettleMs) + " only";
    }
    return Status::FailedPrecondition("cannot restore to " + FormatUnixMillis(t) + ": " + why);
  }

  if (progress) progress("restoring backup " + base->id + " (raft index " + std::to_string(base->applied_index) + ")");
  BULWARK_ASSIGN_OR_RETURN(BackupInfo restored, RestoreBackup(location, base->id, master, target));
  PointInTimeResult result;
  result.base = restored;
  auto replay = [&]() -> Status {
    StoreOptions options;
    options.path = target;
    // One fsync at the end (SyncWal below) instead of one per command: a
    // restore that fails part-way is removed anyway.
    options.sync_writes = false;
    BULWARK_ASSIGN_OR_RETURN(auto store, DocumentStore::Open(options, master.Clone()));
    uint64_t pos = store->applied_index();
    if (pos != base->applied_index) {
      return Status::Corruption("backup " + base->id + " restored to raft index " + std::to_string(pos) +
                                "; its manifest says " + std::to_string(base->applied_index));
    }
    bool done = false;
    std::vector<ArchivedCommand> commands;
    while (!done) {
      const ArchiveSegment* seg = Next(segments, pos);
      if (!seg) break;
      BULWARK_RETURN_IF_ERROR(ReadSegment(location, *seg, master, &commands));
      for (ArchivedCommand& c : commands) {
        if (c.index <= pos) continue;
        auto cmd = WriteCommand::Decode(c.command);
        if (!cmd.ok())
          return Status::Corruption("archive segment " + seg->id + ": raft index " + std::to_string(c.index) +
                                    " is not a command");
        if (cmd->proposed_unix_ms > t) {
          done = true;
          break;
        }
        const int64_t proposed = cmd->proposed_unix_ms;
        BULWARK_ASSIGN_OR_RETURN(ApplyOutcome outcome, store->Apply(c.index, std::move(cmd).value()));
        (void)outcome;  // the command's own outcome, the same as when it first applied
        ++result.replayed;
        result.last_unix_ms = proposed;
        pos = c.index;
      }
      if (!done) pos = seg->last_index;
      if (!done && !Next(segments, pos) && pos < chain_end) {
        return Status::Corruption("the archive stopped at raft index " + std::to_string(pos) + " short of " +
                                  std::to_string(chain_end));
      }
      if (progress) {
        progress("replayed " + std::to_string(result.replayed) + " commands, through raft index " +
                 std::to_string(pos));
      }
    }
    if (!request.database.empty()) {
      BULWARK_ASSIGN_OR_RETURN(auto dbs, store->ListDatabases());
      if (std::none_of(dbs.begin(), dbs.end(), [&](const DatabaseInfo& d) { return d.id == request.database; })) {
        return Status::NotFound("database " + request.database + " did not exist at " + FormatUnixMillis(t));
      }
      for (const auto& d : dbs) {
        if (d.id != request.database) BULWARK_RETURN_IF_ERROR(store->DeleteDatabase(d.id));
      }
      if (!request.container.empty()) {
        BULWARK_ASSIGN_OR_RETURN(auto containers, store->ListContainers(request.database));
        if (std::none_of(containers.begin(), containers.end(),
                         [&](const ContainerInfo& c) { return c.id == request.container; })) {
          return Status::NotFound("container " + request.database + "/" + request.container + " did not exist at " +
                                  FormatUnixMillis(t));
        }
        for (const auto& c : containers) {
          if (c.id != request.container) BULWARK_RETURN_IF_ERROR(store->DeleteContainer(request.database, c.id));
        }
      }
    }
    result.applied_index = store->applied_index();
    result.glsn = store->geo_position().glsn;
    return store->SyncWal();
  }();
  if (!replay.ok()) {
    fs::remove_all(target, ec);
    return replay;
  }
  return result;
}

}  // namespace bulwark::storage
