//! The life of a registered thread: registration, deregistration, the token a thread
//! gets without asking (`thread_token`), following a thread that the operating system
//! moves to another node, and the reader sets (rwlock R2) a thread puts itself in.
//!
//! A thread index is given back when its thread deregisters, or, for a token of
//! `thread_token`, when the thread exits (its thread-local queues the exit and the next
//! admin path gives the index back). Given-back indices are handed out again first, so
//! thread indices, contexts and reader sets stay as small as the most threads registered
//! at once (dispatcher D1).
//!
//! A thread whose node changes is matched again: every
//! [`MIGRATION_CHECK_EVERY`](crate::dispatcher::MIGRATION_CHECK_EVERY) of its operations
//! (when the affinity manager knows more than one node) it asks the manager where it
//! runs; if the node changed it moves, under the admin lock, to the nearest replica of
//! its new node. A pinned thread pays a countdown per operation and one query per check.

#[cfg(feature = "std")]
use alloc::sync::Arc;

use crate::dispatch::Dispatch;
use crate::dispatcher::{choose, AdminGuard, Dispatcher, ThreadToken};
use crate::error::Error;
use crate::replica::context::UNLISTED;
use crate::replica::rwlock::{Members, ReaderSet, ReaderSlot, Readers};
use crate::replica::Replica;
use crate::shared::{Ctx, Shared};
use crate::sync::{CachePadded, Ordering};

/// A token `thread_token` handed to the calling thread, kept in a thread-local. Dropped
/// when the thread exits, which queues the thread index to be given back.
#[cfg(feature = "std")]
#[derive(Debug)]
pub(crate) struct Held {
    instance: usize,
    tid: usize,
    generation: u64,
    /// The context's generation counter: the exiting thread retires its registration
    /// itself (valid while `exits` says the instance is alive, see `Exits::retire`).
    counter: *const crate::sync::AtomicU64,
    exits: Option<Arc<crate::dispatcher::Exits>>,
}

#[cfg(feature = "std")]
impl Drop for Held {
    /// The thread is exiting. Its destructors that run after this one must not use the
    /// registration any more (the index is given back by another thread and may be
    /// reused at once): the one-entry cache is cleared, so `thread_token` there returns
    /// `ThreadExiting`, and the registration's generation is bumped by its owner, so a
    /// kept copy of the token is refused as stale.
    fn drop(&mut self) {
        crate::sync::forget_last_token();
        if let Some(exits) = self.exits.take() {
            exits.retire(self.tid, self.generation, self.counter);
        }
    }
}

