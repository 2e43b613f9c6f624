//! The benchmark driver behind `ldnr-demo`: the thesis' hashmap experiments (§6.2.3 and
//! §6.7.1), run against LD-NR, node-replication 0.1.1 and concurrent maps in one process.
//!
//! - [`runner`]: the closed-loop workload and the phased, sampled run of one structure;
//! - [`systems`]: the structures under test;
//! - [`suite`]: the `scale`, `writes` and `replicas` experiments as lists of runs
//!   (`inactivity` runs in child processes: [`crate::inactivity`]);
//! - [`pairs`]: LD-NR and NR in alternating rounds, for the targets' ratios;
//! - [`ldnr_testkit::nodes`]: the affinity manager of a run (pretend or real NUMA nodes,
//!   `--affinity`) and thread placement ([`ldnr_testkit::nodes::Placement`]);
//! - [`ldnr_testkit::heap`]: the counting allocator the binary installs, for heap bytes;
//! - [`report`], [`charts`]: CSV, tables, targets and PNG/SVG charts.
//!
//! The command line is in [`crate::demo`].

pub mod charts;

pub mod pairs;
pub mod report;
pub mod runner;
pub mod suite;
pub mod systems;
mod targets;
