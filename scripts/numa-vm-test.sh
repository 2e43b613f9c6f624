#!/usr/bin/env bash
# Real multi-node NUMA test: placement of replica memory, thread matching and deployment
# settings, checked in QEMU guests (software emulation; works on a one-node machine): by
# default one with 2 nodes plus a CPU-less memory node ("2+1"), and one with 4 nodes.
#
# usage: scripts/numa-vm-test.sh
#
# Builds affinity/examples/numa_vm_check (main.rs, deploy.rs) as a static binary, boots
# one guest per layout in $LAYOUTS with scripts/numa-vm.sh, runs the binary in it and
# sums up what it printed. The binary runs LinuxAffinity with the opt-in
# fix_mmap_threshold() (process-wide; the library leaves malloc alone unless asked), as
# this test always has. Targets (exit 1 if missed): every hashmap replica's pages >= 99%
# on the replica's node in every phase (construction, after add_replica, after writes);
# every thread pinned to a node's CPU matched to a replica on that node; every thread
# that registered on node 0 and was re-pinned to the last node served by the last node's
# replica within 10,000 of its operations, with the replicas agreeing afterwards (one
# `MOVE` line per such thread, at least one per guest); a memory-only node reported apart
# and never offered for replicas or threads (MEMONLY, in guests that have one); an
# inherited MPOL_BIND honoured (INHERIT); and a cpuset cgroup of one node giving a
# manager of that node only, on which build and add_replica work and memory lands there
# (CPUSET). The BTreeMap figures are reported, not enforced (see ldnr-affinity's docs on
# small allocations).
#
# Each guest runs the check twice: with the system allocator (numa_vm_check, as above)
# and with NodeAlloc as the global allocator (numa_vm_check_node_alloc: the placement
# phases and the reuse probe only, without the mmap-threshold fix). With NodeAlloc,
# every replica of either map must be >= 99% on its node in every phase, and all of its
# pages together >= 99.5%.
#
# Then, in the same guest, numa_vm_follow (crate ldnr-vspace): replicas that follow
# threads pinned node by node, each >= 99% on its node, and memory given back as nodes
# empty (targets and summary in scripts/numa-vm-follow.sh).
#
# The last line of a run that produced results is exactly
#   placement: P% of replica pages on their node (N pages; hashmap H%, btreemap B%)
# over every replica, phase and guest of the NodeAlloc run; the same line for the system
# allocator is printed above it (the btreemap+trim variant beside it, not counted). Where no guest can run here (not x86_64 Linux, Debian packages not
# downloadable, QEMU does not start), it says "numa-vm-test: skipped: ..." and exits 0
# without a placement line.
#
# env: WORK (default /tmp/numa-vm), LAYOUTS (default "2+1 4": nodes with CPUs, plus
#      CPU-less memory nodes after a "+"), MEM_PER_NODE_MB
#      (default 1024), TIMEOUT (per guest, s, default 900), BOOT_TIMEOUT (s, default
#      240: a guest whose init has not printed its first line by then is stopped and
#      booted once more; one that printed nothing after "Booting from ROM..." (its
#      kernel boots `quiet`) once held a CI run for the whole TIMEOUT), CHECK_ARGS (extra arguments for numa_vm_check, e.g. "--writes
#      200000"), CARGO_TARGET_DIR.
set -euo pipefail
cd "$(dirname "$0")/.."

export WORK=${WORK:-/tmp/numa-vm}
LAYOUTS=${LAYOUTS:-"2+1 4"}
export MEM_PER_NODE_MB=${MEM_PER_NODE_MB:-1024}
export TIMEOUT=${TIMEOUT:-900}
BOOT_TIMEOUT=${BOOT_TIMEOUT:-240}
TARGET=x86_64-unknown-linux-gnu
TARGET_DIR=${CARGO_TARGET_DIR:-target}
start=$(date +%s)

skip() { echo "numa-vm-test: skipped: $*"; exit 0; }

