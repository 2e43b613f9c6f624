//! The shared operation log.
//!
//! A ring of `capacity` entries (a power of two) indexed by *logical* indices that grow
//! forever; index `i` lives in slot `i & (capacity - 1)`. Combiners reserve a range of
//! indices with one CAS on `tail`, write their operations into it, and every replica
//! applies the log in index order.
//!
//! ```text
//!            head                    ctail              tail
//!              v                       v                  v
//!   ... | done | applied by some | ... | reserved/written | free ... (wraps)
//!   position(r) for each active replica r lies in [head, tail]
//! ```
//!
//! Invariants (cited by the `SAFETY` comments):
//!
//! - **L1** An index is reserved by exactly one combiner (the CAS on `tail`); only that
//!   combiner writes the entry's operation.
//! - **L2** Index `i` may be reserved only when `i < head + capacity`, and `head` never
//!   exceeds the position of any active replica. So when `i` is reserved, every active
//!   replica has finished with index `i - capacity`, the previous occupant of the slot.
//! - **L3** Entry liveness comes from the logical index, never from per-replica wrap
//!   parity: an entry's `state` word is `(i + 1) << 1` once index `i` is written, so a
//!   reader of index `i` knows the slot holds `i` and not a previous lap. This is what
//!   lets a replica join at any position (see `add_replica`).
//! - **L4** Bit 0 of `state` is a clone lock: replicas clone an operation one at a time,
//!   so `WriteOperation` needs to be `Send` only, not `Sync`.
//! - **L5** Each operation is dropped exactly once: when its slot is overwritten a lap
//!   later (after every replica cloned it, by L2) or when the log is dropped.
//! - **L6** A combiner whose replica is the only live one (it read a live-replica count
//!   of one under its combiner lock) is the only thread that clones entries and writes
//!   `ctail` until it releases the lock: adding a replica needs that lock (the only
//!   replica is the clone source), and helping needs a second live replica. Such a
//!   combiner is also the only appender; it reserves, skips the clone lock and updates
//!   `ctail` with plain loads and stores.
//! - **L7** A replica joins at the position of an active replica (its clone source),
//!   frozen while the new slot is activated; a garbage collection whose scan overlapped
//!   an activation is redone, so `head` never passes a joining replica (I3).
//!
//! `head` is a cache of `min(position(r))` over the active replicas; it is recomputed
//! only when a reservation does not fit (garbage collection). `ctail` is the largest
//! position any replica has completed: a read waits until its replica reaches the
//! `ctail` it saw on entry, which is what makes reads linearizable.

use alloc::boxed::Box;
use alloc::vec::Vec;
use core::mem::MaybeUninit;

use crate::sync::{AtomicBool, AtomicUsize, Backoff, CachePadded, Ordering, UnsafeCell};

/// The most replicas one instance can have at once.
pub const MAX_REPLICAS: usize = 64;
/// The smallest log capacity, in entries.
pub const MIN_LOG_CAPACITY: usize = 4;
/// The largest log capacity, in entries.
pub const MAX_LOG_CAPACITY: usize = 1 << 28;
/// The default log capacity, in entries.
pub const DEFAULT_LOG_CAPACITY: usize = 1 << 16;

const LOCKED: usize = 1;

struct Entry<W> {
    /// `0`: never written. `(i + 1) << 1`: holds the operation of index `i` (L3).
    /// Bit 0: a replica is cloning the operation (L4).
    state: AtomicUsize,
    op: UnsafeCell<MaybeUninit<W>>,
}

/// Where one replica slot stands in the log.
#[derive(Debug)]
pub(crate) struct Position {
    /// Every index below this one has been applied to the replica in this slot.
    applied: AtomicUsize,
    /// Whether garbage collection must wait for this slot.
    active: AtomicBool,
}

pub(crate) struct Log<W> {
    entries: Box<[Entry<W>]>,
    mask: usize,
    /// Next index to reserve.
    tail: CachePadded<AtomicUsize>,
    /// Every active replica has applied every index below `head` (L2).
    head: CachePadded<AtomicUsize>,
    /// The largest position any replica has completed.
    ctail: CachePadded<AtomicUsize>,
    positions: Box<[CachePadded<Position>]>,
    /// How many times a slot was activated; lets `collect` detect a scan that overlapped
    /// an activation (L7).
    activations: CachePadded<AtomicUsize>,
}

// SAFETY: the log hands operations between threads (so `W: Send`), and never gives two
// threads a `&W` to the same operation at once: writes are exclusive by L1, clones are
// serialized by the clone lock (L4), and drops happen only after every clone (L2, L5).
unsafe impl<W: Send> Send for Log<W> {}
// SAFETY: see `Send`; shared access goes through atomics and the protocol above.
unsafe impl<W: Send> Sync for Log<W> {}

