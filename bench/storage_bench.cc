// storage-bench: put and get of 1 KiB documents through DocumentStore at 1
// and 16 threads, WAL sync on and off, in three configurations in the same
// run, each on a fresh store:
//   full     sealed items on page-encrypted files (what bulwarkd runs)
//   sealed   sealed items on plain files
//   plain    unsealed items on plain files
//   rocksdb  raw RocksDB, no Bulwark code: the same RocksDB options as the
//            store's item column family (copied below), key = item id,
//            value = the same 1 KiB JSON, one Put/Get per operation
// It prints ops/s, CPU time per operation (user + system of this process,
// background compaction threads included) and three ratios: item sealing
// (sealed / plain), the page layer (full / sealed) and Bulwark's engine
// against raw RocksDB (full / rocksdb), and writes the figures as JSON.
//
// Runs alternate the configurations and report the median of the repeats, so
// a noisy neighbour hurts all sides alike.
#include <algorithm>
#include <atomic>
#include <chrono>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <random>
#include <sstream>
#include <thread>
#include <vector>

#include <sys/resource.h>

#include <rocksdb/cache.h>
#include <rocksdb/db.h>
#include <rocksdb/filter_policy.h>
#include <rocksdb/table.h>
#include <CLI/CLI.hpp>

#include "crypto/master_key.h"
#include "storage/document_store.h"

namespace fs = std::filesystem;
using namespace bulwark;

namespace {

// Random reads per written item in the readrandom phase.
constexpr size_t kReadPasses = 8;

struct Config {
  size_t ops = 40'000;      // per run, sync off
  size_t sync_ops = 4'000;  // per run, sync on (fsync-bound)
  size_t value_bytes = 1024;
  int repeats = 5;
  std::vector<int> threads = {1, 16};
  std::string dir = "/tmp/bulwark-storage-bench";
  std::string json_out;
};

struct Doc {
  std::string json;
  std::string pk;  // JSON text
  std::string id;
};

std::vector<Doc> MakeDocs(size_t n, size_t value_bytes) {
  std::mt19937_64 rng(42);
  std::vector<Doc> docs;
  docs.reserve(n);
  for (size_t i = 0; i < n; ++i) {
    Doc d;
    d.id = "item-" + std::to_string(i);
    const std::string tenant = "t" + std::to_string(i % 64);
    d.pk = "\"" + tenant + "\"";
    std::string head = R"({"id":")" + d.id + R"(","tenant":")" + tenant + R"(","payload":")";
    std::string payload;
    while (head.size() + payload.size() + 2 < value_bytes) payload.push_back(static_cast<char>('a' + rng() % 26));
    d.json = head + payload + "\"}";
    docs.push_back(std::move(d));
  }
  return docs;
}

// CPU time (user + system) this process has used so far, in microseconds.
double ProcessCpuUs() {
  rusage usage{};
  getrusage(RUSAGE_SELF, &usage);
  auto us = [](const timeval& t) { return static_cast<double>(t.tv_sec) * 1e6 + static_cast<double>(t.tv_usec); };
  return us(usage.ru_utime) + us(usage.ru_stime);
}

struct Rate {
  double ops_s = 0;
  double cpu_us_per_op = 0;
};

// Runs `fn(i)` for i in [0, n) split over `threads`; returns ops/s and the
// process's CPU time per operation over the same interval.
template <typename Fn>
Rate Timed(size_t n, int threads, Fn fn) {
  std::atomic<size_t> next{0};
  const double cpu_start = ProcessCpuUs();
  const auto start = std::chrono::steady_clock::now();
  std::vector<std::thread> pool;
  for (int t = 0; t < threads; ++t) {
    pool.emplace_back([&] {
      for (size_t i = next++; i < n; i = next++) fn(i);
    });
  }
  for (auto& th : pool) th.join();
  const double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  const double cpu_us = ProcessCpuUs() - cpu_start;
  return {static_cast<double>(n) / secs, cpu_us / static_cast<double>(n)};
}

