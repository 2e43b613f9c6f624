//! The poison flag: set when a panic unwound through a combiner, so that no replica
//! applies the log again (see `replica::combiner`'s module docs for when that happens).

use crate::error::POISONED;
use crate::sync::{AtomicBool, Ordering};

/// Set when a panic unwound out of a combiner (see `replica::combiner`'s docs): a replica may be
/// half-way through a batch, so no replica may apply the log again.
#[derive(Debug, Default)]
pub(crate) struct Poison(AtomicBool);

impl Poison {
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
        self.0.load(Ordering::Relaxed)
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
pub(crate) struct PoisonOnUnwind<'a>(&'a AtomicBool);

impl PoisonOnUnwind<'_> {
    #[inline]
    pub(crate) fn disarm(self) {
        core::mem::forget(self);
    }
}

impl Drop for PoisonOnUnwind<'_> {
    fn drop(&mut self) {
        self.0.store(true, Ordering::Release);
    }
}
