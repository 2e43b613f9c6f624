//! The one place that picks the synchronization primitives.
//!
//! Normal builds use `core`'s atomics and a thin `UnsafeCell` wrapper with loom's
//! closure API. Two testing builds swap them out:
//!
//! - `RUSTFLAGS="--cfg ldnr_loom"` uses loom's atomics and `UnsafeCell`, so that the
//!   model checker sees every access (exhaustive search of small models, weak memory
//!   orderings, data races on cells).
//! - `RUSTFLAGS="--cfg ldnr_shuttle"` uses shuttle's atomics, so that every atomic
//!   access is a point where shuttle's randomized and PCT schedulers may switch threads
//!   (`tests/shuttle.rs`: larger configurations than loom can explore). Shuttle runs one
//!   thread at a time and models sequentially consistent memory only, and it does not
//!   check data races, so `UnsafeCell` stays the plain wrapper there: shuttle finds
//!   interleaving bugs (lost or doubled operations, divergent replicas, deadlocks), loom
//!   finds ordering and race bugs. Shuttle's atomics work only inside a shuttle
//!   execution, so under this `cfg` only `tests/shuttle.rs` runs.
//!
//! No other file names atomics, `UnsafeCell` or threads (`ldnr/clippy.toml` forbids it,
//! as `disallowed-types`/`disallowed-methods`), so the algorithm that loom and shuttle
//! check is the algorithm that ships. Every wait loop goes through
//! [`Backoff::snooze`], which yields to the model's scheduler under both checkers: a
//! waiter that spun without yielding would never let the thread it waits for run. And
//! nothing in the crate blocks on an operating-system primitive (the admin locks are
//! spin locks on these atomics), which under shuttle would block the only running
//! thread for ever.
//!
//! The `cfg`s are `ldnr_loom` and `ldnr_shuttle` rather than `loom` so that a global
//! `RUSTFLAGS` cannot flip a dependency's own `cfg(loom)`.

#![allow(clippy::disallowed_types, clippy::disallowed_methods)]

#[cfg(all(ldnr_loom, ldnr_shuttle))]
compile_error!("`--cfg ldnr_loom` and `--cfg ldnr_shuttle` exclude each other");

#[cfg(ldnr_loom)]
pub(crate) use loom::sync::atomic::{fence, AtomicBool, AtomicU64, AtomicUsize};
#[cfg(not(any(ldnr_loom, ldnr_shuttle)))]
pub(crate) use plain::{fence, AtomicBool, AtomicU64, AtomicUsize};
#[cfg(ldnr_shuttle)]
pub(crate) use shuttle::sync::atomic::{fence, AtomicBool, AtomicU64, AtomicUsize};

pub(crate) use core::sync::atomic::Ordering;

/// The atomics of normal builds: `core`'s, behind newtypes with only the operations the
/// crate uses, so that `clippy.toml` can forbid naming `core`'s atomics anywhere else
/// (every atomic access of the algorithm must be one loom and shuttle replace).
#[cfg(not(any(ldnr_loom, ldnr_shuttle)))]
mod plain {
    use core::sync::atomic::{self as core_atomic, Ordering};

    /// A fence; `core::sync::atomic::fence`.
    #[inline(always)]
    pub(crate) fn fence(order: Ordering) {
        core_atomic::fence(order);
    }

    macro_rules! atomic {
        ($name:ident, $value:ty) => {
            #[doc = concat!("`core::sync::atomic::", stringify!($name), "`.")]
            #[derive(Debug, Default)]
            #[repr(transparent)]
            pub(crate) struct $name(core_atomic::$name);

            #[allow(dead_code)]
            impl $name {
                #[inline(always)]
                pub(crate) const fn new(value: $value) -> Self {
                    Self(core_atomic::$name::new(value))
                }
                #[inline(always)]
                pub(crate) fn load(&self, order: Ordering) -> $value {
                    self.0.load(order)
                }
                #[inline(always)]
                pub(crate) fn store(&self, value: $value, order: Ordering) {
                    self.0.store(value, order)
                }
                #[inline(always)]
                pub(crate) fn swap(&self, value: $value, order: Ordering) -> $value {
                    self.0.swap(value, order)
                }
                #[inline(always)]
                pub(crate) fn compare_exchange(
                    &self,
                    current: $value,
                    new: $value,
                    success: Ordering,
                    failure: Ordering,
                ) -> Result<$value, $value> {
                    self.0.compare_exchange(current, new, success, failure)
                }
                #[inline(always)]
                pub(crate) fn compare_exchange_weak(
                    &self,
                    current: $value,
                    new: $value,
                    success: Ordering,
                    failure: Ordering,
                ) -> Result<$value, $value> {
                    self.0.compare_exchange_weak(current, new, success, failure)
                }
            }
        };
    }