struct Figures {
  Rate put;
  Rate get_cold;  // each item once, in random order, right after a full compaction
  Rate get;       // random items, with repeats (readrandom): the block cache warms
};

struct Mode {
  const char* name;
  bool sealed;
  bool encrypt_files;
  bool raw;  // plain RocksDB, no DocumentStore
};
constexpr Mode kModes[] = {{"full", true, true, false},
                           {"sealed", true, false, false},
                           {"plain", false, false, false},
                           {"rocksdb", false, false, true}};
constexpr int kModeCount = 4;

// The options DocumentStore gives RocksDB (storage/document_store.cc:
// MakeRocksOptions and ItemsCfOptions), copied so that the raw baseline runs
// the same engine configuration. They are not exported by the storage
// library; if they change there, change them here.
constexpr size_t kStoreBlockCacheBytes = 64 * 1024 * 1024;
rocksdb::Options RawRocksOptions() {
  rocksdb::Options o;
  o.create_if_missing = true;
  o.max_background_jobs = 2;
  o.wal_recovery_mode = rocksdb::WALRecoveryMode::kTolerateCorruptedTailRecords;
  o.max_manifest_file_size = 1;
  rocksdb::BlockBasedTableOptions table;
  table.block_cache = rocksdb::NewLRUCache(kStoreBlockCacheBytes);
  table.filter_policy.reset(rocksdb::NewBloomFilterPolicy(10));
  o.table_factory.reset(rocksdb::NewBlockBasedTableFactory(table));
  return o;
}

// fillrandom / readrandom on raw RocksDB: the item id is the key, the item's
// JSON the value.
Figures RunRaw(const std::vector<Doc>& docs, const fs::path& path, bool sync, int threads, size_t n) {
  rocksdb::DB* raw = nullptr;
  const rocksdb::Status opened = rocksdb::DB::Open(RawRocksOptions(), path.string(), &raw);
  if (!opened.ok()) {
    std::cerr << "rocksdb open failed: " << opened.ToString() << "\n";
    std::exit(1);
  }
  std::unique_ptr<rocksdb::DB> db(raw);
  rocksdb::WriteOptions write;
  write.sync = sync;
  std::atomic<size_t> errors{0};
  Figures f;
  f.put = Timed(n, threads, [&](size_t i) {
    if (!db->Put(write, docs[i].id, docs[i].json).ok()) ++errors;
  });
  if (!sync) {
    if (!db->CompactRange(rocksdb::CompactRangeOptions(), nullptr, nullptr).ok()) ++errors;
    std::vector<size_t> order(n);
    for (size_t i = 0; i < n; ++i) order[i] = i;
    std::shuffle(order.begin(), order.end(), std::mt19937_64(7));
    f.get_cold = Timed(n, threads, [&](size_t i) {
      std::string value;
      if (!db->Get(rocksdb::ReadOptions(), docs[order[i]].id, &value).ok()) ++errors;
    });
    std::vector<size_t> random(n * kReadPasses);
    std::mt19937_64 pick(11);
    for (size_t& r : random) r = pick() % n;
    f.get = Timed(random.size(), threads, [&](size_t i) {
      std::string value;
      if (!db->Get(rocksdb::ReadOptions(), docs[random[i]].id, &value).ok()) ++errors;
    });
  }
  if (errors > 0) {
    std::cerr << errors << " raw RocksDB operations failed\n";
    std::exit(1);
  }
  return f;
}

