//! Randomized schedule exploration with shuttle: configurations larger than the loom
//! models can search exhaustively — three or four threads, two or three replicas, a log
//! of four or eight entries that wraps several times, replicas added and removed while
//! operations run, idle replicas that only cross-combining can drain, and threads that
//! deregister and register again while all of that goes on.
//!
//! Run with
//!
//! ```text
//! RUSTFLAGS="--cfg ldnr_shuttle" CARGO_TARGET_DIR=target/shuttle \
//!     cargo test --release -p ldnr --test shuttle -- --test-threads=1 --nocapture
//! ```
//!
//! Under `cfg(ldnr_shuttle)` every atomic of the library is shuttle's, so each atomic
//! access is a point where the scheduler may switch threads, and every wait loop yields
//! to it (`sync.rs`). Each test explores a fixed number of schedules from a fixed seed,
//! so CI is reproducible; the defaults add up to 150,000 schedules. Environment:
//!
//! - `LDNR_SHUTTLE_ITERS=n`: schedules per test instead of the default;
//! - `LDNR_SHUTTLE_SEED=n`: another seed, to explore other schedules;
//! - `LDNR_SHUTTLE_REPLAY=<schedule>` or `=<file>`: replay the schedule a failure printed
//!   (as printed, or saved to a file; run only the failing test, by name, with
//!   `--exact`).
//!
//! Every execution checks replica agreement, exactly-once application of every write,
//! linearizability of all reads and writes against the final sequence, and consistent
//! `replicas()` snapshots, in scenarios with `probe_clones` that no two threads clone
//! one logged write at once, and in scenarios with `probe_reads` that no write is applied
//! to a replica while a read is inside it; shuttle fails a run that deadlocks or exceeds
//! its step bound (a livelock). See `shuttle_common` for the checks.
#![cfg(ldnr_shuttle)]

mod shuttle_common;

use shuttle_common::Step::{
    Add, All, Len, RemoveAdded, RemoveInitial, Reregister, Snapshot, ThreadToken, Write,
};
use shuttle_common::{explore, Scenario, Sched};

/// Three workers on two replicas (nodes 0 and 1) and a churner that adds a replica on
/// node 1, removes an initial replica (its threads move and their waiting operations are
/// handed back), adds one on node 0 and removes the first one it added, writing and
/// reading in between. Nine writes through a four-entry log: it wraps twice.
static CHURN: Scenario = Scenario {
    nodes: 2,
    replicas: &[0, 1],
    log: 4,
    workers: &[
        &[Write, Len, Write, All, Write],
        &[Write, Write, All, Write],
        &[Len, Write, Write, All],
    ],
    churn: &[
        Add(1),
        Write,
        RemoveInitial(0),
        Snapshot,
        Add(0),
        All,
        RemoveAdded(0),
    ],
    probe_clones: false,
    probe_reads: false,
};

/// Two writers on three replicas of one node: the third replica serves no thread, so the
/// eleven writes through a four-entry log complete only if combiners drain the idle
/// replica (cross-combining). The final check reads it through a new thread.
static IDLE: Scenario = Scenario {
    nodes: 1,
    replicas: &[0, 0, 0],
    log: 4,
    workers: &[
        &[Write, Write, Write, Write, Write, All],
        &[Write, Write, Write, Len, Write, Write, All],
    ],
    churn: &[],
    probe_clones: false,
    probe_reads: false,
};

/// Four threads, three replicas on two nodes, an eight-entry log: three workers and a
/// churner that removes both initial replicas of node 0 one after the other and adds
/// replicas on both nodes in between, so that every worker is moved at least once
/// and replica clones overlap appends and log wrap-around.
static WIDE: Scenario = Scenario {
    nodes: 2,
    replicas: &[0, 0, 1],
    log: 8,
    workers: &[
        &[Write, Write, All, Write, Len],
        &[Write, All, Write, Write],
        &[All, Write, Write, Len],
    ],
    churn: &[
        RemoveInitial(1),
        Write,
        Add(1),
        Snapshot,
        Write,
        RemoveInitial(0),
        Add(0),
        All,
    ],
    probe_clones: false,
    probe_reads: false,
};

/// One replica, so writers start on the sole-replica fast path (log L6); the churner
/// adds a replica (leaving the fast path while a writer may be on it), removes the
/// original (back to one), adds another and removes the first one it added.
static SOLE: Scenario = Scenario {
    nodes: 1,
    replicas: &[0],
    log: 4,
    workers: &[&[Write, Write, Len, Write], &[Write, All, Write, Write]],
    churn: &[Add(0), Write, RemoveInitial(0), Add(0), All, RemoveAdded(0)],
    probe_clones: false,
    probe_reads: false,
};

