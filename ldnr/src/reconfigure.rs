//! Changing the replica set while operations run: `add_replica` and `remove_replica`.
//!
//! **Adding** clones the most advanced replica (the *source*) while freezing only the
//! source — holding its combiner lock, so its data cannot change (replica P1) and garbage
//! collection cannot pass its position (log L2), while its readers keep reading and every
//! other replica keeps appending, applying and serving reads. The clone is made under an
//! [`AffinityGuard`] for the new replica's node. The new replica is installed in a free
//! shell with its log position equal to the source's and becomes visible to garbage
//! collection before the source unfreezes (I3). Then the threads registered on the new
//! replica's node that were served elsewhere move to it.
//!
//! **Removing** first re-matches the replica's threads to the nearest remaining replica,
//! so their next operations go there. It then takes the replica's combiner lock (no batch
//! is in flight: every operation a combiner claimed has completed) and its write lock (no
//! reader is inside), takes the data out and the slot out of garbage collection, and
//! hands every operation still waiting on the replica's pending stack back to its owner
//! unexecuted (`REROUTE`); the owner re-runs it on its new replica. An operation pushed
//! on the stack after that is handed back by its owner itself, who finds the replica gone
//! when it next takes the combiner lock. So every operation is executed exactly once (I2).
//! The data is dropped after the locks are released; the shell stays for threads that
//! may still hold a reference to it (replica P4), so nothing is freed that anyone can
//! still reach (I7).
//!
//! Reconfigurations are serialized by the reconfiguration lock; their changes to the
//! matching also take the admin lock, which registration takes too (dispatcher D2).
//!
//! Invariants of reconfiguration (cited above and in the code):
//!
//! - **I2** Every operation is executed exactly once across a removal: one that a combiner
//!   claimed before the removal took the combiner lock is applied and answered by that
//!   combiner; every other one is handed back unexecuted (`REROUTE`) and its owner runs
//!   it on its new replica.
//! - **I3** A joining replica is never passed by garbage collection: it is activated at
//!   its source's position while the source is frozen there and active, and a collection
//!   that overlapped the activation is redone (log L7).
//! - **I7** Nothing anyone can still reach is freed: a removed replica's data is taken out
//!   under both of its locks and dropped after; its shell, which threads may still
//!   reference, lives as long as the instance (replica P4).
//! - **I8** A reconfiguration changes nothing until every call into user code that may
//!   panic and that precedes its first change has returned (the affinity manager's
//!   `nodes` and `distance`, for `add_replica` also `set_memory_node`, `D::clone` and
//!   `restore_memory_policy`), and after its first change it calls only `D`'s `Drop` (of
//!   the removed data, last). So a panic leaves the instance as it was, or as it is after
//!   the whole reconfiguration.

use alloc::vec::Vec;

use crate::affinity::{self, NodeId};
use crate::dispatch::Dispatch;
use crate::dispatcher::{self, AdminGuard, Candidate};
use crate::error::Error;
use crate::log::MAX_REPLICAS;
use crate::replica::{ReplicaId, Start};
use crate::shared::Shared;
use crate::sync::Ordering;

