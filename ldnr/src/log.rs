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
//!   parity: an entry's `state` word is `i << 2 | WRITTEN` once index `i` is written, so a
//!   reader of index `i` knows the slot holds `i` and not a previous lap (indices that
//!   share a slot differ by a multiple of the capacity, at most `2^28`, and the encoding
//!   tells apart any two indices less than `2^(usize::BITS - 2)` apart). This is what
//!   lets a replica join at any position (see `add_replica`).
//! - **L4** Bit 0 of `state` is a clone lock: replicas clone an operation one at a time,
//!   so `WriteOperation` needs to be `Send` only, not `Sync`.
//! - **L5** Each operation is dropped exactly once: when its slot is overwritten a lap
//!   later (after every replica cloned it, by L2) or when the log is dropped. The writer
//!   that overwrites a slot takes the previous occupant out and hands it back
//!   ([`Log::write`]) instead of dropping it in place, so user `Drop` code never runs
//!   between a reservation and the write that fills it (a panic there would leave a
//!   reserved index unwritten and every replica waiting for it).
//! - **L8** Logical indices wrap around `usize` (serial-number arithmetic, as in TCP):
//!   every comparison between indices is made on their wrapping difference, which is
//!   exact because every index that is compared is within `2^(usize::BITS - 1)` of the
//!   others. Active positions, `head` and `ctail` lie in `[tail - capacity, tail]`; a
//!   value read long ago (a thread preempted for billions of writes on a 32-bit target)
//!   is recognised by being outside that window and is re-read or ignored
//!   ([`Log::reached`], [`Log::collect`]). So indices never overflow, on any target,
//!   however long the process runs; the wrap itself is tested from a start index just
//!   below it.
//! - **L6** A combiner whose replica is the only live one (it read a live-replica count
//!   of one under its combiner lock) is the only thread that clones entries and writes
//!   `ctail` until it releases the lock: adding a replica needs that lock (the only
//!   replica is the clone source), and helping needs a second live replica. Such a
//!   combiner is also the only appender (in fact it appends nothing, L9); it catches up
//!   with what other replicas appended before they went, skipping the clone lock, and
//!   updates `ctail` with plain loads and stores.
//! - **L7** A replica joins at the position of an active replica (its clone source),
//!   frozen while the new slot is activated; a garbage collection whose scan overlapped
//!   an activation is redone, so `head` never passes a joining replica (I3).
//! - **L9** *Direct mode.* The combiner of the only live replica (L6), holding its
//!   combiner lock, with the replica at the tail (it applied every entry appended so
//!   far), may apply operations straight to the replica without appending them. The
//!   log exists so that other replicas can replay what one replica did; with no other
//!   replica there is nobody to replay to. A replica added later is cloned from this one
//!   under its combiner lock (the only replica is the clone source, and cloning needs
//!   the lock) and is counted live before the lock is released, so the clone's state
//!   includes every operation applied directly and it joins the log at the source's
//!   position, from which both replay the same entries. Positions, `ctail` and `head` do
//!   not move for a direct operation: a reader of the replica orders itself with it by
//!   the read lock, as with any batch, and no other replica exists to read from.
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
const WRITTEN: usize = 2;

// L3 and L8 need indices that share a slot to be told apart by `i << 2`, and every
// compared pair of indices to be less than half the index space apart.
const _: () = assert!(MAX_LOG_CAPACITY < 1 << (usize::BITS - 3));

const _: () = assert!(MAX_REPLICAS.is_power_of_two());

/// One `T` per replica slot: [`MAX_REPLICAS`] of them, allocated once. Indexing masks the
/// slot instead of checking it (every slot the instance hands out is below
/// `MAX_REPLICAS`; a debug build asserts it): the operation paths look up a shell or a
/// position several times per write, and each check was a load, a compare and a branch.
pub(crate) struct PerSlot<T>(Box<[T; MAX_REPLICAS]>);

