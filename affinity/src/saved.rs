//! The policies a thread's live guards replaced: a per-thread stack, so that guards
//! dropped in any order leave exactly the right policy behind.
//!
//! Each [`set_memory_node`](ldnr::AffinityManager::set_memory_node) that steers pushes an
//! entry *before* it changes the policy: the policy in force (`below`) and the one it
//! sets (`mine`). The [`SavedPolicy`] it returns is the entry's key, never a policy, so a
//! key is useful only on its own thread and only once.
//!
//! ```text
//!   guard A: P0 -> PA      stack: [A(below P0, mine PA)]
//!   guard B: PA -> PB      stack: [A(P0, PA), B(PA, PB)]        policy PB
//!   drop A (not the top)   stack: [B(P0, PB)]                   policy PB (B is live)
//!   drop B (the top)       stack: []          apply B.below     policy P0
//! ```
//!
//! Invariant S1: for consecutive entries `e[i]`, `e[i + 1]`: `e[i + 1].below ==
//! e[i].mine` — each entry restores to what the entry under it set, the bottom one to
//! the thread's own policy. Removing `e[i]` from the middle hands its `below` to
//! `e[i + 1]`, which keeps S1; popping the top applies its `below`, which by S1 is what
//! the live entries under it (or nobody) want.
//!
//! Each entry also keeps the thread's allocation node (see [`NodeAlloc`](crate::NodeAlloc))
//! from before it, under the same rule: a middle entry hands it to the entry above, the
//! top one puts it back. So the allocation node follows the policy exactly.
//!
//! Keys are `thread << 40 | sequence`: a thread number handed out once per thread, so a
//! key taken to another thread finds nothing there ([`AffinityError::StalePolicy`]);
//! a key restored twice finds nothing either.

use std::cell::RefCell;
use std::sync::atomic::{AtomicU64, Ordering};

use ldnr::{AffinityError, NodeId, SavedPolicy};

use crate::node_alloc;
use crate::policy::MemoryPolicy;

/// Bits of a key that count a thread's entries.
const SEQUENCE_BITS: u32 = 40;
/// Thread numbers wrap below this, so that no key is `u64::MAX` (`SavedPolicy::UNCHANGED`).
const THREADS: u64 = (1 << (64 - SEQUENCE_BITS)) - 1;

/// Hands each thread its number, at its first saved policy.
static NEXT_THREAD: AtomicU64 = AtomicU64::new(0);

struct Entry {
    key: u64,
    below: MemoryPolicy,
    mine: MemoryPolicy,
    /// The allocation node before this entry (or before the entry under it, S1).
    alloc_below: Option<NodeId>,
}

struct Stack {
    /// `thread << SEQUENCE_BITS`, or `None` before the first push.
    thread: Option<u64>,
    next: u64,
    /// Invariant S1 (module docs).
    entries: Vec<Entry>,
}

thread_local! {
    static STACK: RefCell<Stack> = const {
        RefCell::new(Stack { thread: None, next: 0, entries: Vec::new() })
    };
}

/// Records that the calling thread's policy `below` is about to be replaced by `mine`,
/// and returns the key to restore it with. Call it before changing the policy, and
/// [`discard`] the key if the change fails. It records the thread's allocation node too;
/// the caller sets the new one after the change.
///
/// # Errors
///
/// [`AffinityError::StalePolicy`] if the thread is exiting and its stack is gone
/// (then the caller must not change the policy: it could not be restored).
pub(crate) fn push(below: MemoryPolicy, mine: MemoryPolicy) -> Result<SavedPolicy, AffinityError> {
    STACK
        .try_with(|stack| {
            let mut stack = stack.borrow_mut();
            let thread = *stack.thread.get_or_insert_with(|| {
                (NEXT_THREAD.fetch_add(1, Ordering::Relaxed) % THREADS) << SEQUENCE_BITS
            });
            let key = thread | (stack.next & ((1 << SEQUENCE_BITS) - 1));
            stack.next = stack.next.wrapping_add(1);
            stack.entries.push(Entry {
                key,
                below,
                mine,
                alloc_below: node_alloc::alloc_node(),
            });
            SavedPolicy(key)
        })
        .map_err(|_| AffinityError::StalePolicy)
}

/// Forgets the entry [`push`] just made (its policy change failed, so nothing is to be
/// restored).
pub(crate) fn discard(saved: SavedPolicy) {
    let _ = STACK.try_with(|stack| {
        let mut stack = stack.borrow_mut();
        if stack.entries.last().is_some_and(|e| e.key == saved.0) {
            stack.entries.pop();
        }
    });
}

/// Ends the entry `saved`: if it is the newest, calls `apply` with the policy to put back
/// (unless that is the policy already in force) and puts back the allocation node it
/// replaced; otherwise hands both to the entry above it and changes nothing now (S1).
///
/// # Errors
///
/// [`AffinityError::StalePolicy`] if `saved` is not a live entry of this thread;
/// whatever `apply` returns.
pub(crate) fn pop(
    saved: SavedPolicy,
    apply: impl FnOnce(&MemoryPolicy) -> Result<(), AffinityError>,
) -> Result<(), AffinityError> {
    let top = STACK
        .try_with(|stack| {
            let mut stack = stack.borrow_mut();
            let i = stack
                .entries
                .iter()
                .position(|e| e.key == saved.0)
                .ok_or(AffinityError::StalePolicy)?;
            let entry = stack.entries.remove(i);
            match stack.entries.get_mut(i) {
                // Not the newest: the entry above now restores to what this one would
                // have (S1).
                Some(above) => {
                    above.below = entry.below;
                    above.alloc_below = entry.alloc_below;
                    Ok(None)
                }
                None => {
                    node_alloc::set_alloc_node(entry.alloc_below);
                    Ok((entry.below != entry.mine).then_some(entry.below))
                }
            }
        })
        .map_err(|_| AffinityError::StalePolicy)??;
    match top {
        Some(below) => apply(&below),
        None => Ok(()),
    }
}

