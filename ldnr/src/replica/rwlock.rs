//! The distributed reader-writer lock of a replica.
//!
//! Writers are rare and batched (one combiner per replica applies a whole batch under one
//! write lock); readers are many. So a reader touches only its own cache line: every
//! registered thread owns one [`ReaderSlot`] (kept in the dispatcher, not per replica,
//! so a replica's memory does not grow with the thread limit). A reader announces the
//! replica it reads by storing the replica's slot number + 1 into its reader slot; a
//! writer raises the replica's `writer` flag and waits until no reader slot names the
//! replica.
//!
//! ```text
//!   reader                              writer (holds the replica's combiner lock)
//!   slot := r+1            (Release)    word := word | WRITER   (Relaxed)
//!   fence(SeqCst)          ----F1----   fence(SeqCst)           ----F2----
//!   if word & WRITER {                  for every slot: wait while slot == r+1
//!       slot := 0; retry }
//!   (try_read, the common case: if word
//!   != the stamp hoped for { slot := 0;
//!   take the slow path })
//!   ... read the replica ...            ... apply a batch ...
//!   slot := 0              (Release)    word := stamp           (Release)
//! ```
//!
//! This is a Dekker pattern. **R1**: the two fences are ordered one way or the other in the
//! single total order of SeqCst fences; if F1 comes first the writer sees the reader's
//! slot, otherwise the reader sees `writer == true`. Either way they are never both inside.
//! Plain SeqCst loads and stores would also do on real hardware, but fences are what loom
//! models exactly, and the model checks the code that ships.
//!
//! Only one writer per replica exists at a time: the write lock is taken only by the
//! holder of the replica's combiner lock. So only it stores the lock's word.
//!
//! - **R3** The word is the writer bit and a *stamp* of what the replica is: when neither
//!   [`WRITER`] nor [`CHECK`] is set, the shell holds a live replica whose log position is
//!   the stamp's upper bits (the position modulo 2^(usize bits − 2); exact in practice:
//!   a live replica is never more than a log capacity, at most 2^28 entries, behind any
//!   `ctail`, L2 and L8, so no two positions it can be compared with share a stamp).
//!   Writers keep it so: the write lock is where
//!   the data, the position and the liveness change (P1, P4), and a writer that changed
//!   the position or the liveness says what it left ([`WriteGuard::publish`],
//!   [`WriteGuard::retire`]) before its release stores the stamp; one that changed
//!   neither leaves the stamp it found. A new lock says [`CHECK`]. So a reader that holds
//!   the read lock and loaded a word equal to [`RwLock::stamp`]`(ctail)` may read the
//!   replica without loading its position or its data's presence: one load (the one that
//!   checks for a writer) and one comparison. Any other word sends it to the full checks,
//!   which read the log's position and the shell under the same read lock.
//!
//! A writer does not scan every thread's reader slot, only those of the threads in the
//! replica's [`ReaderSet`]: a bitmap of the thread indices that may read it. So a write
//! costs in proportion to the threads that use *this* replica, not to every thread ever
//! registered (most of which, on a big machine, read other replicas on other nodes).
//!
//! - **R2** A thread is in the reader set of every replica it announces in its reader
//!   slot: it puts itself in (an RMW sequenced before its announcement and F1) before its
//!   first read of a replica, and takes itself out (a Release RMW) only between reads,
//!   when it next reads another replica or leaves the instance. A writer loads the set
//!   after F2 (Acquire). If F1 precedes F2 in the SeqCst order, the writer's load sees the
//!   thread's bit (the fence rule: the insert is sequenced before F1) and then its
//!   announcement; otherwise the reader sees the writer's flag. A writer that sees the bit
//!   already cleared synchronizes with the removal, so the thread's earlier reads of the
//!   replica happen before the write. Threads on a stand-in replica and threads moved by a
//!   reconfiguration are covered the same way: whoever reads a replica is in its set
//!   first, whatever its matching says. A writer scans the set only below the dispatcher's
//!   mark of the highest index registered now (D1): lowered with Release after the thread
//!   at the top left its sets, loaded with Acquire, so skipping an index synchronizes
//!   with that departure too.
//!
//! - **R4** A thread takes a write lock only outside its own reads: `read_slow` drops its
//!   read guard before it catches its replica up (`read_in`'s common case takes no write
//!   lock), and every operation starts with the re-entry check (the thread's marks with
//!   `std`, its context's `busy` without), which refuses a call from inside a read. So a
//!   writer need not look at its own reader slot: [`Readers::any`] leaves the writer's
//!   bit out, and the replica of a thread that both reads and writes, alone, costs its
//!   writes no scan. Debug builds assert it.
//!
//! - **R5** Where the instance has the asymmetric barrier (`sync::Asymmetric`: Linux's
//!   `membarrier`, `Builder::membarrier`), a thread that joins a reader set issues the
//!   heavy barrier after its insert and before its first announcement
//!   (`ReaderSet::join`), and a writer puts the light barrier, which costs no
//!   instruction, between raising its flag and loading the set. The pair orders like
//!   two `SeqCst` fences: either the writer's load sees the joiner's bit, or the
//!   joiner's later load of the word sees the writer's flag (or the release that
//!   follows it, with the batch). So a writer that finds no other thread in the set
//!   (R4) takes the lock with no fence: every thread that reads the replica is in the
//!   set first (R2), and a member the writer does not see joined concurrently and will
//!   wait for the flag. A writer that finds members fences (F2) before it scans their
//!   slots, which it loads after the fence: their reads fence only with F1. One thread
//!   writing pays no locked instruction for the write lock; each join pays the heavy
//!   barrier (an interrupt to every CPU that runs a thread of the process). Closures
//!   ([`Readers::asymmetric`] `false`) and instances without the barrier fence always.
//!   Where the kernel refuses a barrier after the process registered, the joiner orders
//!   itself through the replica's combiner lock instead (`Replica::order_join`: its
//!   acquire follows the current writer's release, and every later writer's acquire
//!   follows its release), or gives up the join and reads the stand-in of a frozen
//!   replica; instances built after that fence always.
//!
//! Loom models of R2: `readers_*` in `loom_models/readers.rs` (a reader switching sets under two
//! writers, a thread following its node to another replica, a reader of a frozen
//! source's stand-in), `tests/loom_readers.rs` (a reader moved by `remove_replica`, an
//! index given back and reused, the last reader lowering the mark) and the stand-in model
//! of `tests/loom_reconfigure.rs`. Of R5: `readers_lone_writer*` in
//! `loom_models/readers.rs`, model 4 of `tests/loom_readers.rs`, and every model built
//! on an instance or its shared state, since the barrier is on under loom.