    atomic!(AtomicBool, bool);
    atomic!(AtomicUsize, usize);
    atomic!(AtomicU64, u64);

    impl AtomicUsize {
        #[inline(always)]
        pub(crate) fn fetch_add(&self, value: usize, order: Ordering) -> usize {
            self.0.fetch_add(value, order)
        }
        #[inline(always)]
        pub(crate) fn fetch_sub(&self, value: usize, order: Ordering) -> usize {
            self.0.fetch_sub(value, order)
        }
        #[inline(always)]
        pub(crate) fn fetch_or(&self, value: usize, order: Ordering) -> usize {
            self.0.fetch_or(value, order)
        }
        #[inline(always)]
        pub(crate) fn fetch_and(&self, value: usize, order: Ordering) -> usize {
            self.0.fetch_and(value, order)
        }
    }
}

/// Interior mutability whose accesses loom can check.
#[cfg(ldnr_loom)]
pub(crate) use loom::cell::UnsafeCell;

/// Interior mutability with loom's closure API, compiled to a plain `core::cell::UnsafeCell`
/// (also under shuttle, which does not check data races).
#[cfg(not(ldnr_loom))]
#[derive(Debug)]
pub(crate) struct UnsafeCell<T>(core::cell::UnsafeCell<T>);

#[cfg(not(ldnr_loom))]
impl<T> UnsafeCell<T> {
    pub(crate) const fn new(value: T) -> Self {
        Self(core::cell::UnsafeCell::new(value))
    }

    /// Runs `f` with a shared raw pointer to the value.
    #[inline(always)]
    pub(crate) fn with<R>(&self, f: impl FnOnce(*const T) -> R) -> R {
        f(self.0.get())
    }

    /// Runs `f` with an exclusive raw pointer to the value.
    #[inline(always)]
    pub(crate) fn with_mut<R>(&self, f: impl FnOnce(*mut T) -> R) -> R {
        f(self.0.get())
    }
}

/// The asymmetric barrier pair of a lone writer (rwlock R5): [`light`](Self::light) on
/// the writer's path, where it costs no instruction, and [`heavy`](Self::heavy) on the
/// rare path of a thread joining a reader set. Paired, they order like two `SeqCst`
/// fences: whatever a thread did before its heavy barrier is visible to another thread's
/// loads after that thread's light barrier, or whatever the other thread did before its
/// light barrier is visible to the first thread's loads after its heavy barrier. A light
/// barrier orders nothing against a plain fence, or against another light barrier.
///
/// - Normal builds: `light` is a compiler barrier. `heavy` is Linux's
///   `membarrier(MEMBARRIER_CMD_PRIVATE_EXPEDITED)`: before it returns, every CPU that
///   runs a thread of the process has executed a full barrier, so a light barrier's
///   thread passes one either before its light barrier (its loads after it see the
///   heavy side's stores) or after it (its stores before it are visible to the heavy
///   side's loads). [`asymmetric_available`] says whether the call is available (Linux
///   with `std`, registered once per process; never elsewhere: there each instance
///   keeps the writer's fence).
/// - Loom: one read-modify-write (`AcqRel`) of a model word per reader set, by both
///   barriers. Whichever comes second in the word's modification order synchronizes
///   with the first: the same two outcomes as above, at a point inside the light side's
///   window, one of the points the real barrier may choose. The word models a pair, so
///   a heavy barrier is modeled on the reader set the joiner joins, the only one whose
///   writers it must order with.
/// - Shuttle (sequentially consistent memory): both are no-ops.
#[derive(Debug)]
pub(crate) struct Asymmetric {
    #[cfg(ldnr_loom)]
    model: AtomicUsize,
}

