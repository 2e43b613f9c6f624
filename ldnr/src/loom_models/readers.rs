//! Reader sets (R2): readers that switch replicas, follow their node, or read a
//! stand-in.

use super::combining::{write, Sum};
use super::*;
use crate::replica::rwlock::Readers;

/// Two replicas (slots 0 and 1), each with its lock, its reader set and data with the
/// invariant `a == b` that a writer breaks temporarily; one reader, thread index 0.
/// `asymmetric`: the writers write alone without the fence, and the reader's joins
/// issue the heavy barrier (R5), as an instance's do where `membarrier` is available.
struct SwitchingReader {
    locks: [RwLock; 2],
    sets: [ReaderSet; 2],
    readers: [ReaderSlot; 1],
    cells: [[UnsafeCell<u64>; 2]; 2],
    asymmetric: bool,
}

/// The reader set of one of a [`SwitchingReader`]'s replicas as an instance's writer
/// sees it where joins issue the heavy barrier (`ReadersOf` with `asymmetric`, R5): the
/// set checked after the light barrier, scanned only if it holds anyone.
struct Asymmetric<'a> {
    set: &'a ReaderSet,
    readers: &'a [ReaderSlot],
}

impl<'a> Readers<'a> for Asymmetric<'a> {
    type Slots = alloc::vec::IntoIter<&'a ReaderSlot>;

    fn any(&self) -> bool {
        self.set.any_but(|| self.readers.len(), usize::MAX)
    }

    fn asymmetric(&self) -> bool {
        true
    }

    fn light(&self) {
        self.set.light();
    }

    fn slots(self) -> Self::Slots {
        let readers = self.readers;
        self.set
            .members(readers.len())
            .map(|tid| &readers[tid])
            .collect::<Vec<_>>()
            .into_iter()
    }
}

impl SwitchingReader {
    fn with(asymmetric: bool) -> Self {
        Self {
            asymmetric,
            locks: [RwLock::new(), RwLock::new()],
            sets: [ReaderSet::new(1), ReaderSet::new(1)],
            readers: [ReaderSlot::new()],
            cells: [
                [UnsafeCell::new(0), UnsafeCell::new(0)],
                [UnsafeCell::new(0), UnsafeCell::new(0)],
            ],
        }
    }

    /// Takes the write lock of replica `r`, waiting for the members of its reader set
    /// only (as `Shared::readers_of` does), and increments both cells, one at a time.
    fn write(&self, r: usize) {
        let mut w = if self.asymmetric {
            self.locks[r].write(
                r,
                Asymmetric {
                    set: &self.sets[r],
                    readers: &self.readers,
                },
            )
        } else {
            self.locks[r].write(r, || self.sets[r].members(1).map(|tid| &self.readers[tid]))
        };
        w.publish(1);
        let [a, b] = &self.cells[r];
        // SAFETY: the write lock (the model's claim, checked by loom's cell tracking)
        // excludes every reader of replica `r`, and there is one writer per replica.
        a.with_mut(|p| unsafe { *p += 1 });
        // SAFETY: as above.
        b.with_mut(|p| unsafe { *p += 1 });
    }

    /// Thread 0 leaves the reader set of `from` and joins that of `to`, in the order
    /// `Shared::join_readers` does (owner only, between reads).
    fn join(&self, from: Option<usize>, to: usize) {
        if let Some(from) = from {
            self.sets[from].remove(0);
        }
        assert!(
            self.sets[to].join(0, self.asymmetric),
            "the model's barrier is never refused"
        );
    }

    /// Thread 0 reads replica `r` under its read lock.
    fn read(&self, r: usize) -> u64 {
        let _g = self.locks[r].read(&self.readers[0], r, RwLock::stamp(0));
        self.cells_of(r)
    }

    /// The cells of replica `r`, read by thread 0, which holds its read lock.
    fn cells_of(&self, r: usize) -> u64 {
        let [a, b] = &self.cells[r];
        // SAFETY: the read lock excludes the writer of `r` (checked by loom).
        let a = a.with(|p| unsafe { *p });
        // SAFETY: as above.
        let b = b.with(|p| unsafe { *p });
        assert_eq!(a, b, "a reader saw a half-applied write");
        a
    }
}

