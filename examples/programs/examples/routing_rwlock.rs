//! A routing index (route name → backend id) shared by threads, behind a `RwLock`: the
//! program a Rust user writes without LD-NR. `routing_ldnr` is the same program with
//! LD-NR, the same features and the same driver; `tests/lines.rs` compares their sizes.
//!
//! Four threads each insert, look up, delete and scan their own routes while all of them
//! look up a set of shared routes; at the end the index holds exactly what they left.
//!
//! `cargo run --release -p ldnr-examples --example routing_rwlock`

use std::collections::BTreeMap;
use std::ops::Bound::{Excluded, Included, Unbounded};
use std::sync::RwLock;
use std::thread;

const THREADS: u64 = 4;
const ROUTES: u64 = 2_000;
const SHARED: u64 = 100;

/// Route names to backend ids, shared by every thread.
#[derive(Default)]
struct RoutingIndex {
    routes: RwLock<BTreeMap<String, u64>>,
}

impl RoutingIndex {
    fn lookup(&self, name: &str) -> Option<u64> {
        self.routes.read().unwrap().get(name).copied()
    }

    /// The routes whose names start with `prefix`, in order.
    fn scan_prefix(&self, prefix: &str) -> Vec<(String, u64)> {
        let routes = self.routes.read().unwrap();
        routes
            .range::<str, _>((Included(prefix), Unbounded))
            .take_while(|(name, _)| name.starts_with(prefix))
            .map(|(name, backend)| (name.clone(), *backend))
            .collect()
    }

    /// The routes from `from` (included) to `to` (excluded), in order.
    fn scan_range(&self, from: &str, to: &str) -> Vec<(String, u64)> {
        let routes = self.routes.read().unwrap();
        routes
            .range::<str, _>((Included(from), Excluded(to)))
            .map(|(name, backend)| (name.clone(), *backend))
            .collect()
    }

    fn insert(&self, name: String, backend: u64) -> Option<u64> {
        self.routes.write().unwrap().insert(name, backend)
    }

    fn delete(&self, name: &str) -> Option<u64> {
        self.routes.write().unwrap().remove(name)
    }
}

fn main() {
    let index = RoutingIndex::default();
    for s in 0..SHARED {
        index.insert(format!("shared/{s:03}"), s);
    }
    thread::scope(|scope| {
        for t in 0..THREADS {
            let index = &index;
            scope.spawn(move || {
                let prefix = format!("t{t}/");
                for i in 0..ROUTES {
                    let name = format!("{prefix}{i:04}");
                    assert_eq!(index.insert(name.clone(), i), None);
                    assert_eq!(index.lookup(&name), Some(i));
                    let shared = format!("shared/{:03}", i % SHARED);
                    assert_eq!(index.lookup(&shared), Some(i % SHARED));
                    // Odd routes are deleted again: only the even ones stay.
                    if i % 2 == 1 {
                        assert_eq!(index.delete(&name), Some(i));
                    }
                    if i % 100 == 99 {
                        let mine = index.scan_prefix(&prefix);
                        assert_eq!(mine.len() as u64, i / 2 + 1);
                        let from = format!("{prefix}{:04}", i - 9);
                        let window = index.scan_range(&from, &name);
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
    let all = index.scan_prefix("");
    assert_eq!(all, expected.into_iter().collect::<Vec<_>>());
    println!(
        "routing_rwlock: {THREADS} threads, {} routes left, ok",
        all.len()
    );
}