impl Asymmetric {
    pub(crate) fn new() -> Self {
        Self {
            #[cfg(ldnr_loom)]
            model: AtomicUsize::new(0),
        }
    }

    /// The writer's side: no instruction, only the compiler kept from moving memory
    /// accesses across it.
    #[inline(always)]
    pub(crate) fn light(&self) {
        #[cfg(ldnr_loom)]
        self.model.fetch_add(0, Ordering::AcqRel);
        #[cfg(not(any(ldnr_loom, ldnr_shuttle)))]
        core::sync::atomic::compiler_fence(Ordering::SeqCst);
    }

    /// The joiner's side: a barrier on every CPU that runs a thread of the process. Only
    /// where [`asymmetric_available`] said `true`. Returns whether it was issued: `false`
    /// if the kernel refused it (a seccomp filter installed after the registration, a
    /// process restored without its registration, no memory for the call), and from then
    /// on without asking the kernel again; the caller then orders itself with the writers
    /// another way.
    #[inline]
    #[must_use = "a refused barrier orders nothing"]
    pub(crate) fn heavy(&self) -> bool {
        #[cfg(ldnr_loom)]
        {
            if HEAVY_REFUSED.with(core::cell::Cell::get) {
                return false;
            }
            self.model.fetch_add(0, Ordering::AcqRel);
            true
        }
        #[cfg(ldnr_shuttle)]
        return true;
        #[cfg(all(
            feature = "std",
            target_os = "linux",
            not(any(ldnr_loom, ldnr_shuttle, miri))
        ))]
        return membarrier::heavy();
        #[cfg(not(any(
            ldnr_loom,
            ldnr_shuttle,
            all(feature = "std", target_os = "linux", not(miri))
        )))]
        unreachable!("no asymmetric barrier on this target");
    }
}

#[cfg(ldnr_loom)]
std::thread_local! {
    /// Loom models of a kernel that refuses the heavy barrier set this on their test's
    /// thread (loom runs a model's threads on it): [`Asymmetric::heavy`] then returns
    /// `false`, as a refused `membarrier` does.
    pub(crate) static HEAVY_REFUSED: core::cell::Cell<bool> = const { core::cell::Cell::new(false) };
}

/// Whether [`Asymmetric::heavy`] works in this process (checked, and registered with the
/// kernel, on the first call; `false` once a barrier was refused, so that instances
/// built after that fence every write rather than order every join through a lock).
/// Always under the model checkers, so that they check the lone writer's path; never
/// under Miri, which has no `membarrier`.
pub(crate) fn asymmetric_available() -> bool {
    #[cfg(any(ldnr_loom, ldnr_shuttle))]
    return true;
    #[cfg(all(
        feature = "std",
        target_os = "linux",
        not(any(ldnr_loom, ldnr_shuttle, miri))
    ))]
    return membarrier::available();
    #[allow(unreachable_code)]
    false
}

/// Linux's `membarrier`, private expedited: registered once per process (for good: a
/// process cannot unregister), then one call per heavy barrier (about 0.1 µs with no
/// other thread of the process running, 8–10 µs on a 2-vCPU VM with one: an interrupt to
/// each CPU that runs one).
#[cfg(all(
    feature = "std",
    target_os = "linux",
    not(any(ldnr_loom, ldnr_shuttle, miri))
))]
mod membarrier {
    use super::{AtomicUsize, Ordering};

    const QUERY: libc::c_int = 0;
    const PRIVATE_EXPEDITED: libc::c_int = 1 << 3;
    const REGISTER_PRIVATE_EXPEDITED: libc::c_int = 1 << 4;

    const UNKNOWN: usize = 0;
    const ON: usize = 1;
    const OFF: usize = 2;
    /// Registered, but a barrier was refused since: every later one is taken as refused.
    const REFUSED: usize = 3;

