//! A routing index (route name → backend id) shared by threads, replicated with LD-NR:
//! the `routing_rwlock` program with the same features and the same driver, written the
//! LD-NR way. `tests/lines.rs` compares their sizes.
//!
//! The index is a plain sequential structure. Its writes are `&mut self` methods that
//! `ldnr::operations!` turns into typed methods on `NodeReplicated<Routes>`; its reads are
//! `&self` methods called in a closure on the thread's replica.
//!
//! `cargo run --release -p ldnr-examples --example routing_ldnr`

use std::collections::BTreeMap;
use std::ops::Bound::{Excluded, Included, Unbounded};
use std::thread;

use ldnr::NodeReplicated;

const THREADS: u64 = 4;
const ROUTES: u64 = 2_000;
const SHARED: u64 = 100;

/// Route names to backend ids: one copy per replica.
#[derive(Clone, Default)]
struct Routes(BTreeMap<String, u64>);

impl Routes {
    fn lookup(&self, name: &str) -> Option<u64> {
        self.0.get(name).copied()
    }

    /// The routes whose names start with `prefix`, in order.
    fn scan_prefix(&self, prefix: &str) -> Vec<(String, u64)> {
        self.0
            .range::<str, _>((Included(prefix), Unbounded))
            .take_while(|(name, _)| name.starts_with(prefix))
            .map(|(name, backend)| (name.clone(), *backend))
            .collect()
    }

    /// The routes from `from` (included) to `to` (excluded), in order.
    fn scan_range(&self, from: &str, to: &str) -> Vec<(String, u64)> {
        self.0
            .range::<str, _>((Included(from), Excluded(to)))
            .map(|(name, backend)| (name.clone(), *backend))
            .collect()
    }
}

ldnr::operations! {
    trait RouteWrites for Routes, enum RouteWrite {
        fn insert(&mut self, name: String, backend: u64) -> Option<u64> {
            self.0.insert(name, backend)
        }

        fn delete(&mut self, name: String) -> Option<u64> {
            self.0.remove(&name)
        }
    }
}

fn main() -> Result<(), ldnr::Error> {
    let index = NodeReplicated::builder(Routes::default()).build()?;
    let tkn = index.thread_token()?;
    for s in 0..SHARED {
        index.insert(tkn, format!("shared/{s:03}"), s);
    }
    thread::scope(|scope| {
        for t in 0..THREADS {
            let index = &index;
            scope.spawn(move || {
                let tkn = index.thread_token().unwrap();
                let prefix = format!("t{t}/");
                for i in 0..ROUTES {
                    let name = format!("{prefix}{i:04}");
                    assert_eq!(index.insert(tkn, name.clone(), i), None);
                    assert_eq!(index.read(tkn, |r| r.lookup(&name)), Some(i));
                    let shared = format!("shared/{:03}", i % SHARED);
                    assert_eq!(index.read(tkn, |r| r.lookup(&shared)), Some(i % SHARED));
                    // Odd routes are deleted again: only the even ones stay.
                    if i % 2 == 1 {
                        assert_eq!(index.delete(tkn, name.clone()), Some(i));
                    }
                    if i % 100 == 99 {
                        let mine = index.read(tkn, |r| r.scan_prefix(&prefix));
                        assert_eq!(mine.len() as u64, i / 2 + 1);
                        let from = format!("{prefix}{:04}", i - 9);
                        let window = index.read(tkn, |r| r.scan_range(&from, &name));
                        assert_eq!(window.len(), 5);
                    }
                }
            });
        }
    });

    let mut expected = BTreeMap::new();
    for s in 0..SHARED {
        expected.insert(format!("shared/{s:03}"), s);
    }
    for t in 0..THREADS {
        for i in (0..ROUTES).step_by(2) {
            expected.insert(format!("t{t}/{i:04}"), i);
        }
    }
    let all = index.read(tkn, |r| r.scan_prefix(""));
    assert_eq!(all, expected.into_iter().collect::<Vec<_>>());
    println!(
        "routing_ldnr: {THREADS} threads, {} routes left, ok",
        all.len()
    );
    Ok(())
}