/// A replica joins in a shell *below* its clone source while a writer on another
/// replica collects garbage: the race that log L7 (the rescan in `Log::collect`) guards
/// against, and that the loom model 2b cannot reach within its preemption bound. Three
/// replicas; the churner removes the one in slot 0, then adds one (into slot 0, below
/// the source) and keeps reading on its own replica, which drives the source forward
/// after it unfreezes; the writer writes ten times through a four-entry log. With the
/// rescan taken out of `collect`, a scan that read slot 0 before the activation and the
/// source after its catch-up lets `head` pass the new replica, a write overwrites an
/// entry it has yet to apply, and applying it spins for ever: PCT depth 6 finds that in
/// about one schedule in 2,000 (checked against a copy of the library with that change).
static JOIN_BELOW_SOURCE: Scenario = Scenario {
    nodes: 1,
    replicas: &[0, 0, 0],
    log: 4,
    workers: &[
        &[Len, Len, Len],
        &[
            Write, Write, Write, Write, Write, Write, Write, Write, Write, Write,
        ],
    ],
    churn: &[RemoveInitial(0), Len, Add(0), Len, Len, Len, Len, All],
    probe_clones: false,
    probe_reads: false,
};

/// Replicas added and removed four times in a row, each new one reusing slot 0 below
/// its source, while two writers on the other replicas fill a four-entry log.
static RECLONE: Scenario = Scenario {
    nodes: 1,
    replicas: &[0, 0, 0],
    log: 4,
    workers: &[
        &[Write, Write, Write, Write, Write, Write, Len],
        &[Write, Write, Write, Write, Write, Write, All],
    ],
    churn: &[
        RemoveInitial(0),
        Add(0),
        RemoveAdded(0),
        Add(0),
        RemoveAdded(1),
        Add(0),
        Snapshot,
        RemoveAdded(2),
        Add(0),
    ],
    probe_clones: false,
    probe_reads: false,
};

/// A reader left on a shell that `add_replica` reuses ("race 4"). One replica X in slot
/// 0 serves both threads; the churner adds S (slot 1, serving no one, so it lags), writes
/// twice through X, removes X and adds a replica into X's freed shell, cloned from S, the
/// only live replica, at S's position, which lies below the `ctail` of X's last writes;
/// then it writes through S, the clone source. The worker alternates writes and reads on
/// X. Every write carries a clone probe (`probe_clones`): two threads cloning one logged
/// write at once fail the run.
///
/// The race needs a thread that still holds slot 0 from before the removal. The natural
/// one is a reader: the churner's clones yield while it holds X's write lock, so the
/// worker's read can start then, find the write lock held and wait for it, yielding; PCT
/// then leaves it waiting (a yielding thread drops to the lowest priority) while the
/// churner, which never waits here, removes X (the worker is re-matched to S, but its
/// `execute` still holds slot 0) and installs the new replica. One change point right
/// after `add_replica` releases the new shell's locks lets the worker in: it takes the
/// read lock, finds the replica below its `ctail` and takes the combiner lock to catch
/// up. If the live count were raised only after those locks are released, it would read
/// one live replica and apply on the sole-replica path (L6), without the clone lock; its
/// clone yields, and the churner's write through S clones the same entry under the clone
/// lock: "two threads cloned write 1000 at the same time". Checked against a copy of the
/// library with that change (and against the code before it was fixed): PCT depth 2, one
/// change point, finds it in about one schedule in 1,500, the tests below within their
/// first 7,000 schedules. The random scheduler, which switches threads at almost every
/// step, lets the waiting reader in before the shell is reused and does not find it. A
/// stale *writer*, left between loading its slot and taking the combiner lock, needs a
/// second change point for the same window and was found some thirty times less often;
/// a third thread writing on S makes either rarer still (its waits wake the reader
/// early).
static STALE_READER: Scenario = Scenario {
    nodes: 1,
    replicas: &[0],
    log: 4,
    workers: &[&[Write, Len, Write, Len, Write, Len, Len, Len]],
    churn: &[Add(0), Write, Write, RemoveInitial(0), Add(0), Write],
    probe_clones: true,
    probe_reads: false,
};

