//! Helpers shared by the integration tests.
#![allow(dead_code, unreachable_pub)]

pub mod counters;
pub mod lincheck;
pub mod map;
pub mod replicas;
pub mod rng;

use std::sync::mpsc;
use std::time::Duration;

/// Runs `f` on a helper thread and fails the test with `what` if it does not finish
/// within `limit` (a deadlock then fails fast with a message instead of hanging CI).
/// Panics inside `f` are propagated.
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
pub fn panic_message<R>(f: impl FnOnce() -> R) -> String {
    match std::panic::catch_unwind(std::panic::AssertUnwindSafe(f)) {
        Ok(_) => panic!("expected a panic"),
        Err(p) => message(&*p),
    }
}

/// The default limit for a watched test body; generous, since CI machines have 2 cores.
pub const LIMIT: Duration = Duration::from_secs(120);
