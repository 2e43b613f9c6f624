//! Per-thread operation and response slots.
//!
//! Every registered thread owns one [`Context`], kept by the dispatcher. A thread that
//! cannot combine itself publishes its operation in its context and pushes the context
//! on the pending stack of its replica; the replica's combiner pops the whole stack,
//! claims each context with an atomic state change, and later hands the response back
//! through the same context.
//!
//! ```text
//!            owner writes op        combiner CAS            combiner writes response
//!   EMPTY ---------------------> PENDING ---------> CLAIMED -----------------------> DONE
//!     ^                             |                                                   |
//!     |                             | CAS by whoever drains the stack of a removed      |
//!     |                             v replica: the operation was never appended          |
//!     +-- owner retries on its ---REROUTE                                               |
//!     |   new replica                                                                   |
//!     +------------------------- owner takes the response ------------------------------+
//! ```
//!
//! Invariants:
//!
//! - **C1** Only the owner thread moves a context out of `EMPTY`, `DONE` or `REROUTE`;
//!   only a combiner moves it out of `PENDING` (by CAS, to `CLAIMED` or `REROUTE`, so
//!   exactly one combiner decides its fate) or `CLAIMED`. The operation slot is written by the owner in `EMPTY` and read (moved
//!   out) by the claiming combiner; the response slot is written by the claiming combiner
//!   before `DONE` and read (moved out) by the owner after it.
//!   One exception, only on a poisoned instance: a combiner that unwinds between
//!   claiming operations and appending them marks those contexts `PENDING` again
//!   (`abandon`, off every stack), so that dropping the instance drops their operations.
//!   Dropping a context drops what its state says it holds: the operation in `PENDING` or
//!   `REROUTE`, the response in `DONE`.
//! - **C2** A context is on at most one pending stack, at most once: it is pushed in
//!   `PENDING`, and the owner does not push again before it has seen `DONE`, which the
//!   combiner publishes only after it has finished walking the popped stack.
//!
//! The pending stack is a Treiber stack that is only ever pushed to and popped *whole*
//! (`swap` with empty), which is free of ABA. The combiner's work is proportional to the
//! number of threads with pending operations, not to the number of registered threads.

use core::mem::MaybeUninit;

#[cfg(feature = "std")]
use alloc::boxed::Box;
use alloc::vec::Vec;

use super::rwlock::ReaderSlot;
use crate::sync::{AtomicBool, AtomicU64, AtomicUsize, Ordering, UnsafeCell};

pub(crate) const EMPTY: usize = 0;
pub(crate) const PENDING: usize = 1;
pub(crate) const CLAIMED: usize = 2;
pub(crate) const DONE: usize = 3;
pub(crate) const REROUTE: usize = 4;

/// A caught panic's payload, on its way to the thread whose operation panicked.
#[cfg(feature = "std")]
pub(crate) type Payload = Box<dyn core::any::Any + Send + 'static>;

/// What a combiner hands back for an operation: its response, or (with `std`) the panic
/// that `dispatch_mut` raised for it, to be resumed in the owner's thread.
#[cfg(feature = "std")]
pub(crate) type Outcome<R> = Result<R, Payload>;
/// What a combiner hands back for an operation. Without `std` panics are not caught,
/// so it is always the response.
#[cfg(not(feature = "std"))]
pub(crate) type Outcome<R> = R;

/// Runs `f` (user code that applies one operation), catching a panic with `std`.
#[inline(always)]
pub(crate) fn outcome<R>(f: impl FnOnce() -> R) -> Outcome<R> {
    #[cfg(feature = "std")]
    {
        std::panic::catch_unwind(std::panic::AssertUnwindSafe(f))
    }
    #[cfg(not(feature = "std"))]
    {
        f()
    }
}

/// Drops a caught panic's payload that no one will resume. A payload whose own `Drop`
/// panics is forgotten (leaked) instead: there is no one to hand that panic to, and
/// letting it unwind would take down whatever the library was doing.
#[cfg(feature = "std")]
pub(crate) fn discard(payload: Payload) {
    if let Err(nested) = std::panic::catch_unwind(std::panic::AssertUnwindSafe(move || {
        drop(payload);
    })) {
        core::mem::forget(nested);
    }
}

