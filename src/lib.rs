//! The LD-NR workspace root: it owns the cross-crate tests and benches and the binary
//! that `cargo run --release` starts. Its only item runs the README's examples as tests.

/// The README's code blocks, compiled and run by `cargo test` so the quickstart stays true.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
pub struct ReadmeDoctests;
