//! `ldnr-demo`, the LD-NR benchmark driver: what `cargo run --release` at the workspace
//! root starts (see `ldnr_bench::demo`; `--help` lists the experiments).

use ldnr_testkit::heap::CountingAlloc;

/// Counts live heap bytes for the driver's memory figures.
#[global_allocator]
static ALLOC: CountingAlloc = CountingAlloc;

fn main() {
    ldnr_bench::demo::main();
}