/// The outcome of an operation that returned.
#[inline(always)]
pub(crate) fn ok<R>(r: R) -> Outcome<R> {
    #[cfg(feature = "std")]
    {
        Ok(r)
    }
    #[cfg(not(feature = "std"))]
    {
        r
    }
}

/// The response of an outcome, or the resumed panic (in the calling thread, the owner's).
#[inline(always)]
pub(crate) fn into_response<R>(o: Outcome<R>) -> R {
    #[cfg(feature = "std")]
    {
        o.unwrap_or_else(|payload| std::panic::resume_unwind(payload))
    }
    #[cfg(not(feature = "std"))]
    {
        o
    }
}

/// The "no thread" link of the pending stack.
const NIL: usize = usize::MAX;

/// `repr(C)`: the fields every operation touches come first, on the context's first
/// cache line; the operation, response and combining scratch space follow.
#[repr(C)]
pub(crate) struct Context<W, R> {
    state: AtomicUsize,
    /// The next context on the pending stack (a thread index), or `NIL`.
    next: AtomicUsize,
    /// The replica slot this thread is matched to. Written under the admin lock, read by
    /// the owner at the start of every operation.
    pub(crate) replica: AtomicUsize,
    /// The node the thread was last seen on (at registration, or by a migration check).
    pub(crate) node: AtomicUsize,
    /// How many times the context was given back (deregistration or thread exit): a
    /// token carries the generation it was issued for, so a stale one is refused.
    pub(crate) generation: AtomicU64,
    /// This thread's slot of every replica's reader-writer lock.
    pub(crate) reader: ReaderSlot,
    /// Operations this registration started (statistics). Written by the owner only
    /// (relaxed load and store), on the line its operations write anyway (the reader
    /// slot, the state); folded into the instance's total when the index is given back.
    pub(crate) ops: AtomicUsize,
    /// Operations left until the owner's next periodic check (its node, the idle rule):
    /// written by the owner ([`tick`](Self::tick)), and set to 0 by a [`poke`](Self::poke).
    countdown: AtomicUsize,
    /// Whether the owner is combining (it may be inside `dispatch_mut` of any thread's
    /// operation). Owner-only; with `reader`, what detects a re-entrant call.
    applying: AtomicBool,
    /// Set by the replication policy when it dropped the replica of this thread's node
    /// because the node's threads were idle; the owner's next operation (with a manager
    /// that steers memory) clears it and wakes the policy (`policy` module).
    pub(crate) parked: AtomicBool,
    /// The owner's bookkeeping of the operation paths (owner only).
    owner: UnsafeCell<Owner>,
    op: UnsafeCell<MaybeUninit<W>>,
    response: UnsafeCell<MaybeUninit<Outcome<R>>>,
    /// What the owner keeps while it combines (owner only).
    scratch: UnsafeCell<Scratch<W>>,
}

/// What a thread keeps while it combines: the operations its writes displaced from the
/// log, dropped once its batch is done (log L5), and (with `std`) the panic the first of
/// those drops raised, resumed when the thread's own operation has finished.
#[derive(Debug)]
struct Scratch<W> {
    displaced: Vec<W>,
    #[cfg(feature = "std")]
    deferred: Option<Payload>,
}

/// The owner's bookkeeping of the operation paths: the replica whose reader set it is in
/// (rwlock R2).
#[derive(Debug)]
struct Owner {
    listed: usize,
}

/// `Scratch::listed` of a thread in no replica's reader set.
pub(crate) const UNLISTED: usize = usize::MAX;

impl<W, R> core::fmt::Debug for Context<W, R> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("Context")
            .field("state", &self.state.load(Ordering::Relaxed))
            .field("replica", &self.replica.load(Ordering::Relaxed))
            .finish_non_exhaustive()
    }
}