# Boots one guest (scripts/numa-vm.sh with the given arguments; the environment as set by
# the caller), its console into $log; stops it if its init has not printed its first
# line ("GUEST: nodes=") within BOOT_TIMEOUT seconds. Returns QEMU's status (124 when
# TIMEOUT stopped it), or 200 when the boot watchdog did (QEMU itself exits 0 on the
# signal).
boot_guest() {
  local log=$1 pid waited=0 hung=0
  shift
  scripts/numa-vm.sh "$@" > "$log" 2>&1 &
  pid=$!
  while kill -0 "$pid" 2>/dev/null; do
    if [ "$waited" -ge "$BOOT_TIMEOUT" ] && ! grep -q 'GUEST: nodes=' "$log"; then
      echo "numa-vm-test:   no sign of the guest's init after ${BOOT_TIMEOUT} s; stopping it"
      # numa-vm.sh exec's timeout(1), which passes the signal on to QEMU.
      kill "$pid" 2>/dev/null || true
      hung=1
      break
    fi
    sleep 5
    waited=$((waited + 5))
  done
  local rc=0
  wait "$pid" || rc=$?
  [ "$hung" -eq 0 ] || rc=200
  return "$rc"
}

[ "$(uname -s)" = Linux ] && [ "$(uname -m)" = x86_64 ] || skip "needs an x86_64 Linux host"

# 1. The guest's packages first: without them there is nothing to test.
rc=0; scripts/numa-vm.sh --prepare || rc=$?
[ "$rc" -eq 3 ] && skip "the guest's packages (QEMU, kernel, busybox) cannot be fetched here"
[ "$rc" -eq 0 ] || { echo "numa-vm-test: preparing the guest failed ($rc)"; exit 1; }

# 2. The check binary, static so the guest needs no libraries.
echo "numa-vm-test: building numa_vm_check and numa_vm_check_node_alloc (static, $TARGET)"
RUSTFLAGS="-C target-feature=+crt-static" \
  cargo build --release -p ldnr-affinity --example numa_vm_check \
  --example numa_vm_check_node_alloc --target "$TARGET"
BIN=$TARGET_DIR/$TARGET/release/examples/numa_vm_check
NODE_ALLOC_BIN=${BIN}_node_alloc
for b in "$BIN" "$NODE_ALLOC_BIN"; do
  [ -x "$b" ] || { echo "numa-vm-test: $b was not built"; exit 1; }
done
# Run after them in each guest: address-space replicas following pinned threads
# (examples/vspace/examples/numa_vm_follow.rs, summed up by scripts/numa-vm-follow.sh).
RUSTFLAGS="-C target-feature=+crt-static" \
  cargo build --release -p ldnr-vspace --example numa_vm_follow --target "$TARGET"
FOLLOW_BIN=$TARGET_DIR/$TARGET/release/examples/numa_vm_follow
[ -x "$FOLLOW_BIN" ] || { echo "numa-vm-test: $FOLLOW_BIN was not built"; exit 1; }