/// A reader that reads replica 0, then switches reader sets (out of 0 with a Release
/// RMW, into 1) and reads replica 1, while a writer of replica 0 and a writer of
/// replica 1 each take their write lock once. Each writer waits only for the members of
/// its own replica's set (R2).
///
/// Asserts: no read section overlaps a write section of the same replica (loom's cell
/// tracking, and `a == b`): in particular the writer of 0 that finds the reader already
/// out of its set must be ordered after the reader's read of 0 (the removal's Release,
/// the set load's Acquire), and the writer of 1 must see the reader in its set or the
/// reader its flag (the insert before the announcement and F1).
///
/// Bound 3 (three threads, but no two of them can spin on the third: see the module
/// docs): 36 000 executions, 2 s. Catches `ReaderSet::remove` made Relaxed (execution
/// 470: the writer of 0 reads the cleared bit and skips the reader, whose read of 0 is
/// then unordered before the write), the set's load in `members` made Relaxed (470),
/// and the reader's announcement made Relaxed (306: the writer of 0 reads the stale bit,
/// then the announcement of 1, which no longer carries the read of 0 with it).
#[test]
fn readers_reader_switches_replicas() {
    check(Some(3), || {
        let (first, second) = switch_replicas(|s| Some(s.read(1)));
        assert!(first <= 1 && second.is_some_and(|second| second <= 1));
    });
}

/// `readers_reader_switches_replicas` whose read of replica 1 is the read's common case,
/// `RwLock::try_read`, hoping for the stamp of replica 1's write.
///
/// Asserts: a `try_read` that succeeds reads replica 1's write whole, and the writer of
/// replica 0 never overlaps the earlier read of replica 0 (loom's cell tracking). Fails
/// with `try_read`'s announcement `Relaxed` (a writer of 0 that reads it would not
/// synchronize with the read of 0 before it: the release sequence of C++20).
#[test]
fn readers_reader_switches_replicas_try_read() {
    check(Some(3), || {
        let (first, second) = switch_replicas(|s| {
            s.locks[1]
                .try_read(&s.readers[0], 1, RwLock::stamp(1))
                .map(|_read| s.cells_of(1))
        });
        assert!(first <= 1);
        if let Some(second) = second {
            assert_eq!(second, 1, "the stamp does not describe the data");
        }
    });
}

/// The scenario of `readers_reader_switches_replicas`: a writer of each replica; the
/// reader joins 0's set, reads 0, switches to 1's set and reads 1 with `read_second`;
/// then the writers are joined and replica 1 is read once more. Returns the two reads.
fn switch_replicas(
    read_second: impl FnOnce(&SwitchingReader) -> Option<u64>,
) -> (u64, Option<u64>) {
    switch_replicas_with(false, read_second)
}

/// [`switch_replicas`], with writers that write alone without the fence and joins that
/// issue the heavy barrier if `asymmetric` (R5).
fn switch_replicas_with(
    asymmetric: bool,
    read_second: impl FnOnce(&SwitchingReader) -> Option<u64>,
) -> (u64, Option<u64>) {
    let s = Arc::new(SwitchingReader::with(asymmetric));
    let writers: Vec<_> = (0..2)
        .map(|r| {
            let s = s.clone();
            thread::spawn(move || s.write(r))
        })
        .collect();
    s.join(None, 0);
    let first = s.read(0);
    s.join(Some(0), 1);
    let second = read_second(&s);
    for w in writers {
        w.join().unwrap();
    }
    assert_eq!(s.read(1), 1);
    (first, second)
}