/// How many entries the calling thread has (for tests).
#[cfg(test)]
pub(crate) fn depth() -> usize {
    STACK.with(|s| s.borrow().entries.len())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::PolicyMode;
    use ldnr::NodeId;

    fn pol(n: usize) -> MemoryPolicy {
        MemoryPolicy::new(PolicyMode::Bind, 0, &[NodeId(n)])
    }

    /// Pops `key`, returning the policy it applied (if any).
    fn pop_seen(key: SavedPolicy) -> Result<Option<MemoryPolicy>, AffinityError> {
        let mut seen = None;
        pop(key, |p| {
            seen = Some(p.clone());
            Ok(())
        })?;
        Ok(seen)
    }

    #[test]
    fn in_order_restores_each_below() {
        let a = push(pol(0), pol(1)).unwrap();
        let b = push(pol(1), pol(2)).unwrap();
        assert_eq!(pop_seen(b), Ok(Some(pol(1))));
        assert_eq!(pop_seen(a), Ok(Some(pol(0))));
        assert_eq!(depth(), 0);
    }

    #[test]
    fn out_of_order_restores_the_first_below_last() {
        let a = push(pol(0), pol(1)).unwrap();
        let b = push(pol(1), pol(2)).unwrap();
        let c = push(pol(2), pol(3)).unwrap();
        assert_eq!(pop_seen(a), Ok(None), "b and c are live: nothing to apply");
        assert_eq!(pop_seen(c), Ok(Some(pol(2))), "back to b's node");
        assert_eq!(pop_seen(b), Ok(Some(pol(0))), "back to the thread's own");
        assert_eq!(depth(), 0);
    }

    #[test]
    fn an_unchanged_entry_applies_nothing_unless_it_inherited_a_below() {
        let a = push(pol(0), pol(1)).unwrap();
        let same = push(pol(1), pol(1)).unwrap();
        assert_eq!(pop_seen(a), Ok(None));
        assert_eq!(pop_seen(same), Ok(Some(pol(0))));
        let alone = push(pol(4), pol(4)).unwrap();
        assert_eq!(pop_seen(alone), Ok(None));
    }

    #[test]
    fn keys_are_single_use_and_per_thread() {
        let a = push(pol(0), pol(1)).unwrap();
        assert!(!a.is_unchanged());
        let other = std::thread::spawn(move || {
            let mine = push(pol(5), pol(6)).unwrap();
            let result = pop_seen(a);
            assert_eq!(depth(), 1, "the foreign key removed nothing");
            pop_seen(mine).unwrap();
            (mine, result)
        })
        .join()
        .unwrap();
        assert_eq!(other.1, Err(AffinityError::StalePolicy));
        assert_ne!(other.0, a);
        assert_eq!(pop_seen(other.0), Err(AffinityError::StalePolicy));
        assert_eq!(pop_seen(a), Ok(Some(pol(0))));
        assert_eq!(pop_seen(a), Err(AffinityError::StalePolicy), "twice");
    }

    #[test]
    fn the_allocation_node_follows_the_entries_in_any_order() {
        let a = push(pol(0), pol(1)).unwrap();
        node_alloc::set_alloc_node(Some(NodeId(1)));
        let b = push(pol(1), pol(2)).unwrap();
        node_alloc::set_alloc_node(Some(NodeId(2)));
        assert_eq!(pop_seen(a), Ok(None));
        assert_eq!(node_alloc::alloc_node(), Some(NodeId(2)), "b is live");
        assert_eq!(pop_seen(b), Ok(Some(pol(0))));
        assert_eq!(node_alloc::alloc_node(), None, "back to the thread's own");
        let c = push(pol(0), pol(3)).unwrap();
        node_alloc::set_alloc_node(Some(NodeId(3)));
        let d = push(pol(3), pol(4)).unwrap();
        node_alloc::set_alloc_node(Some(NodeId(4)));
        assert_eq!(pop_seen(d), Ok(Some(pol(3))));
        assert_eq!(node_alloc::alloc_node(), Some(NodeId(3)), "c is live");
        assert_eq!(pop_seen(c), Ok(Some(pol(0))));
        assert_eq!(node_alloc::alloc_node(), None);
    }

    #[test]
    fn discard_forgets_a_failed_change() {
        let a = push(pol(0), pol(1)).unwrap();
        discard(a);
        assert_eq!(depth(), 0);
        assert_eq!(pop_seen(a), Err(AffinityError::StalePolicy));
    }

    #[test]
    fn a_failing_apply_is_reported_and_the_entry_is_gone() {
        let a = push(pol(0), pol(1)).unwrap();
        assert_eq!(
            pop(a, |_| Err(AffinityError::Os(22))),
            Err(AffinityError::Os(22))
        );
        assert_eq!(depth(), 0);
    }
}