impl<T> PerSlot<T> {
    /// `MAX_REPLICAS` values, `make(slot)` for each slot.
    pub(crate) fn new(make: impl FnMut(usize) -> T) -> Self {
        let all: Box<[T]> = (0..MAX_REPLICAS).map(make).collect();
        match all.try_into() {
            Ok(array) => PerSlot(array),
            Err(_) => unreachable!("MAX_REPLICAS values were made"),
        }
    }

    /// The value of `slot` (below `MAX_REPLICAS`).
    #[inline(always)]
    pub(crate) fn get(&self, slot: usize) -> &T {
        debug_assert!(slot < MAX_REPLICAS, "slot {slot} out of range");
        &self.0[slot % MAX_REPLICAS]
    }

    /// Every value, in slot order.
    pub(crate) fn iter(&self) -> core::slice::Iter<'_, T> {
        self.0.iter()
    }
}

/// Whether logical index `a` comes before `b` (L8). Exact when they are less than
/// `2^(usize::BITS - 1)` apart.
#[inline(always)]
pub(crate) fn before(a: usize, b: usize) -> bool {
    (a.wrapping_sub(b) as isize) < 0
}

/// The `state` word of an entry that holds the operation of index `idx` (L3).
#[inline(always)]
fn written(idx: usize) -> usize {
    idx << 2 | WRITTEN
}

struct Entry<W> {
    /// `0`: never written. `i << 2 | WRITTEN`: holds the operation of index `i` (L3).
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
    positions: PerSlot<CachePadded<Position>>,
    /// How many times a slot was activated; lets `collect` detect a scan that overlapped
    /// an activation (L7).
    activations: CachePadded<AtomicUsize>,
    /// The index the log started at (0, or just below the wrap point in tests), so that
    /// [`Log::applied`] counts entries.
    origin: usize,
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
    #[cfg(test)]
    pub(crate) fn new(capacity: usize) -> Self {
        Self::starting_at(capacity, 0)
    }

    /// A log whose first index is `start` instead of 0: tests start just below the point
    /// where indices wrap around (L8).
    pub(crate) fn starting_at(capacity: usize, start: usize) -> Self {
        debug_assert!(capacity.is_power_of_two() && capacity >= MIN_LOG_CAPACITY);
        let entries: Vec<Entry<W>> = (0..capacity)
            .map(|_| Entry {
                state: AtomicUsize::new(0),
                op: UnsafeCell::new(MaybeUninit::uninit()),
            })
            .collect();
        let positions = PerSlot::new(|_| {
            CachePadded(Position {
                applied: AtomicUsize::new(start),
                active: AtomicBool::new(false),
            })
        });
        Self {
            entries: entries.into_boxed_slice(),
            mask: capacity - 1,
            tail: CachePadded(AtomicUsize::new(start)),
            head: CachePadded(AtomicUsize::new(start)),
            ctail: CachePadded(AtomicUsize::new(start)),
            positions,
            activations: CachePadded(AtomicUsize::new(0)),
            origin: start,
        }
    }

    pub(crate) fn capacity(&self) -> usize {
        self.mask + 1
    }

    /// The index the log started at.
    pub(crate) fn origin(&self) -> usize {
        self.origin
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
        // Acquire: pairs with the AcqRel CAS in `publish`.
        self.ctail.load(Ordering::Acquire)
    }

    /// Whether a replica at `position` has applied every index below `target`.
    ///
    /// `target` is a `ctail` or `tail` read earlier, so at most a capacity ahead of any
    /// active replica's position (positions never fall more than a capacity behind the
    /// tail, by L2). A `target` that looks further ahead was read so long ago that the
    /// indices wrapped past it since (L8): the replica has reached it long ago.
    #[inline(always)]
    pub(crate) fn reached(&self, position: usize, target: usize) -> bool {
        let ahead = target.wrapping_sub(position);
        ahead == 0 || ahead > self.capacity()
    }

