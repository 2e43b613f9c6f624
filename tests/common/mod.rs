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

/// The default limit for a watched test body; generous, since CI machines have 2 cores.
pub const LIMIT: Duration = Duration::from_secs(120);