    /// Whether the process has registered (`ON`), cannot (`OFF`), or has not tried; or
    /// had a barrier refused after registering (`REFUSED`).
    static STATE: AtomicUsize = AtomicUsize::new(UNKNOWN);

    fn call(cmd: libc::c_int) -> libc::c_long {
        // SAFETY: `membarrier(cmd, flags, cpu_id)` takes no pointers; an unknown or
        // unsupported command fails with an error code and changes nothing.
        unsafe {
            libc::syscall(
                libc::SYS_membarrier,
                cmd,
                0 as libc::c_uint,
                0 as libc::c_int,
            )
        }
    }

    pub(super) fn available() -> bool {
        // Acquire: pairs with the Release below (the registration's syscall returned
        // before any thread uses the barrier).
        match STATE.load(Ordering::Acquire) {
            ON => true,
            OFF | REFUSED => false,
            _ => {
                // Several threads may register at once: registering is idempotent, and
                // the first result recorded stands (a refusal recorded meanwhile too).
                let supported = call(QUERY);
                let wanted = (PRIVATE_EXPEDITED | REGISTER_PRIVATE_EXPEDITED) as libc::c_long;
                let on = supported >= 0
                    && supported & wanted == wanted
                    && call(REGISTER_PRIVATE_EXPEDITED) == 0;
                let state = if on { ON } else { OFF };
                // Release: as above.
                match STATE.compare_exchange(UNKNOWN, state, Ordering::Release, Ordering::Acquire) {
                    Ok(_) => on,
                    Err(now) => now == ON,
                }
            }
        }
    }

    /// One barrier; `false` if the kernel refused it, now or before.
    #[inline]
    pub(super) fn heavy() -> bool {
        match STATE.load(Ordering::Relaxed) {
            ON if call(PRIVATE_EXPEDITED) == 0 => true,
            ON => {
                refused();
                false
            }
            _ => false,
        }
    }

    /// The kernel refused a barrier after the process registered: a seccomp filter
    /// installed since, a checkpoint restored without the registration, or no memory for
    /// the call. Later joins go without the barrier (`Shared::join_readers` orders them
    /// through the replica's combiner lock), so the kernel is not asked again.
    #[cold]
    #[inline(never)]
    fn refused() {
        STATE.store(REFUSED, Ordering::Relaxed);
    }
}

/// Tells the scheduler (or loom, or shuttle) that this thread is waiting for another one.
///
/// Under loom and shuttle every wait loop must yield, or the model never terminates:
/// each `snooze` is a yield to the checker's scheduler (shuttle's PCT scheduler also
/// lowers the yielding thread's priority, so a spinning waiter lets the thread it waits
/// for run). With `std` a waiter spins briefly and then yields its CPU: LD-NR often runs
/// more threads than cores (tests, 2-core CI machines), and a spinning waiter would
/// otherwise burn the time slice of the thread it waits for.
#[derive(Debug, Default)]
#[cfg_attr(any(ldnr_loom, ldnr_shuttle), allow(dead_code))]
pub(crate) struct Backoff {
    step: u32,
}

#[cfg_attr(any(ldnr_loom, ldnr_shuttle), allow(dead_code))]
impl Backoff {
    const SPIN_LIMIT: u32 = 6;

    pub(crate) const fn new() -> Self {
        Self { step: 0 }
    }

    /// Waits `hints` spin-loop hints, never yielding the time slice: the steps of a
    /// bounded wait that gives up rather than sleeps (`Replica::wait_to_combine`).
    /// Under the model checkers, a yield to their scheduler, as `snooze`.
    #[inline]
    pub(crate) fn pause(hints: usize) {
        #[cfg(ldnr_loom)]
        {
            let _ = hints;
            loom::thread::yield_now();
        }
        #[cfg(ldnr_shuttle)]
        {
            let _ = hints;
            shuttle::thread::yield_now();
        }
        #[cfg(not(any(ldnr_loom, ldnr_shuttle)))]
        for _ in 0..hints {
            core::hint::spin_loop();
        }
    }