impl<W> core::fmt::Debug for Log<W> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("Log")
            .field("capacity", &(self.mask + 1))
            .field("tail", &self.tail.load(Ordering::Relaxed))
            .field("head", &self.head.load(Ordering::Relaxed))
            .field("ctail", &self.ctail.load(Ordering::Relaxed))
            .finish_non_exhaustive()
    }
}

impl<W: Clone> Log<W> {
    /// A log of `capacity` entries; the caller has checked that it is a power of two
    /// within `MIN_LOG_CAPACITY..=MAX_LOG_CAPACITY`.
    pub(crate) fn new(capacity: usize) -> Self {
        debug_assert!(capacity.is_power_of_two() && capacity >= MIN_LOG_CAPACITY);
        let entries: Vec<Entry<W>> = (0..capacity)
            .map(|_| Entry {
                state: AtomicUsize::new(0),
                op: UnsafeCell::new(MaybeUninit::uninit()),
            })
            .collect();
        let positions: Vec<CachePadded<Position>> = (0..MAX_REPLICAS)
            .map(|_| {
                CachePadded(Position {
                    applied: AtomicUsize::new(0),
                    active: AtomicBool::new(false),
                })
            })
            .collect();
        Self {
            entries: entries.into_boxed_slice(),
            mask: capacity - 1,
            tail: CachePadded(AtomicUsize::new(0)),
            head: CachePadded(AtomicUsize::new(0)),
            ctail: CachePadded(AtomicUsize::new(0)),
            positions: positions.into_boxed_slice(),
            activations: CachePadded(AtomicUsize::new(0)),
        }
    }

    pub(crate) fn capacity(&self) -> usize {
        self.mask + 1
    }

    /// The largest batch one reservation may take: half the log, so that a batch always
    /// fits once the replicas catch up.
    pub(crate) fn max_batch(&self) -> usize {
        self.capacity() / 2
    }

    pub(crate) fn tail(&self) -> usize {
        // Acquire: pairs with the CAS in `try_reserve`, so indices below the returned
        // tail are reserved (their writers write them without waiting on anything).
        self.tail.load(Ordering::Acquire)
    }

    pub(crate) fn ctail(&self) -> usize {
        // Acquire: pairs with the AcqRel `fetch_max` in `publish`.
        self.ctail.load(Ordering::Acquire)
    }

    /// How many entries are reserved but not yet garbage-collected, by the cached head.
    pub(crate) fn used(&self) -> usize {
        self.tail
            .load(Ordering::Relaxed)
            .saturating_sub(self.head.load(Ordering::Relaxed))
    }

    /// How far the replica in `slot` has applied the log.
    pub(crate) fn position(&self, slot: usize) -> usize {
        // Acquire: pairs with the Release store in `publish`, so a reader that sees the
        // position also sees the replica state it covers.
        self.positions[slot].applied.load(Ordering::Acquire)
    }

    /// Makes `slot` take part in garbage collection, starting at `position`.
    ///
    /// The caller guarantees that `position` is at or above `head` and that `head` cannot
    /// pass it while this runs (for a clone: the source replica is frozen at `position`
    /// and active), which keeps L2.
    pub(crate) fn activate(&self, slot: usize, position: usize) {
        self.positions[slot]
            .applied
            .store(position, Ordering::Relaxed);
        self.positions[slot].active.store(true, Ordering::SeqCst);
        // Release: pairs with the Acquire loads in `collect`. A collector whose scan
        // overlapped this activation may have missed the new slot yet seen the source
        // advance past `position` after it unfroze; the changed count makes it scan again.
        self.activations.fetch_add(1, Ordering::Release);
    }

    /// Takes `slot` out of garbage collection (its replica is being removed).
    pub(crate) fn deactivate(&self, slot: usize) {
        self.positions[slot].active.store(false, Ordering::SeqCst);
    }

    /// Recomputes `head` as the smallest position of the active replicas and returns it.
    pub(crate) fn collect(&self) -> usize {
        let min = loop {
            // Acquire: pairs with the Release in `activate`.
            let before = self.activations.load(Ordering::Acquire);
            let mut min = self.tail.load(Ordering::Acquire);
            for p in self.positions.iter() {
                if p.active.load(Ordering::SeqCst) {
                    // Acquire: pairs with `publish`; the replica's clones of every entry
                    // below this position happen before a slot of it is overwritten (L2).
                    min = min.min(p.applied.load(Ordering::Acquire));
                }
            }
            // No activation overlapped the scan (L7): every replica activated later
            // starts at or above a position this scan saw, so at or above `min`.
            if self.activations.load(Ordering::Acquire) == before {
                break min;
            }
        };
        // AcqRel: `head` only grows; the reservation that reads it acquires the replicas'
        // progress through this RMW's release sequence.
        let prev = self.head.fetch_max(min, Ordering::AcqRel);
        prev.max(min)
    }