impl<W, R> Context<W, R> {
    pub(crate) fn new() -> Self {
        Self {
            state: AtomicUsize::new(EMPTY),
            next: AtomicUsize::new(NIL),
            replica: AtomicUsize::new(0),
            node: AtomicUsize::new(0),
            reader: ReaderSlot::new(),
            ops: AtomicUsize::new(0),
            countdown: AtomicUsize::new(0),
            applying: AtomicBool::new(false),
            parked: AtomicBool::new(false),
            op: UnsafeCell::new(MaybeUninit::uninit()),
            response: UnsafeCell::new(MaybeUninit::uninit()),
            generation: AtomicU64::new(0),
            owner: UnsafeCell::new(Owner { listed: UNLISTED }),
            scratch: UnsafeCell::new(Scratch {
                displaced: Vec::new(),
                #[cfg(feature = "std")]
                deferred: None,
            }),
        }
    }

    /// Whether the owner is inside an operation of this instance: holding a read lock
    /// (so inside `dispatch`) or combining (so maybe inside `dispatch_mut`). Owner only.
    #[inline]
    pub(crate) fn busy(&self) -> bool {
        self.reader.held() || self.applying.load(Ordering::Relaxed)
    }

    /// Marks the owner as combining until the guard drops (also when unwinding). Owner
    /// only.
    #[inline]
    pub(crate) fn applying(&self) -> ApplyingGuard<'_> {
        self.applying.store(true, Ordering::Relaxed);
        ApplyingGuard(&self.applying)
    }

    /// Stores the owner's next operation.
    ///
    /// # Safety
    ///
    /// Only the owner thread may call this, with the context in `EMPTY` (C1).
    ///
    /// # Panics
    ///
    /// If the context is not `EMPTY`: the previous operation did not finish (a panic left
    /// it behind; the instance is then poisoned, which the caller checks first). Storing
    /// anyway would overwrite an operation a combiner may still take (C1).
    pub(crate) unsafe fn put_op(&self, op: W) {
        if self.state.load(Ordering::Relaxed) != EMPTY {
            unfinished();
        }
        // SAFETY: by the caller's contract and C1 no other thread accesses the slot.
        self.op.with_mut(|p| unsafe { (*p).write(op) });
    }

    /// The replica slot whose reader set the owner is in, or [`UNLISTED`].
    ///
    /// # Safety
    ///
    /// Only the owner thread may call this (or, for a thread that has exited, whoever
    /// holds the admin lock).
    #[inline]
    pub(crate) unsafe fn listed(&self) -> usize {
        // SAFETY: owner only, by the caller's contract.
        self.owner.with(|s| unsafe { (*s).listed })
    }

    /// Records the replica slot whose reader set the owner is in.
    ///
    /// # Safety
    ///
    /// As for [`listed`](Self::listed).
    #[inline]
    pub(crate) unsafe fn set_listed(&self, slot: usize) {
        // SAFETY: owner only, by the caller's contract.
        self.owner.with_mut(|s| unsafe { (*s).listed = slot });
    }

    /// Counts an operation of the owner (statistics). Owner only.
    #[inline]
    pub(crate) fn count_op(&self) {
        self.ops.store(
            self.ops.load(Ordering::Relaxed).wrapping_add(1),
            Ordering::Relaxed,
        );
    }

    /// Counts one operation; `true` once every `every` operations, on the first after
    /// `restart_count(0)`, and on the next after a [`poke`](Self::poke). Owner only (a
    /// relaxed load and store: a poke that falls between them is lost, and the check
    /// comes at the end of the count instead).
    #[inline]
    pub(crate) fn tick(&self, every: usize) -> bool {
        match self.countdown.load(Ordering::Relaxed) {
            0 => {
                self.countdown.store(every, Ordering::Relaxed);
                true
            }
            left => {
                self.countdown.store(left - 1, Ordering::Relaxed);
                false
            }
        }
    }

    /// Restarts the operation count (a new owner): the next check after `first_check_after`
    /// operations. By the owner, or whoever holds the admin lock for a context no thread
    /// owns.
    pub(crate) fn restart_count(&self, first_check_after: usize) {
        self.countdown.store(first_check_after, Ordering::Relaxed);
    }

    /// Asks the owner to make its periodic check at its next operation (best effort: see
    /// [`tick`](Self::tick)). Any thread.
    pub(crate) fn poke(&self) {
        self.countdown.store(0, Ordering::Relaxed);
    }

    /// Keeps an operation that the owner's write displaced from the log, to be dropped by
    /// [`drop_displaced`](Self::drop_displaced) once the owner's batch is done.
    ///
    /// # Safety
    ///
    /// Only the owner thread may call this.
    pub(crate) unsafe fn bury(&self, op: W) {
        // SAFETY: owner only, by the caller's contract; no user code runs while borrowed.
        self.scratch
            .with_mut(|s| unsafe { (*s).displaced.push(op) });
    }

    /// Drops the operations [`bury`](Self::bury) kept. With `std` a panicking `Drop` is
    /// caught, the rest are still dropped, and the first panic is kept for
    /// [`take_deferred`](Self::take_deferred); without `std` it unwinds from here (the
    /// rest are dropped with the context).
    ///
    /// # Safety
    ///
    /// Only the owner thread may call this.
    pub(crate) unsafe fn drop_displaced(&self) {
        // Each operation is popped before its `Drop` runs, so none is dropped twice, and
        // the scratch space is not borrowed while user code runs.
        // SAFETY: owner only, by the caller's contract.
        let next = || self.scratch.with_mut(|s| unsafe { (*s).displaced.pop() });
        #[cfg(feature = "std")]
        loop {
            let drops = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                while let Some(op) = next() {
                    drop(op);
                }
            }));
            match drops {
                Ok(()) => return,
                Err(payload) => {
                    // SAFETY: owner only, by the caller's contract.
                    let first = self.scratch.with_mut(|s| unsafe {
                        let deferred = &mut (*s).deferred;
                        let first = deferred.is_none();
                        if first {
                            *deferred = Some(payload);
                            None
                        } else {
                            Some(payload)
                        }
                    });
                    // A second panic of the same batch: only the first is resumed.
                    if let Some(later) = first {
                        discard(later);
                    }
                }
            }
        }
        #[cfg(not(feature = "std"))]
        while let Some(op) = next() {
            drop(op);
        }
    }

    /// The panic a displaced operation's `Drop` raised, if any, to be resumed by the
    /// owner once its own operation has finished.
    ///
    /// # Safety
    ///
    /// Only the owner thread may call this.
    #[cfg(feature = "std")]
    #[inline]
    pub(crate) unsafe fn take_deferred(&self) -> Option<Payload> {
        // SAFETY: owner only, by the caller's contract.
        self.scratch.with_mut(|s| unsafe { (*s).deferred.take() })
    }

    /// Moves the operation out.
    ///
    /// # Safety
    ///
    /// The caller is the owner in `EMPTY` that stored the operation and combines it
    /// itself, or the combiner that claimed the context (C1); the operation was stored
    /// and is taken once.
    pub(crate) unsafe fn take_op(&self) -> W {
        // SAFETY: by the caller's contract the slot is initialized and exclusively ours.
        self.op.with(|p| unsafe { (*p).assume_init_read() })
    }

    /// Stores the response.
    ///
    /// # Safety
    ///
    /// The caller took the operation of this context with `take_op` and has not stored
    /// a response for it yet; the owner does not read the response before `DONE` (or,
    /// when the owner combines itself, before this returns).
    pub(crate) unsafe fn put_response(&self, r: Outcome<R>) {
        // SAFETY: by the caller's contract nobody else accesses the response slot.
        self.response.with_mut(|p| unsafe { (*p).write(r) });
    }

    /// Moves the response out.
    ///
    /// # Safety
    ///
    /// Only the owner, once per stored response, after `put_response` happened before.
    pub(crate) unsafe fn take_response(&self) -> Outcome<R> {
        // SAFETY: by the caller's contract the slot is initialized and exclusively ours.
        self.response.with(|p| unsafe { (*p).assume_init_read() })
    }

    /// Publishes the stored operation for a combiner and pushes this context (thread
    /// `me`) on the pending stack `stack`.
    pub(crate) fn publish(&self, me: usize, stack: &PendingStack) {
        // Release: pairs with the Acquire CAS in `claim`; the operation is visible to the
        // claiming combiner.
        self.state.store(PENDING, Ordering::Release);
        let mut head = stack.head.load(Ordering::Relaxed);
        loop {
            self.next.store(head, Ordering::Relaxed);
            // Release: pairs with the Acquire `swap` in `PendingStack::take`, which then
            // sees `next`.
            match stack
                .head
                .compare_exchange_weak(head, me, Ordering::Release, Ordering::Relaxed)
            {
                Ok(_) => return,
                Err(h) => head = h,
            }
        }
    }

    /// Claims a pending operation for the calling combiner; `false` if it was not
    /// pending (another combiner claimed it).
    pub(crate) fn claim(&self) -> bool {
        // Acquire: pairs with the Release store in `publish`.
        self.state
            .compare_exchange(PENDING, CLAIMED, Ordering::Acquire, Ordering::Relaxed)
            .is_ok()
    }

    /// Hands a pending operation back to its owner, unexecuted, because its replica was
    /// removed; `false` if it was not pending.
    pub(crate) fn reroute(&self) -> bool {
        // Release: pairs with the Acquire load in `owner_state`; Acquire: as in `claim`.
        self.state
            .compare_exchange(PENDING, REROUTE, Ordering::AcqRel, Ordering::Relaxed)
            .is_ok()
    }

    /// Marks a claimed operation done; its response is stored.
    pub(crate) fn complete(&self) {
        // Release: pairs with the Acquire load in `owner_state`; the response is visible.
        self.state.store(DONE, Ordering::Release);
    }

    /// The state as its owner sees it while waiting: `DONE` means the response is
    /// there, `REROUTE` that the operation is back in the owner's hands.
    pub(crate) fn owner_state(&self) -> usize {
        // Acquire: pairs with the Release in `complete` and `reroute`.
        self.state.load(Ordering::Acquire)
    }

    /// Marks a context whose operation was claimed (or is its combining owner's own) but
    /// never taken as `PENDING` again, without putting it on a stack: only when a panic
    /// unwinds out of a poisoned instance's combiner, so that the instance's drop drops
    /// the operation (see `Drop`).
    pub(crate) fn abandon(&self) {
        self.state.store(PENDING, Ordering::Relaxed);
    }

    /// Returns a context to `EMPTY` (owner only, after `DONE` or `REROUTE`).
    pub(crate) fn reset(&self) {
        self.state.store(EMPTY, Ordering::Relaxed);
    }
}

