//! The size target of the routing-index programs: the LD-NR version
//! (`examples/routing_ldnr.rs`) is at most 1.2 times the lines of the `RwLock` version
//! (`examples/routing_rwlock.rs`). Both have the same features and the same driver, and
//! `cargo fmt --check` (CI) keeps both in rustfmt's layout, so the count compares the code
//! a user writes, not how it is laid out.

use std::fs;
use std::path::Path;

/// The most lines the LD-NR program may have per line of the `RwLock` program.
const TARGET: f64 = 1.2;

/// The lines of Rust code in `text`: neither blank nor a comment (`//`, `///`, `//!`).
fn count_code_lines(text: &str) -> usize {
    text.lines()
        .map(str::trim)
        .filter(|line| !line.is_empty() && !line.starts_with("//"))
        .count()
}

/// The lines of code of the program `examples/<name>.rs`. The programs have no block
/// comments (the count would take them for code), so a file with one is refused.
fn code_lines(name: &str) -> usize {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("examples")
        .join(format!("{name}.rs"));
    let text = fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    assert!(
        !text.contains("/*"),
        "{name}: write `//` comments, not `/* */`"
    );
    count_code_lines(&text)
}

#[test]
fn routing_ldnr_has_at_most_1_2x_the_lines_of_routing_rwlock() {
    let rwlock = code_lines("routing_rwlock");
    let ldnr = code_lines("routing_ldnr");
    let ratio = ldnr as f64 / rwlock as f64;
    println!("routing_rwlock: {rwlock} lines; routing_ldnr: {ldnr} lines; ratio {ratio:.3} (target <= {TARGET})");
    assert!(
        ratio <= TARGET,
        "routing_ldnr has {ldnr} lines, {ratio:.3}x the {rwlock} of routing_rwlock (target {TARGET}x)"
    );
}

#[test]
fn blank_and_comment_lines_do_not_count() {
    let text = "//! Crate docs.\n\nuse std::fs;\n\n/// Docs.\nfn f() {\n    // Why.\n    g(); // trailing\n}\n";
    assert_eq!(count_code_lines(text), 4);
}
