//! The LD-NR benchmark driver (`ldnr-demo`, what `cargo run --release` starts): the
//! thesis' hashmap experiments (§6.2.3 and §6.7.1), run against LD-NR,
//! node-replication 0.1.1 and concurrent maps in one process; and the criterion benches
//! (`benches/`). Not published.
//!
//! - [`demo`]: the command line;
//! - [`runner`]: the closed-loop workload and the phased, sampled run of one structure;
//! - [`systems`]: the structures under test;
//! - [`suite`]: the `scale`, `writes` and `replicas` experiments as lists of runs
//!   (`inactivity` runs in child processes: [`inactivity`]);
//! - [`pairs`]: LD-NR and NR in alternating rounds, for the targets' ratios;
//! - [`experiments`]: the cost of `add_replica` under load (`add-under-load`);
//! - [`nr`]: the same map under node-replication 0.1.1, the baseline;
//! - [`report`], [`charts`]: CSV, tables, targets and PNG/SVG charts.
//!
//! From `ldnr-testkit`: the affinity manager of a run and thread placement
//! ([`ldnr_testkit::nodes`]), the counting allocator the binary installs
//! ([`ldnr_testkit::heap`]), and the soak (`ldnr-demo soak`, [`ldnr_testkit::soak`]).

pub mod charts;
pub mod demo;
pub mod experiments;
pub mod inactivity;
pub mod nr;
pub mod pairs;
pub mod report;
pub mod runner;
pub mod suite;
pub mod systems;
mod targets;

/// The workspace README's code blocks, compiled and run by `cargo test` so that the
/// quickstart stays true (this crate depends on every crate they use).
#[cfg(doctest)]
#[doc = include_str!("../../README.md")]
pub struct ReadmeDoctests;
