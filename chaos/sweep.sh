#!/usr/bin/env bash
# The long chaos sweep (`make chaos`): every nemesis, alone and all together,
# against every workload at every consistency level the region serves, one
# run after another, with progress as it goes. Needs root (nftables).
#
#   chaos/sweep.sh BUILD_DIR            # defaults: 120 s of faults per run
#   CHAOS_DURATION=300s CHAOS_SEED=7 chaos/sweep.sh build
#   CHAOS_REGIONS=0 chaos/sweep.sh build   # without the 15 two-region runs
#
# Each run writes to $CHAOS_OUT/<n>-<workload>-<level>-<nemesis>/; a failing
# run prints the command that reruns it. Exits 1 if any run found a violation
# or failed.
set -uo pipefail

build_dir=${1:-build}
bin="$build_dir/bin/bulwark-chaos"
duration=${CHAOS_DURATION:-120s}
seed=${CHAOS_SEED:-$(date +%s)}
out=${CHAOS_OUT:-$build_dir/chaos-sweep}
port=${CHAOS_PORT:-17100}
nemeses=(kill stop partition clock kill,stop,partition,clock,transfer,rotate)
levels=(Strong BoundedStaleness Session ConsistentPrefix Eventual)
workloads=(register set append)

[ -x "$bin" ] || { echo "sweep: $bin not built (make build)" >&2; exit 3; }
total=$(( ${#nemeses[@]} * ${#levels[@]} * ${#workloads[@]} ))
n=0; failed=0; summary=()
mkdir -p "$out"
echo "chaos sweep: $total runs of $duration faults each, seed $seed, into $out"
for workload in "${workloads[@]}"; do
  for level in "${levels[@]}"; do
    for nemesis in "${nemeses[@]}"; do
      n=$((n + 1))
      dir="$out/$n-$workload-$level-${nemesis//,/+}"
      start=$(date +%s)
      printf '[%d/%d] %-8s %-17s %-28s ... ' "$n" "$total" "$workload" "$level" "$nemesis"
      "$bin" run --nodes 4 --nemesis "$nemesis" --workload "$workload" --consistency "$level" \
        --duration "$duration" --seed "$((seed + n))" --port "$port" --out "$dir" >"$dir.log" 2>&1
      rc=$?
      result=$(grep -m1 '^result:' "$dir.log" | cut -d' ' -f2-)
      printf '%s (%ds)\n' "${result:-exit $rc}" "$(( $(date +%s) - start ))"
      if [ $rc -ne 0 ]; then
        failed=$((failed + 1))
        grep -m1 '^rerun:' "$dir.log" || true
        summary+=("$dir: ${result:-exit $rc}")
      fi
    done
  done
done
# Two regions: planned failovers among the node faults, every workload and level.
if [ "${CHAOS_REGIONS:-1}" = 1 ]; then
  for workload in "${workloads[@]}"; do
    for level in "${levels[@]}"; do
      n=$((n + 1)); total=$((total + 1))
      dir="$out/$n-regions-$workload-$level"
      start=$(date +%s)
      printf '[%d] 2 regions %-8s %-17s %-28s ... ' "$n" "$workload" "$level" "failover,kill,stop,partition,..."
      "$bin" run --regions 2 --nodes 4 --nemesis failover,kill,stop,partition,transfer,rotate --workload "$workload" \
        --consistency "$level" --duration "$duration" --seed "$((seed + n))" --port "$((port + 100))" \
        --out "$dir" >"$dir.log" 2>&1
      rc=$?
      result=$(grep -m1 '^result:' "$dir.log" | cut -d' ' -f2-)
      printf '%s (%ds)\n' "${result:-exit $rc}" "$(( $(date +%s) - start ))"
      if [ $rc -ne 0 ]; then
        failed=$((failed + 1))
        grep -m1 '^rerun:' "$dir.log" || true
        summary+=("$dir: ${result:-exit $rc}")
      fi
    done
  done
fi
echo "chaos sweep: $((total - failed)) of $total runs valid"
for line in "${summary[@]}"; do echo "  $line"; done
[ $failed -eq 0 ]