    /// How many entries are reserved but not yet garbage-collected, by the cached head.
    pub(crate) fn used(&self) -> usize {
        let head = self.head.load(Ordering::Relaxed);
        let tail = self.tail.load(Ordering::Relaxed);
        // A head newer than the tail read (a wrapping difference above the capacity)
        // says nothing; report the log as full, which makes the caller look again.
        tail.wrapping_sub(head).min(self.capacity())
    }

    /// How far the replica in `slot` has applied the log.
    pub(crate) fn position(&self, slot: usize) -> usize {
        // Acquire: pairs with the Release store in `publish`, so a reader that sees the
        // position also sees the replica state it covers.
        self.positions.get(slot).applied.load(Ordering::Acquire)
    }

    /// How many entries the replica in `slot` has applied since the log started.
    pub(crate) fn applied(&self, slot: usize) -> usize {
        self.position(slot).wrapping_sub(self.origin)
    }

    /// How far the replica in `slot` is behind the tail (0: it has applied everything
    /// reserved so far).
    pub(crate) fn lag(&self, slot: usize) -> usize {
        let position = self.position(slot);
        // Loaded after the position (Acquire), so at or past it: the entries below the
        // position were reserved before the replica applied them.
        self.tail().wrapping_sub(position)
    }

    /// Makes `slot` take part in garbage collection, starting at `position`.
    ///
    /// The caller guarantees that `position` is at or above `head` and that `head` cannot
    /// pass it while this runs (for a clone: the source replica is frozen at `position`
    /// and active), which keeps L2.
    pub(crate) fn activate(&self, slot: usize, position: usize) {
        let p = self.positions.get(slot);
        p.applied.store(position, Ordering::Relaxed);
        p.active.store(true, Ordering::SeqCst);
        // Release: pairs with the Acquire loads in `collect`. A collector whose scan
        // overlapped this activation may have missed the new slot yet seen the source
        // advance past `position` after it unfroze; the changed count makes it scan again.
        self.activations.fetch_add(1, Ordering::Release);
    }

    /// Takes `slot` out of garbage collection (its replica is being removed).
    pub(crate) fn deactivate(&self, slot: usize) {
        self.positions
            .get(slot)
            .active
            .store(false, Ordering::SeqCst);
    }

    /// Recomputes `head` as the smallest position of the active replicas and returns it.
    pub(crate) fn collect(&self) -> usize {
        let min = loop {
            // Acquire: pairs with the Release in `activate`.
            let before_scan = self.activations.load(Ordering::Acquire);
            let mut min = self.tail.load(Ordering::Acquire);
            for p in self.positions.iter() {
                if p.active.load(Ordering::SeqCst) {
                    // Acquire: pairs with `publish`; the replica's clones of every entry
                    // below this position happen before a slot of it is overwritten (L2).
                    let position = p.applied.load(Ordering::Acquire);
                    if before(position, min) {
                        min = position;
                    }
                }
            }
            // No activation overlapped the scan (L7): every replica activated later
            // starts at or above a position this scan saw, so at or above `min`.
            if self.activations.load(Ordering::Acquire) == before_scan {
                break min;
            }
        };
        // `head` only moves forward, and by at most a capacity: every position lies in
        // `[head, head + capacity]`. A `min` outside that window was computed from values
        // so old that the indices wrapped since (L8); it is dropped.
        let mut head = self.head.load(Ordering::Acquire);
        loop {
            let ahead = min.wrapping_sub(head);
            if ahead == 0 || ahead > self.capacity() {
                return head;
            }
            // AcqRel: the reservation that reads the new head acquires the replicas'
            // progress through this RMW (L2).
            match self
                .head
                .compare_exchange_weak(head, min, Ordering::AcqRel, Ordering::Acquire)
            {
                Ok(_) => return min,
                Err(now) => head = now,
            }
        }
    }

