//! What the operations and reconfigurations of one instance share: the log, the replica
//! set, the threads (dispatcher: registry and contexts), the affinity manager and the
//! poison flag.
//!
//! [`NodeReplicated`](crate::NodeReplicated) is a thin public handle around a
//! [`Shared`]; each part of the algorithm works on it from its own module: flat combining
//! (`replica::combiner`), registration and matching (`dispatcher`), and changes to the
//! replica set (`reconfigure`).

use alloc::vec::Vec;

use crate::affinity::Memory;
use crate::dispatch::Dispatch;
use crate::dispatcher::{Dispatcher, ThreadToken, MIGRATION_CHECK_EVERY};
use crate::log::Log;
use crate::poison::{Poison, ENTRY, ORPHAN, STEERS};
use crate::policy::PolicyState;
use crate::replica::context::Context;
use crate::replica::{ReplicaId, ReplicaInfo, ReplicaSet, ReplicaStats, Stats};
use crate::sync::{Callbacks, Entered, Inside, Ordering};

/// A thread's context in an instance over `D`.
pub(crate) type Ctx<D> = Context<<D as Dispatch>::WriteOperation, <D as Dispatch>::Response>;

/// The shared state of one instance.
pub(crate) struct Shared<D: Dispatch> {
    pub(crate) log: Log<D::WriteOperation>,
    pub(crate) replicas: ReplicaSet<D>,
    pub(crate) threads: Dispatcher<D::WriteOperation, D::Response>,
    pub(crate) memory: Memory,
    pub(crate) poison: Poison,
    pub(crate) policy: PolicyState,
}

// SAFETY: `Shared` owns the replicas (`D`), the log (`WriteOperation`) and the response
// slots (`Response`), and hands them between threads: `D: Send` because combiners on any
// thread mutate a replica; `WriteOperation: Send` (the trait bound) because operations
// move into the log and are cloned and dropped by other threads, one at a time (log L4);
// `Response: Send` (the trait bound) because responses are produced by the combiner and
// taken by the owner. Nothing here is tied to the creating thread.
unsafe impl<D: Dispatch + Send + Sync> Send for Shared<D> {}
// SAFETY: shared access is what the protocol is for: `D: Sync` because readers on many
// threads share `&D` under the read lock (replica P2) while `D: Send` covers the combiner's
// `&mut D` (P1); operations and responses are handed over through contexts with one owner
// at a time (context C1) and through the log's clone lock, so they need only `Send`.
unsafe impl<D: Dispatch + Send + Sync> Sync for Shared<D> {}

impl<D: Dispatch> core::fmt::Debug for Shared<D> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("Shared")
            .field("log", &self.log)
            .field("replicas", &self.replicas)
            .field("threads", &self.threads)
            .finish_non_exhaustive()
    }
}

#[cold]
#[inline(never)]
#[track_caller]
pub(crate) fn reentered() -> ! {
    panic!(
        "ldnr: re-entrant call: this instance was called from inside user code that it runs \
         on the calling thread (a `read` closure, `dispatch`, `dispatch_mut`, a `Clone` or \
         `Drop` of an operation, the affinity manager); the call would wait for itself"
    )
}

