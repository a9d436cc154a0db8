#include "chaos/check/guarantees.h"

#include <algorithm>
#include <map>
#include <unordered_map>
#include <unordered_set>

#include "chaos/check/write_index.h"

namespace bulwark::chaos::check {
namespace {

// How many missing writes one finding names (the count is in its text).
constexpr size_t kMaxOpsPerFinding = 8;

bool IsOkRead(const Operation& op) { return op.f == "read" && op.outcome == EventType::kOk; }

std::unordered_set<std::string> ElementSet(const Operation& read, Workload workload) {
  std::unordered_set<std::string> out;
  for (const auto& v : WriteIndex::ReadElements(read, workload)) out.insert(v.dump());
  return out;
}

// Ops in each session, by invoke time.
std::map<int64_t, std::vector<size_t>> BySession(const std::vector<Operation>& ops) {
  std::map<int64_t, std::vector<size_t>> out;
  for (const Operation& op : ops) out[op.session].push_back(op.id);
  for (auto& [session, ids] : out) {
    std::stable_sort(ids.begin(), ids.end(), [&](size_t a, size_t b) { return ops[a].invoke_ns < ops[b].invoke_ns; });
  }
  return out;
}

Verdict Named(const std::string& checker) {
  Verdict v;
  v.checker = checker;
  return v;
}

// A register check that needs unique values cannot decide an ambiguous history.
bool Ambiguous(const WriteIndex& index, Workload workload, Verdict* v) {
  if (index.ambiguous_keys().empty()) return false;
  v->outcome = Outcome::kUnknown;
  v->summary = "unknown: a value was written twice to key " + index.ambiguous_keys().front() +
               ", so reads cannot be traced to writes";
  (void)workload;
  return true;
}

void Summarize(Verdict* v, const std::string& what) {
  if (v->outcome == Outcome::kValid) {
    v->summary = what;
  } else if (v->outcome == Outcome::kInvalid) {
    v->summary = std::to_string(v->findings.size() + v->findings_dropped) + " violations";
  }
}

// The acknowledged writes of `key` (WriteIndex::Acknowledged) that had taken
// effect before `read` was invoked and that it does not show, oldest first.
std::vector<size_t> MissedWrites(const std::vector<Operation>& ops, const WriteIndex& index, const Operation& read,
                                 Workload workload) {
  std::vector<size_t> missed;
  auto it = index.writes_by_key().find(read.key);
  if (it == index.writes_by_key().end()) return missed;
  if (workload == Workload::kRegister) {
    const int64_t src = index.Source(read.key, read.output);
    if (src == kNoSuchWrite) return missed;  // CheckValuesRead reports it
    for (size_t w : it->second) {
      if (!index.Acknowledged(w) || index.EffectiveComplete(w) >= read.invoke_ns || static_cast<int64_t>(w) == src)
        continue;
      if (src == kInitialValue || index.KnownBefore(static_cast<size_t>(src), w)) missed.push_back(w);
    }
  } else {
    const auto seen = ElementSet(read, workload);
    for (size_t w : it->second) {
      const Operation& op = ops[w];
      if (!index.Acknowledged(w) || index.EffectiveComplete(w) >= read.invoke_ns) continue;
      if (!seen.count(WriteIndex::Written(op).dump())) missed.push_back(w);
    }
  }
  std::sort(missed.begin(), missed.end(),
            [&](size_t a, size_t b) { return index.EffectiveComplete(a) < index.EffectiveComplete(b); });
  return missed;
}

std::vector<size_t> WithOps(std::vector<size_t> head, const std::vector<size_t>& more) {
  for (size_t i = 0; i < more.size() && i < kMaxOpsPerFinding; ++i) head.push_back(more[i]);
  return head;
}

// The newest sources a session has read of one register: the one with the
// highest GLSN and the one invoked last. A read's source is known to come
// before some earlier read's source (KnownBefore: a lower GLSN, or it had
// taken effect before the other was invoked) exactly when it is known to
// come before one of these two, so checking against them checks against
// every earlier read, not only the last one.
struct ReadFrontier {
  std::optional<size_t> glsn_read, glsn_src;      // the read, and the write it showed
  std::optional<size_t> invoke_read, invoke_src;  // likewise
};

void SessionRead(const std::vector<Operation>& ops, const WriteIndex& index, Workload workload, const Operation& read,
                 const std::map<std::string, std::vector<size_t>>& own_writes, std::map<std::string, size_t>* last_read,
                 std::map<std::string, ReadFrontier>* frontiers, Verdict* ryw, Verdict* mr) {
  const std::string& key = read.key;
  // Read-your-writes: the session's own writes that completed before this read.
  std::vector<size_t> own;
  if (auto it = own_writes.find(key); it != own_writes.end()) {
    for (size_t w : it->second) {
      if (ops[w].complete_ns < read.invoke_ns) own.push_back(w);
    }
  }
  if (workload == Workload::kRegister) {
    const int64_t src = index.Source(key, read.output);
    if (src != kNoSuchWrite && !own.empty()) {
      const size_t mine = own.back();
      if (src == kInitialValue || (static_cast<size_t>(src) != mine && index.KnownBefore(src, mine))) {
        std::vector<size_t> involved{read.id, mine};
        if (src >= 0) involved.push_back(src);
        ryw->Add({"session " + std::to_string(read.session) + " read " + read.output.dump() + " from key " + key +
                      " after its own write of " + WriteIndex::Written(ops[mine]).dump(),
                  involved});
      }
    }
    if (src != kNoSuchWrite) {
      ReadFrontier& fr = (*frontiers)[key];
      std::optional<size_t> newer_read, newer_src;  // an earlier read of a write known to follow src
      if (src == kInitialValue) {
        newer_read = fr.invoke_read;  // every write follows the register's initial absence
        newer_src = fr.invoke_src;
      } else {
        const auto s = static_cast<size_t>(src);
        if (fr.glsn_src && *fr.glsn_src != s && ops[s].glsn && *ops[s].glsn < *ops[*fr.glsn_src].glsn) {
          newer_read = fr.glsn_read;
          newer_src = fr.glsn_src;
        } else if (fr.invoke_src && *fr.invoke_src != s && index.EffectiveComplete(s) < ops[*fr.invoke_src].invoke_ns) {
          newer_read = fr.invoke_read;
          newer_src = fr.invoke_src;
        }
        if (ops[s].glsn && (!fr.glsn_src || *ops[*fr.glsn_src].glsn < *ops[s].glsn)) {
          fr.glsn_read = read.id;
          fr.glsn_src = s;
        }
        if (!fr.invoke_src || ops[*fr.invoke_src].invoke_ns < ops[s].invoke_ns) {
          fr.invoke_read = read.id;
          fr.invoke_src = s;
        }
      }
      if (newer_read) {
        std::vector<size_t> involved{read.id, *newer_read, *newer_src};
        if (src >= 0) involved.push_back(static_cast<size_t>(src));
        mr->Add({"session " + std::to_string(read.session) + " read " + read.output.dump() + " from key " + key +
                     " after it had read the newer " + ops[*newer_read].output.dump(),
                 involved});
      }
    }
  } else {
    const auto seen = ElementSet(read, workload);
    std::vector<size_t> missing;
    for (size_t w : own) {
      if (!seen.count(WriteIndex::Written(ops[w]).dump())) missing.push_back(w);
    }
    if (!missing.empty()) {
      ryw->Add({"session " + std::to_string(read.session) + "'s read of " + key + " misses " +
                    std::to_string(missing.size()) + " of its own acknowledged writes",
                WithOps({read.id}, missing)});
    }
    if (auto it = last_read->find(key); it != last_read->end()) {
      const Operation& prev = ops[it->second];
      const auto before = WriteIndex::ReadElements(prev, workload);
      const auto now = WriteIndex::ReadElements(read, workload);
      bool regressed = false;
      if (workload == Workload::kAppend) {
        // A list only grows at its end: the earlier read must be a prefix.
        regressed = before.size() > now.size() || !std::equal(before.begin(), before.end(), now.begin());
      } else {
        for (const auto& e : before) regressed = regressed || !seen.count(e.dump());
      }
      if (regressed) {
        mr->Add({"session " + std::to_string(read.session) + "'s read of " + key +
                     " lost elements an earlier read of the session showed",
                 {read.id, prev.id}});
      }
    }
  }
  (*last_read)[key] = read.id;
}

}  // namespace

Verdict CheckValuesRead(const std::vector<Operation>& ops, Workload workload) {
  Verdict v = Named("values-read");
  WriteIndex index(ops, workload);
  size_t reads = 0;
  for (const Operation& op : ops) {
    if (!IsOkRead(op)) continue;
    ++reads;
    if (workload != Workload::kRegister && !op.output.is_array()) {
      v.Add({"a " + std::string(WorkloadName(workload)) + " read must return an array", {op.id}});
      continue;
    }
    std::unordered_set<std::string> seen;
    for (const auto& value : WriteIndex::ReadElements(op, workload)) {
      if (!seen.insert(value.dump()).second) {
        v.Add({"read of " + op.key + " shows " + value.dump() + " twice", {op.id}});
      }
      const int64_t src = index.Source(op.key, value);
      // A read cannot show a write that was invoked only after it returned.
      if (src >= 0 && ops[static_cast<size_t>(src)].invoke_ns > op.complete_ns) {
        v.Add({"read of " + op.key + " shows " + value.dump() + ", written only after the read returned",
               {op.id, static_cast<size_t>(src)}});
      }
      if (src != kNoSuchWrite) continue;
      const int64_t failed = index.FailedSource(op.key, value);
      if (failed >= 0) {
        v.Add({"read of " + op.key + " shows " + value.dump() + ", whose write failed", {op.id, size_t(failed)}});
      } else {
        v.Add({"read of " + op.key + " shows " + value.dump() + ", which no operation wrote", {op.id}});
      }
    }
  }
  Summarize(&v, std::to_string(reads) + " reads return only written values");
  return v;
}

std::vector<Verdict> CheckSession(const std::vector<Operation>& ops, Workload workload) {
  Verdict ryw = Named("read-your-writes");
  Verdict mr = Named("monotonic-reads");
  Verdict mw = Named("monotonic-writes");
  WriteIndex index(ops, workload);
  if (workload == Workload::kRegister && Ambiguous(index, workload, &ryw)) {
    mr.outcome = mw.outcome = Outcome::kUnknown;
    mr.summary = mw.summary = ryw.summary;
    return {ryw, mr, mw};
  }
  const auto sessions = BySession(ops);
  size_t with_glsn = 0;
  size_t writes = 0;
  size_t reads = 0;
  for (const auto& [session, ids] : sessions) {
    std::map<std::string, std::vector<size_t>> own_writes;
    std::map<std::string, size_t> last_read;
    std::map<std::string, ReadFrontier> frontiers;
    std::optional<size_t> newest_glsn_write;  // this session's write with the highest GLSN so far
    for (size_t id : ids) {
      const Operation& op = ops[id];
      if (WriteIndex::IsWrite(op) && op.outcome == EventType::kOk) {
        ++writes;
        own_writes[op.key].push_back(id);
        if (op.glsn) {
          ++with_glsn;
          if (newest_glsn_write &&
              ops[*newest_glsn_write].complete_ns<op.invoke_ns&& * ops[*newest_glsn_write].glsn> * op.glsn) {
            mw.Add({"session " + std::to_string(session) + "'s write took effect (GLSN " + std::to_string(*op.glsn) +
                        ") before its earlier write (GLSN " + std::to_string(*ops[*newest_glsn_write].glsn) + ")",
                    {id, *newest_glsn_write}});
          }
          if (!newest_glsn_write || *ops[*newest_glsn_write].glsn < *op.glsn) newest_glsn_write = id;
        }
      } else if (IsOkRead(op)) {
        ++reads;
        SessionRead(ops, index, workload, op, own_writes, &last_read, &frontiers, &ryw, &mr);
      }
    }
  }
  // The counts say how much was checked: a run whose reads mostly failed
  // is valid with little evidence, and should look it.
  const std::string n = std::to_string(sessions.size()) + " sessions";
  const std::string with_reads =
      n + " (" + std::to_string(reads) + " ok reads, " + std::to_string(writes) + " ok writes)";
  Summarize(&ryw, with_reads + " read their own writes");
  Summarize(&mr, with_reads + " read monotonically");
  Summarize(&mw, with_glsn == writes ? n + " write monotonically (by GLSN)"
                                     : n + ": " + std::to_string(writes - with_glsn) +
                                           " writes without a GLSN are covered by monotonic-reads only");
  return {ryw, mr, mw};
}

Verdict CheckBoundedStaleness(const std::vector<Operation>& ops, Workload workload, StalenessBound bound) {
  const bool strict = bound.max_versions == 0 && bound.max_lag_ns == 0;
  Verdict v = Named(strict ? "stale-read" : "bounded-staleness");
  WriteIndex index(ops, workload);
  if (workload == Workload::kRegister && Ambiguous(index, workload, &v)) return v;
  size_t reads = 0;
  for (const Operation& read : ops) {
    if (!IsOkRead(read)) continue;
    ++reads;
    const std::vector<size_t> missed = MissedWrites(ops, index, read, workload);
    if (missed.empty()) continue;
    const int64_t lag_ns = read.invoke_ns - index.EffectiveComplete(missed.front());
    if (missed.size() <= bound.max_versions && lag_ns <= bound.max_lag_ns) continue;
    v.Add({"read of " + read.key + " misses " + std::to_string(missed.size()) + " acknowledged writes (bound K=" +
               std::to_string(bound.max_versions) + "), the oldest acknowledged " + std::to_string(lag_ns / 1'000'000) +
               " ms before the read began (bound T=" + std::to_string(bound.max_lag_ns / 1'000'000) + " ms)",
           WithOps({read.id}, missed)});
  }
  Summarize(&v, std::to_string(reads) + " reads within K=" + std::to_string(bound.max_versions) +
                    " writes, T=" + std::to_string(bound.max_lag_ns / 1'000'000) + " ms");
  return v;
}

Verdict CheckConsistentPrefix(const std::vector<Operation>& ops, Workload workload) {
  Verdict v = Named("consistent-prefix");
  if (workload == Workload::kRegister) {
    v.summary = "a single register's reads are always prefixes; see values-read";
    return v;
  }
  WriteIndex index(ops, workload);
  std::map<std::string, size_t> longest;  // key -> the read with the longest list (append)
  size_t reads = 0;
  for (const Operation& read : ops) {
    if (!IsOkRead(read)) continue;
    ++reads;
    const auto elements = WriteIndex::ReadElements(read, workload);
    // The newest write the read shows, by GLSN and by invoke time.
    std::optional<size_t> top_glsn, top_invoke;
    for (const auto& e : elements) {
      const int64_t src = index.Source(read.key, e);
      if (src < 0) continue;
      const Operation& w = ops[src];
      if (w.glsn && (!top_glsn || *ops[*top_glsn].glsn < *w.glsn)) top_glsn = src;
      if (!top_invoke || ops[*top_invoke].invoke_ns < w.invoke_ns) top_invoke = src;
    }
    std::vector<size_t> gaps;
    std::optional<size_t> witness;
    const auto seen = ElementSet(read, workload);
    auto it = index.writes_by_key().find(read.key);
    if (it != index.writes_by_key().end()) {
      for (size_t w : it->second) {
        const Operation& b = ops[w];
        if (!index.Acknowledged(w) || seen.count(WriteIndex::Written(b).dump())) continue;
        if (top_glsn && b.glsn && *b.glsn < *ops[*top_glsn].glsn) {
          gaps.push_back(w);
          witness = top_glsn;
        } else if (top_invoke && index.EffectiveComplete(w) < ops[*top_invoke].invoke_ns) {
          gaps.push_back(w);
          witness = top_invoke;
        }
      }
    }
    if (!gaps.empty()) {
      v.Add({"read of " + read.key + " shows " + WriteIndex::Written(ops[*witness]).dump() + " but misses " +
                 std::to_string(gaps.size()) + " acknowledged writes ordered before it",
             WithOps({read.id, *witness}, gaps)});
    }
    if (workload != Workload::kAppend) continue;
    // A list shows its elements in the write order: none after one that is
    // known to have come later. Tracking the newest earlier element (by GLSN
    // and by invoke) finds such a pair in one pass.
    std::optional<size_t> prefix_glsn, prefix_invoke;
    for (const auto& e : elements) {
      const int64_t src = index.Source(read.key, e);
      if (src < 0) continue;
      const Operation& w = ops[src];
      std::optional<size_t> later;
      if (w.glsn && prefix_glsn && *w.glsn < *ops[*prefix_glsn].glsn) later = prefix_glsn;
      if (prefix_invoke && index.EffectiveComplete(static_cast<size_t>(src)) < ops[*prefix_invoke].invoke_ns)
        later = prefix_invoke;
      if (later) {
        v.Add({"read of " + read.key + " lists " + WriteIndex::Written(w).dump() + " after " +
                   WriteIndex::Written(ops[*later]).dump() + ", which was written after it",
               {read.id, static_cast<size_t>(src), *later}});
        break;
      }
      if (w.glsn && (!prefix_glsn || *ops[*prefix_glsn].glsn < *w.glsn)) prefix_glsn = src;
      if (!prefix_invoke || ops[*prefix_invoke].invoke_ns < w.invoke_ns) prefix_invoke = src;
    }
    // Every read of a list shows a prefix of one order.
    auto [slot, inserted] = longest.try_emplace(read.key, read.id);
    if (inserted) continue;
    const auto other = WriteIndex::ReadElements(ops[slot->second], workload);
    const size_t common = std::min(other.size(), elements.size());
    if (!std::equal(elements.begin(), elements.begin() + common, other.begin())) {
      v.Add({"reads of " + read.key + " show its elements in different orders", {read.id, slot->second}});
    } else if (elements.size() > other.size()) {
      slot->second = read.id;
    }
  }
  Summarize(&v, std::to_string(reads) + " reads show prefixes of the write order");
  return v;
}

namespace {

// The last-invoked ok read of each key (only Strong ones if `strong_only`):
// after healing the harness reads every key at Strong, so this is that
// final read.
std::map<std::string, size_t> FinalReads(const std::vector<Operation>& ops, bool strong_only) {
  std::map<std::string, size_t> out;
  for (const Operation& op : ops) {
    if (!IsOkRead(op) || (strong_only && op.consistency != "Strong")) continue;
    auto [it, inserted] = out.try_emplace(op.key, op.id);
    if (!inserted && ops[it->second].invoke_ns < op.invoke_ns) it->second = op.id;
  }
  return out;
}

// A register's overwrites hide a lost write from the set-style check; the
// loss shows instead as the final value going back: the final read must not
// miss an acknowledged write that had taken effect before it began.
Verdict CheckRegisterLostWrites(const std::vector<Operation>& ops) {
  Verdict v = Named("lost-writes");
  WriteIndex index(ops, Workload::kRegister);
  if (Ambiguous(index, Workload::kRegister, &v)) return v;
  const auto final_read = FinalReads(ops, /*strong_only=*/true);
  size_t checked = 0;
  std::string unread;
  for (const auto& [key, writes] : index.writes_by_key()) {
    auto fr = final_read.find(key);
    if (fr == final_read.end()) {
      unread = key;
      continue;
    }
    ++checked;
    const Operation& last = ops[fr->second];
    const std::vector<size_t> missed = MissedWrites(ops, index, last, Workload::kRegister);
    if (!missed.empty()) {
      v.Add({"the final read of " + key + " shows " + last.output.dump() + ", older than " +
                 std::to_string(missed.size()) + " acknowledged writes: they were lost",
             WithOps({last.id}, missed)});
    }
  }
  if (checked == 0) {
    const bool tried = std::any_of(ops.begin(), ops.end(), [](const Operation& op) {
      return op.f == "read" && op.consistency == "Strong" && op.outcome != EventType::kOk;
    });
    if (tried) {
      v.outcome = Outcome::kUnknown;
      v.summary = "unknown: no Strong read of a written register succeeded";
    } else {
      v.summary = "not checked: no register was read at Strong (a history from before the final register reads)";
    }
    return v;
  }
  if (!unread.empty() && v.outcome == Outcome::kValid) {
    v.outcome = Outcome::kUnknown;
    v.summary = "unknown: key " + unread + " was written but never read at Strong";
    return v;
  }
  Summarize(&v, "the final reads of " + std::to_string(checked) + " registers show their last acknowledged writes");
  return v;
}

}  // namespace

Verdict CheckLostWrites(const std::vector<Operation>& ops, Workload workload) {
  if (workload == Workload::kRegister) return CheckRegisterLostWrites(ops);
  Verdict v = Named("lost-writes");
  WriteIndex index(ops, workload);
  const auto final_read = FinalReads(ops, /*strong_only=*/false);
  size_t acknowledged = 0;
  size_t shown = 0;      // of those, writes whose outcome was unknown that an earlier read showed
  size_t recovered = 0;  // writes whose outcome was unknown that the final read shows
  for (const auto& [key, writes] : index.writes_by_key()) {
    auto fr = final_read.find(key);
    if (fr == final_read.end()) {
      if (v.outcome == Outcome::kValid) {
        v.outcome = Outcome::kUnknown;
        v.summary = "unknown: key " + key + " was written but never read";
      }
      continue;
    }
    const Operation& last = ops[fr->second];
    const auto seen = ElementSet(last, workload);
    for (size_t w : writes) {
      const Operation& op = ops[w];
      const bool present = seen.count(WriteIndex::Written(op).dump()) > 0;
      const bool ok = op.outcome == EventType::kOk;
      if (!ok && present) ++recovered;
      // Not acknowledged (nor shown by any read), or concurrent with the final read.
      if (!index.Acknowledged(w) || index.EffectiveComplete(w) >= last.invoke_ns) continue;
      ++acknowledged;
      if (!ok) ++shown;
      if (!present) {
        v.Add({std::string(ok ? "acknowledged " : "unacknowledged but already read ") + op.f + " of " +
                   WriteIndex::Written(op).dump() + " to " + key + " is missing from the final read",
               {w, last.id}});
      }
    }
  }
  if (v.outcome != Outcome::kUnknown) {
    Summarize(&v, std::to_string(acknowledged) + " acknowledged writes (" + std::to_string(shown) +
                      " of them unacknowledged but read) all present in the final reads (" + std::to_string(recovered) +
                      " writes of unknown outcome present)");
  }
  if (v.outcome == Outcome::kInvalid) {
    v.summary = std::to_string(v.findings.size() + v.findings_dropped) + " of " + std::to_string(acknowledged) +
                " acknowledged writes lost";
  }
  return v;
}

}  // namespace bulwark::chaos::check