/// `readers_reader_switches_replicas` with one writer thread that writes replica 0 and
/// then replica 1 (two threads: a deeper bound).
///
/// Asserts: as there.
///
/// Bound 4: 5 000 executions, under a second. Catches the same three changes
/// (executions 328, 328 and 72).
#[test]
fn readers_reader_switches_replicas_one_writer() {
    check(Some(4), || {
        let (first, second) = switch_replicas_one_writer(false, |s| Some(s.read(1)));
        assert!(first <= 1 && second.is_some_and(|second| second <= 1));
    });
}

/// The scenario of `readers_reader_switches_replicas_one_writer`: one writer thread
/// writes replica 0 and then replica 1 (without the fence when alone, and the reader's
/// joins with the heavy barrier, if `asymmetric`); the reader joins 0's set, reads 0,
/// switches to 1's set and reads 1 with `read_second`; then the writer is joined and
/// replica 1 is read once more. Returns the two reads.
fn switch_replicas_one_writer(
    asymmetric: bool,
    read_second: impl FnOnce(&SwitchingReader) -> Option<u64>,
) -> (u64, Option<u64>) {
    let s = Arc::new(SwitchingReader::with(asymmetric));
    let w = s.clone();
    let writer = thread::spawn(move || {
        w.write(0);
        w.write(1);
    });
    s.join(None, 0);
    let first = s.read(0);
    s.join(Some(0), 1);
    let second = read_second(&s);
    writer.join().unwrap();
    assert_eq!(s.read(1), 1);
    (first, second)
}

/// `readers_reader_switches_replicas` with R5: each writer finds its replica's set
/// empty or holding the reader, and writes alone, after the light barrier only, when it
/// is empty; the reader's joins issue the heavy barrier after their insert.
///
/// Asserts: as there (no read overlaps a write of the same replica, `a == b`).
///
/// Bound 3: 40 000 executions, 2–3 s. Catches a join without the heavy barrier (execution
/// 1: the writer of 1 loads the set without the reader's bit, the reader loads the
/// word without the writer's flag), a writer without the light barrier (1), one that
/// looks at the set before its light barrier (1), and one that finds members and scans
/// them without F2 (1).
#[test]
fn readers_lone_writers_and_a_joiner() {
    check(Some(3), || {
        let (first, second) = switch_replicas_with(true, |s| Some(s.read(1)));
        assert!(first <= 1 && second.is_some_and(|second| second <= 1));
    });
}

/// `readers_lone_writers_and_a_joiner` whose second read is `try_read` (the read's
/// common case), and with one writer thread that writes replica 0 and then replica 1.
///
/// Asserts: as `readers_reader_switches_replicas_try_read`.
///
/// Bound 4: 8 000 executions, under a second. Catches the same four changes (execution
/// 1, in the read of replica 0: a `try_read` that hopes for the stamp of the write
/// cannot overlap it).
#[test]
fn readers_lone_writer_and_a_joiner_one_writer() {
    check(Some(4), || {
        let (first, second) = switch_replicas_one_writer(true, |s| {
            s.locks[1]
                .try_read(&s.readers[0], 1, RwLock::stamp(1))
                .map(|_read| s.cells_of(1))
        });
        assert!(first <= 1);
        if let Some(second) = second {
            assert_eq!(second, 1, "the stamp does not describe the data");
        }
    });
}

/// An affinity manager with two nodes whose `current_node` is whatever the model set
/// last (a plain counter: loom runs the model's threads one at a time, and only the
/// reader asks it).
#[derive(Debug, Default)]
struct Movable {
    node: StdAtomicUsize,
}

impl AffinityManager for Movable {
    fn current_node(&self) -> NodeId {
        NodeId(self.node.load(Ordering::Relaxed))
    }

    fn nodes(&self) -> Vec<NodeId> {
        vec![NodeId(0), NodeId(1)]
    }

    fn set_memory_node(&self, node: NodeId) -> Result<SavedPolicy, AffinityError> {
        if node.0 < 2 {
            Ok(SavedPolicy::UNCHANGED)
        } else {
            Err(AffinityError::UnknownNode(node))
        }
    }

    fn restore_memory_policy(&self, _saved: SavedPolicy) -> Result<(), AffinityError> {
        Ok(())
    }
}