impl<W, R> Drop for Context<W, R> {
    /// Drops what an operation left in the context when its owner stopped waiting for it
    /// (an instance poisoned while operations were pending): the operation of a `PENDING`
    /// or `REROUTE` context, the response of a `DONE` one. A `CLAIMED` operation was
    /// taken by its combiner (into the log, which drops it, or straight into
    /// `dispatch_mut`, log L9); one claimed but not taken when a combiner unwound was
    /// marked `PENDING` again (`Unappended`).
    fn drop(&mut self) {
        match self.state.load(Ordering::Relaxed) {
            PENDING | REROUTE => self.op.with_mut(|p| {
                // SAFETY: `&mut self`: no other access. The operation was stored and not
                // taken (C1: a combiner takes it only after claiming it).
                unsafe { (*p).assume_init_drop() }
            }),
            DONE => self.response.with_mut(|p| {
                // SAFETY: `&mut self`: no other access. `DONE` means a response was stored
                // and its owner has not taken it (C1).
                unsafe { (*p).assume_init_drop() }
            }),
            _ => {}
        }
    }
}

#[cold]
#[inline(never)]
fn unfinished() -> ! {
    panic!(
        "ldnr: this token's previous operation did not finish (a panic escaped it while it \
         waited); the token cannot be used for another operation"
    )
}