Figures RunOnce(const Config& cfg, const std::vector<Doc>& docs, const Mode& mode, bool sync, int threads) {
  const fs::path path = fs::path(cfg.dir) / mode.name;
  fs::remove_all(path);
  const size_t n = sync ? std::min(cfg.sync_ops, docs.size()) : docs.size();
  if (mode.raw) {
    const Figures f = RunRaw(docs, path, sync, threads, n);
    fs::remove_all(path);
    return f;
  }
  storage::StoreOptions options;
  options.path = path.string();
  options.sync_writes = sync;
  options.seal_items = mode.sealed;
  options.encrypt_files = mode.encrypt_files;
  auto store = storage::DocumentStore::Open(options, crypto::MasterKey::Generate());
  if (!store.ok()) {
    std::cerr << "open failed: " << store.status().ToString() << "\n";
    std::exit(1);
  }
  auto& s = **store;
  (void)s.CreateDatabase("bench");
  (void)s.CreateContainer("bench", "c", "/tenant");
  std::atomic<size_t> errors{0};
  Figures f;
  f.put = Timed(n, threads, [&](size_t i) {
    if (!s.UpsertItem("bench", "c", docs[i].json).ok()) ++errors;
  });
  // Reads (sync off only: they do not fsync) come from SST files, through
  // the page layer and the block cache, not from the memtable.
  if (!sync) {
    // Reads come from SST files (through the page layer and the block cache),
    // not from the memtable.
    if (!s.Compact().ok()) ++errors;
    std::vector<size_t> order(n);
    for (size_t i = 0; i < n; ++i) order[i] = i;
    std::shuffle(order.begin(), order.end(), std::mt19937_64(7));
    f.get_cold = Timed(n, threads, [&](size_t i) {
      const Doc& d = docs[order[i]];
      if (!s.ReadItem("bench", "c", d.pk, d.id).ok()) ++errors;
    });
    // Then random reads with repeats, like db_bench's readrandom: blocks the
    // cache already holds cost no file read (and no page decryption).
    std::vector<size_t> random(n * kReadPasses);
    std::mt19937_64 pick(11);
    for (size_t& r : random) r = pick() % n;
    f.get = Timed(random.size(), threads, [&](size_t i) {
      const Doc& d = docs[random[i]];
      if (!s.ReadItem("bench", "c", d.pk, d.id).ok()) ++errors;
    });
  }
  if (errors > 0) {
    std::cerr << errors << " operations failed\n";
    std::exit(1);
  }
  store->reset();
  fs::remove_all(path);
  return f;
}

double Median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v[v.size() / 2];
}

}  // namespace