/// The shared state of an instance over [`Sum`] with two replicas, slot 0 on node 0 and
/// slot 1 on node 1, and one registered thread per entry of `on` (thread `t` matched to
/// replica `on[t]`, on that replica's node), built from its parts as [`summing`] does.
fn summing_on_two(on: &[usize], manager: alloc::sync::Arc<Movable>) -> Shared<Sum> {
    let memory = Memory::new(manager, 2);
    let shared = Shared {
        log: Log::new(LOG_CAP),
        replicas: ReplicaSet::new(on.len()),
        threads: Dispatcher::new(on.len()).expect("instance numbers left"),
        poison: Poison::new(memory.steers()),
        memory,
        policy: crate::policy::PolicyState::new(crate::policy::Policy::manual()),
    };
    for node in 0..2 {
        shared.replicas.found(NodeId(node), Sum(0), &shared.log);
    }
    let admin = shared.threads.admin();
    for &slot in on {
        shared
            .threads
            .next_thread(&admin, slot, NodeId(slot))
            .expect("within the limit");
        shared
            .replicas
            .shell(slot)
            .threads
            .fetch_add(1, Ordering::Relaxed);
    }
    drop(admin);
    shared
}

/// The replica thread `tid` is matched to now.
fn matched(shared: &Shared<Sum>, tid: usize) -> usize {
    shared.threads.context(tid).replica.load(Ordering::Relaxed)
}

/// A thread that migrates: thread 0 on replica 0 (node 0) reads, is told it now runs on
/// node 1, `follow`s (the real re-matching, under the admin lock) to replica 1, and reads
/// again, through the real read path (`Shared::read`: it leaves replica 0's reader set
/// and joins replica 1's before it announces the read, `join_readers`). Meanwhile the
/// other thread adds 1 through replica 0 (thread 1) and then 2 through replica 1
/// (thread 2), each a combiner applying under its replica's write lock, which waits only
/// for its own replica's reader set (R2); the reader's read of replica 1 may itself
/// combine to catch up.
///
/// Asserts: no read overlaps a write of the same replica (loom's cell tracking on the
/// replicas' data); the reads return written values (0, 1 or 3), in order; the writes'
/// responses are 0 and 1; the reader ends matched to replica 1; a read after both
/// threads are done returns 3.
///
/// Bound 3: 5 900 executions, 3 s (3 700 before rwlock R5, whose lone writer path the
/// model now takes). Catches a read path that never joins a reader set (execution 1),
/// one that joins after taking the read lock (1), and the set's load in `members` made
/// Relaxed (170) (these three counted before R5); a join without R5's heavy barrier
/// (1), a writer without its light barrier (1), one that looks at the set before its
/// light barrier (1), and one that finds members and scans them without F2 (1). Not a Relaxed `ReaderSet::remove`: on
/// this path the removal follows `follow`'s admin section, whose Release fence
/// (`Dispatcher::changing`) already orders the thread's reads of replica 0 before it.
#[test]
fn readers_thread_follows_to_another_replica() {
    thread_follows_to_another_replica();
}

/// `readers_thread_follows_to_another_replica` with a kernel that refuses the heavy
/// barrier (R5, `Asymmetric::heavy` returns `false`): the reader's join of replica 1
/// goes through replica 1's combiner lock instead (`Replica::order_join`), while the
/// writer of replica 1, alone in its set, writes without the fence.
///
/// Asserts: as there.
///
/// Bound 3: 17 500 executions, 5 s. Catches an `order_join` that does nothing
/// (execution 1, a causality violation on replica 1's data; the only `readers_*` model
/// that does), a join without the heavy barrier that goes on as if it had one (1), and
/// a writer that finds members and scans them without F2 (1).
#[test]
fn readers_thread_follows_with_the_barrier_refused() {
    struct Reset;
    impl Drop for Reset {
        fn drop(&mut self) {
            crate::sync::HEAVY_REFUSED.with(|r| r.set(false));
        }
    }
    crate::sync::HEAVY_REFUSED.with(|r| r.set(true));
    let _reset = Reset;
    thread_follows_to_another_replica();
}

