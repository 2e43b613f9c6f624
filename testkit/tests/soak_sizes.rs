//! The soak engine builds its instance for every `replicas_max` up to the library's
//! replica limit: the thread limit it asks for (participants, then the final check's
//! registrations) stays within the library's.

use std::time::Duration;

use ldnr_testkit::soak::{run, Config};

#[test]
fn a_soak_with_many_replicas_builds_and_passes() {
    for replicas_max in [4, 38, 64] {
        let s = run(&Config {
            duration: Duration::from_millis(300),
            threads: 8,
            replicas_max,
            keys: 64,
            ..Config::default()
        });
        assert!(
            s.failures.is_empty(),
            "replicas_max {replicas_max}: {:?}",
            s.failures
        );
    }
}
