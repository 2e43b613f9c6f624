//! The Wing–Gong–Lowe linearizability checker the tests use: `ldnr_hashmap::lincheck`,
//! shared with the soak engine (`ldnr_hashmap::soak`), re-exported under its old path.

pub use ldnr_hashmap::lincheck::*;
