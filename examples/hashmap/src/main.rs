//! `ldnr-demo`, the LD-NR benchmark driver (see `ldnr_hashmap::demo`).

use ldnr_testkit::heap::CountingAlloc;

/// Counts live heap bytes for the driver's memory figures.
#[global_allocator]
static ALLOC: CountingAlloc = CountingAlloc;

fn main() {
    ldnr_hashmap::demo::main();
}