impl<D> Shared<D>
where
    D: Dispatch + Clone + Send + Sync,
{
    /// Registers the calling thread and matches it to a replica (see the crate docs'
    /// dispatcher rules).
    #[track_caller]
    pub(crate) fn register(&self) -> Result<ThreadToken, Error> {
        let tkn = self.register_here()?;
        // The registering thread runs the policy (outside the locks and the callback
        // mark): it pays for a replica its node now wants.
        self.threads_changed(false);
        self.run_policy_now();
        Ok(tkn)
    }

    /// Runs the replication policy for the calling thread's own event: returns once a
    /// run has acted on it.
    #[inline]
    pub(crate) fn run_policy_now(&self) {
        if self.policy.active() {
            self.run_policy(true);
        }
    }

    #[track_caller]
    fn register_here(&self) -> Result<ThreadToken, Error> {
        self.check_callbacks();
        // The affinity manager runs under the mark, so that it cannot call back in while
        // the admin lock is held. It is asked before anything changes: a panic in it
        // changes nothing.
        let _inside = self.callbacks();
        let manager = self.memory.manager();
        let node = manager.current_node();
        let admin = self.threads.admin();
        self.give_back_exited(&admin);
        let slot = choose(node, self.replicas.candidates(None), |a, b| {
            manager.distance(a, b)
        })
        .expect("an instance always has a live replica");
        let _change = self.threads.changing(&admin);
        let tid = self
            .threads
            .next_thread(&admin, slot, node)
            .ok_or(Error::TooManyThreads {
                limit: self.threads.limit(),
            })?;
        self.replicas
            .shell(slot)
            .threads
            .fetch_add(1, Ordering::Relaxed);
        Ok(self.threads.token(tid))
    }

    /// Gives the calling thread's registration `tkn` back.
    #[track_caller]
    pub(crate) fn deregister(&self, tkn: ThreadToken) -> Result<(), Error> {
        let (tid, ctx) = self.threads.validate(tkn)?;
        let _ = self.check_reentry(ctx);
        let admin = self.threads.admin();
        self.give_back_exited(&admin);
        self.leave(&admin, tid);
        drop(admin);
        self.threads_changed(false);
        self.run_policy_now();
        Ok(())
    }

    /// The calling thread's token, registering it on first use; given back when the
    /// thread exits. The fast path is a one-entry thread-local cache.
    #[cfg(feature = "std")]
    #[inline]
    #[track_caller]
    pub(crate) fn thread_token(&self) -> Result<ThreadToken, Error> {
        if let Some(tkn) = crate::sync::last_token().map(ThreadToken::from_parts) {
            // Instance numbers are never reused, so the index is this instance's; the
            // generation says the registration is still this thread's.
            if tkn.instance() == self.threads.instance()
                && tkn.is_generation(
                    self.threads
                        .context(tkn.tid())
                        .generation
                        .load(Ordering::Relaxed),
                )
            {
                return Ok(tkn);
            }
        }
        self.thread_token_slow()
    }

    #[cfg(feature = "std")]
    #[cold]
    #[inline(never)]
    #[track_caller]
    fn thread_token_slow(&self) -> Result<ThreadToken, Error> {
        let instance = self.threads.instance();
        let found = crate::sync::held_tokens(|held| {
            let at = held.iter().position(|h| {
                h.downcast_ref::<Held>()
                    .is_some_and(|h| h.instance == instance)
            })?;
            let h = held[at].downcast_ref::<Held>()?;
            if self
                .threads
                .context(h.tid)
                .generation
                .load(Ordering::Relaxed)
                == h.generation
            {
                return Some(self.threads.token(h.tid));
            }
            // Deregistered by hand: forget it without queueing an exit.
            if let Some(stale) = held.swap_remove(at).downcast_mut::<Held>() {
                stale.exits = None;
            }
            None
        });
        if let Some(Some(tkn)) = found {
            crate::sync::set_last_token(tkn.parts());
            return Ok(tkn);
        }
        let tkn = self.register()?;
        let exits = self.threads.exits.clone();
        let kept = crate::sync::held_tokens(|held| {
            // Tokens of instances that are gone are of no use any more.
            held.retain(|h| {
                h.downcast_ref::<Held>()
                    .and_then(|h| h.exits.as_ref())
                    .is_some_and(|e| e.alive())
            });
            held.push(alloc::boxed::Box::new(Held {
                instance,
                tid: tkn.tid(),
                generation: self
                    .threads
                    .context(tkn.tid())
                    .generation
                    .load(Ordering::Relaxed),
                counter: &self.threads.context(tkn.tid()).generation,
                exits: Some(exits),
            }));
        });
        if kept.is_none() {
            // The thread is exiting (its thread-locals are gone): nothing would give the
            // registration back, so do not keep it.
            let _ = self.deregister(tkn);
            return Err(Error::ThreadExiting);
        }
        crate::sync::set_last_token(tkn.parts());
        Ok(tkn)
    }

    /// Takes thread `tid` out of its replica and gives its index back (D1). The caller
    /// holds the admin lock; the thread is not inside an operation (it is the caller, or
    /// it has exited).
    fn leave(&self, admin: &AdminGuard<'_>, tid: usize) {
        let ctx = self.threads.context(tid);
        // SAFETY: the owner is the caller or has exited; the admin lock orders this after
        // its last operation (via the exit queue's lock) and before a new owner's first.
        let listed = unsafe { ctx.listed() };
        if listed != UNLISTED {
            self.replicas.shell(listed).readers.remove(tid);
            // SAFETY: as above.
            unsafe { ctx.set_listed(UNLISTED) };
        }
        let _change = self.threads.changing(admin);
        let slot = ctx.replica.load(Ordering::Relaxed);
        self.replicas
            .shell(slot)
            .threads
            .fetch_sub(1, Ordering::Relaxed);
        self.threads.release(admin, tid);
    }

    /// Gives back the indices of threads that exited holding a token of `thread_token`.
    pub(crate) fn give_back_exited(&self, admin: &AdminGuard<'_>) {
        #[cfg(feature = "std")]
        for (tid, generation) in self.threads.exits.take() {
            let ctx = self.threads.context(tid);
            // A token deregistered by hand before the thread exited is already given back
            // (and its index maybe reused): only the registration the thread held.
            if ctx.generation.load(Ordering::Relaxed) == generation
                && ctx.replica.load(Ordering::Relaxed) != crate::dispatcher::FREE
            {
                self.leave(admin, tid);
                // Nobody runs the policy for a thread that exited: the next operation
                // does.
                self.threads_changed(true);
            }
        }
        #[cfg(not(feature = "std"))]
        let _ = admin;
    }

    /// Gives back the indices of exited threads if the admin lock is free now: for paths
    /// that must not wait for it (snapshots, combiners, which see a pending exit once per
    /// batch, so that an exited thread's reader-set bit does not stay on every write's
    /// path until the next registration).
    #[cold]
    pub(crate) fn give_back_exited_soon(&self) {
        if let Some(admin) = self.threads.try_admin() {
            self.give_back_exited(&admin);
        }
    }

    /// Thread `tid` asks where it runs, and moves to the nearest replica of its new node
    /// if it moved (and one is nearer than its replica).
    #[cold]
    #[inline(never)]
    pub(crate) fn follow(&self, tid: usize) {
        if self.follow_here(tid) {
            // The thread moved: it runs the policy before its operation (it pays for a
            // replica its new node now wants).
            self.threads_changed(false);
            self.run_policy_now();
        }
    }

    /// `follow` without the policy; whether the thread's node changed.
    pub(crate) fn follow_here(&self, tid: usize) -> bool {
        let ctx = self.threads.context(tid);
        let _inside = self.callbacks();
        let manager = self.memory.manager();
        let node = manager.current_node();
        if node.0 == ctx.node.load(Ordering::Relaxed) {
            return false;
        }
        let admin = self.threads.admin();
        let current = ctx.replica.load(Ordering::Relaxed);
        let best = choose(node, self.replicas.candidates(None), |a, b| {
            manager.distance(a, b)
        })
        .expect("an instance always has a live replica");
        let here = manager.distance(node, self.replicas.shell(current).node());
        let there = manager.distance(node, self.replicas.shell(best).node());
        let _change = self.threads.changing(&admin);
        ctx.node.store(node.0, Ordering::Relaxed);
        crate::dispatcher::bump(&self.threads.migrations, 1);
        if there < here {
            self.replicas
                .shell(current)
                .threads
                .fetch_sub(1, Ordering::Relaxed);
            self.replicas
                .shell(best)
                .threads
                .fetch_add(1, Ordering::Relaxed);
            // Release: pairs with the Acquire loads on the operation paths.
            ctx.replica.store(best, Ordering::Release);
        }
        true
    }

    /// Puts thread `tid` in the reader set of replica `slot` (and out of the one it was
    /// in) before it reads there (rwlock R2), with the heavy barrier after the insert
    /// where the instance's writers may write alone without a fence (R5); through the
    /// replica's combiner lock if the kernel refused the barrier, unless the replica is
    /// frozen with a stand-in meanwhile: then the thread is in no set and `false` says
    /// to go to the stand-in. Owner only, between reads, holding no lock.
    #[cold]
    #[inline(never)]
    #[must_use = "a thread in no set must not read"]
    pub(crate) fn join_readers(&self, tid: usize, slot: usize) -> bool {
        let ctx = self.threads.context(tid);
        // SAFETY: the caller is the owner.
        let listed = unsafe { ctx.listed() };
        if listed != UNLISTED {
            self.replicas.shell(listed).readers.remove(tid);
        }
        let shell = self.replicas.shell(slot);
        if !shell.readers.join(tid, self.threads.asymmetric())
            && !shell.order_join(|| self.replicas.stand_in(slot).is_some())
        {
            // It never announced a read here: nothing to order.
            shell.readers.remove(tid);
            // SAFETY: the caller is the owner.
            unsafe { ctx.set_listed(UNLISTED) };
            return false;
        }
        // SAFETY: the caller is the owner.
        unsafe { ctx.set_listed(slot) };
        true
    }

    /// The reader set of replica `slot`: what its write lock waits for (rwlock R2).
    #[inline(always)]
    pub(crate) fn readers_of(&self, slot: usize) -> ReadersOf<'_, D> {
        self.readers_in(self.replicas.shell(slot), usize::MAX)
    }

    /// The reader set of `replica`, for a write lock taken by thread `me` (or
    /// `usize::MAX`), which holds no read lock (rwlock R4).
    #[inline(always)]
    pub(crate) fn readers_in<'a>(&'a self, replica: &'a Replica<D>, me: usize) -> ReadersOf<'a, D> {
        ReadersOf {
            set: &replica.readers,
            threads: &self.threads,
            me,
        }
    }
}