    /// The active slot with the lowest position, if it is below `below`.
    pub(crate) fn laggard(&self, below: usize) -> Option<usize> {
        let mut best: Option<(usize, usize)> = None;
        for (slot, p) in self.positions.iter().enumerate() {
            if p.active.load(Ordering::Acquire) {
                let pos = p.applied.load(Ordering::Acquire);
                if pos < below && best.is_none_or(|(_, b)| pos < b) {
                    best = Some((slot, pos));
                }
            }
        }
        best.map(|(slot, _)| slot)
    }

    /// Reserves `n` consecutive indices and returns the first, or `None` if the log has no
    /// room until the slowest active replica advances.
    pub(crate) fn try_reserve(&self, n: usize) -> Option<usize> {
        self.try_reserve_as(n, false)
    }

    /// `try_reserve` for the combiner of the only live replica, the only appender (L6):
    /// a plain store replaces the CAS.
    pub(crate) fn try_reserve_sole(&self, n: usize) -> Option<usize> {
        self.try_reserve_as(n, true)
    }

    #[inline(always)]
    fn try_reserve_as(&self, n: usize, sole: bool) -> Option<usize> {
        debug_assert!(n <= self.max_batch());
        loop {
            let tail = self.tail.load(Ordering::Relaxed);
            // Acquire: pairs with the AcqRel `fetch_max` in `collect` (L2).
            let mut head = self.head.load(Ordering::Acquire);
            if tail + n > head + self.capacity() {
                head = self.collect();
                if tail + n > head + self.capacity() {
                    return None;
                }
            }
            if sole {
                // Release: as the CAS below.
                self.tail.store(tail + n, Ordering::Release);
                return Some(tail);
            }
            // Release on success: a thread that sees the new tail (`Log::tail`) knows these
            // indices are owned by a writer that is about to write them.
            if self
                .tail
                .compare_exchange_weak(tail, tail + n, Ordering::AcqRel, Ordering::Relaxed)
                .is_ok()
            {
                return Some(tail);
            }
        }
    }

    /// Writes the operation of index `idx`, which the caller reserved.
    pub(crate) fn write(&self, idx: usize, op: W) {
        let entry = &self.entries[idx & self.mask];
        // Relaxed: the previous occupant's last state change (a clone unlock) happens
        // before this through the `head` chain of L2.
        let prev = entry.state.load(Ordering::Relaxed);
        entry.op.with_mut(|p| {
            // SAFETY: L1 makes this thread the only writer of the slot; by L2 every replica
            // has finished cloning the previous occupant (index `idx - capacity`), so no
            // one else accesses the slot. A non-zero state means the slot holds an
            // initialized operation that has not been dropped yet (L5).
            unsafe {
                if prev != 0 {
                    (*p).assume_init_drop();
                }
                (*p).write(op);
            }
        });
        // Release: pairs with the Acquire CAS in `read`; the operation is visible to any
        // replica that sees this index's state (L3).
        entry.state.store((idx + 1) << 1, Ordering::Release);
    }

    /// Returns a clone of the operation of index `idx`, waiting until its writer wrote it.
    pub(crate) fn read(&self, idx: usize) -> W {
        self.read_as(idx, false)
    }

    /// `read` for a replica that is the only live one: no other replica can clone the
    /// entry at the same time, so the clone lock (L4) is skipped (L6).
    pub(crate) fn read_sole(&self, idx: usize) -> W {
        self.read_as(idx, true)
    }

