//! `cargo run --release` at the workspace root: the LD-NR demo (see `ldnr-hashmap`).

fn main() {
    ldnr_hashmap::demo::main();
}
