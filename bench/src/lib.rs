//! The LD-NR benchmark driver (`ldnr-demo`, what `cargo run --release` starts): the
//! thesis' hashmap experiments (§6.2.3 and §6.7.1), run against LD-NR,
//! node-replication 0.1.1 and concurrent maps in one process; and the criterion benches
//! (`benches/`). Not published.
//!
//! Public, for the binary and the benches:
//!
//! - [`system`]: the systems under test behind the one harness every measurement uses
//!   ([`system::Kind`], [`system::System`], [`system::Handle`], [`system::Body`]);
//! - [`workload`]: the operations the harnesses run;
//! - [`nr`]: the same map under node-replication 0.1.1, the baseline;
//! - [`demo`]: the command line.
//!
//! Inside: `runner` (the phased, sampled run of one system), `suite` (the `scale`,
//! `writes` and `replicas` experiments as lists of runs), `pairs` (LD-NR, NR and
//! `RwLock<HashMap>` in interleaved rounds, for the targets' ratios), `inactivity` (one replica's threads go
//! idle; each system in a child process), `experiments` (`add-under-load`), `report`,
//! `targets` and `charts` (CSV, tables, the targets' verdicts, PNG/SVG charts).
//!
//! From `ldnr-testkit`: the affinity manager of a run and thread placement
//! ([`ldnr_testkit::nodes`]), the counting allocator the binary installs
//! ([`ldnr_testkit::heap`]), the random generator ([`ldnr_testkit::rng`]) and the soak
//! (`ldnr-demo soak`, [`ldnr_testkit::soak`]).
//!
//! Module dependencies run one way (no cycle): `demo` → `charts`, `targets` → `report` →
//! the experiments (`suite`, `pairs`, `inactivity`, `experiments`) → `runner` →
//! `system` → `workload`, `nr`.

mod charts;
pub mod demo;
mod experiments;
mod inactivity;
pub mod nr;
mod pairs;
mod report;
mod runner;
mod suite;
pub mod system;
mod targets;
pub mod workload;