    #[inline(always)]
    fn read_as(&self, idx: usize, sole: bool) -> W {
        let entry = &self.entries[idx & self.mask];
        let ready = (idx + 1) << 1;
        let mut backoff = Backoff::new();
        if sole {
            // Acquire: pairs with the Release store in `write`.
            while entry.state.load(Ordering::Acquire) != ready {
                backoff.snooze();
            }
            return entry.op.with(|p| {
                // SAFETY: the state says the slot holds index `idx`, written and
                // initialized (L3); no other replica accesses it (L6), and the slot cannot
                // be overwritten while this replica's position is below `idx + 1` (L2).
                unsafe { (*p).assume_init_ref().clone() }
            });
        }
        // Acquire: pairs with the Release store in `write`, and with the Release unlock
        // below of the replica that cloned the operation before us.
        while entry
            .state
            .compare_exchange_weak(ready, ready | LOCKED, Ordering::Acquire, Ordering::Relaxed)
            .is_err()
        {
            backoff.snooze();
        }
        // Unlocks even if `clone` panics, so other replicas do not wait forever.
        struct Unlock<'a>(&'a AtomicUsize, usize);
        impl Drop for Unlock<'_> {
            fn drop(&mut self) {
                // Release: pairs with the Acquire CAS of the next replica to clone.
                self.0.store(self.1, Ordering::Release);
            }
        }
        let _unlock = Unlock(&entry.state, ready);
        entry.op.with(|p| {
            // SAFETY: the state says the slot holds index `idx`, written and initialized
            // (L3), and the clone lock (L4) makes this the only access to it right now. The
            // slot cannot be overwritten while this replica's position is below `idx + 1`
            // (L2).
            unsafe { (*p).assume_init_ref().clone() }
        })
    }

    /// Records that the replica in `slot` has applied every index below `position`, and
    /// raises `ctail` to it.
    pub(crate) fn publish(&self, slot: usize, position: usize) {
        self.publish_as(slot, position, false);
    }

    /// `publish` for the only live replica: no one else writes `ctail` now (L6), so a
    /// plain store replaces the read-modify-write.
    pub(crate) fn publish_sole(&self, slot: usize, position: usize) {
        self.publish_as(slot, position, true);
    }

    #[inline(always)]
    fn publish_as(&self, slot: usize, position: usize, sole: bool) {
        // Release: pairs with the Acquire loads in `position` and `collect`.
        self.positions[slot]
            .applied
            .store(position, Ordering::Release);
        if self.ctail.load(Ordering::Relaxed) < position {
            if sole {
                // Release: pairs with the Acquire load in `ctail`.
                self.ctail.store(position, Ordering::Release);
            } else {
                // AcqRel: pairs with the Acquire load in `ctail`.
                self.ctail.fetch_max(position, Ordering::AcqRel);
            }
        }
    }
}

impl<W> Drop for Log<W> {
    fn drop(&mut self) {
        for entry in self.entries.iter_mut() {
            let state = entry.state.load(Ordering::Relaxed);
            if state != 0 {
                entry.op.with_mut(|p| {
                    // SAFETY: `&mut self` excludes every other access; a non-zero state
                    // means the slot holds an operation not yet dropped (L5).
                    unsafe { (*p).assume_init_drop() }
                });
            }
        }
    }
}

#[cfg(all(test, not(ldnr_loom)))]
mod tests {
    use super::*;
    use alloc::sync::Arc;
    use core::sync::atomic::AtomicUsize as StdUsize;

    #[derive(Debug)]
    struct Counted(Arc<StdUsize>);
    impl Clone for Counted {
        fn clone(&self) -> Self {
            Counted(self.0.clone())
        }
    }

    #[test]
    fn reserve_respects_capacity_and_gc() {
        let log: Log<u64> = Log::new(8);
        log.activate(0, 0);
        assert_eq!(log.try_reserve(4), Some(0));
        assert_eq!(log.try_reserve(4), Some(4));
        assert_eq!(log.try_reserve(1), None, "a full log refuses");
        for i in 0..8 {
            log.write(i, i as u64);
        }
        for i in 0..3 {
            assert_eq!(log.read(i), i as u64);
        }
        log.publish(0, 3);
        assert_eq!(log.try_reserve(4), None, "only three entries are free");
        assert_eq!(log.try_reserve(3), Some(8));
        assert_eq!(log.ctail(), 3);
    }

    #[test]
    fn the_slowest_active_slot_holds_gc() {
        let log: Log<u64> = Log::new(4);
        log.activate(0, 0);
        log.activate(1, 0);
        assert_eq!(log.try_reserve(2), Some(0));
        assert_eq!(log.try_reserve(2), Some(2));
        for i in 0..4 {
            log.write(i, i as u64);
        }
        log.publish(0, 4);
        assert_eq!(log.collect(), 0, "slot 1 still holds the head");
        assert_eq!(log.laggard(4), Some(1));
        assert_eq!(log.try_reserve(1), None);
        log.publish(1, 1);
        assert_eq!(log.collect(), 1);
        assert_eq!(log.try_reserve(1), Some(4));
        assert_eq!(log.laggard(1), None, "nobody is below 1");
        assert_eq!(log.ctail(), 4);
    }

    #[test]
    fn operations_are_dropped_exactly_once() {
        let token = Arc::new(StdUsize::new(0));
        {
            let log: Log<Counted> = Log::new(4);
            log.activate(0, 0);
            for lap in 0..10 {
                let start = log.try_reserve(2).unwrap();
                log.write(start, Counted(token.clone()));
                log.write(start + 1, Counted(token.clone()));
                drop(log.read(start));
                drop(log.read(start + 1));
                log.publish(0, start + 2);
                assert!(Arc::strong_count(&token) <= 5, "lap {lap}: leaked ops");
            }
        }
        assert_eq!(Arc::strong_count(&token), 1, "every op dropped, none twice");
    }
}
