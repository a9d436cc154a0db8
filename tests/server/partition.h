#pragma once
// nftables partitions between loopback addresses, for the integration tests.
#include <unistd.h>

#include <cstdio>
#include <string>
#include <vector>

#include <catch2/catch.hpp>

namespace bulwark::testing {

// nftables rules that cut chosen loopback addresses off from each other, in
// a table of this test process's own; removed on destruction. Requires root
// and the nftables package (scripts/install-deps installs it).
class Partition {
 public:
  Partition() : table_("bulwark_test_" + std::to_string(getpid())) {
    Run("add table inet " + table_ + "\n" + "add chain inet " + table_ +
        " input { type filter hook input priority 0; policy accept; }\n");
  }
  ~Partition() { Run("delete table inet " + table_ + "\n", /*check=*/false); }
  // Drops every packet between `a` and each of `others`, both ways (addresses
  // or CIDR ranges).
  void Isolate(const std::string& a, const std::vector<std::string>& others) {
    std::string script;
    for (const auto& b : others) {
      script += "add rule inet " + table_ + " input ip saddr " + a + " ip daddr " + b + " drop\n";
      script += "add rule inet " + table_ + " input ip saddr " + b + " ip daddr " + a + " drop\n";
    }
    Run(script);
  }
  void Heal() { Run("flush chain inet " + table_ + " input\n"); }

 private:
  static void Run(const std::string& script, bool check = true) {
    FILE* p = ::popen("nft -f - 2>&1", "w");
    REQUIRE(p != nullptr);
    std::fputs(script.c_str(), p);
    const int rc = ::pclose(p);
    if (check) {
      INFO("nft -f - failed for:\n" << script << "(is nftables installed, and are we root?)");
      REQUIRE(rc == 0);
    }
  }
  std::string table_;
};

}  // namespace bulwark::testing