impl<D> Shared<D>
where
    D: Dispatch + Clone + Send + Sync,
{
    /// Adds a replica on `node` (see `NodeReplicated::add_replica`).
    #[track_caller]
    pub(crate) fn add_replica(&self, node: NodeId) -> Result<ReplicaId, Error> {
        self.check_callbacks();
        // User code runs below (the affinity manager, `D::clone`): under this mark a call
        // from it back into this instance panics instead of waiting for us.
        let _inside = self.callbacks();
        let manager = self.memory.manager();
        if !manager.nodes().contains(&node) {
            return Err(Error::UnknownNode(node));
        }
        let _reconfig = self.threads.reconfig();
        if self.poison.is_set() {
            return Err(Error::Poisoned);
        }
        let slot = self.replicas.free_slot().ok_or(Error::TooManyReplicas {
            limit: MAX_REPLICAS,
        })?;
        let source = self
            .replicas
            .iter()
            .filter(|(_, r)| r.id().is_some())
            .min_by_key(|&(s, _)| self.log.lag(s))
            .map(|(s, _)| s)
            .expect("an instance always has a live replica");

        // The stand-in for the source's threads while it is frozen (replica P6), chosen
        // before anything changes (I8): the affinity manager's `distance` is user code,
        // and the operation paths never call it.
        let stand_in = dispatcher::choose(
            self.replicas.shell(source).node(),
            self.replicas.candidates(Some(source)),
            |a, b| manager.distance(a, b),
        );
        self.replicas.set_stand_in(stand_in);

        // Freeze the source: its data and position stay put while we hold its lock.
        // Its threads are served by the stand-in meanwhile (replica P6). A panic in the
        // memory policy or in `clone` unfreezes it and changes nothing (I8).
        let frozen = self.replicas.shell(source).freeze();
        let position = self.log.position(source);
        let direct = self.replicas.shell(source).direct();
        let data = affinity::on_node(manager, node, || {
            frozen
                .frozen(D::clone)
                .expect("the reconfiguration lock keeps the source live")
        })?;

        // Installed while the source is frozen at `position` and active, so GC stays at
        // or below it (I3), and counted live before the source unfreezes (log L6).
        self.replicas.install(
            slot,
            node,
            data,
            Start { position, direct },
            &self.log,
            self.readers_of(slot),
        );
        let shell = self.replicas.shell(slot);
        let id = self.replicas.next_id();
        let admin = self.threads.admin();
        self.give_back_exited(&admin);
        let change = self.threads.changing(&admin);
        shell.threads.store(0, Ordering::Relaxed);
        shell.set_identity(Some(id));
        drop(frozen);

        // Locality first: threads on `node` served by a replica elsewhere move here.
        for (_, ctx) in self.threads.registrations(&admin) {
            let current = ctx.replica.load(Ordering::Relaxed);
            let on_node = ctx.node.load(Ordering::Relaxed) == node.0;
            if on_node && self.replicas.shell(current).node() != node {
                self.replicas
                    .shell(current)
                    .threads
                    .fetch_sub(1, Ordering::Relaxed);
                // Release: pairs with the Acquire loads on the operation paths; the
                // installation above happens before the thread's use of the shell.
                ctx.replica.store(slot, Ordering::Release);
                shell.threads.fetch_add(1, Ordering::Relaxed);
            }
        }
        drop(change);
        drop(admin);
        Ok(id)
    }

    /// Removes replica `id` (see `NodeReplicated::remove_replica`).
    #[track_caller]
    pub(crate) fn remove_replica(&self, id: ReplicaId) -> Result<(), Error> {
        self.check_callbacks();
        // User code runs below (the affinity manager, `D`'s `Drop`): see `add_replica`.
        let _inside = self.callbacks();
        let _reconfig = self.threads.reconfig();
        if self.poison.is_set() {
            return Err(Error::Poisoned);
        }
        let slot = self.replicas.find(id).ok_or(Error::UnknownReplica(id))?;
        if self.replicas.named() == 1 {
            return Err(Error::LastReplica);
        }
        let shell = self.replicas.shell(slot);
        let admin = self.threads.admin();
        self.give_back_exited(&admin);
        // Where each of the replica's threads goes, decided before anything changes (I8).
        let moves = self.plan_moves(&admin, slot);
        let change = self.threads.changing(&admin);
        shell.set_identity(None);
        // Re-match first, so the threads' next operations go elsewhere.
        let contexts = self.threads.contexts();
        for (tid, to) in moves {
            self.replicas
                .shell(to)
                .threads
                .fetch_add(1, Ordering::Relaxed);
            // Release: as in `add_replica`.
            contexts[tid].replica.store(to, Ordering::Release);
        }
        shell.threads.store(0, Ordering::Relaxed);
        drop(change);
        drop(admin);

        // Hand back what waits on the stack; a thread that pushes later finds the shell
        // empty when it takes the lock, and hands back itself (I2).
        let data = self
            .replicas
            .uninstall(slot, &self.log, self.readers_of(slot), |_| {
                self.hand_back(shell)
            });
        // Dropped outside the locks: freeing a large structure can take a while. A panic
        // in `D`'s `Drop` unwinds from here, the replica removed (I8).
        drop(data);
        Ok(())
    }

    /// Where each thread of replica `slot` goes when it is removed: the nearest other
    /// live replica, the fewest threads on ties, counting the threads placed so far. The
    /// caller holds the admin lock; nothing is changed here.
    fn plan_moves(&self, admin: &AdminGuard<'_>, slot: usize) -> Vec<(usize, usize)> {
        let manager = self.memory.manager();
        let mut candidates: Vec<Candidate> = self.replicas.candidates(Some(slot)).collect();
        let mut moves = Vec::new();
        for (tid, ctx) in self.threads.registrations(admin) {
            if ctx.replica.load(Ordering::Relaxed) == slot {
                let node = NodeId(ctx.node.load(Ordering::Relaxed));
                let to = dispatcher::choose(node, candidates.iter().copied(), |a, b| {
                    manager.distance(a, b)
                })
                .expect("another live replica exists");
                if let Some(c) = candidates.iter_mut().find(|c| c.slot == to) {
                    c.threads += 1;
                }
                moves.push((tid, to));
            }
        }
        moves
    }
}
