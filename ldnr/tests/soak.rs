//! The soak ([`ldnr_testkit::soak`]) as an `#[ignore]` test: many threads, mixed checked
//! operations and continuous replica changes for `LDNR_SOAK_SECS` seconds (default 120;
//! `LDNR_SOAK_SEED` picks the seed). CI runs it with a budget:
//!
//! ```sh
//! LDNR_SOAK_SECS=150 cargo test --release -p ldnr --test soak -- --ignored --nocapture
//! ```
//!
//! The binary installs the driver's counting allocator, so that the soak samples the live
//! heap; this file holds a single test, so nothing else allocates meanwhile. The test
//! fails on any violation, stall or memory growth the soak reports, and on nothing that
//! depends on timing: the soak runs its minimum rounds and replica changes however slow
//! the machine is, and calls a stall only after [`LIMIT`] without any progress. For
//! longer runs: `cargo run --release -- soak --duration 600`.

use std::time::Duration;

use ldnr_testkit::heap::{self, CountingAlloc};
use ldnr_testkit::soak::{self, Config};
use ldnr_testkit::{watchdog, LIMIT};

/// Counts live heap bytes for the soak's memory samples.
#[global_allocator]
static ALLOC: CountingAlloc = CountingAlloc;

/// A whole number from the environment variable `name`, or `default`.
fn env_or(name: &str, default: u64) -> u64 {
    std::env::var(name).map_or(default, |v| {
        v.parse()
            .unwrap_or_else(|_| panic!("{name}={v:?}: not a whole number"))
    })
}

#[test]
#[ignore = "minutes long: .ci/run runs it with LDNR_SOAK_SECS"]
fn soak_under_replica_churn() {
    assert!(heap::installed(), "the counting allocator is installed");
    let config = Config {
        duration: Duration::from_secs(env_or("LDNR_SOAK_SECS", 120)),
        seed: env_or("LDNR_SOAK_SEED", 1),
        stall: LIMIT,
        progress_every: Some(Duration::from_secs(15)),
        ..Config::default()
    };
    eprintln!("{config:?}");
    // The soak bounds itself (deadline, stall detector); the watchdog guards its end.
    let limit = config.duration + 4 * LIMIT;
    let summary = watchdog("soak", limit, move || soak::run(&config));
    eprint!("{summary}");
    assert!(summary.passed(), "{summary}");
    // What the soak guarantees however slow the machine is.
    assert!(summary.rounds >= 2, "{summary}");
    assert!(summary.adds + summary.removes >= 4, "{summary}");
    assert_eq!(
        summary.histories, summary.rounds,
        "every round's history is checked"
    );
    assert!(summary.memory.is_some(), "heap samples were taken");
}
