#![doc = include_str!("../README.md")]
// The programs are the crate's examples (`examples/*.rs`); the library holds only this
// index of them.