    /// The active slot with the lowest position, if it is below `below`.
    pub(crate) fn laggard(&self, below: usize) -> Option<usize> {
        let mut best: Option<(usize, usize)> = None;
        for (slot, p) in self.positions.iter().enumerate() {
            if p.active.load(Ordering::Acquire) {
                let pos = p.applied.load(Ordering::Acquire);
                let behind = below.wrapping_sub(pos);
                if before(pos, below) && best.is_none_or(|(_, b)| behind > b) {
                    best = Some((slot, behind));
                }
            }
        }
        best.map(|(slot, _)| slot)
    }

    /// The log as one combiner uses it for one batch, in the mode its replica allows
    /// (L6): `sole` for the combiner of the only live replica.
    #[inline(always)]
    pub(crate) fn appender(&self, sole: bool) -> Appender<'_, W> {
        Appender { log: self, sole }
    }

    /// Reserves `n` consecutive indices and returns the first, or `None` if the log has no
    /// room until the slowest active replica advances. (The only live replica never
    /// reserves: it applies its writes directly, L9.)
    #[inline(always)]
    fn try_reserve(&self, n: usize) -> Option<usize> {
        debug_assert!(n <= self.max_batch());
        loop {
            // Acquire: pairs with the AcqRel CAS in `collect` (L2). Read before the tail,
            // so the tail read is at or past it (the collector read a tail at or past the
            // head it stored), and `used` below is a true distance (L8).
            let mut head = self.head.load(Ordering::Acquire);
            let tail = self.tail.load(Ordering::Relaxed);
            // Compared as `used > capacity - n` (`n` is at most half the capacity), so
            // that no wrapped difference can overflow (L8).
            if tail.wrapping_sub(head) > self.capacity() - n {
                head = self.collect();
                let used = tail.wrapping_sub(head);
                if before(tail, head) {
                    // `collect` read a later tail than ours: read it again.
                    continue;
                }
                if used > self.capacity() - n {
                    return None;
                }
            }
            let next = tail.wrapping_add(n);
            // Release on success: a thread that sees the new tail (`Log::tail`) knows these
            // indices are owned by a writer that is about to write them.
            if self
                .tail
                .compare_exchange_weak(tail, next, Ordering::AcqRel, Ordering::Relaxed)
                .is_ok()
            {
                return Some(tail);
            }
        }
    }

    /// Writes the operation of index `idx`, which the caller reserved, and returns the
    /// slot's previous occupant (index `idx - capacity`), if it has one that needs
    /// dropping. The caller drops it once its whole reservation is written (L5).
    pub(crate) fn write(&self, idx: usize, op: W) -> Option<W> {
        let entry = &self.entries[idx & self.mask];
        let displaced = entry.op.with_mut(|p| {
            // SAFETY: L1 makes this thread the only writer of the slot; by L2 every replica
            // has finished cloning the previous occupant (index `idx - capacity`), so no
            // one else accesses the slot. A `WRITTEN` state means the slot holds an
            // initialized operation that has not been dropped yet (L5); it is moved out
            // here, and the slot is overwritten before the state changes again.
            unsafe {
                let displaced = if core::mem::needs_drop::<W>()
                    // Relaxed: the previous occupant's last state change (a clone
                    // unlock) happens before this through the `head` chain of L2.
                    && entry.state.load(Ordering::Relaxed) & WRITTEN != 0
                {
                    Some((*p).assume_init_read())
                } else {
                    None
                };
                (*p).write(op);
                displaced
            }
        });
        // Release: pairs with the Acquire CAS in `read`; the operation is visible to any
        // replica that sees this index's state (L3).
        entry.state.store(written(idx), Ordering::Release);
        displaced
    }

    /// Returns a clone of the operation of index `idx`, waiting until its writer wrote it.
    ///
    /// `sole`: the caller's replica is the only live one, so no other replica can clone
    /// the entry at the same time and the clone lock (L4) is skipped (L6).
    #[inline(always)]
    fn read(&self, idx: usize, sole: bool) -> W {
        let entry = &self.entries[idx & self.mask];
        let ready = written(idx);
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
    ///
    /// `sole`: the replica is the only live one; no one else writes `ctail` now (L6), so
    /// a plain store replaces the read-modify-write.
    #[inline(always)]
    fn publish(&self, slot: usize, position: usize, sole: bool) {
        // Release: pairs with the Acquire loads in `position` and `collect`.
        self.positions
            .get(slot)
            .applied
            .store(position, Ordering::Release);
        let mut ctail = self.ctail.load(Ordering::Relaxed);
        if sole {
            if before(ctail, position) {
                // Release: pairs with the Acquire load in `ctail`.
                self.ctail.store(position, Ordering::Release);
            }
            return;
        }
        while before(ctail, position) {
            // AcqRel: pairs with the Acquire load in `ctail`. A CAS loop rather than
            // `fetch_max`, whose order is not the wrapping one (L8).
            match self.ctail.compare_exchange_weak(
                ctail,
                position,
                Ordering::AcqRel,
                Ordering::Relaxed,
            ) {
                Ok(_) => return,
                Err(now) => ctail = now,
            }
        }
    }
}