use alloc::boxed::Box;

use crate::sync::{fence, Asymmetric, AtomicUsize, Backoff, Ordering};

/// One thread's reader announcement: `0`, or the replica slot it reads + 1.
#[derive(Debug, Default)]
pub(crate) struct ReaderSlot(AtomicUsize);

impl ReaderSlot {
    pub(crate) fn new() -> Self {
        Self(AtomicUsize::new(0))
    }

    /// Whether the owner holds a read lock now. Owner only: a nonzero slot is its own
    /// doing, so a `Relaxed` load sees it.
    #[inline]
    pub(crate) fn held(&self) -> bool {
        self.0.load(Ordering::Relaxed) != 0
    }

    /// Whether this thread is reading replica `slot` right now.
    #[inline]
    pub(crate) fn reads(&self, slot: usize) -> bool {
        // Acquire: pairs with the Release store in `ReadGuard::drop`, so the reader's
        // accesses happen before the writer's.
        self.0.load(Ordering::Acquire) == slot + 1
    }
}

/// The threads that may read one replica (R2): a bitmap of thread indices. The word of
/// the first `BITS` indices (64; 32 on 32-bit targets) sits in the set itself, so that
/// the writer's common check (is anyone but me listed?) loads it and the length of the
/// rest, and the registered mark only if there is a rest ([`ReaderSet::any_but`]).
#[derive(Debug)]
pub(crate) struct ReaderSet {
    /// Indices `0..BITS`.
    first: AtomicUsize,
    /// Indices `BITS..`, one word per `BITS` (empty for at most `BITS` threads).
    rest: Box<[AtomicUsize]>,
    /// The barrier pair of a lone writer and a joiner (R5): nothing in normal builds,
    /// the model's word under loom.
    barrier: Asymmetric,
}

const BITS: usize = usize::BITS as usize;

