//! The replica set: every shell of an instance, how many of them hold a live replica,
//! the stand-in for a frozen clone source, and the one place that makes a replica live
//! ([`ReplicaSet::install`]) or takes it out ([`ReplicaSet::uninstall`]).

use super::rwlock::Readers;
use super::{CombinerGuard, Replica, ReplicaId};
use crate::affinity::NodeId;
use crate::dispatcher::Candidate;
use crate::log::{Log, PerSlot};
use crate::sync::{AtomicUsize, Ordering};

/// Where a replica being installed starts: its log position and how many writes its
/// initial state holds that were applied without the log (log L9: its clone source's).
#[derive(Debug, Clone, Copy)]
pub(crate) struct Start {
    pub(crate) position: usize,
    pub(crate) direct: usize,
}

/// No stand-in: the frozen source is the only live replica, so its threads wait.
const NO_STAND_IN: usize = usize::MAX;

pub(crate) struct ReplicaSet<D> {
    /// Replica shells, allocated once (P4); a shell's index is also its position slot
    /// in the log.
    shells: PerSlot<Replica<D>>,
    /// How many replicas are live. Changed only by `install` and `uninstall`, each under
    /// the combiner lock of the replica added or removed (an add also with its clone
    /// source frozen, so the only replica's combiner cannot run): a combiner that reads a
    /// count of one under its own lock is the only live replica until it releases it
    /// (log L6, L9); one that reads more may be conservative.
    live: AtomicUsize,
    /// The slot that serves the threads of the replica frozen as a clone source (P6), or
    /// [`NO_STAND_IN`]. Chosen by `add_replica` before it freezes the source (the only
    /// place that asks the affinity manager for distances while operations run), and
    /// read only by threads that saw the source frozen (Acquire/Release on `frozen`). A
    /// hint: any slot is safe to try, since correctness rests on the locks.
    stand_in: AtomicUsize,
    /// The next replica id to hand out (ids are never reused).
    next_id: AtomicUsize,
}

impl<D> core::fmt::Debug for ReplicaSet<D> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("ReplicaSet")
            .field("live", &self.live.load(Ordering::Relaxed))
            .finish_non_exhaustive()
    }
}

impl<D> ReplicaSet<D> {
    /// `MAX_REPLICAS` empty shells, for an instance of at most `threads` threads.
    pub(crate) fn new(threads: usize) -> Self {
        Self {
            shells: PerSlot::new(|_| Replica::shell(threads)),
            live: AtomicUsize::new(0),
            stand_in: AtomicUsize::new(NO_STAND_IN),
            next_id: AtomicUsize::new(0),
        }
    }

    /// The shell in `slot`.
    #[inline(always)]
    pub(crate) fn shell(&self, slot: usize) -> &Replica<D> {
        self.shells.get(slot)
    }

    /// Every shell with its slot.
    pub(crate) fn iter(&self) -> impl Iterator<Item = (usize, &Replica<D>)> {
        self.shells.iter().enumerate()
    }

    /// Whether the caller's replica is the only live one (log L6). Meaningful only under
    /// a live replica's combiner lock: the count cannot then rise from one (a clone needs
    /// that lock), and it drops to one only after the removed replica's last batch (under
    /// that replica's lock), so reading "not sole" is never wrong, only conservative.
    #[inline]
    pub(crate) fn is_sole(&self) -> bool {
        // Acquire: pairs with the Release in `install` and `uninstall`.
        self.live.load(Ordering::Acquire) == 1
    }

    /// How many shells hold a named replica.
    pub(crate) fn named(&self) -> usize {
        self.shells.iter().filter(|r| r.id().is_some()).count()
    }

    /// The slot of the live replica `id`.
    pub(crate) fn find(&self, id: ReplicaId) -> Option<usize> {
        self.shells.iter().position(|r| r.id() == Some(id))
    }

    /// A shell that holds no replica.
    pub(crate) fn free_slot(&self) -> Option<usize> {
        self.shells.iter().position(|r| r.id().is_none())
    }

    /// A fresh replica id.
    pub(crate) fn next_id(&self) -> ReplicaId {
        ReplicaId(self.next_id.fetch_add(1, Ordering::Relaxed))
    }