/// The log as one combiner uses it for one batch: *shared* — the CAS on `tail`, the
/// clone lock of each entry (L4), the read-modify-write of `ctail` — or, for the combiner
/// of the only live replica, *sole*: plain loads and stores (L6). The combiner picks the
/// mode once, under its combiner lock, and nothing else branches on it.
#[derive(Debug)]
pub(crate) struct Appender<'a, W> {
    log: &'a Log<W>,
    sole: bool,
}

impl<W> Clone for Appender<'_, W> {
    fn clone(&self) -> Self {
        *self
    }
}

impl<W> Copy for Appender<'_, W> {}

impl<W: Clone> Appender<'_, W> {
    /// Reserves `n` consecutive indices and returns the first, or `None` if the log has no
    /// room until the slowest active replica advances.
    #[inline(always)]
    pub(crate) fn try_reserve(&self, n: usize) -> Option<usize> {
        self.log.try_reserve(n)
    }

    /// Returns a clone of the operation of index `idx`, waiting until its writer wrote it.
    #[inline(always)]
    pub(crate) fn read(&self, idx: usize) -> W {
        self.log.read(idx, self.sole)
    }

    /// Records that the replica in `slot` has applied every index below `position`, and
    /// raises `ctail` to it.
    #[inline(always)]
    pub(crate) fn publish(&self, slot: usize, position: usize) {
        self.log.publish(slot, position, self.sole)
    }
}

impl<W> Entry<W> {
    /// Drops the operation the entry holds, if any. `&mut`: no one else can access it.
    fn clear(&mut self) {
        let state = self.state.load(Ordering::Relaxed);
        if state & WRITTEN != 0 {
            self.state.store(0, Ordering::Relaxed);
            self.op.with_mut(|p| {
                // SAFETY: `&mut self` excludes every other access; a `WRITTEN` state means
                // the slot holds an operation not yet dropped (L5), and the state is
                // cleared first, so it is dropped once even if this drop panics.
                unsafe { (*p).assume_init_drop() }
            });
        }
    }
}

impl<W> Drop for Log<W> {
    fn drop(&mut self) {
        // Every entry is dropped even if one operation's `Drop` panics: the rest are
        // dropped while the panic unwinds (a second panic aborts, as in `Vec`).
        struct Rest<'a, W>(core::slice::IterMut<'a, Entry<W>>);
        impl<W> Drop for Rest<'_, W> {
            fn drop(&mut self) {
                self.0.by_ref().for_each(Entry::clear);
            }
        }
        let mut rest = Rest(self.entries.iter_mut());
        for entry in rest.0.by_ref() {
            entry.clear();
        }
    }
}

