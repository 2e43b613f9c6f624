#!/usr/bin/env bash
# Sums up what examples/vspace/examples/numa_vm_follow.rs printed in the guests of
# scripts/numa-vm-test.sh (which runs it after numa_vm_check and calls this script with
# the guests' console logs): the address space's replicas following threads pinned node
# by node (LinuxAffinity, Policy::follow_threads).
#
# usage: scripts/numa-vm-follow.sh GUEST_LOG...
#
# Per guest it prints the `grow`, `shrink` and `move` steps; then one line per target.
# A guest that did not boot is left out (numa-vm-test.sh reports it). Exit 1 if a booted
# guest's numa_vm_follow did not finish with `ok=1` (a replica below 99% on
# its node, a replica set other than the threads' nodes, a departure that did not give
# back one copy of the heap within 5%, a moved thread not followed), 0 otherwise.
set -euo pipefail

[ $# -ge 1 ] || { echo "usage: $0 GUEST_LOG..." >&2; exit 2; }

# shellcheck disable=SC2016 # awk program
awk '
  FNR == 1 { guest = FILENAME; sub(/.*guest-/, "", guest); sub(/\.log$/, "", guest) }
  /^GUEST: nodes=/ { booted[guest] = 1 }
  /^FOLLOW / {
    delete f
    for (i = 2; i <= NF; i++) { split($i, kv, "="); f[kv[1]] = kv[2] }
    p = f["phase"]
    if (p == "grow" || p == "move") {
      share = f["pages"] ? 100 * f["on_node"] / f["pages"] : 0
      placed++; pages += f["pages"]; on += f["on_node"]
      if (share >= 99) good++
      if (min == "" || share < min) min = share
      if (p == "grow")
        printf "  %-7s follow: thread on node %s registered: replicas on %s; its replica %6.2f%% of %5d pages on node %s\n",
          guest, f["node"], f["nodes"], share, f["pages"], f["node"]
      else {
        moves++
        printf "  %-7s follow: thread re-pinned %s -> %s, served there after %5d ops; %s replica(s); %6.2f%% of %5d pages on node %s\n",
          guest, f["from"], f["node"], f["ops"], f["replicas"], share, f["pages"], f["node"]
      }
    }
    if (p == "shrink") {
      departures++
      printf "  %-7s follow: thread on node %s left: %s -> %s replica(s); heap down %s copies (%s MiB now); RSS down %s copies (%s MiB now)\n",
        guest, f["node"], f["replicas_before"], f["replicas"], f["heap_freed_copies"], f["heap_mib"], f["rss_freed_copies"], f["rss_mib"]
      if (f["replicas"] < f["replicas_before"]) { dropped++; freed += f["heap_freed_copies"]; rss_freed += f["rss_freed_copies"] }
    }
    if (p == "result") {
      result[guest] = f["ok"]
      if (f["ok"] != 1) problems = problems sprintf("; %s: %s", guest, f["problems"])
    }
  }
  /^GUEST: exit=/ && / numa_vm_follow$/ { exited[guest] = $2 }
  END {
    for (g in booted) {
      if (!(g in result)) problems = problems sprintf("; %s: no result (%s)", g, (g in exited ? exited[g] : "not run"))
    }
    printf "numa-vm-test: follow: %d of %d replicas made for a pinned thread have >= 99%% of their pages on its node (lowest %.2f%%, %d pages, %.2f%% on node)\n",
      good, placed, min, pages, (pages ? 100 * on / pages : 0)
    printf "numa-vm-test: follow: %d departures removed a replica, each giving back %.3f copies of the heap on average (RSS: %.2f); %d moved threads followed\n",
      dropped, (dropped ? freed / dropped : 0), (dropped ? rss_freed / dropped : 0), moves
    if (problems != "") { printf "numa-vm-test: follow: FAILED: %s\n", substr(problems, 3); exit 1 }
  }' "$@"