    /// The live replicas other than `except`, as matching candidates.
    pub(crate) fn candidates(&self, except: Option<usize>) -> impl Iterator<Item = Candidate> + '_ {
        self.iter()
            .filter(move |&(slot, r)| Some(slot) != except && r.id().is_some())
            .map(|(slot, r)| Candidate {
                slot,
                node: r.node(),
                threads: r.threads.load(Ordering::Relaxed),
            })
    }

    /// The replica that serves, for one operation, a thread whose replica `slot` is
    /// frozen as a clone source (P6): the one `add_replica` chose before freezing it, if
    /// `slot` is frozen and there is one. The frozen flag is loaded first (Acquire), which
    /// makes the choice visible.
    #[inline]
    pub(crate) fn stand_in(&self, slot: usize) -> Option<usize> {
        if !self.shell(slot).is_frozen() {
            return None;
        }
        let stand_in = self.stand_in.load(Ordering::Relaxed);
        (stand_in != NO_STAND_IN && stand_in != slot).then_some(stand_in)
    }

    /// Records the stand-in for the replica about to be frozen (before `freeze`, whose
    /// Release publishes it).
    pub(crate) fn set_stand_in(&self, slot: Option<usize>) {
        self.stand_in
            .store(slot.unwrap_or(NO_STAND_IN), Ordering::Relaxed);
    }

    /// Installs `data` as the replica in shell `slot` on `node`, joining the log at
    /// `start.position` (`start.direct`: how many writes `data` holds that were applied
    /// without the log, log L9), and counts it live; the caller then names it (`set_identity`). The one
    /// place that makes a replica live (for `build` and `add_replica`). The order matters:
    ///
    /// 1. the node, before any thread can apply the replica: a helper that applies it
    ///    sets its memory policy from it, and must not use the shell's previous life's;
    /// 2. both locks, so that no combiner and no reader is inside (P4); `readers` are the
    ///    reader slots the write lock waits for;
    /// 3. the log position, under the write lock with the data (a reader checks the
    ///    position under its read lock); the caller keeps `head` at or below `position`
    ///    while this runs (log L7: for a clone, the source is frozen there and active);
    /// 4. the data;
    /// 5. the live count, before the locks are released (L6): a combiner that takes this
    ///    shell's lock afterwards, or the source's once it unfreezes, reads two or more
    ///    live replicas. (A thread left on this shell by the removal that freed it may
    ///    take its lock the moment it is released.)
    /// 6. the lock's stamp (R3), stored as the write lock is released: readers at
    ///    `start.position` read it without further checks.
    pub(crate) fn install<'r, W>(
        &self,
        slot: usize,
        node: NodeId,
        data: D,
        start: Start,
        log: &Log<W>,
        readers: impl Readers<'r>,
    ) where
        W: Clone,
    {
        let shell = self.shells.get(slot);
        shell.set_node(node);
        // A thread that still holds a reference from the shell's previous life may hold
        // its locks for a moment (to hand back operations); wait for it.
        let combiner = shell.combine_blocking();
        combiner.reset_counters(start.direct);
        let mut write = shell.rw().write(slot, readers);
        log.activate(slot, start.position);
        // SAFETY: the write lock is held.
        let old = unsafe { combiner.replace(Some(data)) };
        debug_assert!(old.is_none(), "a free shell holds no data");
        write.publish(start.position);
        // Release: pairs with the Acquire in `is_sole`, under combiner locks.
        self.live.fetch_add(1, Ordering::Release);
    }

    /// Installs `data` as a new replica on `node` of an instance being built (no thread
    /// runs yet): in the shell numbered by its id, at the log's origin, and names it.
    pub(crate) fn found<W: Clone>(&self, node: NodeId, data: D, log: &Log<W>) -> ReplicaId {
        let id = self.next_id();
        let slot = id.get();
        let start = Start {
            position: log.origin(),
            direct: 0,
        };
        self.install(slot, node, data, start, log, core::iter::empty);
        self.shells.get(slot).set_identity(Some(id));
        id
    }

    /// Takes the replica out of shell `slot` and returns its data: under the shell's
    /// combiner lock (no batch in flight) and write lock (no reader inside), the data
    /// out, the slot out of garbage collection and the live count down; then, still under
    /// the combiner lock, `while_locked` (which hands back the operations waiting on the
    /// shell). The caller has already un-named the shell and moved its threads.
    pub(crate) fn uninstall<'r, W>(
        &self,
        slot: usize,
        log: &Log<W>,
        readers: impl Readers<'r>,
        while_locked: impl FnOnce(&CombinerGuard<'_, D>),
    ) -> Option<D>
    where
        W: Clone,
    {
        let shell = self.shells.get(slot);
        let combiner = shell.combine_blocking();
        let data = {
            let mut write = shell.rw().write(slot, readers);
            write.retire();
            log.deactivate(slot);
            // SAFETY: the write lock is held.
            let data = unsafe { combiner.replace(None) };
            // Uncounted while this replica's combiner lock is held (log L6): no helper is
            // applying it, and it will never apply again.
            self.live.fetch_sub(1, Ordering::Release);
            data
        };
        while_locked(&combiner);
        data
    }
}