# 3. One guest per layout; its console goes to a log.
started=0; failed=""
LOGS=()
for layout in $LAYOUTS; do
  nodes=${layout%%+*}
  memonly=0; [ "$layout" = "$nodes" ] || memonly=${layout#*+}
  total=$((nodes + memonly))
  log=$WORK/guest-${layout}nodes.log
  LOGS+=("$log")
  echo "numa-vm-test: guest with $nodes nodes x 1 vCPU + $memonly memory-only, ${MEM_PER_NODE_MB} MiB each (log: $log)"
  t0=$(date +%s)
  for try in 1 2; do
    rc=0
    GUEST_ARGS="--timeout $((TIMEOUT - 60)) ${CHECK_ARGS:-}" MEMORY_ONLY_NODES=$memonly \
      boot_guest "$log" "$nodes" 1 "$BIN" "$NODE_ALLOC_BIN" "$FOLLOW_BIN" || rc=$?
    # Started (whatever happened next), or stopped for another reason than a hung boot.
    if grep -q 'GUEST: nodes=' "$log" || [ "$rc" -ne 200 ] || [ "$try" -eq 2 ]; then
      break
    fi
    echo "numa-vm-test:   booting the $layout-node guest again"
  done
  # Console output: drop carriage returns and the firmware's terminal escapes.
  sed 's/\r//g; s/\x1b\[[0-9;?]*[a-zA-Z]//g; s/\x1bc//g; s/.*\(GUEST: nodes=\)/\1/' "$log" > "$log.txt"
  mv "$log.txt" "$log"
  if ! grep -q '^GUEST: nodes=' "$log"; then
    why="qemu exit $rc"; [ "$rc" -ne 200 ] || why="stopped twice by the boot watchdog"
    echo "numa-vm-test: the $layout-node guest did not start ($why); last lines:"
    tail -n 5 "$log" | sed 's/^/    /'
    continue
  fi
  started=$((started + 1))
  seen=$(sed -n 's/^GUEST: nodes=\([0-9]*\).*/\1/p' "$log")
  echo "numa-vm-test:   booted with $seen nodes; ran $(( $(date +%s) - t0 )) s"
  [ "$seen" = "$total" ] || failed="$failed; the $layout-node guest shows $seen nodes"
  [ "$nodes" -lt 2 ] || grep -q '^MOVE ' "$log" || failed="$failed; $layout nodes: no thread was moved"
  [ "$nodes" -lt 2 ] || grep -q '^CPUSET .*ok=1$' "$log" || failed="$failed; $layout nodes: no passing cpuset check"
  [ "$nodes" -lt 2 ] || grep -q '^INHERIT .*ok=1$' "$log" || failed="$failed; $layout nodes: no passing inherited-bind check"
  [ "$memonly" -eq 0 ] || [ "$(grep -c '^MEMONLY node=.*ok=1$' "$log")" = "$memonly" ] ||
    failed="$failed; $layout nodes: memory-only nodes not all checked"
  for b in numa_vm_check numa_vm_check_node_alloc; do
    grep -q "^GUEST: exit=0 $b\$" "$log" ||
      failed="$failed; $layout nodes, $b: $(grep -E '^RESULT|^GUEST: exit' "$log" | tr '\n' ' ' || echo 'no result (crashed or timed out)')"
  done
done
[ "$started" -gt 0 ] || skip "QEMU could not start a guest here"

# 4. Sum up: per guest, map, phase and replica; then the totals and targets.
# shellcheck disable=SC2016 # awk program
summary=$(awk '
  FNR == 1 { guest = FILENAME; sub(/.*guest-/, "", guest); sub(/\.log$/, "", guest) }
  /^PLACEMENT / {
    delete f
    for (i = 2; i <= NF; i++) { split($i, kv, "="); f[kv[1]] = kv[2] }
    node = (f["alloc"] == "node")
    m = (node ? "node:" : "") f["map"]; pages[m] += f["pages"]; on[m] += f["on_node"]
    share = f["pages"] ? 100 * f["on_node"] / f["pages"] : 100
    printf "  %-7s %-6s %-13s %-12s replica %-2s node %s: %6.2f%% of %7d pages (elsewhere: %s)\n",
      guest, (node ? "node" : "system"), f["map"], f["phase"], f["replica"], f["node"], share, f["pages"], f["other"]
    if ((node || m == "hashmap") && share < 99) low = low sprintf("; %s %s %s %s replica %s: %.2f%%", guest, (node ? "NodeAlloc" : "system"), f["map"], f["phase"], f["replica"], share)
  }
  /^MATCH / {
    delete f
    for (i = 2; i <= NF; i++) { split($i, kv, "="); f[kv[1]] = kv[2] }
    trials += f["trials"]; ok += f["ok"]
    if (f["ok"] != f["trials"]) miss = miss sprintf("; %s %s node %s: %d/%d", guest, f["phase"], f["node"], f["ok"], f["trials"])
  }
  /^MOVE / {
    delete f
    for (i = 2; i <= NF; i++) { split($i, kv, "="); f[kv[1]] = kv[2] }
    moves++; bound = f["bound"]
    if (f["ok"] == 1) { moved++; if (f["ops"] + 0 > maxops) maxops = f["ops"] + 0 }
    else stuck = stuck sprintf("; %s thread %s: ops=%s %s", guest, f["thread"], f["ops"], f["problems"])
    printf "  %-7s move: thread %s node %s -> %s after %4d ops there: %s (bound %s)\n",
      guest, f["thread"], f["from"], f["to"], f["before"],
      (f["ok"] == 1 ? sprintf("re-matched after %4d ops", f["ops"]) : sprintf("FAILED (ops=%s%s)", f["ops"], f["problems"] ? " " f["problems"] : "")), f["bound"]
  }
  /^MOVES threads/ { sub(/^MOVES /, ""); printf "  %-7s move: %s\n", guest, $0 }
  /^AGREE / {
    delete f
    for (i = 2; i <= NF; i++) { split($i, kv, "="); f[kv[1]] = kv[2] }
    printf "  %-7s move: %s replicas agree: %s (%s entries; node:entries %s)\n", guest, f["replicas"], f["agree"], f["len"], f["per_node"]
    if (f["agree"] != "yes") stuck = stuck sprintf("; %s replicas differ after the moves", guest)
  }
  /^PROBE / { sub(/^PROBE /, ""); printf "  %-7s probe: %s\n", guest, $0 }
  /^NODEALLOC / { sub(/^NODEALLOC /, ""); printf "  %-7s NodeAlloc: %s\n", guest, $0 }
  /^(MEMONLY|INHERIT|CPUSET) / { kind = tolower($1); sub(/^[A-Z]+ /, ""); printf "  %-7s %s: %s\n", guest, kind, $0 }
  /^TIME total/ { printf "  %-7s check ran %s s inside the guest\n", guest, $3 }
  END {
    for (m in pages) printf "TOTAL %s %d %d\n", m, pages[m], on[m]
    printf "MATCHES %d %d\n", trials, ok
    printf "MOVES %d %d %d %d\n", moves, moved, maxops, bound
    if (stuck != "") print "STUCK " substr(stuck, 3)
    if (low != "") print "LOW " substr(low, 3)
    if (miss != "") print "MISS " substr(miss, 3)
  }' "${LOGS[@]}")
echo "numa-vm-test: placement per guest, map, phase and replica:"
grep -v -E '^(TOTAL|MATCHES|MOVES|LOW|MISS|STUCK) ' <<< "$summary" || true

total() { awk -v m="$1" -v k="$2" '$1 == "TOTAL" && $2 == m { print (k == "pages" ? $3 : $4) }' <<< "$summary"; }
pct() { awk -v a="${1:-0}" -v b="${2:-0}" 'BEGIN { printf "%.2f", (b > 0 ? 100 * a / b : 0) }'; }
hp=$(total hashmap pages); ho=$(total hashmap on)
bp=$(total btreemap pages); bo=$(total btreemap on)
tp=$(total btreemap+trim pages); to=$(total btreemap+trim on)
nhp=$(total node:hashmap pages); nho=$(total node:hashmap on)
nbp=$(total node:btreemap pages); nbo=$(total node:btreemap on)
read -r _ trials ok <<< "$(grep '^MATCHES ' <<< "$summary")"
read -r _ moves moved maxops bound <<< "$(grep '^MOVES ' <<< "$summary")"
low=$(sed -n 's/^LOW //p' <<< "$summary"); miss=$(sed -n 's/^MISS //p' <<< "$summary")
stuck=$(sed -n 's/^STUCK //p' <<< "$summary")
[ -n "$low" ] && failed="$failed; replicas below 99%: $low"
[ -n "$miss" ] && failed="$failed; threads matched elsewhere: $miss"
[ -n "$stuck" ] && failed="$failed; moved threads: $stuck"
[ "${hp:-0}" -gt 0 ] || failed="$failed; no hashmap pages were counted"
[ "${nhp:-0}" -gt 0 ] && [ "${nbp:-0}" -gt 0 ] || failed="$failed; no pages were counted with NodeAlloc"

echo "numa-vm-test: btreemap with release_free_memory() before build/add_replica: $(pct "$to" "$tp")% of ${tp:-0} pages"
echo "numa-vm-test: matching: $ok of $trials pinned threads matched to their own node's replica"
echo "numa-vm-test: moves: $moved of $moves threads re-pinned from node 0 to the last node served by its replica within $bound operations (at most $maxops)"
scripts/numa-vm-follow.sh "${LOGS[@]}" || failed="$failed; follow: see 'numa-vm-test: follow' above"
echo "numa-vm-test: $started guest(s), $(( $(date +%s) - start )) s in all"
S=$(( ${hp:-0} + ${bp:-0} ))
echo "numa-vm-test: system allocator: placement: $(pct $(( ${ho:-0} + ${bo:-0} )) "$S")% of replica pages on their node ($S pages; hashmap $(pct "$ho" "$hp")%, btreemap $(pct "$bo" "$bp")%)"
N=$(( ${nhp:-0} + ${nbp:-0} ))
P=$(pct $(( ${nho:-0} + ${nbo:-0} )) "$N")
awk -v p="$P" 'BEGIN { exit !(p >= 99.5) }' || failed="$failed; NodeAlloc placement $P% < 99.5%"
if [ -n "$failed" ]; then
  echo "numa-vm-test: FAILED: ${failed#; }"
  [ "$N" -gt 0 ] || exit 1 # nothing measured: no placement line
fi
echo "numa-vm-test: NodeAlloc:"
echo "placement: $P% of replica pages on their node ($N pages; hashmap $(pct "$nho" "$nhp")%, btreemap $(pct "$nbo" "$nbp")%)"
[ -z "$failed" ]