/// Clears a context's combining mark on drop.
pub(crate) struct ApplyingGuard<'a>(&'a AtomicBool);

impl Drop for ApplyingGuard<'_> {
    #[inline]
    fn drop(&mut self) {
        self.0.store(false, Ordering::Relaxed);
    }
}

/// A replica's stack of contexts with pending operations.
#[derive(Debug)]
pub(crate) struct PendingStack {
    /// A thread index, or `NIL` when empty.
    head: AtomicUsize,
}

impl PendingStack {
    pub(crate) fn new() -> Self {
        Self {
            head: AtomicUsize::new(NIL),
        }
    }

    /// Whether no context is on the stack now. A hint: a context pushed right after is
    /// served by the next combiner, or its owner combines it when it finds the lock free.
    #[inline]
    pub(crate) fn is_empty(&self) -> bool {
        self.head.load(Ordering::Relaxed) == NIL
    }

    /// Pops the whole stack and calls `f` with each thread index on it.
    pub(crate) fn take<W, R>(
        &self,
        contexts: &[impl core::ops::Deref<Target = Context<W, R>>],
        mut f: impl FnMut(usize),
    ) {
        if self.head.load(Ordering::Relaxed) == NIL {
            return;
        }
        // Acquire: pairs with the Release CAS in `Context::publish`.
        let mut cur = self.head.swap(NIL, Ordering::Acquire);
        while cur != NIL {
            // Read the link before `f` can let the owner move on (C2).
            let next = contexts[cur].next.load(Ordering::Relaxed);
            f(cur);
            cur = next;
        }
    }
}