/// The reader set of one replica as its writer sees it (rwlock R2, R4).
pub(crate) struct ReadersOf<'a, D: Dispatch> {
    set: &'a ReaderSet,
    threads: &'a Dispatcher<D::WriteOperation, D::Response>,
    me: usize,
}

impl<'a, D: Dispatch> Readers<'a> for ReadersOf<'a, D> {
    type Slots = ReaderSlots<'a, D>;

    #[inline(always)]
    fn any(&self) -> bool {
        debug_assert!(
            self.me == usize::MAX || !self.threads.context(self.me).reader.held(),
            "a writer holds no read lock (rwlock R4)"
        );
        self.set.any_but(|| self.threads.registered(), self.me)
    }

    /// Every join of this instance issues the heavy barrier if this says so
    /// (`join_readers`, rwlock R5).
    #[inline(always)]
    fn asymmetric(&self) -> bool {
        self.threads.asymmetric()
    }

    #[inline(always)]
    fn light(&self) {
        self.set.light();
    }

    #[inline]
    fn slots(self) -> Self::Slots {
        ReaderSlots {
            members: self.set.members(self.threads.registered()),
            contexts: self.threads.contexts(),
        }
    }
}

/// The reader slots of a reader set's members.
pub(crate) struct ReaderSlots<'a, D: Dispatch> {
    members: Members<'a>,
    contexts: &'a [CachePadded<Ctx<D>>],
}

impl<'a, D: Dispatch> Iterator for ReaderSlots<'a, D> {
    type Item = &'a ReaderSlot;

    #[inline]
    fn next(&mut self) -> Option<&'a ReaderSlot> {
        let tid = self.members.next()?;
        Some(&self.contexts[tid].reader)
    }
}
