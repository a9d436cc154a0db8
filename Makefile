# Bulwark's front door. `make run` and `make test` are the two set-up commands.
BUILD_DIR ?= build
BUILD_TYPE ?= RelWithDebInfo
JOBS ?= $(shell nproc)
CMAKE_FLAGS ?=
ifeq ($(CI),true)
  CMAKE_FLAGS += -DBULWARK_WERROR=ON
endif

.PHONY: deps configure build run test bench format clean

deps:
	@scripts/install-deps

$(BUILD_DIR)/build.ninja:
	cmake -S . -B $(BUILD_DIR) -G Ninja -DCMAKE_BUILD_TYPE=$(BUILD_TYPE) $(CMAKE_FLAGS)

configure: deps $(BUILD_DIR)/build.ninja

build: configure
	cmake --build $(BUILD_DIR) -j $(JOBS)

# The main job on an embedded default: two regions of four nodes on loopback
# (r1, the write region, on 127.0.1.1-4; r2 on 127.0.2.1-4), r1 streaming
# every write to r2, with keys and certificates generated on first run in
# ./.bulwark (reused afterwards). Ctrl-C, or `bulwark cluster down` in another
# shell, stops it cleanly.
run: build
	$(BUILD_DIR)/bin/bulwark cluster up --regions 2 --witness

test: build
	cd $(BUILD_DIR) && ctest --output-on-failure -j $(JOBS) --timeout 900

# The benchmark suite (bench/README.md): the full run; `bench/run --quick`
# is the short one. BUILD_DIR tells bench/run where the binaries are.
bench: build
	BUILD_DIR=$(BUILD_DIR) bench/run

format:
	clang-format -i $$(git ls-files '*.h' '*.cc')

clean:
	rm -rf $(BUILD_DIR)

# The long chaos sweep: every nemesis (kill, stop, partition, clock, all of
# them with transfer and rotate; then two regions with failover) x workload
# (register, set, append) x consistency level, CHAOS_DURATION of
# faults each (default 120s), progress as it goes (chaos/sweep.sh; needs root
# for nftables). CHAOS_SEED fixes the seeds.
.PHONY: chaos
chaos: build
	chaos/sweep.sh $(BUILD_DIR)