impl ReaderSet {
    /// A set for thread indices below `threads`.
    pub(crate) fn new(threads: usize) -> Self {
        Self {
            first: AtomicUsize::new(0),
            rest: (BITS..threads.max(BITS))
                .step_by(BITS)
                .map(|_| AtomicUsize::new(0))
                .collect(),
            barrier: Asymmetric::new(),
        }
    }

    /// The word that holds index `tid`.
    #[inline]
    fn word(&self, tid: usize) -> &AtomicUsize {
        match tid.checked_sub(BITS) {
            None => &self.first,
            Some(above) => &self.rest[above / BITS],
        }
    }

    /// Puts thread `tid` in, before it announces a read of this replica (R2).
    #[inline]
    pub(crate) fn insert(&self, tid: usize) {
        // Relaxed: ordered before the reader's announcement by F1 (R2).
        self.word(tid)
            .fetch_or(1 << (tid % BITS), Ordering::Relaxed);
    }

    /// Puts thread `tid` in, before it announces a read of this replica (R2), and, if
    /// the set's writers may write alone without a fence (`asymmetric`, R5), issues the
    /// heavy barrier after it: from there on a lone writer either sees the thread in the
    /// set or has raised its flag where the thread's read will see it. `false` if the
    /// kernel refused the barrier: the caller must order the join with the replica's
    /// writers itself before it reads (`Replica::order_join`).
    #[inline]
    #[must_use = "a join whose barrier was refused must be ordered with the writers"]
    pub(crate) fn join(&self, tid: usize, asymmetric: bool) -> bool {
        self.insert(tid);
        !asymmetric || self.barrier.heavy()
    }

    /// The writer's side of R5, between raising its flag and looking at the set.
    #[inline(always)]
    pub(crate) fn light(&self) {
        self.barrier.light();
    }

    /// Takes thread `tid` out; it is not reading this replica now (R2).
    #[inline]
    pub(crate) fn remove(&self, tid: usize) {
        // Release: pairs with the Acquire in `members`; the thread's reads of the replica
        // happen before a writer that no longer sees it.
        self.word(tid)
            .fetch_and(!(1 << (tid % BITS)), Ordering::Release);
    }

    /// Whether the set may hold a thread index other than `except` (any index, or
    /// `usize::MAX` for none): exact for the first word, whose indices it checks with
    /// one load; `true` whenever indices past it are registered (`limit()`, the highest
    /// index registered + 1, loaded only if the set has later words), which leaves
    /// those to the scan. The common case loads three words and branches once.
    #[inline(always)]
    pub(crate) fn any_but(&self, limit: impl FnOnce() -> usize, except: usize) -> bool {
        let own = if except < BITS { 1 << except } else { 0 };
        // Acquire: as in `Members::next`. (A thread that left cleared its bit with a
        // Release RMW of this word: reading the word synchronizes with that.)
        let first = self.first.load(Ordering::Acquire) & !own;
        first != 0 || (!self.rest.is_empty() && limit() > BITS)
    }

    /// The thread indices in the set, below `limit` (the highest index registered + 1).
    #[inline]
    pub(crate) fn members(&self, limit: usize) -> Members<'_> {
        let more = limit.div_ceil(BITS).saturating_sub(1).min(self.rest.len());
        Members {
            words: self.rest[..more].iter(),
            base: 0,
            // Acquire: pairs with the Release in `remove` (R2).
            bits: self.first.load(Ordering::Acquire),
        }
    }
}

/// The thread indices in a [`ReaderSet`], lowest first: one word loaded at a time. (A
/// plain struct rather than iterator adapters: the writer's scan runs on every write, and
/// adapters keep more values live across it, which the compiler spills.)
#[derive(Debug)]
pub(crate) struct Members<'a> {
    words: core::slice::Iter<'a, AtomicUsize>,
    base: usize,
    bits: usize,
}

impl Iterator for Members<'_> {
    type Item = usize;

    #[inline]
    fn next(&mut self) -> Option<usize> {
        while self.bits == 0 {
            // Acquire: pairs with the Release in `remove` (R2).
            self.bits = self.words.next()?.load(Ordering::Acquire);
            self.base = self.base.wrapping_add(BITS);
        }
        let b = self.bits.trailing_zeros() as usize;
        self.bits &= self.bits - 1;
        Some(self.base + b)
    }
}

