//! Flat combining: the operation paths of a replica, from a thread's context through
//! the log to the replica's data and back.
//!
//! ```text
//!   write_op:    alone (lock free, or freed within a short wait; nothing pending, the
//!                only live replica, up to date, log L9): apply op directly ─> unlock;
//!                otherwise op into own context
//!   write(tid):  op in own context ─> try the replica's combiner lock
//!       got it:  combine: collect pending ops ─> reserve log range ─> write ops
//!                ─> apply the log up to the batch end (write lock, memory policy)
//!                ─> publish position, ctail ─> complete the others ─> unlock
//!                ─> drop what the writes displaced (L5)
//!       sole:    (the only live replica, log L9) catch up with the log ─> apply the
//!                batch directly (write lock, memory policy) ─> complete ─> unlock
//!       missed:  publish op on the replica's pending stack; wait for DONE,
//!                combining whenever the lock is free
//!   read(tid):   wait until the replica's position ≥ the ctail seen on entry (or combine
//!                to get there) ─> read lock ─> dispatch
//! ```
//!
//! A combiner that cannot reserve (the log is full because a replica lags) applies its
//! own replica, then the most lagging one whose combiner lock is free (cross-combining,
//! [`help_laggard`](Shared::help_laggard)), under that replica's memory policy.
//!
//! The *sole* case (log L9): while a replica is the only live one, no other replica
//! replays the log, so its combiners apply operations directly, and a thread alone on it
//! ([`write_alone`](Shared::write_alone)) skips the batch and its context too. That path is what a
//! single-replica instance runs, so it is kept to a lock, the write lock and the
//! operation: a write through the log executes about 114 stores (callgrind), and with
//! that many the store queue keeps one write's cache misses from overlapping the next's
//! (`bench/ab/store_queue.rs`).
//!
//! Everything here works on [`Shared`]: the log, the replica set, the threads' contexts,
//! the affinity manager and the poison flag — not on the public handle.
//!
//! # Poisoning
//!
//! With `std`, panics in user code are caught where they happen (an operation's panic
//! goes to its owner; a displaced operation's `Drop` panic is resumed by the thread
//! whose call dropped it, once its own operation is done). What can still unwind through
//! a combiner — any panic without `std`, or the affinity manager's around a batch —
//! leaves a replica part-way through a batch. `poison::PoisonOnUnwind` marks the instance
//! poisoned on the way out; from then on every operation panics and nothing applies the
//! log again. The rules, each a guard below:
//!
//! - an unwind out of [`apply`](Shared::apply) poisons;
//! - an unwind while a thread waits for its published operation poisons (its context is
//!   `PENDING`, and its next operation must not overwrite one a combiner still takes);
//! - on such an unwind, operations a combiner claimed but did not append are marked
//!   `PENDING` again ([`Unappended`]), so that the instance's drop drops them (C1);
//! - no user code runs between a reservation and the write that fills it (log L5).

use super::context::{into_response, ok, outcome, Context, Outcome, DONE, REROUTE};
use super::rwlock::RwLock;
use super::{CombinerGuard, Replica};
use crate::dispatch::Dispatch;
use crate::log::Appender;
use crate::shared::{Ctx, Shared};
use crate::sync::{Backoff, CachePadded, Callbacks, Entered, Ordering};

/// What [`Shared::write_alone`] hands back when the write is not alone: the operation,
/// and the replica's slot and combiner lock if it took them.
type Missed<'a, D> = (
    <D as Dispatch>::WriteOperation,
    Option<(usize, CombinerGuard<'a, D>)>,
);

/// While a combiner appends its batch: if a panic unwinds (the instance is then
/// poisoned, by `apply` or `check`), the operations of `batch[next..]`, claimed but not
/// yet in the log, are marked `PENDING` again, so that dropping the instance drops them
/// (context `Drop`); no combiner takes them any more, and their owners, waiting, see the
/// poison.
struct Unappended<'a, W, R> {
    contexts: &'a [CachePadded<Context<W, R>>],
    batch: &'a [usize],
    next: usize,
}

impl<W, R> Drop for Unappended<'_, W, R> {
    fn drop(&mut self) {
        for &tid in &self.batch[self.next..] {
            self.contexts[tid].abandon();
        }
    }
}

