//! A vector of per-thread counters, for exactly-once tests: each thread increments only
//! its own counter, so every response is known in advance.

use ldnr::Dispatch;

/// One counter per worker thread.
#[derive(Debug, Clone)]
pub struct Counters(pub Vec<u64>);

/// Increment counter `t`; returns its new value.
#[derive(Debug, Clone, Copy)]
pub struct Inc(pub usize);

/// Read counter `t`.
#[derive(Debug, Clone, Copy)]
pub struct Get(pub usize);

impl Dispatch for Counters {
    type ReadOperation = Get;
    type WriteOperation = Inc;
    type Response = u64;

    fn dispatch(&self, Get(t): Get) -> u64 {
        self.0[t]
    }

    fn dispatch_mut(&mut self, Inc(t): Inc) -> u64 {
        self.0[t] += 1;
        self.0[t]
    }
}