/// What a writer waits for (R2): the reader slots of the threads in a replica's
/// [`ReaderSet`], looked at only after the writer flag is raised (R1).
pub(crate) trait Readers<'r> {
    /// The reader slots to wait for.
    type Slots: Iterator<Item = &'r ReaderSlot>;

    /// Whether there may be a reader to wait for: `false` only if the set holds no
    /// thread but the writer itself, whose slot holds no read lock while it writes (R4).
    /// Loaded like the set itself, after the writer flag is raised.
    #[inline(always)]
    fn any(&self) -> bool {
        true
    }

    /// Whether every thread that joins the set issues the heavy barrier of R5 after its
    /// insert, so that a writer whose [`any`](Self::any) says `false` after a light
    /// barrier ([`light`](Self::light)) may skip the lock's fence. Default: `false` (a
    /// closure's list is always scanned after the fence).
    #[inline(always)]
    fn asymmetric(&self) -> bool {
        false
    }

    /// The writer's side of R5's barrier pair; only if [`asymmetric`](Self::asymmetric).
    #[inline(always)]
    fn light(&self) {}

    /// The reader slots.
    fn slots(self) -> Self::Slots;
}

/// A closure that lists the reader slots (the models and unit tests): always scanned.
impl<'r, F, I> Readers<'r> for F
where
    F: FnOnce() -> I,
    I: Iterator<Item = &'r ReaderSlot>,
{
    type Slots = I;

    #[inline]
    fn slots(self) -> I {
        self()
    }
}

/// The writer half: one word per replica, the writer bit and the stamp (R3). Not padded:
/// a replica keeps it on its combiner lock's line, which every writer writes anyway
/// (`replica::CombinerLock`).
#[derive(Debug)]
pub(crate) struct RwLock {
    word: AtomicUsize,
}

/// The word's writer bit: a writer holds the lock.
const WRITER: usize = 1;
/// The word's "look at the log and the shell" bit: the stamp says nothing (R3).
const CHECK: usize = 2;
/// Where the stamp's position starts in the word.
const SHIFT: u32 = 2;

/// A read lock; released on drop.
#[derive(Debug)]
#[must_use = "the read lock is released when the guard drops"]
pub(crate) struct ReadGuard<'a> {
    reader: &'a ReaderSlot,
}

/// A write lock; released on drop, storing the stamp it holds (R3).
#[derive(Debug)]
pub(crate) struct WriteGuard<'a> {
    lock: &'a RwLock,
    release: usize,
}

impl WriteGuard<'_> {
    /// The replica is live and at log position `position` when the lock is released.
    #[inline]
    pub(crate) fn publish(&mut self, position: usize) {
        self.release = RwLock::stamp(position);
    }

    /// The replica's data is gone (or its position unknown) when the lock is released:
    /// readers look at the log and the shell (R3).
    #[inline]
    pub(crate) fn retire(&mut self) {
        self.release = CHECK;
    }
}

impl RwLock {
    pub(crate) fn new() -> Self {
        Self {
            word: AtomicUsize::new(CHECK),
        }
    }

    /// The word of a lock free of writers whose live replica is at log position
    /// `position` (R3).
    #[inline(always)]
    pub(crate) fn stamp(position: usize) -> usize {
        position << SHIFT
    }