    /// Waits a little; each call waits longer, up to a yield of the time slice.
    #[inline]
    pub(crate) fn snooze(&mut self) {
        #[cfg(ldnr_loom)]
        {
            loom::thread::yield_now();
        }
        #[cfg(ldnr_shuttle)]
        {
            shuttle::thread::yield_now();
        }
        #[cfg(not(any(ldnr_loom, ldnr_shuttle)))]
        {
            if self.step <= Self::SPIN_LIMIT {
                for _ in 0..(1u32 << self.step) {
                    core::hint::spin_loop();
                }
                self.step += 1;
            } else {
                #[cfg(feature = "std")]
                std::thread::yield_now();
                #[cfg(not(feature = "std"))]
                for _ in 0..(1u32 << Self::SPIN_LIMIT) {
                    core::hint::spin_loop();
                }
            }
        }
    }
}

// Which instances' user code (callbacks: `dispatch`, `dispatch_mut`, `Clone`, `Drop`,
// the affinity manager) the calling thread is running: what detects a call back into one
// of them from inside, which would otherwise wait for itself. Every enclosing instance
// counts (A's callback calling B whose callback calls A is caught). The innermost one is
// `top` (0: none; instance numbers start at 1), the enclosing ones are saved in `below`:
// an operation checks one word on entry, and marking a read costs a load and two stores
// (a read is the hot path). Under the checkers each model thread needs its own copy, so
// theirs is used.
#[cfg(feature = "std")]
struct Marks {
    top: core::cell::Cell<usize>,
    /// How many enclosing marks there are (those past `MARK_DEPTH` are in `SPILL`).
    depth: core::cell::Cell<usize>,
    below: [core::cell::Cell<usize>; MARK_DEPTH],
}

/// How many enclosing instances the marks keep in place; deeper ones go to `SPILL`.
/// `MARKS` has no destructor, so these stay readable while other thread-locals are
/// destroyed (user code run from their destructors), where `SPILL` may be gone.
#[cfg(feature = "std")]
const MARK_DEPTH: usize = 64;

#[cfg(feature = "std")]
impl Marks {
    const fn new() -> Self {
        Self {
            top: core::cell::Cell::new(0),
            depth: core::cell::Cell::new(0),
            below: [const { core::cell::Cell::new(0) }; MARK_DEPTH],
        }
    }
}

#[cfg(all(feature = "std", not(any(ldnr_loom, ldnr_shuttle))))]
std::thread_local! {
    static MARKS: Marks = const { Marks::new() };
}
#[cfg(all(feature = "std", ldnr_loom))]
loom::thread_local! {
    static MARKS: Marks = Marks::new();
}
#[cfg(all(feature = "std", ldnr_shuttle))]
shuttle::thread_local! {
    static MARKS: Marks = Marks::new();
}

// The enclosing marks past the first `MARK_DEPTH` (user code nested more than that many
// instances deep), outermost first. Kept apart from `MARKS` so that the hot thread-local
// has no destructor (and so no state check on access); only the cold paths touch it.
#[cfg(all(feature = "std", not(any(ldnr_loom, ldnr_shuttle))))]
std::thread_local! {
    static SPILL: core::cell::RefCell<alloc::vec::Vec<usize>> =
        const { core::cell::RefCell::new(alloc::vec::Vec::new()) };
}
#[cfg(all(feature = "std", ldnr_loom))]
loom::thread_local! {
    static SPILL: core::cell::RefCell<alloc::vec::Vec<usize>> =
        core::cell::RefCell::new(alloc::vec::Vec::new());
}
#[cfg(all(feature = "std", ldnr_shuttle))]
shuttle::thread_local! {
    static SPILL: core::cell::RefCell<alloc::vec::Vec<usize>> =
        core::cell::RefCell::new(alloc::vec::Vec::new());
}

/// Runs `f` on the calling thread's marks; `None` if the thread-local is gone (user code
/// run from another thread-local's destructor then runs unmarked).
#[cfg(feature = "std")]
#[inline]
fn with_marks<R>(f: impl FnOnce(&Marks) -> R) -> Option<R> {
    MARKS.try_with(f).ok()
}