#[cfg(all(test, not(ldnr_loom)))]
mod tests {
    use super::*;
    use alloc::vec::Vec;

    type Ctx = crate::sync::CachePadded<Context<u64, u64>>;

    fn contexts(n: usize) -> Vec<Ctx> {
        (0..n)
            .map(|_| crate::sync::CachePadded(Context::new()))
            .collect()
    }

    #[test]
    fn published_operations_are_claimed_once_and_delivered() {
        let cs = contexts(3);
        let stack = PendingStack::new();
        for (tid, c) in cs.iter().enumerate() {
            // SAFETY: single-threaded test; each context is EMPTY.
            unsafe { c.put_op(tid as u64 * 10) };
            c.publish(tid, &stack);
        }
        let mut seen = Vec::new();
        stack.take(&cs, |tid| {
            assert!(cs[tid].claim(), "first claim wins");
            assert!(!cs[tid].claim(), "second claim loses");
            seen.push(tid);
        });
        seen.sort_unstable();
        assert_eq!(seen, [0, 1, 2], "every pushed context popped once");
        stack.take(&cs, |_| panic!("the stack is empty after a take"));
        for &tid in &seen {
            // SAFETY: claimed above; each op taken once, response stored once.
            unsafe {
                let op = cs[tid].take_op();
                cs[tid].put_response(ok(op + 1));
            }
            assert_ne!(cs[tid].owner_state(), DONE);
            cs[tid].complete();
            assert_eq!(cs[tid].owner_state(), DONE);
            // SAFETY: DONE, owner takes the response once.
            let r = unsafe { cs[tid].take_response() };
            assert_eq!(into_response(r), tid as u64 * 10 + 1);
            cs[tid].reset();
        }
    }

    #[test]
    fn reroute_hands_back_only_pending_operations() {
        let cs = contexts(2);
        let stack = PendingStack::new();
        for (tid, c) in cs.iter().enumerate() {
            // SAFETY: single-threaded test; each context is EMPTY.
            unsafe { c.put_op(7) };
            c.publish(tid, &stack);
        }
        assert!(cs[0].claim());
        stack.take(&cs, |tid| {
            let handed_back = cs[tid].reroute();
            assert_eq!(handed_back, tid == 1, "a claimed op is not handed back");
        });
        assert_eq!(cs[1].owner_state(), REROUTE);
        // SAFETY: REROUTE leaves the operation in the owner's context, untaken.
        assert_eq!(unsafe { cs[1].take_op() }, 7);
        // SAFETY: claimed by us above.
        assert_eq!(unsafe { cs[0].take_op() }, 7);
    }
}
