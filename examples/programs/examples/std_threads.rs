//! A routing index (route name → backend id) replicated with LD-NR and used from a handful
//! of std threads: the first program to read.
//!
//! It shows
//! - `ldnr::operations!`: the index's writes are ordinary `&mut self` methods; the macro
//!   turns them into typed methods on `NodeReplicated<Routes>` (each write one operation
//!   in the shared log, applied by every replica in the same order);
//! - a compound write (`rename`) that is one operation, so no reader sees it half done;
//! - closure reads (`NodeReplicated::read`): a lookup that borrows its `&str` key, a
//!   prefix scan and a range scan, each returning what it computed on the replica;
//! - a token per thread: `register` when the thread starts, `deregister` when it is done.
//!
//! `cargo run --release -p ldnr-examples --example std_threads`

use std::collections::{BTreeMap, HashSet};
use std::ops::Bound::{Excluded, Included, Unbounded};
use std::thread;

use ldnr::NodeReplicated;

const WRITERS: u64 = 3;
const READERS: usize = 2;
/// Routes each writer adds.
const ROUTES: u64 = 1_000;
/// Full-index checks each reader makes (a fixed number: readers never wait for writers).
const SCANS: usize = 300;
/// The backend of the `health` route: none of the writers' ids (`0..WRITERS * ROUTES`),
/// so that every route has a backend of its own, as the readers check.
const HEALTH: u64 = WRITERS * ROUTES;

/// Route names to backend ids: the sequential structure, with no locks in it. LD-NR keeps
/// one copy per replica and applies the writes to each.
#[derive(Clone, Default)]
struct Routes(BTreeMap<String, u64>);

impl Routes {
    /// The routes whose names start with `prefix`, in order.
    fn scan_prefix(&self, prefix: &str) -> Vec<(String, u64)> {
        self.0
            .range::<str, _>((Included(prefix), Unbounded))
            .take_while(|(name, _)| name.starts_with(prefix))
            .map(|(name, backend)| (name.clone(), *backend))
            .collect()
    }
}

ldnr::operations! {
    /// The writes of [`Routes`]. Every replica applies each of them, so they must be
    /// deterministic; their arguments are stored in the log, so they own their data.
    trait RouteWrites for Routes, enum RouteWrite {
        /// Routes `name` to `backend`; returns the previous backend.
        fn insert(&mut self, name: String, backend: u64) -> Option<u64> {
            self.0.insert(name, backend)
        }

        /// Removes the route `name`; returns its backend.
        fn remove(&mut self, name: String) -> Option<u64> {
            self.0.remove(&name)
        }

        /// Moves the route `from` to the name `to`; returns whether `from` existed.
        fn rename(&mut self, from: String, to: String) -> bool {
            match self.0.remove(&from) {
                Some(backend) => {
                    self.0.insert(to, backend);
                    true
                }
                None => false,
            }
        }
    }
}

fn main() -> Result<(), ldnr::Error> {
    let index = NodeReplicated::builder(Routes::default()).build()?;
    let tkn = index.register()?;
    assert_eq!(index.insert(tkn, "health".to_string(), HEALTH), None);

    thread::scope(|s| -> Result<(), ldnr::Error> {
        let mut threads = Vec::new();
        // Writers: each adds its routes under `new/`, publishes them under `live/` with a
        // rename, and retires every fourth one.
        for w in 0..WRITERS {
            let index = &index;
            threads.push(s.spawn(move || -> Result<(), ldnr::Error> {
                let tkn = index.register()?;
                for i in 0..ROUTES {
                    let (new, live) = (format!("new/{w}/{i:04}"), format!("live/{w}/{i:04}"));
                    assert_eq!(index.insert(tkn, new.clone(), w * ROUTES + i), None);
                    assert!(index.rename(tkn, new, live.clone()));
                    if i % 4 == 0 {
                        assert_eq!(index.remove(tkn, live), Some(w * ROUTES + i));
                    }
                }
                index.deregister(tkn)
            }));
        }
        // Readers: check what every state of the index satisfies, on their own replica.
        for _ in 0..READERS {
            let index = &index;
            threads.push(s.spawn(move || -> Result<(), ldnr::Error> {
                let tkn = index.register()?;
                for _ in 0..SCANS {
                    // A lookup borrows its key: no `String` is built for it.
                    assert_eq!(
                        index.read(tkn, |r| r.0.get("health").copied()),
                        Some(HEALTH)
                    );
                    // One read sees one state of the index, so everything computed in
                    // one closure agrees: a rename is one write (no backend is ever seen
                    // under two names), and every route is `health`, new or live.
                    let (routes, backends, new, live) = index.read(tkn, |r| {
                        let backends: HashSet<u64> = r.0.values().copied().collect();
                        // A range scan: the names from `live/` up to `live0` ('0' follows '/').
                        let live = r.0.range::<str, _>((Included("live/"), Excluded("live0")));
                        (
                            r.0.len(),
                            backends.len(),
                            r.scan_prefix("new/").len(),
                            live.count(),
                        )
                    });
                    assert_eq!(routes, backends);
                    assert_eq!(routes, 1 + new + live);
                }
                index.deregister(tkn)
            }));
        }
        for t in threads {
            t.join().expect("a thread panicked")?;
        }
        Ok(())
    })?;

    // Every writer's routes are live, less every fourth one, and none is left under `new/`.
    for w in 0..WRITERS {
        let live = index.read(tkn, |r| r.scan_prefix(&format!("live/{w}/")));
        let expected: Vec<(String, u64)> = (0..ROUTES)
            .filter(|i| i % 4 != 0)
            .map(|i| (format!("live/{w}/{i:04}"), w * ROUTES + i))
            .collect();
        assert_eq!(live, expected);
    }
    assert!(index.read(tkn, |r| r.scan_prefix("new/").is_empty()));
    let total = index.read(tkn, |r| r.0.len());
    assert_eq!(total as u64, 1 + WRITERS * (ROUTES - ROUTES / 4));
    index.deregister(tkn)?;
    println!(
        "std_threads: {WRITERS} writers x {ROUTES} routes, {READERS} readers x {SCANS} checks, {total} routes left, ok"
    );
    Ok(())
}