    /// The read lock of replica `slot` if its word is `expected` (a stamp: no writer,
    /// the replica live at that position, R3), taken with one announcement, fence and
    /// load; otherwise `None`, the announcement withdrawn. The readers' common case; the
    /// rest is [`read`](Self::read)'s.
    #[inline]
    pub(crate) fn try_read<'a>(
        &self,
        reader: &'a ReaderSlot,
        slot: usize,
        expected: usize,
    ) -> Option<ReadGuard<'a>> {
        debug_assert!(expected & (WRITER | CHECK) == 0);
        // Release and SeqCst: as in `read` (the Release is checked by the loom model
        // `readers_reader_switches_replicas_try_read`).
        reader.0.store(slot + 1, Ordering::Release);
        fence(Ordering::SeqCst);
        // Acquire: as in `read`.
        if self.word.load(Ordering::Acquire) == expected {
            return Some(ReadGuard { reader });
        }
        // Release: as in `ReadGuard::drop`.
        reader.0.store(0, Ordering::Release);
        None
    }

    /// Takes the read lock of replica `slot` with the calling thread's reader slot, and
    /// returns it with the word it found (no writer in it; its stamp, R3) and whether
    /// that is `expected`, the stamp the caller hopes for. Found, that compare is the
    /// whole test (a stamp has no writer in it), and the caller branches on a constant
    /// instead of comparing again: one compare and branch on the common path, not three.
    /// (`#[inline]` here and on the guards' `drop`: without it a user's crate calls them
    /// out of line, on every operation.)
    #[inline]
    pub(crate) fn read<'a>(
        &self,
        reader: &'a ReaderSlot,
        slot: usize,
        expected: usize,
    ) -> (ReadGuard<'a>, usize, bool) {
        debug_assert!(expected & (WRITER | CHECK) == 0);
        let mut backoff = Backoff::new();
        loop {
            // Release: a writer that reads this announcement (`ReaderSlot::reads`,
            // Acquire) must also see everything this thread did before, in particular
            // its reads under an earlier read lock of another replica, released by a
            // store this one follows in the slot's modification order. Since C++20 a
            // relaxed store no longer continues that release sequence, and a writer that
            // installs a replica in a reused shell could otherwise race with a reader
            // that just left it (found by the loom model
            // `reader_left_on_a_reused_shell`).
            reader.0.store(slot + 1, Ordering::Release);
            // SeqCst: F1 of R1.
            fence(Ordering::SeqCst);
            // Acquire: pairs with the Release in `WriteGuard::drop`; the writer's batch
            // (and what its stamp says) happens before this read.
            let word = self.word.load(Ordering::Acquire);
            if word == expected {
                return (ReadGuard { reader }, word, true);
            }
            if word & WRITER == 0 {
                return (ReadGuard { reader }, word, false);
            }
            reader.0.store(0, Ordering::Release);
            while self.word.load(Ordering::Relaxed) & WRITER != 0 {
                backoff.snooze();
            }
        }
    }

    /// Takes the write lock of replica `slot`, waiting for every reader in `readers` that
    /// reads it. The caller holds the replica's combiner lock, so there is no other writer.
    ///
    /// `readers` is looked at after the writer flag is raised, so a thread that registers
    /// concurrently is either in the list or sees the flag (R1).
    ///
    /// The scan is out of line, behind [`Readers::any`]: a write whose replica has no
    /// other reader listed loads three words for it, not a scan's worth. Loads are what
    /// this path must save: the core keeps only so many in flight, and a single
    /// thread's consecutive writes overlap their cache misses only while a write stays
    /// under that bound (`bench/ab/overlap.rs`).
    #[inline(always)]
    pub(crate) fn write<'a, 'r>(
        &'a self,
        slot: usize,
        readers: impl Readers<'r>,
    ) -> WriteGuard<'a> {
        // Relaxed: only the combiner-lock holder stores the word (one writer at a time),
        // and the previous holder's release happened before our combiner lock.
        let before = self.word.load(Ordering::Relaxed);
        debug_assert!(before & WRITER == 0);
        self.word.store(before | WRITER, Ordering::Relaxed);
        if readers.asymmetric() {
            // R5: the light barrier, then the set; alone in it, no fence. A thread that
            // joins concurrently either is in the set as loaded here or will see the
            // flag after its heavy barrier; no other thread reads the replica (R2).
            readers.light();
            if readers.any() {
                // SeqCst: F2 of R1, for the members, whose reads fence only with F1.
                // (The scan loads the set again, after it.)
                fence(Ordering::SeqCst);
                wait_for_readers(slot, readers);
            }
        } else {
            // SeqCst: F2 of R1.
            fence(Ordering::SeqCst);
            if readers.any() {
                wait_for_readers(slot, readers);
            }
        }
        // Released with the stamp found, unless the holder says otherwise (R3).
        WriteGuard {
            lock: self,
            release: before,
        }
    }
}

/// Waits until no reader slot in `readers` reads replica `slot`.
#[cold]
#[inline(never)]
fn wait_for_readers<'r>(slot: usize, readers: impl Readers<'r>) {
    for reader in readers.slots() {
        let mut backoff = Backoff::new();
        while reader.reads(slot) {
            backoff.snooze();
        }
    }
}

