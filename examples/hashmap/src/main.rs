//! The LD-NR demo: threads against a replicated map with 1 and 2 replicas.

fn main() {
    ldnr_hashmap::demo::main();
}
