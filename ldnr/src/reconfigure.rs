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

use crate::affinity::{AffinityGuard, NodeId};
use crate::dispatch::Dispatch;
use crate::error::Error;
use crate::log::MAX_REPLICAS;
use crate::node_replicated::NodeReplicated;
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
            .max_by_key(|&(s, _)| self.log.position(s))
            .map(|(s, _)| s)
            .expect("an instance always has a live replica");

        // Freeze the source: its data and position stay put while we hold its lock.
        // Its threads are served by stand-ins meanwhile (replica P6).
        let frozen = self.replicas[source].freeze();
        let position = self.log.position(source);
        let data = {
            let _policy = AffinityGuard::new(&*self.affinity, node)?;
            frozen
                .frozen(D::clone)
                .expect("the reconfiguration lock keeps the source live")
        };

        let shell = &self.replicas[slot];
        let id = ReplicaId(self.next_id.fetch_add(1, Ordering::Relaxed));
        {
            // A thread that still holds a reference from the shell's previous life may
            // hold its locks for a moment (to hand back operations); wait for it.
            let combiner = shell.combine_blocking();
            let _write = shell.rw.write(slot, || self.dispatcher.readers());
            // The position first, then the data, both under the write lock: a reader
            // checks the position under its read lock (see `execute`). Activation happens
            // while the source is frozen at `position` and active, so GC stays at or
            // below it (I3).
            self.log.activate(slot, position);
            // SAFETY: the write lock is held.
            let old = unsafe { combiner.replace(Some(data)) };
            debug_assert!(old.is_none(), "a free shell holds no data");
        }
        // Counted while the source is frozen and before the new replica can be seen (log
        // L6): the source may have been the only live replica, and both its combiner and
        // any thread that finds the new replica (a stand-in) must see two.
        self.live.fetch_add(1, Ordering::Release);
        let admin = self.dispatcher.admin();
        let change = self.dispatcher.changing(&admin);
        shell.threads.store(0, Ordering::Relaxed);
        shell.set_identity(Some((id, node)));
        drop(frozen);

        // Locality first: threads on `node` served by a replica elsewhere move here.
        let contexts = self.dispatcher.contexts();
        for ctx in &contexts[..self.dispatcher.registered()] {
            let current = ctx.replica.load(Ordering::Relaxed);
            if ctx.node.load(Ordering::Relaxed) == node.0 && self.replicas[current].node() != node {
                self.replicas[current]
                    .threads
                    .fetch_sub(1, Ordering::Relaxed);
                ctx.replica.store(slot, Ordering::Relaxed);
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
        let change = self.dispatcher.changing(&admin);
        shell.set_identity(None);

        // Re-match first, so the threads' next operations go elsewhere.
        let contexts = self.dispatcher.contexts();
        for ctx in &contexts[..self.dispatcher.registered()] {
            if ctx.replica.load(Ordering::Relaxed) == slot {
                let node = NodeId(ctx.node.load(Ordering::Relaxed));
                let to = self
                    .match_thread(node, Some(slot))
                    .expect("another live replica exists");
                self.replicas[to].threads.fetch_add(1, Ordering::Relaxed);
                ctx.replica.store(to, Ordering::Relaxed);
            }
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
            // Hand back what waits on the stack; `combine` does exactly that on a shell
            // without data, and releases the lock.
            let live = self.combine(slot, combiner, None);
            debug_assert!(!live);
            data
        };
        // Dropped outside the locks: freeing a large structure can take a while.
        drop(data);
        Ok(())
    }
}