impl Drop for ReadGuard<'_> {
    #[inline]
    fn drop(&mut self) {
        // Release: pairs with the Acquire in `ReaderSlot::reads`.
        self.reader.0.store(0, Ordering::Release);
    }
}

impl Drop for WriteGuard<'_> {
    #[inline]
    fn drop(&mut self) {
        // Release: pairs with the Acquire loads in `RwLock::read` and `RwLock::try_read`.
        self.lock.word.store(self.release, Ordering::Release);
    }
}

#[cfg(all(test, not(ldnr_loom)))]
// Unit tests use std's atomics and threads to drive the code under test.
#[allow(clippy::disallowed_types, clippy::disallowed_methods)]
mod tests {
    extern crate std;
    use super::*;
    use std::sync::atomic::AtomicBool as StdBool;
    use std::sync::Arc;
    use std::vec::Vec;

    #[test]
    fn reader_sets_span_the_first_word_and_the_rest() {
        // In words of `BITS` indices (64, or 32 on 32-bit targets).
        let b = BITS;
        let set = ReaderSet::new(4 * b);
        let listed = [0, 5, b - 1, b, 2 * b + 2, 4 * b - 1];
        for &tid in &listed {
            set.insert(tid);
        }
        let members = |limit| set.members(limit).collect::<Vec<usize>>();
        assert_eq!(members(4 * b), listed);
        // Whole words below the limit.
        assert_eq!(members(b + 1), [0, 5, b - 1, b]);
        assert_eq!(members(b), [0, 5, b - 1]);
        assert_eq!(members(1), [0, 5, b - 1]);
        set.remove(5);
        set.remove(2 * b + 2);
        assert_eq!(members(4 * b), [0, b - 1, b, 4 * b - 1]);

        // The writer's check: exact on the first word, its own bit left out.
        let one = ReaderSet::new(4 * b);
        assert!(!one.any_but(|| b, usize::MAX));
        one.insert(7);
        assert!(!one.any_but(|| b, 7), "only the writer itself");
        assert!(one.any_but(|| b, 8));
        assert!(one.any_but(|| b, usize::MAX));
        assert!(
            one.any_but(|| b, b + 6),
            "a writer past the first word masks nothing"
        );
        one.remove(7);
        // With indices past the first word registered, the scan decides.
        assert!(one.any_but(|| b + 1, usize::MAX));
        assert!(!one.any_but(|| b, usize::MAX));
    }

    #[test]
    fn a_small_set_never_asks_for_the_limit() {
        let set = ReaderSet::new(BITS);
        set.insert(BITS - 1);
        assert!(!set.any_but(|| unreachable!("no word past the first"), BITS - 1));
        assert!(set.any_but(|| unreachable!("the first word decides"), 0));
        assert_eq!(set.members(BITS).collect::<Vec<usize>>(), [BITS - 1]);
        let tiny = ReaderSet::new(1);
        assert!(!tiny.any_but(|| unreachable!("no word past the first"), usize::MAX));
    }

    #[test]
    fn a_writer_waits_for_a_reader_of_its_replica_only() {
        let lock = Arc::new(RwLock::new());
        let readers: Arc<Vec<ReaderSlot>> = Arc::new((0..2).map(|_| ReaderSlot::new()).collect());
        let reading_other = RwLock::new();
        let _other = reading_other.read(&readers[1], 1, RwLock::stamp(0));
        let (guard, _, _) = lock.read(&readers[0], 0, RwLock::stamp(0));
        assert!(readers[0].reads(0) && !readers[0].reads(1));
        let wrote = Arc::new(StdBool::new(false));
        let writer = {
            let (lock, readers, wrote) = (lock.clone(), readers.clone(), wrote.clone());
            std::thread::spawn(move || {
                let _w = lock.write(0, || readers.iter());
                wrote.store(true, Ordering::SeqCst);
            })
        };
        // The writer cannot finish while we hold the read lock; it is not blocked by the
        // reader of replica 1, which we keep holding throughout.
        for _ in 0..1000 {
            assert!(
                !wrote.load(Ordering::SeqCst),
                "writer entered during a read"
            );
            std::thread::yield_now();
        }
        drop(guard);
        writer.join().expect("writer finished once the reader left");
        assert!(wrote.load(Ordering::SeqCst));
        assert!(!readers[0].reads(0));
    }
}
