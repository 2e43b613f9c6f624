//! Test support for LD-NR, shared by `ldnr`'s integration tests and the benchmark crate
//! (`ldnr-bench`). Not published.
//!
//! - [`lincheck`]: a Wing–Gong–Lowe linearizability checker over recorded histories;
//! - [`soak`]: many threads, mixed checked operations and continuous replica changes for
//!   minutes (the `#[ignore]` test `ldnr/tests/soak.rs` and the driver's `soak`);
//! - [`heap`]: a counting global allocator, for memory figures and leak checks;
//! - [`nodes`]: pretend or real NUMA nodes, and where each worker thread runs;
//! - [`map`], [`counters`]: sequential structures whose responses a test can predict;
//! - [`replicas`], [`churn`]: helpers about the replica set, and a controller that keeps
//!   it changing while workers run;
//! - [`rng`]: the one deterministic random generator of the tests and benchmarks;
//! - at the top: a watchdog for test bodies and panic-message helpers.
//!
//! This crate depends on `ldnr` without its `std` feature, so that
//! `cargo test -p ldnr --no-default-features` still builds `ldnr` without `std`.
//!
//! Its doctests also run the code blocks of the workspace README and of `ldnr`'s README.

/// The workspace README's code blocks, compiled and run by `cargo test` (`--doc`) so
/// that they work as shown. Here because this crate has every crate they import (the
/// rest as dev-dependencies) and is not published.
#[cfg(doctest)]
#[doc = include_str!("../../README.md")]
pub struct ReadmeDoctests;

/// `ldnr`'s README (the crate's page on crates.io), compiled and run the same way.
/// (`ldnr-hashmap` and `ldnr-affinity` run their own READMEs.)
#[cfg(doctest)]
#[doc = include_str!("../../ldnr/README.md")]
pub struct LdnrReadmeDoctests;

pub mod churn;
pub mod counters;
pub mod heap;
pub mod lincheck;
pub mod map;
pub mod nodes;
pub mod pretend;
pub mod replicas;
pub mod rng;
pub mod soak;

use std::sync::{mpsc, Once};
use std::time::Duration;

/// The default limit for a watched test body; generous, since CI machines have 2 cores.
pub const LIMIT: Duration = Duration::from_secs(120);

/// Runs `f` on a helper thread and fails the test with `what` if it does not finish
/// within `limit` (a deadlock then fails fast with a message instead of hanging CI).
/// Panics inside `f` are propagated.
///
/// # Panics
///
/// If `f` panics (with its payload), or does not finish within `limit`.
///
/// # Examples
///
/// ```
/// use ldnr_testkit::{watchdog, LIMIT};
/// assert_eq!(watchdog("adds", LIMIT, || 1 + 1), 2);
/// ```
pub fn watchdog<T: Send + 'static>(
    what: &str,
    limit: Duration,
    f: impl FnOnce() -> T + Send + 'static,
) -> T {
    let (tx, rx) = mpsc::channel();
    let handle = std::thread::Builder::new()
        .name(format!("watched: {what}"))
        .spawn(move || {
            let out = f();
            let _ = tx.send(());
            out
        })
        .expect("spawn the watched thread");
    match rx.recv_timeout(limit) {
        Ok(()) => handle
            .join()
            .expect("watched thread panicked after finishing"),
        Err(mpsc::RecvTimeoutError::Disconnected) => match handle.join() {
            Ok(v) => v,
            Err(p) => std::panic::resume_unwind(p),
        },
        Err(mpsc::RecvTimeoutError::Timeout) => {
            panic!("watchdog: `{what}` did not finish within {limit:?} (deadlock or livelock?)")
        }
    }
}

/// The message of a panic payload (`&str` or `String`; a placeholder otherwise).
///
/// # Examples
///
/// ```
/// let p = std::panic::catch_unwind(|| panic!("at {}", 3)).unwrap_err();
/// assert_eq!(ldnr_testkit::message(&*p), "at 3");
/// ```
pub fn message(payload: &(dyn std::any::Any + Send)) -> String {
    if let Some(s) = payload.downcast_ref::<&str>() {
        (*s).to_owned()
    } else if let Some(s) = payload.downcast_ref::<String>() {
        s.clone()
    } else {
        "<non-string payload>".to_owned()
    }
}

/// Runs `f`, expecting a panic; returns its message.
///
/// # Panics
///
/// If `f` returns.
///
/// # Examples
///
/// ```
/// assert_eq!(ldnr_testkit::panic_message(|| panic!("boom")), "boom");
/// ```
pub fn panic_message<R>(f: impl FnOnce() -> R) -> String {
    match std::panic::catch_unwind(std::panic::AssertUnwindSafe(f)) {
        Ok(_) => panic!("expected a panic"),
        Err(p) => message(&*p),
    }
}

/// Installs, once per process, a panic hook that keeps the panics a test provokes on
/// purpose out of the output: those whose message starts with one of `prefixes`. Every
/// other panic is printed by the default hook as usual.
///
/// The first call wins: a test binary should pass the same prefixes from every test.
///
/// # Examples
///
/// ```
/// ldnr_testkit::quiet_panics(&["my-test:"]);
/// let msg = ldnr_testkit::panic_message(|| panic!("my-test: a deliberate panic"));
/// assert!(msg.starts_with("my-test:"));
/// ```
pub fn quiet_panics(prefixes: &'static [&'static str]) {
    static HOOK: Once = Once::new();
    HOOK.call_once(|| {
        let default = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            let msg = message(info.payload());
            if !prefixes.iter().any(|p| msg.starts_with(p)) {
                default(info);
            }
        }));
    });
}
