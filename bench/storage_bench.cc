// storage-bench: put and get of 1 KiB documents through DocumentStore at 1
// and 16 threads, WAL sync on and off, in three configurations in the same
// run, each on a fresh store:
//   full     sealed items on page-encrypted files (what bulwarkd runs)
//   sealed   sealed items on plain files
//   plain    unsealed items on plain files
// It prints ops/s and two ratios: item sealing (sealed / plain) and the page
// layer (full / sealed), and writes the figures as JSON.
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

// Runs `fn(i)` for i in [0, n) split over `threads`; returns ops/s.
template <typename Fn>
double Timed(size_t n, int threads, Fn fn) {
  std::atomic<size_t> next{0};
  const auto start = std::chrono::steady_clock::now();
  std::vector<std::thread> pool;
  for (int t = 0; t < threads; ++t) {
    pool.emplace_back([&] {
      for (size_t i = next++; i < n; i = next++) fn(i);
    });
  }
  for (auto& th : pool) th.join();
  const double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  return static_cast<double>(n) / secs;
}

struct Figures {
  double put = 0;
  double get_cold = 0;  // each item once, in random order, right after a full compaction
  double get = 0;       // random items, with repeats (readrandom): the block cache warms
};

struct Mode {
  const char* name;
  bool sealed;
  bool encrypt_files;
};
constexpr Mode kModes[] = {{"full", true, true}, {"sealed", true, false}, {"plain", false, false}};

Figures RunOnce(const Config& cfg, const std::vector<Doc>& docs, const Mode& mode, bool sync, int threads) {
  const fs::path path = fs::path(cfg.dir) / mode.name;
  fs::remove_all(path);
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
  const size_t n = sync ? std::min(cfg.sync_ops, docs.size()) : docs.size();
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
  json << "{\n  \"benchmark\": \"storage\",\n  \"value_bytes\": " << cfg.value_bytes << ",\n  \"results\": [";
  bool first = true;
  std::printf(
      "ops/s per configuration (median of %d); seal = sealed/plain (item AEAD), page = full/sealed (file\n"
      "encryption), each the median of paired per-run ratios. get-cold reads each item once after a full\n"
      "compaction (every read misses the block cache); get reads random items with repeats (readrandom).\n"
      "Target for page: >= 0.90 (aim 0.95).\n",
      cfg.repeats);
  std::printf("%-4s %-3s %-8s %10s %10s %10s %7s %7s\n", "sync", "thr", "op", "full", "sealed", "plain", "seal",
              "page");
  for (bool sync : {false, true}) {
    for (int threads : cfg.threads) {
      std::vector<double> put[3], get[3], cold[3];
      for (int r = 0; r < cfg.repeats; ++r) {
        std::fprintf(stderr, "\r  sync=%s threads=%d run %d/%d ", sync ? "on" : "off", threads, r + 1, cfg.repeats);
        for (int m = 0; m < 3; ++m) {
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
        const double full = Median(v[0]), sealed = Median(v[1]), plain = Median(v[2]);
        // Ratios are paired: each repetition runs the three modes back to
        // back, and the median of the per-repetition ratios is reported, so
        // drift of this shared machine between repetitions cancels out.
        std::vector<double> seal_r, page_r;
        for (int r = 0; r < cfg.repeats; ++r) {
          seal_r.push_back(v[1][r] / v[2][r]);
          page_r.push_back(v[0][r] / v[1][r]);
        }
        const double seal_ratio = Median(seal_r), page_ratio = Median(page_r);
        std::printf("%-4s %-3d %-8s %10.0f %10.0f %10.0f %7.3f %7.3f\n", sync ? "on" : "off", threads, op, full, sealed,
                    plain, seal_ratio, page_ratio);
        json << (first ? "\n" : ",\n") << "    {\"sync\": " << (sync ? "true" : "false") << ", \"threads\": " << threads
             << ", \"op\": \"" << op << "\", \"ops_s_full\": " << full << ", \"ops_s_sealed\": " << sealed
             << ", \"ops_s_plain\": " << plain << ", \"seal_ratio\": " << seal_ratio
             << ", \"page_ratio\": " << page_ratio << "}";
        first = false;
      }
    }
  }
  json << "\n  ]\n}\n";
  if (!cfg.json_out.empty()) {
    std::ofstream(cfg.json_out) << json.str();
    std::cout << "wrote " << cfg.json_out << "\n";
  }
  return 0;
}
