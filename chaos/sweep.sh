#!/usr/bin/env bash
# The long chaos sweep (`make chaos`): every nemesis, alone and all together,
# against every workload at every consistency level the region serves, one
# run after another, with progress as it goes. Needs root (nftables).
#
#   chaos/sweep.sh BUILD_DIR            # defaults: 90 s of faults per run
#   CHAOS_DURATION=300s CHAOS_SEED=7 chaos/sweep.sh build
#   CHAOS_REGIONS=0 chaos/sweep.sh build   # without the runs of several regions
#   CHAOS_REGIONS=only chaos/sweep.sh build  # only those (20 runs at every level)
#   CHAOS_LEVELS="Strong Session" chaos/sweep.sh build  # only these levels
#
# A level gets 6 one-region runs per workload (18) and one two-region run
# per workload (3); Strong also the 3-region and cutoff runs. At 90 s of
# faults per run that is just over 30 minutes of faults per level.
#
# Each run writes to $CHAOS_OUT/<n>-<workload>-<level>-<nemesis>/ (region runs:
# <n>-regions-<workload>-<level>/, <n>-3regions-<workload>-Strong/); a failing
# run prints the command that reruns it. Exits 1 if any run found a violation
# or failed.
set -uo pipefail

build_dir=${1:-build}
bin="$build_dir/bin/bulwark-chaos"
duration=${CHAOS_DURATION:-90s}
seed=${CHAOS_SEED:-$(date +%s)}
out=${CHAOS_OUT:-$build_dir/chaos-sweep}
port=${CHAOS_PORT:-17100}
nemeses=(kill stop partition clock power,disk,corrupt kill,stop,partition,clock,transfer,rotate,power,disk,corrupt)
read -r -a levels <<<"${CHAOS_LEVELS:-Strong BoundedStaleness Session ConsistentPrefix Eventual}"
strong=0
for level in "${levels[@]}"; do
  case $level in
    Strong) strong=1 ;;
    BoundedStaleness | Session | ConsistentPrefix | Eventual) ;;
    *) echo "sweep: unknown level '$level' in CHAOS_LEVELS (space-separated: Strong BoundedStaleness Session ConsistentPrefix Eventual)" >&2; exit 3 ;;
  esac
done
workloads=(register set append)

[ -x "$bin" ] || { echo "sweep: $bin not built (make build)" >&2; exit 3; }
regional=failover,kill,stop,partition,transfer,rotate,wan,power
total=0
[ "${CHAOS_REGIONS:-1}" != only ] && total=$(( ${#nemeses[@]} * ${#levels[@]} * ${#workloads[@]} ))
[ "${CHAOS_REGIONS:-1}" != 0 ] && total=$(( total + ${#levels[@]} * ${#workloads[@]} + (2 + 3) * strong ))
n=0; failed=0; summary=()
mkdir -p "$out"
echo "chaos sweep: $total runs of $duration faults each, seed $seed, into $out"
# One run: prints its line and records a failure. Args: dir label run-args...
one_run() {
  local dir=$1 label=$2
  shift 2
  local start rc result
  start=$(date +%s)
  printf '[%d/%d] %-70s ... ' "$n" "$total" "$label"
  "$bin" run "$@" --duration "$duration" --seed "$((seed + n))" --out "$dir" >"$dir.log" 2>&1
  rc=$?
  result=$(grep -m1 '^result:' "$dir.log" | cut -d' ' -f2-)
  printf '%s (%ds)\n' "${result:-exit $rc}" "$(( $(date +%s) - start ))"
  if [ $rc -ne 0 ]; then
    failed=$((failed + 1))
    grep -m1 '^rerun:' "$dir.log" || true
    summary+=("$dir: ${result:-exit $rc}")
  fi
}
for workload in "${workloads[@]}"; do
  [ "${CHAOS_REGIONS:-1}" = only ] && break
  for level in "${levels[@]}"; do
    for nemesis in "${nemeses[@]}"; do
      n=$((n + 1))
      one_run "$out/$n-$workload-$level-${nemesis//,/+}" "$workload $level $nemesis" \
        --nodes 4 --nemesis "$nemesis" --workload "$workload" --consistency "$level" --port "$port"
    done
  done
done
# Two regions: planned failovers among the node faults, every workload and
# level; then three regions at Strong (dynamic quorum drops a silent region).
if [ "${CHAOS_REGIONS:-1}" != 0 ]; then
  for workload in "${workloads[@]}"; do
    for level in "${levels[@]}"; do
      n=$((n + 1))
      one_run "$out/$n-regions-$workload-$level" "2 regions $workload $level $regional" \
        --regions 2 --nodes 4 --nemesis "$regional" --workload "$workload" --consistency "$level" \
        --port "$((port + 100))"
    done
  done
  for workload in register set; do
    [ $strong = 1 ] || break
    n=$((n + 1))
    one_run "$out/$n-3regions-$workload-Strong" "3 regions $workload Strong $regional" \
      --regions 3 --nodes 4 --nemesis "$regional" --workload "$workload" --consistency Strong --port "$((port + 100))"
  done
  # Two regions and a witness: the write region cut off (automatic failover),
  # at Strong, where nothing acknowledged may be lost (the weaker levels'
  # losses wait in the conflict feed, which the checkers do not read).
  for workload in "${workloads[@]}"; do
    [ $strong = 1 ] || break
    n=$((n + 1))
    one_run "$out/$n-cutoff-$workload-Strong" "2 regions + witness $workload Strong cutoff,kill,partition,wan" \
      --regions 2 --witness --nodes 4 --nemesis cutoff,kill,partition,wan --workload "$workload" --consistency Strong \
      --port "$((port + 100))"
  done
fi
echo "chaos sweep: $((total - failed)) of $total runs valid"
for line in "${summary[@]}"; do echo "  $line"; done
[ $failed -eq 0 ]