/// The model of `readers_thread_follows_to_another_replica`.
fn thread_follows_to_another_replica() {
    check(Some(3), || {
        let manager = alloc::sync::Arc::new(Movable::default());
        let shared = Arc::new(summing_on_two(&[0, 0, 1], manager.clone()));
        let w = shared.clone();
        let writer = thread::spawn(move || [write(&w, 1, 1), write(&w, 2, 2)]);
        let first = shared.read(0, |d| d.0);
        manager.node.store(1, Ordering::Relaxed);
        shared.follow(0);
        assert_eq!(matched(&shared, 0), 1, "not re-matched to its new node");
        let second = shared.read(0, |d| d.0);
        assert!(
            [0, 1, 3].contains(&first) && [0, 1, 3].contains(&second) && first <= second,
            "reads {first} then {second}"
        );
        assert_eq!(writer.join().unwrap(), [0, 1], "lost or reordered write");
        assert_eq!(shared.read(0, |d| d.dispatch(())), 3);
    });
}

/// A reader of a frozen clone source reads from the stand-in while the stand-in's
/// combiner writes (replica P6 with R2). Two replicas: X (slot 0), S (slot 1); thread 0
/// is on X, thread 1 on S. Thread 1 adds 1 through S before the model's threads start
/// (S and `ctail` at 1, X behind at 0). Then the main thread freezes X as a clone
/// source (as `add_replica` does: the stand-in S recorded first, then X's combiner lock
/// and its frozen flag), starts the reader and adds 2 through S, unfreezes X and adds 4
/// through S. The reader reads twice: X is behind its `ctail` and frozen, so it reads
/// from S, which puts it in S's reader set first (the set check is made for every replica
/// the read path tries, not once per operation); once X is unfrozen it catches X up
/// (combining on X) and reads there, back in X's set.
///
/// Asserts: no read overlaps a write of the same replica (loom's cell tracking); the
/// reads return written values (1, 3 or 7), in order; the writes' responses are 1 and
/// 3; a read after both threads are done returns 7 on either replica.
///
/// Bound 3: 32 400 executions, 10 s (24 000 before rwlock R5). Catches a read path that
/// joins only the set of the thread's own replica, once per operation, rather than
/// that of every replica it tries (execution 108), one that never joins (108), one
/// that joins after taking the read lock (144), `ReaderSet::remove` made Relaxed (425:
/// the reader, back on X, has left S's set, and a write on S that reads its bit cleared
/// is not ordered after its read of S), the set's load in `members` made Relaxed (425)
/// and the reader's announcement made Relaxed (228) (these counted before R5); a join
/// without R5's heavy barrier (4), a writer without its light barrier (4), one that
/// looks at the set before its light barrier (346), and one that finds members and
/// scans them without F2 (618).
#[test]
fn readers_stand_in_for_a_frozen_source() {
    check(Some(3), || {
        let manager = alloc::sync::Arc::new(Movable::default());
        let shared = Arc::new(summing_on_two(&[0, 1], manager));
        assert_eq!(write(&shared, 1, 1), 0);
        shared.replicas.set_stand_in(Some(1));
        let frozen = shared.replicas.shell(0).freeze();
        let r = shared.clone();
        let reader = thread::spawn(move || {
            let first = r.read(0, |d| d.dispatch(()));
            let second = r.read(0, |d| d.dispatch(()));
            (first, second)
        });
        let during = write(&shared, 1, 2);
        drop(frozen);
        let after = write(&shared, 1, 4);
        let (first, second) = reader.join().unwrap();
        assert_eq!([during, after], [1, 3], "lost or reordered write");
        assert!(
            [1, 3, 7].contains(&first) && [1, 3, 7].contains(&second) && first <= second,
            "reads {first} then {second}"
        );
        assert_eq!(shared.read(0, |d| d.0), 7);
        assert_eq!(shared.read(1, |d| d.0), 7);
    });
}