// The registrations `NodeReplicated::thread_token` handed to the calling thread, one per
// instance (their type is the caller's, `threads::Held`); dropped, and so given back to
// their instances, when the thread exits.
#[cfg(all(feature = "std", not(any(ldnr_loom, ldnr_shuttle))))]
std::thread_local! {
    static HELD: core::cell::RefCell<alloc::vec::Vec<alloc::boxed::Box<dyn core::any::Any>>> =
        const { core::cell::RefCell::new(alloc::vec::Vec::new()) };
}
#[cfg(all(feature = "std", ldnr_loom))]
loom::thread_local! {
    static HELD: core::cell::RefCell<alloc::vec::Vec<alloc::boxed::Box<dyn core::any::Any>>> =
        core::cell::RefCell::new(alloc::vec::Vec::new());
}
#[cfg(all(feature = "std", ldnr_shuttle))]
shuttle::thread_local! {
    static HELD: core::cell::RefCell<alloc::vec::Vec<alloc::boxed::Box<dyn core::any::Any>>> =
        core::cell::RefCell::new(alloc::vec::Vec::new());
}

// The last token `thread_token` handed out on this thread, as its two words: the
// one-entry cache in front of `HELD`, copied whole.
#[cfg(all(feature = "std", not(any(ldnr_loom, ldnr_shuttle))))]
std::thread_local! {
    static LAST: core::cell::Cell<Option<(core::num::NonZeroUsize, u64)>> = const { core::cell::Cell::new(None) };
}
#[cfg(all(feature = "std", ldnr_loom))]
loom::thread_local! {
    static LAST: core::cell::Cell<Option<(core::num::NonZeroUsize, u64)>> = core::cell::Cell::new(None);
}
#[cfg(all(feature = "std", ldnr_shuttle))]
shuttle::thread_local! {
    static LAST: core::cell::Cell<Option<(core::num::NonZeroUsize, u64)>> = core::cell::Cell::new(None);
}

/// The last token `thread_token` handed out on this thread.
#[cfg(feature = "std")]
#[inline]
pub(crate) fn last_token() -> Option<(core::num::NonZeroUsize, u64)> {
    LAST.try_with(core::cell::Cell::get).ok().flatten()
}

/// Forgets the last token `thread_token` handed out on this thread (it is exiting).
#[cfg(feature = "std")]
pub(crate) fn forget_last_token() {
    let _ = LAST.try_with(|l| l.set(None));
}

/// Records the last token `thread_token` handed out on this thread.
#[cfg(feature = "std")]
#[inline]
pub(crate) fn set_last_token(last: (core::num::NonZeroUsize, u64)) {
    let _ = LAST.try_with(|l| l.set(Some(last)));
}

/// Runs `f` on the calling thread's held tokens; `None` if the thread-local is gone (the
/// thread is exiting).
#[cfg(feature = "std")]
#[inline]
pub(crate) fn held_tokens<R>(
    f: impl FnOnce(&mut alloc::vec::Vec<alloc::boxed::Box<dyn core::any::Any>>) -> R,
) -> Option<R> {
    HELD.try_with(|h| f(&mut h.borrow_mut())).ok()
}

/// Marks the calling thread as running user code of `instance` until dropped (also when
/// unwinding); nests. Without `std` it marks nothing.
#[derive(Debug)]
#[must_use]
pub(crate) struct Callbacks {
    /// The mark this one covers (0: none), restored on drop; `usize::MAX`: not marked.
    #[cfg(feature = "std")]
    prev: usize,
}

/// What the calling thread's marks say about an instance.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
// Without `std` the marks always answer `Unknown`.
#[cfg_attr(not(feature = "std"), allow(dead_code))]
pub(crate) enum Inside {
    /// It runs no user code of any instance (no mark is set).
    Outermost,
    /// It runs none of the instance's user code, but some of another instance's.
    No,
    /// It runs the instance's user code: a call into the instance is re-entrant.
    Yes,
    /// The marks cannot tell (without `std`, or after the thread-locals are gone: user
    /// code run from a thread-local's destructor): the caller falls back to its own
    /// context's flags.
    Unknown,
}