#[cfg(all(test, not(ldnr_loom)))]
// Unit tests use std's atomics and threads to drive the code under test.
#[allow(clippy::disallowed_types, clippy::disallowed_methods)]
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
            assert!(log.write(i, i as u64).is_none(), "u64 needs no drop");
        }
        for i in 0..3 {
            assert_eq!(log.read(i, false), i as u64);
        }
        log.publish(0, 3, false);
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
            assert!(log.write(i, i as u64).is_none(), "u64 needs no drop");
        }
        log.publish(0, 4, false);
        assert_eq!(log.collect(), 0, "slot 1 still holds the head");
        assert_eq!(log.laggard(4), Some(1));
        assert_eq!(log.try_reserve(1), None);
        log.publish(1, 1, false);
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
                drop(log.write(start, Counted(token.clone())));
                drop(log.write(start + 1, Counted(token.clone())));
                drop(log.read(start, false));
                drop(log.read(start + 1, false));
                log.publish(0, start + 2, false);
                assert!(Arc::strong_count(&token) <= 5, "lap {lap}: leaked ops");
            }
        }
        assert_eq!(Arc::strong_count(&token), 1, "every op dropped, none twice");
    }

    #[test]
    fn a_displaced_operation_is_handed_back_not_dropped() {
        let token = Arc::new(StdUsize::new(0));
        let log: Log<Counted> = Log::new(4);
        log.activate(0, 0);
        for i in 0..4 {
            assert!(log.write(i, Counted(token.clone())).is_none(), "fresh slot");
        }
        log.publish(0, 4, false);
        let start = log.try_reserve(2).unwrap();
        let displaced = log.write(start, Counted(token.clone()));
        assert!(
            displaced.is_some(),
            "the previous lap's operation comes back"
        );
        assert_eq!(Arc::strong_count(&token), 6, "nothing dropped in place");
        drop(displaced);
        assert_eq!(Arc::strong_count(&token), 5);
    }

    /// The indices wrap around `usize` (L8): a log that starts just below the wrap point
    /// reserves, writes, reads, publishes and collects across it like anywhere else.
    #[test]
    fn indices_wrap_around() {
        for sole in [false, true] {
            let start = usize::MAX - 5;
            let log: Log<u64> = Log::starting_at(4, start);
            log.activate(0, start);
            if !sole {
                log.activate(1, start);
            }
            let mut next = start;
            for round in 0..8u64 {
                let first = log.try_reserve(2).expect("room after publishing");
                assert_eq!(first, next);
                for k in 0..2 {
                    assert!(log
                        .write(first.wrapping_add(k), round * 2 + k as u64)
                        .is_none());
                }
                for k in 0..2 {
                    assert_eq!(log.read(first.wrapping_add(k), sole), round * 2 + k as u64);
                }
                next = first.wrapping_add(2);
                log.publish(0, next, sole);
                if !sole {
                    assert_eq!(log.laggard(next), Some(1), "slot 1 lags");
                    assert!(log.reached(log.position(0), log.ctail()));
                    assert!(!log.reached(log.position(1), log.ctail()));
                    log.publish(1, next, false);
                }
                assert_eq!(log.ctail(), next);
                assert_eq!(log.collect(), next, "head follows across the wrap");
                assert_eq!(log.applied(0), (round as usize + 1) * 2);
                assert_eq!(log.laggard(next), None);
            }
            assert!(next < start, "crossed the wrap point");
        }
    }

    #[test]
    fn serial_order_and_reach() {
        assert!(before(usize::MAX, 0));
        assert!(!before(0, usize::MAX));
        assert!(before(usize::MAX - 3, 2));
        let log: Log<u64> = Log::new(8);
        assert!(log.reached(5, 5));
        assert!(log.reached(usize::MAX, usize::MAX - 1));
        assert!(
            !log.reached(usize::MAX, 3),
            "4 entries ahead across the wrap"
        );
        assert!(
            log.reached(100, 100usize.wrapping_add(usize::MAX / 2)),
            "a target far outside the window was read before the indices wrapped past it"
        );
    }
}
