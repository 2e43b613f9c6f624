//! A thread per request: 2,000 short-lived threads, each spawned for one request and joined,
//! using a `ReplicatedHashMap` with LD-NR's default settings.
//!
//! No thread registers or deregisters by hand: the map's handle-free methods register the
//! calling thread on its first call, and its registration is given back when it exits
//! (`join` waits for that). So far more threads than the default thread limit
//! (`ldnr::DEFAULT_MAX_THREADS`, 256) come and go, up to `IN_FLIGHT` of them at once.
//!
//! `cargo run --release -p ldnr-examples --example per_request`

use std::sync::Arc;
use std::thread;

use ldnr_hashmap::ReplicatedHashMap;

const REQUESTS: u64 = 2_000;
/// Requests served at the same time: their threads are spawned together, then joined.
const IN_FLIGHT: u64 = 50;
/// A key every request reads: its value never changes.
const CONFIG: u64 = u64::MAX;

/// One request: record `r`, read it and the shared configuration back, and every fourth
/// request removes its record again.
fn serve(map: &ReplicatedHashMap<u64, u64>, r: u64) {
    assert_eq!(map.get(&CONFIG), Some(42));
    assert_eq!(map.insert(r, 10 * r), None);
    assert_eq!(map.get(&r), Some(10 * r));
    if r % 4 == 0 {
        assert_eq!(map.remove(&r), Some(10 * r));
        assert!(!map.contains_key(&r));
    }
}

fn main() -> Result<(), ldnr::Error> {
    let map = Arc::new(ReplicatedHashMap::<u64, u64>::new()?);
    map.insert(CONFIG, 42);

    for wave in 0..REQUESTS / IN_FLIGHT {
        let threads: Vec<_> = (wave * IN_FLIGHT..(wave + 1) * IN_FLIGHT)
            .map(|r| {
                let map = Arc::clone(&map);
                thread::spawn(move || serve(&map, r))
            })
            .collect();
        for t in threads {
            t.join().expect("a request panicked");
        }
    }

    // Exactly the records of the requests that kept theirs, and the configuration.
    let left = REQUESTS - REQUESTS / 4;
    assert_eq!(map.len() as u64, 1 + left);
    for r in 0..REQUESTS {
        assert_eq!(map.get(&r), (r % 4 != 0).then_some(10 * r));
    }
    assert_eq!(map.get(&CONFIG), Some(42));
    println!("per_request: {REQUESTS} threads ({IN_FLIGHT} at a time), {left} records left, ok");
    Ok(())
}