/// What an operation's entry check found: whether the calling thread ran no user code of
/// any instance ([`Inside::Outermost`]). Marks nest, each restored when its user code
/// returns, so the operation's own code, outside the user code it runs, finds the marks
/// as its entry did: an operation may set its mark with
/// [`Callbacks::enter_from`] without looking at them again.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Entered {
    /// The instance's number if the thread ran no user code of any instance; 0 if it did
    /// or the marks could not tell. (Without `std` there are no marks.)
    #[cfg_attr(not(feature = "std"), allow(dead_code))]
    mark: usize,
}

impl Entered {
    /// What [`Callbacks::inside`] answered for `instance` at the operation's entry.
    #[inline(always)]
    pub(crate) fn from(instance: usize, inside: Inside) -> Self {
        Entered {
            mark: if inside == Inside::Outermost {
                instance
            } else {
                0
            },
        }
    }
}

impl Callbacks {
    /// [`enter`](Self::enter) for an operation whose entry check said `entered`: with no
    /// mark around the operation, one store (nothing to save, nothing to look at).
    #[inline(always)]
    pub(crate) fn enter_from(instance: usize, entered: Entered) -> Self {
        #[cfg(feature = "std")]
        if entered.mark != 0 {
            debug_assert_eq!(entered.mark, instance);
            let prev = with_marks(|m| {
                debug_assert_eq!(
                    m.top.get(),
                    0,
                    "marks are restored in the order they were set"
                );
                m.top.set(entered.mark);
            })
            .map_or(usize::MAX, |()| 0);
            return Callbacks { prev };
        }
        let _ = entered;
        Self::enter(instance)
    }

    #[inline]
    pub(crate) fn enter(instance: usize) -> Self {
        #[cfg(feature = "std")]
        {
            let prev = with_marks(|m| {
                let prev = m.top.get();
                if prev != 0 {
                    Self::push(m, prev);
                }
                m.top.set(instance);
                prev
            })
            .unwrap_or(usize::MAX);
            Callbacks { prev }
        }
        #[cfg(not(feature = "std"))]
        {
            let _ = instance;
            Callbacks {}
        }
    }

    /// Saves the enclosing mark `prev` (nested user code of several instances).
    #[cfg(feature = "std")]
    #[cold]
    #[inline(never)]
    fn push(m: &Marks, prev: usize) {
        let depth = m.depth.get();
        match m.below.get(depth) {
            Some(slot) => slot.set(prev),
            // Past `MARK_DEPTH`: a mark the spill cannot hold (its thread-local is gone)
            // is counted all the same, and the checks then answer "unknown".
            None => {
                let _ = SPILL.try_with(|s| s.borrow_mut().push(prev));
            }
        }
        m.depth.set(depth + 1);
    }

    /// Drops the innermost enclosing mark saved past `MARK_DEPTH`.
    #[cfg(feature = "std")]
    #[cold]
    #[inline(never)]
    fn pop_spilled() {
        let _ = SPILL.try_with(|s| s.borrow_mut().pop());
    }

    /// Whether the calling thread is running user code of `instance`, at any depth.
    #[inline]
    pub(crate) fn inside(instance: usize) -> Inside {
        #[cfg(feature = "std")]
        {
            with_marks(|m| match m.top.get() {
                0 => Inside::Outermost,
                top if top == instance => Inside::Yes,
                _ => Self::inside_below(m, instance),
            })
            .unwrap_or(Inside::Unknown)
        }
        #[cfg(not(feature = "std"))]
        {
            let _ = instance;
            Inside::Unknown
        }
    }

    #[cfg(feature = "std")]
    #[cold]
    #[inline(never)]
    fn inside_below(m: &Marks, instance: usize) -> Inside {
        let depth = m.depth.get();
        if m.below[..depth.min(MARK_DEPTH)]
            .iter()
            .any(|id| id.get() == instance)
        {
            Inside::Yes
        } else if depth > MARK_DEPTH {
            // The deeper ones are in the spill, unless a push could not reach it.
            SPILL
                .try_with(|s| {
                    let s = s.borrow();
                    if s.contains(&instance) {
                        Inside::Yes
                    } else if s.len() == depth - MARK_DEPTH {
                        Inside::No
                    } else {
                        Inside::Unknown
                    }
                })
                .unwrap_or(Inside::Unknown)
        } else {
            Inside::No
        }
    }

