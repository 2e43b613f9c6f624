//! `cargo run --release` at the workspace root: the LD-NR benchmark driver (see
//! `ldnr_hashmap::demo`; `--help` lists the experiments).

use ldnr_testkit::heap::CountingAlloc;

/// Counts live heap bytes for the driver's memory figures.
#[global_allocator]
static ALLOC: CountingAlloc = CountingAlloc;

fn main() {
    ldnr_hashmap::demo::main();
}
