//! The instance's attention word: the poison flag, set when a panic unwound through a
//! combiner, so that no replica applies the log again (see `replica::combiner`'s module
//! docs for when that happens), and the policy flag, set when the threads changed in a way
//! the replication policy must look at (`policy`). Every operation loads the word once on
//! entry; both flags cost that one load.

use crate::error::POISONED;
use crate::sync::{AtomicUsize, Ordering};

/// The poison bit of the attention word.
pub(crate) const POISON: usize = 1;
/// The policy bit of the attention word: the replication policy has threads to look at.
pub(crate) const POLICY: usize = 2;
/// Raised with [`POLICY`] for an event no thread will act on itself (a thread that
/// exited): the next operation's entry runs the policy for it.
pub(crate) const ORPHAN: usize = 4;
/// Set for the instance's life if its affinity manager steers memory (so threads may move
/// between nodes, and every operation's entry counts towards the next look at its node):
/// in the same word, so that the entry tests one word for everything it may have to do.
pub(crate) const STEERS: usize = 8;
/// The bits an operation's entry acts on: one test on the common path, where none is set.
pub(crate) const ENTRY: usize = POISON | ORPHAN | STEERS;

/// The attention word (poison and policy flags). Poisoned when a panic unwound out of a
/// combiner (see `replica::combiner`'s docs): a replica may be half-way through a batch,
/// so no replica may apply the log again.
#[derive(Debug)]
pub(crate) struct Poison(AtomicUsize);

impl Poison {
    /// A clear word; with [`STEERS`] if `steers`.
    pub(crate) fn new(steers: bool) -> Self {
        Self(AtomicUsize::new(if steers { STEERS } else { 0 }))
    }

    /// Panics with [`POISONED`] if the instance is poisoned.
    #[inline]
    #[track_caller]
    pub(crate) fn check(&self) {
        if self.is_set() {
            poisoned();
        }
    }

    #[inline]
    pub(crate) fn is_set(&self) -> bool {
        self.0.load(Ordering::Relaxed) & POISON != 0
    }

    /// The whole word, for the entry of an operation: it tests the word once for
    /// everything it may have to do, the poison included, and calls
    /// [`check_flags`](Self::check_flags) only if any bit of [`ENTRY`] is set.
    #[inline]
    pub(crate) fn flags(&self) -> usize {
        self.0.load(Ordering::Relaxed)
    }

    /// Panics with [`POISONED`] if `flags` (the word as [`flags`](Self::flags) loaded it)
    /// has the poison bit.
    #[inline]
    #[track_caller]
    pub(crate) fn check_flags(flags: usize) {
        if flags & POISON != 0 {
            poisoned();
        }
    }

    /// Asks for a run of the replication policy: by the caller (it runs the policy
    /// next), or, for an `orphan` event, by the next operation's entry.
    pub(crate) fn request_policy(&self, orphan: bool) {
        // SeqCst: the event's half of the Dekker pair in `policy::run_rounds` (the flag
        // raised, then `running` looked at); it also releases the change that raised it.
        self.0.fetch_or(
            if orphan { POLICY | ORPHAN } else { POLICY },
            Ordering::SeqCst,
        );
    }

    /// Whether the policy flag is raised (`SeqCst`: the finishing run's half of the
    /// Dekker pair in `policy::run_rounds`).
    pub(crate) fn policy_raised(&self) -> bool {
        self.0.load(Ordering::SeqCst) & POLICY != 0
    }

    /// Takes the policy flag: whether it was raised.
    pub(crate) fn take_policy(&self) -> bool {
        self.0.load(Ordering::Relaxed) & POLICY != 0
            && self.0.fetch_and(!(POLICY | ORPHAN), Ordering::Acquire) & POLICY != 0
    }

    /// A guard that poisons the instance if a panic unwinds past it.
    #[inline]
    pub(crate) fn on_unwind(&self) -> PoisonOnUnwind<'_> {
        PoisonOnUnwind(&self.0)
    }
}

#[cold]
#[inline(never)]
#[track_caller]
fn poisoned() -> ! {
    panic!("{}", POISONED)
}

/// Marks the instance poisoned when dropped without [`disarm`](Self::disarm), that is
/// when a panic unwinds through the code it guards.
#[must_use]
pub(crate) struct PoisonOnUnwind<'a>(&'a AtomicUsize);

impl PoisonOnUnwind<'_> {
    #[inline]
    pub(crate) fn disarm(self) {
        core::mem::forget(self);
    }
}

impl Drop for PoisonOnUnwind<'_> {
    fn drop(&mut self) {
        self.0.fetch_or(POISON, Ordering::Release);
    }
}