impl<D> Shared<D>
where
    D: Dispatch + Clone + Send + Sync,
{
    /// The write path of thread `tid` for `op`: first [`write_alone`](Self::write_alone),
    /// inlined into the caller with the operation still in registers; otherwise the
    /// operation goes into the thread's context and [`write`](Self::write) runs.
    #[inline(always)]
    pub(crate) fn write_op(
        &self,
        tid: usize,
        ctx: &Ctx<D>,
        entered: Entered,
        op: D::WriteOperation,
    ) -> D::Response {
        match self.write_alone(tid, ctx, entered, op) {
            Ok(outcome) => self.respond(ctx, outcome),
            Err((op, held)) => self.write_missed(tid, ctx, op, held),
        }
    }

    /// The write path of thread `tid` for `op` when [`write_alone`](Self::write_alone)
    /// missed: the operation goes into the thread's context, and the thread combines
    /// with the combiner lock it holds, if any, or runs [`write`](Self::write). Out of
    /// line: with it inlined, every caller of `write_op` spilled registers for it.
    #[inline(never)]
    fn write_missed(
        &self,
        tid: usize,
        ctx: &Ctx<D>,
        op: D::WriteOperation,
        held: Option<(usize, CombinerGuard<'_, D>)>,
    ) -> D::Response {
        // SAFETY: the token proves this thread owns context `tid`; a context is
        // `EMPTY` between operations (C1; `put_op` checks it).
        unsafe { ctx.put_op(op) };
        // Got the lock but not alone (others wait, or the log has entries to
        // apply): combine now rather than hand the lock back and try again.
        if let Some((slot, combiner)) = held {
            if let Some(response) = self.combine_own(tid, slot, combiner) {
                return response;
            }
        }
        self.write(tid)
    }

    /// Combines the calling thread's own operation (in its context `tid`) with whatever
    /// waits on replica `slot`, whose combiner lock it holds, and returns its response;
    /// `None` if the replica was removed (the operation is still in the context).
    #[inline]
    fn combine_own(
        &self,
        tid: usize,
        slot: usize,
        combiner: CombinerGuard<'_, D>,
    ) -> Option<D::Response> {
        let ctx = self.threads.context(tid);
        let applying = ctx.applying();
        let live = self.combine(slot, combiner, tid, true);
        drop(applying);
        // SAFETY: when live, `combine` stored the outcome of our own operation. Its panic,
        // if it raised one, resumes here, after the combiner lock is released.
        live.then(|| self.respond(ctx, unsafe { ctx.take_response() }))
    }

    /// The write path of thread `tid`, whose operation is in its context: combine it
    /// (with whatever else waits on its replica), or publish it and wait for a combiner.
    pub(crate) fn write(&self, tid: usize) -> D::Response {
        let ctx = self.threads.context(tid);
        loop {
            // Acquire: pairs with the Release stores of the dispatcher and
            // reconfigurations, so the shell's installation happens before our use of it.
            let mut slot = ctx.replica.load(Ordering::Acquire);
            if let Some(stand_in) = self.replicas.stand_in(slot) {
                // Our replica is a clone source: combine on another one meanwhile. Any
                // replica's combiner may append our operation; the response comes from
                // that replica's state at the operation's place in the log.
                slot = stand_in;
            }
            let replica = self.replicas.shell(slot);
            if let Some(combiner) = replica.try_combine() {
                // Combine our own operation without publishing it.
                if let Some(response) = self.combine_own(tid, slot, combiner) {
                    return response;
                }
                // The replica was removed: our operation is still ours; go again.
                continue;
            }
            ctx.publish(tid, &replica.pending);
            // From here until the operation is decided, a combiner may take it: a panic
            // that escaped now would leave the context `PENDING`, so any unwind poisons.
            // Only a poisoned instance or an affinity manager's panic inside `combine`
            // unwinds here; user panics are caught below it, and drop panics deferred.
            let waiting = self.poison.on_unwind();
            let mut backoff = Backoff::new();
            loop {
                match ctx.owner_state() {
                    DONE => {
                        waiting.disarm();
                        // SAFETY: `DONE` means the claiming combiner stored the response (C1).
                        let outcome = unsafe { ctx.take_response() };
                        ctx.reset();
                        // The operation's own panic, if any, resumes in its owner's thread.
                        return self.respond(ctx, outcome);
                    }
                    // The replica was removed before anyone took the operation; it is
                    // still in our context, unexecuted.
                    REROUTE => {
                        waiting.disarm();
                        ctx.reset();
                        break;
                    }
                    _ => {}
                }
                self.poison.check();
                if self.replicas.stand_in(slot).is_some() {
                    // Frozen as a clone source: hand every waiting operation back to its
                    // owner (ours included), who then uses a stand-in (replica P6). With
                    // no other replica to stand in, we wait for the clone instead.
                    self.hand_back(replica);
                    backoff.snooze();
                } else if let Some(combiner) = replica.try_combine() {
                    let _applying = ctx.applying();
                    self.combine(slot, combiner, tid, false);
                    backoff = Backoff::new();
                } else {
                    backoff.snooze();
                }
            }
        }
    }

    /// [`read_in`](Self::read_in), looking the context up (for the loom models).
    #[inline]
    #[cfg(all(test, ldnr_loom))]
    pub(crate) fn read<R>(&self, tid: usize, f: impl FnOnce(&D) -> R) -> R {
        let ctx = self.threads.context(tid);
        let entered = self.check_reentry(ctx);
        self.read_in(tid, ctx, entered, f)
    }

    /// The read path of thread `tid`, whose context is `ctx`: `f` on its replica once the
    /// replica has applied every write that completed before the read started (the
    /// `ctail` rule). `f` runs once, under the replica's read lock, with the callback mark
    /// set (re-entry) from `entered`, what the operation's entry check found.
    #[inline(always)]
    pub(crate) fn read_in<R>(
        &self,
        tid: usize,
        ctx: &Ctx<D>,
        entered: Entered,
        f: impl FnOnce(&D) -> R,
    ) -> R {
        let ctail = self.log.ctail();
        // Acquire: as in `write`.
        let slot = ctx.replica.load(Ordering::Acquire);
        // The common case, inlined into the caller: listed with the replica, whose lock's
        // stamp says it is live and at `ctail` (R3). Everything else is out of line, in
        // `read_slow`: with it inlined too, `execute` was too big for the compiler to
        // inline into a user's loop, and its calls, spills and the slow paths' registers
        // were 30 of a 64K-key map read's 206 instructions (callgrind), 5% of its time.
        // SAFETY: the caller owns the context.
        if unsafe { ctx.listed() } == slot {
            let replica = self.replicas.shell(slot);
            if let Some(_read) = replica
                .rw()
                .try_read(&ctx.reader, slot, RwLock::stamp(ctail))
            {
                let _inside = self.callbacks_from(entered);
                // SAFETY: the read lock is held for this block.
                return unsafe { replica.read(f) }.expect("a stamped replica is live (R3)");
            }
        }
        self.read_slow(tid, ctx, entered, ctail, slot, f)
    }

    /// The rest of [`read_in`](Self::read_in), from `slot`, the replica the caller is
    /// matched to, and `ctail`, read at the operation's entry: joins the replica's reader
    /// set, waits for a writer, catches the replica up, or moves to a stand-in.
    #[inline(never)]
    fn read_slow<R>(
        &self,
        tid: usize,
        ctx: &Ctx<D>,
        entered: Entered,
        ctail: usize,
        mut slot: usize,
        f: impl FnOnce(&D) -> R,
    ) -> R {
        loop {
            let replica = self.replicas.shell(slot);
            // SAFETY: the caller owns the context.
            if unsafe { ctx.listed() } != slot {
                // Frozen as a clone source: read from the stand-in rather than join this
                // replica's set, as below when it is behind. Joining costs the heavy
                // barrier of rwlock R5, and a thread reading through a freeze would
                // otherwise join both sets on every read.
                if let Some(stand_in) = self.replicas.stand_in(slot) {
                    slot = stand_in;
                    continue;
                }
                if !self.join_readers(tid, slot) {
                    // Frozen with a stand-in while the join waited: read there.
                    continue;
                }
            }
            {
                let (_read, _, stamped) =
                    replica.rw().read(&ctx.reader, slot, RwLock::stamp(ctail));
                if stamped {
                    // The lock's stamp says the replica is live and at `ctail` (R3): no
                    // further load (a writer just left, or the thread just joined the
                    // reader set).
                    let _inside = self.callbacks_from(entered);
                    // SAFETY: the read lock is held for this block.
                    return unsafe { replica.read(f) }.expect("a stamped replica is live (R3)");
                }
                // The position is checked under the read lock: it changes only under the
                // write lock, together with the data it describes.
                if self.log.reached(self.log.position(slot), ctail) {
                    // SAFETY: the read lock is held for this block.
                    if unsafe { replica.is_live_read() } {
                        let response = {
                            let _inside = self.callbacks_from(entered);
                            // SAFETY: as above; the replica is live (checked just now, and
                            // it cannot be removed while the read lock is held, P4).
                            unsafe { replica.read(f) }
                                .expect("checked live under the same read lock")
                        };
                        return response;
                    }
                    // Removed under us: the dispatcher has matched us elsewhere.
                    slot = ctx.replica.load(Ordering::Acquire);
                    continue;
                }
            }
            // Behind, and frozen as a clone source: read from another replica rather than
            // wait for the clone (any replica at `ctail` gives a linearizable read).
            if let Some(stand_in) = self.replicas.stand_in(slot) {
                slot = stand_in;
                continue;
            }
            self.catch_up(tid, slot, ctail);
            // A displaced operation's `Drop` panic caught while catching up is this call's
            // panic: resumed now, before the read (so it can never surface from a later
            // call, if `dispatch` panicked too).
            self.resume_deferred(ctx);
            slot = ctx.replica.load(Ordering::Acquire);
        }
    }

    /// The response of the caller's write, or its panic resumed; then (with `std`) the
    /// panic of a displaced operation's `Drop` that the caller's combining caught, if any.
    #[inline(always)]
    fn respond(&self, ctx: &Ctx<D>, outcome: Outcome<D::Response>) -> D::Response {
        #[cfg(feature = "std")]
        if core::mem::needs_drop::<D::WriteOperation>() {
            // SAFETY: `ctx` is the calling thread's own context.
            if let Some(deferred) = unsafe { ctx.take_deferred() } {
                match outcome {
                    // The operation's own panic wins; the deferred one is discarded.
                    Err(own) => {
                        super::context::discard(deferred);
                        std::panic::resume_unwind(own);
                    }
                    Ok(response) => {
                        let dropped =
                            std::panic::catch_unwind(std::panic::AssertUnwindSafe(move || {
                                drop(response)
                            }));
                        if let Err(nested) = dropped {
                            super::context::discard(nested);
                        }
                        std::panic::resume_unwind(deferred);
                    }
                }
            }
        }
        // Without drop glue an operation is never displaced, so nothing is deferred.
        let _ = ctx;
        into_response(outcome)
    }

    /// Resumes (with `std`) the panic of a displaced operation's `Drop` that the
    /// caller's combining caught, if any.
    #[inline(always)]
    fn resume_deferred(&self, ctx: &Ctx<D>) {
        #[cfg(feature = "std")]
        if core::mem::needs_drop::<D::WriteOperation>() {
            // SAFETY: `ctx` is the calling thread's own context.
            if let Some(payload) = unsafe { ctx.take_deferred() } {
                std::panic::resume_unwind(payload);
            }
        }
        let _ = ctx;
    }

    /// Hands every operation waiting on `replica`'s pending stack back to its owner,
    /// unexecuted (`REROUTE`). Any thread may do this; each popped context is decided once.
    pub(crate) fn hand_back(&self, replica: &Replica<D>) {
        let contexts = self.threads.contexts();
        replica.pending.take(contexts, |tid| {
            contexts[tid].reroute();
        });
    }

    /// Brings replica `slot` up to `target` for a reader (thread `tid`): combine if the
    /// lock is free, otherwise wait for the current combiner. Returns early if the replica
    /// is removed, or frozen with a stand-in to read from.
    fn catch_up(&self, tid: usize, slot: usize, target: usize) {
        let ctx = self.threads.context(tid);
        let replica = self.replicas.shell(slot);
        let mut backoff = Backoff::new();
        while !self.log.reached(self.log.position(slot), target) {
            self.poison.check();
            if self.replicas.stand_in(slot).is_some() {
                // A clone holds the lock; the caller reads elsewhere meanwhile.
                return;
            }
            if let Some(combiner) = replica.try_combine() {
                // A combiner applies at least up to the tail it saw, which is at least
                // `target`; on a removed replica we go elsewhere.
                let _applying = ctx.applying();
                if !self.combine(slot, combiner, tid, false) {
                    return;
                }
            } else {
                backoff.snooze();
            }
        }
    }

    /// One round of flat combining on replica `slot` by thread `me`: collect pending
    /// operations (and `me`'s own, if `own`), append them, apply the log, hand back
    /// responses (`me`'s own stays in its context). Then, with the combiner lock
    /// released, drop the operations that the batch's writes displaced from the log (log
    /// L5): a panicking `Drop` can no longer leave anything half-done. With `std` such a
    /// panic is kept for `me` to resume when its own operation has finished (`respond`,
    /// `resume_deferred`); without `std` it poisons.
    ///
    /// Returns `false` if the shell holds no replica (it was removed): then every
    /// operation waiting on it was handed back to its owner, and `me`'s own operation is
    /// still in its context.
    pub(crate) fn combine(
        &self,
        slot: usize,
        mut combiner: CombinerGuard<'_, D>,
        me: usize,
        own: bool,
    ) -> bool {
        let replica = combiner.replica();
        let contexts = self.threads.contexts();
        if !combiner.is_live() {
            self.hand_back(replica);
            return false;
        }
        #[cfg(feature = "std")]
        if self.threads.exits.pending() {
            self.give_back_exited_soon();
        }
        // The log's mode for this batch (L6), read under our combiner lock.
        let sole = self.replicas.is_sole();
        let log = self.log.appender(sole);
        let mut batch = core::mem::take(combiner.batch());
        batch.clear();
        if own {
            batch.push(me);
        }
        replica.pending.take(contexts, |tid| {
            if contexts[tid].claim() {
                batch.push(tid);
            }
        });

        if batch.is_empty() {
            // Nothing to append: just catch up with what others appended.
            self.apply(&combiner, log, slot, self.log.tail(), 0, &[]);
        } else {
            // From here an unwind (a poisoned instance, an affinity manager's panic) marks
            // the operations not yet taken `PENDING` again, so that the instance's drop
            // drops them (C1).
            let mut unappended = Unappended {
                contexts,
                batch: &batch,
                next: 0,
            };
            if sole {
                // Direct mode (L9): catch up with what a replica removed since appended,
                // then apply the batch without the log.
                self.apply(&combiner, log, slot, self.log.tail(), 0, &[]);
                self.apply_direct(&combiner, slot, me, &mut unappended);
                combiner.count_direct(batch.len());
            } else {
                for chunk in batch.chunks(self.log.max_batch()) {
                    let start = self.reserve(&combiner, log, slot, chunk.len());
                    // No user code runs from the reservation until every reserved index is
                    // written (L5): the replicas would wait for an unwritten index for ever.
                    for (k, &tid) in chunk.iter().enumerate() {
                        // SAFETY: `tid` is our own context (`own`, stored by us) or one we
                        // claimed above; each is taken exactly once (C1).
                        let op = unsafe { contexts[tid].take_op() };
                        if let Some(displaced) = self.log.write(start.wrapping_add(k), op) {
                            // SAFETY: `me` is the calling thread's own context.
                            unsafe { contexts[me].bury(displaced) };
                        }
                    }
                    unappended.next += chunk.len();
                    let end = start.wrapping_add(chunk.len());
                    self.apply(&combiner, log, slot, end, start, chunk);
                }
            }
            core::mem::forget(unappended);
        }
        if !batch.is_empty() {
            combiner.count_batch(batch.len());
            let claimed = if own { &batch[1..] } else { &batch[..] };
            for &tid in claimed {
                contexts[tid].complete();
            }
        }
        *combiner.batch() = batch;
        drop(combiner);
        // Operations without drop glue are never displaced (`Log::write`).
        if core::mem::needs_drop::<D::WriteOperation>() {
            let _inside = self.callbacks();
            #[cfg(not(feature = "std"))]
            let poison = self.poison.on_unwind();
            // SAFETY: `me` is the calling thread's own context.
            unsafe { contexts[me].drop_displaced() };
            #[cfg(not(feature = "std"))]
            poison.disarm();
        }
        true
    }

    /// `replica`'s combiner lock for [`write_alone`](Self::write_alone), which found it
    /// held: with one live replica (a hint here; `write_alone` checks again under the
    /// lock), [`Replica::wait_to_combine`]. With several, a waiting operation would miss
    /// the holder's batch, and batches are what share the cost of the log's appends. Cold
    /// and out of line: no uncontended write pays for it. Under loom it loads nothing and
    /// returns `None` (the wait is a later `try_combine`, which the models explore; an
    /// extra load would only grow their state space).
    #[cold]
    #[inline(never)]
    fn wait_for_combiner<'r>(&self, replica: &'r Replica<D>) -> Option<CombinerGuard<'r, D>> {
        if cfg!(ldnr_loom) || !self.replicas.is_sole() {
            return None;
        }
        replica.wait_to_combine()
    }

    /// The write of the calling thread (context `ctx`) when it is all there is to do, in
    /// direct mode (log L9): the combiner lock of its replica is free (or freed within a
    /// short wait, [`Replica::wait_to_combine`]), nothing waits on the pending stack, the
    /// replica is the only live one (read under the combiner lock, L6) and has applied
    /// every entry appended so far, and no exited thread waits to be given back. Then `op`
    /// is applied straight to the replica under its write lock and memory policy, and its
    /// outcome returned; it never enters the context or the log. With a manager that steers
    /// memory, its panic is caught as in `apply` (an unwind past the memory policy poisons,
    /// I6); without one, a `dispatch_mut` panic unwinds straight to the caller, its owner,
    /// through the lock guards (with `std` poisoning nothing, as `respond` would resume it;
    /// without `std` it poisons). Otherwise `op` comes back untouched, with nothing
    /// changed, for the full path (with the combiner lock and the replica's slot if it was
    /// taken: the caller combines). This is the whole write of a single-replica instance
    /// used by one thread at a time, so it is kept small and inlined into the caller: every
    /// store here counts (module docs).
    #[inline(always)]
    fn write_alone(
        &self,
        tid: usize,
        ctx: &Ctx<D>,
        entered: Entered,
        op: D::WriteOperation,
    ) -> Result<Outcome<D::Response>, Missed<'_, D>> {
        // Acquire: as in `write`. A frozen replica's lock is held by the clone, so
        // `try_combine` fails and the full path finds the stand-in.
        let slot = ctx.replica.load(Ordering::Acquire);
        let replica = self.replicas.shell(slot);
        // Held by another combiner: wait a little for it (`wait_for_combiner`) before the
        // operation goes to the full path.
        let Some(combiner) = replica
            .try_combine()
            .or_else(|| self.wait_for_combiner(replica))
        else {
            return Err((op, None));
        };
        // The only live replica, under its combiner lock: the only appender (L6), so the
        // tail cannot move while we hold the lock.
        let alone = replica.pending.is_empty()
            && self.replicas.is_sole()
            && combiner.is_live()
            && self.log.reached(self.log.position(slot), self.log.tail());
        #[cfg(feature = "std")]
        let alone = alone && !self.threads.exits.pending();
        if !alone {
            return Err((op, Some((slot, combiner))));
        }
        let applying = ctx.applying();
        self.poison.check();
        let inside = self.callbacks_from(entered);
        if !self.memory.steers() {
            // No memory policy: nothing but `dispatch_mut` runs user code below, and its
            // panic is the caller's own (the operation's owner). With `std` it unwinds
            // from here as `respond` would resume it, releasing the locks on the way (the
            // write keeps its partial effect, P1) and poisoning nothing; without `std` it
            // poisons, as any panic in a combiner. No `catch_unwind`, no outcome in
            // memory: this is the path of every single-node program.
            #[cfg(not(feature = "std"))]
            let poison = self.poison.on_unwind();
            // The writer is thread `tid`, outside its reads (rwlock R4).
            let write = replica.rw().write(slot, self.readers_in(replica, tid));
            // Counted first: a panic below still applied the write (partly, P1).
            combiner.count_alone();
            // SAFETY: the write lock is held until it is dropped below (P1).
            let response = unsafe { combiner.mutate(|d| d.dispatch_mut(op)) };
            let Some(response) = response else {
                // Cannot happen: `is_live` was checked under our combiner lock (P4).
                unreachable!("a live replica has data");
            };
            drop(write);
            #[cfg(not(feature = "std"))]
            poison.disarm();
            drop(inside);
            drop(combiner);
            drop(applying);
            return Ok(ok(response));
        }
        // As in `apply`: covers the user code below; an unwind past it poisons.
        let poison = self.poison.on_unwind();
        let policy = self.memory.for_batch(replica.node());
        let write = replica.rw().write(slot, self.readers_in(replica, tid));
        // SAFETY: the write lock is held until it is dropped below (P1).
        let applied = unsafe { combiner.mutate(|d| outcome(|| d.dispatch_mut(op))) };
        let Some(applied) = applied else {
            // Cannot happen: `is_live` was checked under our combiner lock, and data is
            // only taken out under it (P4).
            unreachable!("a live replica has data");
        };
        drop(write);
        drop(policy);
        drop(inside);
        poison.disarm();
        combiner.count_alone();
        drop(combiner);
        drop(applying);
        Ok(applied)
    }

    /// Applies the operations of `untaken.batch` (contexts whose operations the combiner
    /// owns: its own, or claimed) straight to the combiner's replica in direct mode (log
    /// L9: the only live replica, at the tail, under its combiner lock), under its write
    /// lock and memory policy; each outcome goes to its context. Panics are isolated per
    /// operation as in `apply`; an unwind past this poisons, and the caller's `untaken`
    /// marks the operations not yet taken `PENDING` again for the instance's drop.
    fn apply_direct<'b>(
        &self,
        combiner: &CombinerGuard<'_, D>,
        slot: usize,
        me: usize,
        untaken: &mut Unappended<'b, D::WriteOperation, D::Response>,
    ) {
        self.poison.check();
        let contexts = untaken.contexts;
        let batch = untaken.batch;
        let poison = self.poison.on_unwind();
        let _inside = self.callbacks();
        let replica = combiner.replica();
        let policy = self.memory.for_batch(replica.node());
        // The combiner is thread `me`, outside its reads (rwlock R4).
        let write = replica.rw().write(slot, self.readers_in(replica, me));
        for &tid in batch {
            // SAFETY: `tid` is the combiner's own context or one it claimed; each is taken
            // exactly once (C1).
            let op = unsafe { contexts[tid].take_op() };
            untaken.next += 1;
            // SAFETY: the write lock is held until it is dropped below (P1).
            let applied = unsafe { combiner.mutate(|d| outcome(|| d.dispatch_mut(op))) };
            let Some(applied) = applied else {
                // Cannot happen: as in `write_alone`.
                unreachable!("a live replica has data");
            };
            // SAFETY: the operation was taken above; its one outcome, read by the owner
            // only after `DONE` or after `combine` returns (C1).
            unsafe { contexts[tid].put_response(applied) };
        }
        drop(write);
        drop(policy);
        poison.disarm();
    }

    /// Reserves `n` log entries for the combiner of `slot`, making room if needed: the
    /// combiner applies its own replica, helps the most lagging replica whose combiner
    /// lock is free (cross-combining), and retries. It never holds a write lock while
    /// waiting.
    fn reserve(
        &self,
        combiner: &CombinerGuard<'_, D>,
        log: Appender<'_, D::WriteOperation>,
        slot: usize,
        n: usize,
    ) -> usize {
        // Act early: once the log is more than half full, help the slowest replica before
        // it can fill the log, rather than after failing to reserve.
        if self.log.used() > self.log.capacity() / 2 {
            // `used` is measured against the cached head; refresh it first (a scan of
            // the replica positions, so only when the cache says the log is half full).
            let head = self.log.collect();
            // Read after `collect`, so at or past the head it returned.
            let tail = self.log.tail();
            if tail.wrapping_sub(head) > self.log.capacity() / 2 {
                self.help_laggard(slot, tail);
            }
        }
        let mut backoff = Backoff::new();
        loop {
            if let Some(start) = log.try_reserve(n) {
                return start;
            }
            self.poison.check();
            let tail = self.log.tail();
            self.apply(combiner, log, slot, tail, 0, &[]);
            self.help_laggard(slot, tail);
            backoff.snooze();
        }
    }

    /// Applies the log to the most lagging replica other than `own` if its combiner lock
    /// is free, under that replica's memory policy.
    pub(crate) fn help_laggard(&self, own: usize, tail: usize) {
        let Some(lag) = self.log.laggard(tail) else {
            return;
        };
        if lag == own {
            return;
        }
        if let Some(helper) = self.replicas.shell(lag).try_combine() {
            // Another replica is live (ours), so this is the shared mode (L6); `apply`
            // does nothing if the replica was removed in the meantime.
            let log = self.log.appender(self.replicas.is_sole());
            let from = self.log.position(lag);
            self.apply(&helper, log, lag, tail, 0, &[]);
            helper.count_helped(self.log.position(lag).wrapping_sub(from));
        }
    }

    /// Applies log entries to the combiner's replica (`slot`) up to `target`, under the
    /// replica's write lock and memory policy; then publishes its position and `ctail`.
    /// Responses of indices `start..start + batch.len()` go to the contexts in `batch`.
    pub(crate) fn apply(
        &self,
        combiner: &CombinerGuard<'_, D>,
        log: Appender<'_, D::WriteOperation>,
        slot: usize,
        target: usize,
        start: usize,
        batch: &[usize],
    ) {
        let from = self.log.position(slot);
        if self.log.reached(from, target) || !combiner.is_live() {
            return;
        }
        self.poison.check();
        // Covers every call into user code below (affinity manager, `clone`,
        // `dispatch_mut`, `Drop` of responses): a panic that escapes it leaves this replica
        // part-way through the batch, and the claimed operations' owners waiting.
        let poison = self.poison.on_unwind();
        let _inside = self.callbacks();
        let replica = combiner.replica();
        let contexts: &[CachePadded<Ctx<D>>] = self.threads.contexts();
        let policy = self.memory.for_batch(replica.node());
        let mut write = replica.rw().write(slot, self.readers_of(slot));
        // Where an entry's outcome goes: to its owner if this combiner appended it (`batch`
        // is the owners of `start..`), else nowhere (another replica's combiner answers it).
        let deliver = |idx: usize, o: Outcome<D::Response>| {
            if let Some(&tid) = batch.get(idx.wrapping_sub(start)) {
                // SAFETY: `tid` is in this combiner's batch, whose operation sits at
                // `idx`; it gets exactly one outcome (`idx` advances past it right after),
                // read by its owner only after `DONE` or after `combine` returns (C1).
                unsafe { contexts[tid].put_response(o) };
            } else {
                // Another replica's combiner answers this entry. Its response is dropped
                // here, inside the caller's `outcome` (a panicking `Drop` is that
                // entry's panic on this replica); a panic's payload is discarded, never
                // dropped where its own `Drop` could unwind through the batch.
                #[cfg(feature = "std")]
                if let Err(payload) = o {
                    super::context::discard(payload);
                }
            }
        };
        // Panic isolation (crate docs, "Panics"): an entry whose clone or `dispatch_mut`
        // panics keeps whatever partial effect it had — the same on every replica, by
        // determinism — and its owner gets the panic; the entries after it are applied
        // as usual. One `catch_unwind` per run of entries that do not panic, so the
        // common path pays nothing per entry. `from` is before `target` (checked above),
        // so `idx` meets `target` (L8).
        let mut idx = from;
        while idx != target {
            // SAFETY: the write lock is held until it is dropped below (P1).
            let run = unsafe {
                combiner.mutate(|d| {
                    outcome(|| {
                        while idx != target {
                            let op = log.read(idx);
                            deliver(idx, ok(d.dispatch_mut(op)));
                            idx = idx.wrapping_add(1);
                        }
                    })
                })
            };
            match run {
                // Cannot happen: `is_live` was checked under our combiner lock, and data
                // is only taken out under it (P4). Never loop on it regardless.
                None => break,
                #[cfg(feature = "std")]
                Some(Err(payload)) => {
                    deliver(idx, Err(payload));
                    idx = idx.wrapping_add(1);
                }
                Some(_) => {}
            }
        }
        log.publish(slot, target);
        write.publish(target);
        drop(write);
        drop(policy);
        poison.disarm();
    }

    /// Marks the calling thread as running this instance's user code until the returned
    /// guard drops.
    #[inline]
    pub(crate) fn callbacks(&self) -> Callbacks {
        Callbacks::enter(self.threads.instance())
    }

    /// [`callbacks`](Self::callbacks) for the operation whose entry check said `entered`
    /// (one store when no mark was set: `Callbacks::enter_from`).
    #[inline(always)]
    fn callbacks_from(&self, entered: Entered) -> Callbacks {
        Callbacks::enter_from(self.threads.instance(), entered)
    }
}