/// Threads that come and go while replicas do: three workers give their registrations
/// back and register again between operations (yielding while unregistered), so indices
/// are handed out again — the lowest given-back one first, often another worker's — and
/// each new registration is matched afresh (the simulated nodes alternate, so a worker
/// changes replicas and reader sets); the third worker switches to `thread_token`, and
/// its index is given back after it exits, by another thread's admin path, which takes
/// it out of its replica's reader set and may lower the writers' scan mark. Meanwhile
/// the churner adds a replica on node 1, removes the initial one of node 0 (its threads
/// move; its data is taken out under a write lock that waits only for its reader set),
/// adds one on node 0 (frozen sources: reads and writes on a stand-in) and removes it
/// again. Every `Len` is a probed read (`probe_reads`): it yields inside its read
/// section, and a write applied to the replica meanwhile — by a writer that did not wait
/// for it, because it was missing from the replica's reader set (rwlock R2) — fails the
/// run. Checked against copies of the library with one change each (shuttle explores
/// sequentially consistent interleavings, so these are the changes it can see; loom
/// covers the orderings): a read path that never joins a reader set (`threads_pct3`
/// fails in schedule 1, `threads_random` in 570); one that joins only the set of the
/// thread's own replica, once per operation, and not that of a stand-in or of the
/// replica a removal re-routed it to (`threads_pct3`, schedule 2); one that joins after
/// announcing itself in the reader slot (`threads_pct3`, schedule 2,144); and a
/// deregistration that takes the index out of its reader set but leaves it marked as in
/// that set, so that the index's next owner reads there without joining
/// (`threads_pct3`, schedule 13; `threads_random`, 899).
static THREADS: Scenario = Scenario {
    nodes: 2,
    replicas: &[0, 1],
    log: 4,
    workers: &[
        &[Write, Len, Reregister, Write, All, Reregister, Len, Write],
        &[Len, Reregister, Write, Len, Reregister, All, Write],
        &[Write, Reregister, Len, ThreadToken, Write, All],
    ],
    churn: &[
        Add(1),
        Len,
        RemoveInitial(0),
        Write,
        Add(0),
        Snapshot,
        RemoveAdded(0),
        All,
    ],
    probe_clones: false,
    probe_reads: true,
};

// Default schedule counts: 150,000 in all, about 45 s in a release build on two shared
// cores (`threads_*`: 15,000 of them, about 7 s). The seeds are fixed so that CI
// explores the same schedules on every run.

#[test]
fn churn_random() {
    explore("churn_random", &CHURN, Sched::Random, 10_000, 0x1d_0001);
}

#[test]
fn churn_pct3() {
    explore("churn_pct3", &CHURN, Sched::Pct(3), 10_000, 0x1d_0002);
}

#[test]
fn idle_replica_random() {
    explore(
        "idle_replica_random",
        &IDLE,
        Sched::Random,
        5_000,
        0x1d_0003,
    );
}

#[test]
fn idle_replica_pct2() {
    explore("idle_replica_pct2", &IDLE, Sched::Pct(2), 5_000, 0x1d_0004);
}

#[test]
fn wide_random() {
    explore("wide_random", &WIDE, Sched::Random, 10_000, 0x1d_0005);
}

#[test]
fn wide_pct3() {
    explore("wide_pct3", &WIDE, Sched::Pct(3), 10_000, 0x1d_0006);
}

#[test]
fn sole_random() {
    explore("sole_random", &SOLE, Sched::Random, 5_000, 0x1d_0007);
}

#[test]
fn sole_pct2() {
    explore("sole_pct2", &SOLE, Sched::Pct(2), 5_000, 0x1d_0008);
}

#[test]
fn join_below_source_random() {
    let s = &JOIN_BELOW_SOURCE;
    explore(
        "join_below_source_random",
        s,
        Sched::Random,
        5_000,
        0x1d_0009,
    );
}

#[test]
fn join_below_source_pct6() {
    let s = &JOIN_BELOW_SOURCE;
    explore(
        "join_below_source_pct6",
        s,
        Sched::Pct(6),
        20_000,
        0x1d_000a,
    );
}

#[test]
fn reclone_random() {
    explore("reclone_random", &RECLONE, Sched::Random, 5_000, 0x1d_000b);
}

#[test]
fn reclone_pct3() {
    explore("reclone_pct3", &RECLONE, Sched::Pct(3), 10_000, 0x1d_000c);
}

#[test]
fn stale_reader_random() {
    let s = &STALE_READER;
    explore("stale_reader_random", s, Sched::Random, 5_000, 0x1d_000d);
}

#[test]
fn stale_reader_pct2() {
    let s = &STALE_READER;
    explore("stale_reader_pct2", s, Sched::Pct(2), 20_000, 0x1d_000e);
}

#[test]
fn stale_reader_pct3() {
    let s = &STALE_READER;
    explore("stale_reader_pct3", s, Sched::Pct(3), 10_000, 0x1d_000f);
}

#[test]
fn threads_random() {
    explore("threads_random", &THREADS, Sched::Random, 5_000, 0x1d_0010);
}

#[test]
fn threads_pct3() {
    explore("threads_pct3", &THREADS, Sched::Pct(3), 10_000, 0x1d_0011);
}