int main(int argc, char** argv) {
  Config cfg;
  CLI::App app{"Bulwark storage benchmark: sealed vs unsealed DocumentStore"};
  app.add_option("--ops", cfg.ops, "operations per run with sync off");
  app.add_option("--sync-ops", cfg.sync_ops, "operations per run with sync on");
  app.add_option("--value-bytes", cfg.value_bytes, "document size");
  app.add_option("--repeats", cfg.repeats, "runs per configuration (median reported)")->check(CLI::Range(1, 100));
  app.add_option("--threads", cfg.threads, "thread counts");
  app.add_option("--dir", cfg.dir, "scratch directory");
  app.add_option("--json", cfg.json_out, "write figures to this file");
  CLI11_PARSE(app, argc, argv);

  const auto docs = MakeDocs(cfg.ops, cfg.value_bytes);
  std::ostringstream json;
  json << "{\n  \"benchmark\": \"storage\",\n  \"value_bytes\": " << cfg.value_bytes
       << ",\n  \"repeats\": " << cfg.repeats << ",\n  \"results\": [";
  bool first = true;
  std::printf(
      "ops/s per configuration (median of %d); seal = sealed/plain (item AEAD), page = full/sealed (file\n"
      "encryption), raw = full/rocksdb (Bulwark's engine against raw RocksDB, same options), each the median\n"
      "of paired per-run ratios. cpu = CPU microseconds per operation (this process, all threads), full and\n"
      "plain. get-cold reads each item once after a full compaction; get reads random items with repeats\n"
      "(readrandom). Target for full/plain (encryption cost): >= 0.90.\n",
      cfg.repeats);
  std::printf("%-4s %-3s %-8s %9s %9s %9s %9s %6s %6s %6s %8s %8s\n", "sync", "thr", "op", "full", "sealed", "plain",
              "rocksdb", "seal", "page", "raw", "cpu-full", "cpu-plain");
  for (bool sync : {false, true}) {
    for (int threads : cfg.threads) {
      std::vector<Rate> put[kModeCount], get[kModeCount], cold[kModeCount];
      for (int r = 0; r < cfg.repeats; ++r) {
        std::fprintf(stderr, "\r  sync=%s threads=%d run %d/%d ", sync ? "on" : "off", threads, r + 1, cfg.repeats);
        for (int m = 0; m < kModeCount; ++m) {
          const Figures f = RunOnce(cfg, docs, kModes[m], sync, threads);
          put[m].push_back(f.put);
          get[m].push_back(f.get);
          cold[m].push_back(f.get_cold);
        }
      }
      std::fprintf(stderr, "\r%60s\r", "");
      // Reads do not fsync: with sync on they would only repeat the sync-off
      // reads on a store ten times smaller, in runs too short to measure.
      for (const char* op : {"put", "get", "get-cold"}) {
        if (sync && std::string(op) != "put") continue;
        auto* v = std::string(op) == "put" ? put : std::string(op) == "get" ? get : cold;
        double ops[kModeCount], cpu[kModeCount];
        for (int m = 0; m < kModeCount; ++m) {
          std::vector<double> o, c;
          for (const Rate& rate : v[m]) {
            o.push_back(rate.ops_s);
            c.push_back(rate.cpu_us_per_op);
          }
          ops[m] = Median(o);
          cpu[m] = Median(c);
        }
        // Ratios are paired: each repetition runs the modes back to back,
        // and the median of the per-repetition ratios is reported, so drift
        // of this shared machine between repetitions cancels out.
        std::vector<double> seal_r, page_r, raw_r, enc_r;
        for (int r = 0; r < cfg.repeats; ++r) {
          seal_r.push_back(v[1][r].ops_s / v[2][r].ops_s);
          page_r.push_back(v[0][r].ops_s / v[1][r].ops_s);
          raw_r.push_back(v[0][r].ops_s / v[3][r].ops_s);
          enc_r.push_back(v[0][r].ops_s / v[2][r].ops_s);
        }
        const double seal_ratio = Median(seal_r), page_ratio = Median(page_r), raw_ratio = Median(raw_r),
                     encryption_ratio = Median(enc_r);
        std::printf("%-4s %-3d %-8s %9.0f %9.0f %9.0f %9.0f %6.3f %6.3f %6.3f %8.1f %8.1f\n", sync ? "on" : "off",
                    threads, op, ops[0], ops[1], ops[2], ops[3], seal_ratio, page_ratio, raw_ratio, cpu[0], cpu[2]);
        std::fflush(stdout);
        json << (first ? "\n" : ",\n") << "    {\"sync\": " << (sync ? "true" : "false") << ", \"threads\": " << threads
             << ", \"op\": \"" << op << "\", \"ops_s_full\": " << ops[0] << ", \"ops_s_sealed\": " << ops[1]
             << ", \"ops_s_plain\": " << ops[2] << ", \"ops_s_rocksdb\": " << ops[3]
             << ", \"cpu_us_per_op_full\": " << cpu[0] << ", \"cpu_us_per_op_plain\": " << cpu[2]
             << ", \"cpu_us_per_op_rocksdb\": " << cpu[3] << ", \"seal_ratio\": " << seal_ratio
             << ", \"page_ratio\": " << page_ratio << ", \"encryption_ratio\": " << encryption_ratio
             << ", \"engine_to_rocksdb_ratio\": " << raw_ratio << "}";
        first = false;
      }
    }
  }
  json << "\n  ]\n}\n";
  fs::remove_all(cfg.dir);  // each run removed its own store; this is the parent
  if (!cfg.json_out.empty()) {
    std::ofstream(cfg.json_out) << json.str();
    std::cout << "wrote " << cfg.json_out << "\n";
  }
  return 0;
}