impl<D> Shared<D>
where
    D: Dispatch + Clone + Send + Sync,
{
    /// The checks every operation starts with; returns the token's thread index and
    /// context.
    ///
    /// # Panics
    ///
    /// On a token of another instance, a poisoned instance, and a re-entrant call.
    #[inline(always)]
    #[track_caller]
    pub(crate) fn enter(&self, tkn: ThreadToken) -> (usize, &Ctx<D>, Entered) {
        let (tid, ctx) = self.threads.check_context(tkn);
        let flags = self.poison.flags();
        let entered = self.check_reentry(ctx);
        if flags & ENTRY != 0 {
            self.attend(tid, ctx, flags);
        } else {
            ctx.count_op();
        }
        (tid, ctx, entered)
    }

    /// The rarer work of an operation's entry, once the flags showed some: the instance
    /// is poisoned (a panic, and no operation started); a thread exited and the
    /// replication policy has to act on it; with an affinity manager that steers memory,
    /// every `MIGRATION_CHECK_EVERY` operations (and after the policy parked the thread)
    /// the thread makes its periodic check. Counts the operation, as `enter` does when
    /// there is nothing to attend to.
    #[inline(always)]
    #[track_caller]
    fn attend(&self, tid: usize, ctx: &Ctx<D>, flags: usize) {
        Poison::check_flags(flags);
        ctx.count_op();
        if flags & ORPHAN != 0 {
            // Outside every lock and callback: a thread exited, and the replication
            // policy has to act on it (`policy`); the other events are run by their
            // own threads.
            self.run_policy(false);
        }
        // The token proves the caller owns the context (`ctx`, thread `tid`'s).
        if flags & STEERS != 0 && ctx.tick(MIGRATION_CHECK_EVERY) {
            self.checkpoint(tid);
        }
    }

    /// The periodic check of an operating thread (with an affinity manager that steers
    /// memory): a parked thread wakes the policy (the idle rule: its node's replica comes
    /// back before this operation; parking pokes the count, so this is its next
    /// operation), the thread's node is looked up, and the idle rule checked.
    #[cold]
    #[inline(never)]
    #[track_caller]
    fn checkpoint(&self, tid: usize) {
        if self.threads.context(tid).parked.load(Ordering::Relaxed) {
            // Where it runs first, so that the run it wakes counts it on its node now
            // (one clone, not one for the old node and one for the new).
            self.follow_here(tid);
            self.wake(tid);
        } else {
            self.follow(tid);
        }
        #[cfg(feature = "std")]
        self.check_idle(false);
    }

    /// Panics on a re-entrant call by the owner of `ctx`: the thread's marks say so, or,
    /// where they cannot tell, its context is inside an operation (a call made with the
    /// token of the thread inside; see [`check_callbacks`](Self::check_callbacks)).
    #[inline(always)]
    #[track_caller]
    pub(crate) fn check_reentry(&self, ctx: &Ctx<D>) -> Entered {
        let instance = self.threads.instance();
        let inside = Callbacks::inside(instance);
        match inside {
            Inside::Outermost | Inside::No => {}
            Inside::Yes => reentered(),
            Inside::Unknown => {
                if ctx.busy() {
                    reentered();
                }
            }
        }
        Entered::from(instance, inside)
    }

    /// Panics on a call made from inside user code that this instance runs on the calling
    /// thread (it would wait for itself: deadlock, or for a nested read, drop the outer
    /// read's lock early). With `std` any such call is seen (a thread-local mark); without
    /// it, only one made with the token of the thread running `dispatch`/`dispatch_mut`
    /// ([`enter`](Self::enter) checks that).
    #[inline]
    #[track_caller]
    pub(crate) fn check_callbacks(&self) {
        if Callbacks::running(self.threads.instance()) {
            reentered();
        }
    }

    /// A snapshot of the replicas, consistent between reconfigurations (dispatcher D3).
    pub(crate) fn snapshot(&self) -> Vec<ReplicaInfo> {
        // Threads that exited are counted out first, if the admin lock is free: it may be
        // held by this very thread (an affinity manager asking for a snapshot from inside
        // `register`), and the exits are given back by the next admin path anyway.
        self.give_back_exited_soon();
        // The policy runs here too (the exits just given back may concern it), unless
        // this is user code that the instance runs (an affinity manager asking from
        // inside `register`): it would wait for the locks its caller holds.
        #[cfg(feature = "std")]
        if self.poison.policy_raised() && !Callbacks::running(self.threads.instance()) {
            self.run_policy(true);
        }
        self.threads.consistent(|| {
            self.replicas
                .iter()
                .filter_map(|(slot, r)| {
                    r.id().map(|id| ReplicaInfo {
                        id,
                        node: r.node(),
                        threads: r.threads.load(Ordering::Relaxed),
                        applied: self.log.applied(slot).wrapping_add(r.direct()),
                    })
                })
                .collect()
        })
    }

    /// The instance's statistics (see [`Stats`]). Without the admin lock (callable from
    /// anywhere, even an affinity manager inside `register`): the counts are exact when
    /// no thread registers or leaves meanwhile.
    pub(crate) fn stats(&self) -> Stats {
        // Between changes to the matching (D3): a registration given back moves its count
        // to `retired_ops` inside one, so it is counted once, never twice or not at all.
        let operations = self.threads.consistent(|| {
            self.threads.contexts()[..self.threads.registered()]
                .iter()
                .map(|ctx| ctx.ops.load(Ordering::Relaxed))
                .fold(
                    self.threads.retired_ops.load(Ordering::Relaxed),
                    usize::wrapping_add,
                )
        });
        Stats {
            operations,
            migrations: self.threads.migrations.load(Ordering::Relaxed),
            policy_added: self.policy.added.load(Ordering::Relaxed),
            policy_removed: self.policy.removed.load(Ordering::Relaxed),
            policy_failed: self.policy.failed.load(Ordering::Relaxed),
            policy_woken: self.policy.woken.load(Ordering::Relaxed),
            replicas: self
                .replicas
                .iter()
                .filter_map(|(_, r)| {
                    r.id().map(|id| {
                        let [batches, appended, helped, freezes, frozen_ns] = r.counters();
                        ReplicaStats {
                            id,
                            node: r.node(),
                            batches,
                            appended,
                            helped,
                            freezes,
                            frozen: core::time::Duration::from_nanos(frozen_ns as u64),
                        }
                    })
                })
                .collect(),
        }
    }

    /// The replica thread `tid` is matched to now.
    pub(crate) fn replica_of(&self, tid: usize) -> Option<ReplicaId> {
        let slot = self.threads.context(tid).replica.load(Ordering::Acquire);
        self.replicas.shell(slot).id()
    }
}