    /// Whether the marks show the calling thread running user code of `instance` (always
    /// `false` without `std`).
    #[inline]
    pub(crate) fn running(instance: usize) -> bool {
        Self::inside(instance) == Inside::Yes
    }
}

impl Callbacks {
    /// Restores the enclosing mark `prev` (not 0: nested, or `usize::MAX`: not marked).
    #[cfg(feature = "std")]
    #[cold]
    #[inline(never)]
    fn restore(prev: usize) {
        if prev == usize::MAX {
            return;
        }
        with_marks(|m| {
            m.top.set(prev);
            let depth = m.depth.get() - 1;
            m.depth.set(depth);
            if depth >= MARK_DEPTH {
                Self::pop_spilled();
            }
        });
    }
}

impl Drop for Callbacks {
    #[inline]
    fn drop(&mut self) {
        // The outermost mark (no user code of any instance around it) is the common case:
        // one store; the nested and unmarked cases are out of line.
        #[cfg(feature = "std")]
        if self.prev == 0 {
            with_marks(|m| m.top.set(0));
        } else {
            Self::restore(self.prev);
        }
    }
}

/// A process-wide unique number for each `NodeReplicated` instance, used to reject
/// tokens of other instances; `None` once every number was handed out. Not part of any
/// protocol loom needs to see (a `core` atomic in every build: loom's cannot live in a
/// `static`).
///
/// A number is never reused, on any target: a token (`Copy`, kept by the user) carries
/// it, and a token kept from a dropped instance must never pass for a token of a later
/// one (its thread index would name another thread's context there, and
/// `Dispatcher::validate` indexes the contexts without a bounds check). So the count
/// stops instead of wrapping: after `usize::MAX - 1` instances (centuries of building one
/// per nanosecond on 64-bit targets; 2^32 - 1 builds on 32-bit ones).
pub(crate) fn next_instance_id() -> Option<usize> {
    #[allow(clippy::disallowed_types)]
    static NEXT: core::sync::atomic::AtomicUsize = core::sync::atomic::AtomicUsize::new(1);
    take_number(&NEXT)
}

/// The next number of the count `next`, or `None` once it reached `usize::MAX` (where
/// it stays).
#[allow(clippy::disallowed_types)]
fn take_number(next: &core::sync::atomic::AtomicUsize) -> Option<usize> {
    next.fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| n.checked_add(1))
        .ok()
}

#[cfg(all(test, not(any(ldnr_loom, ldnr_shuttle))))]
mod instance_number_tests {
    use super::*;

    #[test]
    fn instance_numbers_stop_instead_of_wrapping() {
        #[allow(clippy::disallowed_types)]
        let next = core::sync::atomic::AtomicUsize::new(usize::MAX - 2);
        assert_eq!(take_number(&next), Some(usize::MAX - 2));
        assert_eq!(take_number(&next), Some(usize::MAX - 1));
        for _ in 0..3 {
            assert_eq!(take_number(&next), None, "no number is handed out twice");
        }
    }

    #[test]
    fn instance_numbers_are_distinct_and_nonzero() {
        let a = next_instance_id().expect("numbers left");
        let b = next_instance_id().expect("numbers left");
        assert!(a != 0 && b != 0 && a != b);
    }
}

/// Pads and aligns a value to the size of a cache-line pair, so that two values never
/// share a line (adjacent-line prefetching pulls lines in pairs on x86).
#[derive(Debug, Default)]
#[repr(align(128))]
pub(crate) struct CachePadded<T>(pub(crate) T);

impl<T> core::ops::Deref for CachePadded<T> {
    type Target = T;
    #[inline(always)]
    fn deref(&self) -> &T {
        &self.0
    }
}
