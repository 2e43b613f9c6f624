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
use crate::dispatcher::{self, Candidate};
use crate::error::Error;
use crate::log::MAX_REPLICAS;
use crate::node_replicated::{NodeReplicated, NO_STAND_IN};
use crate::replica::ReplicaId;
use crate::sync::Ordering;

impl<D> NodeReplicated<D>
where
    D: Dispatch + Clone + Send + Sync,
{
    /// Adds a replica on `node` while operations run, and returns its id.
    ///
    /// The new replica is a clone of the replica that has applied the most of the log,
    /// made with the calling thread's memory coming from `node`. Only that source replica
    /// is frozen during the clone; its threads are served by the nearest other replica
    /// meanwhile, every other replica goes on, and threads may still register.
    ///
    /// While the clone is made, the log's garbage collection cannot pass the source's
    /// position (the new replica replays everything after it), so the other replicas can
    /// append up to about one log capacity of writes before they wait for the clone to
    /// finish. Size the log for the write rate times the clone time.
    /// Threads registered on `node` that were served by a replica on another node move to
    /// the new replica; other threads stay where they are.
    ///
    /// # Errors
    ///
    /// [`Error::UnknownNode`] if the affinity manager does not list `node`,
    /// [`Error::TooManyReplicas`] at [`MAX_REPLICAS`], [`Error::Affinity`] if the memory
    /// policy could not be set. Nothing changes on error.
    ///
    /// # Examples
    ///
    /// ```
    /// use ldnr::NodeId;
    /// # #[derive(Clone, Default)] struct Cell(u64);
    /// # impl ldnr::Dispatch for Cell {
    /// #     type ReadOperation = (); type WriteOperation = u64; type Response = u64;
    /// #     fn dispatch(&self, _: ()) -> u64 { self.0 }
    /// #     fn dispatch_mut(&mut self, v: u64) -> u64 { std::mem::replace(&mut self.0, v) }
    /// # }
    /// let nr = ldnr::NodeReplicated::builder(Cell(0)).build()?;
    /// let tkn = nr.register()?;
    /// nr.execute_mut(5, tkn);
    /// let id = nr.add_replica(NodeId(0))?;
    /// assert_eq!(nr.replicas().len(), 2);
    /// nr.remove_replica(id)?;
    /// assert_eq!(nr.execute((), tkn), 5);
    /// # Ok::<(), ldnr::Error>(())
    /// ```
    pub fn add_replica(&self, node: NodeId) -> Result<ReplicaId, Error> {
        self.check_callbacks();
        // User code runs below (the affinity manager, `D::clone`): under this mark a call
        // from it back into this instance panics instead of waiting for us.
        let _inside = self.callbacks();
        if !self.affinity.nodes().contains(&node) {
            return Err(Error::UnknownNode(node));
        }
        let _reconfig = self.dispatcher.reconfig();
        if self.poisoned.load(Ordering::Relaxed) {
            return Err(Error::Poisoned);
        }
        let slot =
            self.replicas
                .iter()
                .position(|r| r.id().is_none())
                .ok_or(Error::TooManyReplicas {
                    limit: MAX_REPLICAS,
                })?;
        let source = self
            .replicas
            .iter()
            .enumerate()
            .filter(|(_, r)| r.id().is_some())
            .min_by_key(|&(s, _)| self.log.lag(s))
            .map(|(s, _)| s)
            .expect("an instance always has a live replica");

        // The stand-in for the source's threads while it is frozen (replica P6), chosen
        // before anything changes: the affinity manager's `distance` is user code, and
        // the operation paths never call it, so a panic in it leaves the instance as it
        // was.
        let stand_in = dispatcher::choose(
            self.replicas[source].node(),
            self.live_candidates(Some(source)),
            |a, b| self.affinity.distance(a, b),
        );
        self.stand_in
            .store(stand_in.unwrap_or(NO_STAND_IN), Ordering::Relaxed);

        // Freeze the source: its data and position stay put while we hold its lock.
        // Its threads are served by the stand-in meanwhile (replica P6). A panic in the
        // memory policy or in `clone` unfreezes it and changes nothing.
        let frozen = self.replicas[source].freeze();
        let position = self.log.position(source);
        let data = affinity::on_node(&*self.affinity, node, || {
            frozen
                .frozen(D::clone)
                .expect("the reconfiguration lock keeps the source live")
        })?;

        // Installed while the source is frozen at `position` and active, so GC stays at
        // or below it (L7), and counted live before the source unfreezes (L6).
        self.install(slot, node, data, position);
        let shell = &self.replicas[slot];
        let id = ReplicaId(self.next_id.fetch_add(1, Ordering::Relaxed));
        let admin = self.dispatcher.admin();
        let change = self.dispatcher.changing(&admin);
        shell.threads.store(0, Ordering::Relaxed);
        shell.set_identity(Some(id));
        drop(frozen);

        // Locality first: threads on `node` served by a replica elsewhere move here.
        let contexts = self.dispatcher.contexts();
        for ctx in &contexts[..self.dispatcher.registered()] {
            let current = ctx.replica.load(Ordering::Relaxed);
            if ctx.node.load(Ordering::Relaxed) == node.0 && self.replicas[current].node() != node {
                self.replicas[current]
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

    /// Removes replica `id` while operations run.
    ///
    /// Its threads move to the nearest remaining replica (the fewest threads on ties);
    /// an operation they were waiting on is executed exactly once, on the old replica if
    /// its combiner had taken it, otherwise on the new one. The replica's data is freed
    /// before this returns.
    ///
    /// # Errors
    ///
    /// [`Error::LastReplica`] for the only replica, [`Error::UnknownReplica`] for an id
    /// that is not live (never existed, or already removed). Nothing changes on error.
    ///
    /// # Examples
    ///
    /// ```
    /// use ldnr::{Error, NodeId};
    /// # #[derive(Clone, Default)] struct Nop;
    /// # impl ldnr::Dispatch for Nop {
    /// #     type ReadOperation = (); type WriteOperation = (); type Response = ();
    /// #     fn dispatch(&self, _: ()) {} fn dispatch_mut(&mut self, _: ()) {}
    /// # }
    /// let nr = ldnr::NodeReplicated::builder(Nop).replicas(&[NodeId(0), NodeId(0)]).build()?;
    /// let ids: Vec<_> = nr.replicas().iter().map(|r| r.id).collect();
    /// nr.remove_replica(ids[0])?;
    /// assert_eq!(nr.remove_replica(ids[0]), Err(Error::UnknownReplica(ids[0])));
    /// assert_eq!(nr.remove_replica(ids[1]), Err(Error::LastReplica));
    /// # Ok::<(), Error>(())
    /// ```
    pub fn remove_replica(&self, id: ReplicaId) -> Result<(), Error> {
        self.check_callbacks();
        // User code runs below (the affinity manager, `D`'s `Drop`): see `add_replica`.
        let _inside = self.callbacks();
        let _reconfig = self.dispatcher.reconfig();
        if self.poisoned.load(Ordering::Relaxed) {
            return Err(Error::Poisoned);
        }
        let slot = self
            .replicas
            .iter()
            .position(|r| r.id() == Some(id))
            .ok_or(Error::UnknownReplica(id))?;
        if self.replicas.iter().filter(|r| r.id().is_some()).count() == 1 {
            return Err(Error::LastReplica);
        }
        let shell = &self.replicas[slot];
        let admin = self.dispatcher.admin();
        // Where each of the replica's threads goes, decided before anything changes: the
        // affinity manager is asked for distances here, and a panic in it leaves the
        // instance as it was.
        let moves = self.plan_moves(slot);
        let change = self.dispatcher.changing(&admin);
        shell.set_identity(None);
        // Re-match first, so the threads' next operations go elsewhere.
        let contexts = self.dispatcher.contexts();
        for (tid, to) in moves {
            self.replicas[to].threads.fetch_add(1, Ordering::Relaxed);
            // Release: as in `add_replica`.
            contexts[tid].replica.store(to, Ordering::Release);
        }
        shell.threads.store(0, Ordering::Relaxed);
        drop(change);
        drop(admin);

        let data = {
            let combiner = shell.combine_blocking();
            let data = {
                let _write = shell.rw.write(slot, || self.dispatcher.readers());
                self.log.deactivate(slot);
                // SAFETY: the write lock is held.
                let data = unsafe { combiner.replace(None) };
                // Uncounted while this replica's combiner lock is held (log L6): no
                // helper is applying it, and it will never apply again.
                self.live.fetch_sub(1, Ordering::Release);
                data
            };
            // Hand back what waits on the stack; a thread that pushes later finds the
            // shell empty when it takes the lock, and hands back itself (I2).
            self.hand_back(shell);
            drop(combiner);
            data
        };
        // Dropped outside the locks: freeing a large structure can take a while. A panic
        // in `D`'s `Drop` unwinds from here, the replica removed.
        drop(data);
        Ok(())
    }

    /// The live replicas other than `except`, as matching candidates.
    pub(crate) fn live_candidates(
        &self,
        except: Option<usize>,
    ) -> impl Iterator<Item = Candidate> + '_ {
        self.replicas
            .iter()
            .enumerate()
            .filter(move |&(slot, r)| Some(slot) != except && r.id().is_some())
            .map(|(slot, r)| Candidate {
                slot,
                node: r.node(),
                threads: r.threads.load(Ordering::Relaxed),
            })
    }

    /// Where each thread of replica `slot` goes when it is removed: the nearest other
    /// live replica, the fewest threads on ties, counting the threads placed so far. The
    /// caller holds the admin lock; nothing is changed here.
    fn plan_moves(&self, slot: usize) -> Vec<(usize, usize)> {
        let mut candidates: Vec<Candidate> = self.live_candidates(Some(slot)).collect();
        let mut moves = Vec::new();
        let contexts = self.dispatcher.contexts();
        for (tid, ctx) in contexts[..self.dispatcher.registered()].iter().enumerate() {
            if ctx.replica.load(Ordering::Relaxed) == slot {
                let node = NodeId(ctx.node.load(Ordering::Relaxed));
                let to = dispatcher::choose(node, candidates.iter().copied(), |a, b| {
                    self.affinity.distance(a, b)
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
