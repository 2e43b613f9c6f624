//! Programmer errors panic with a clear message at the caller's line (`#[track_caller]`
//! through the map's methods): a thread past the thread limit calling the map without a
//! handle, and a call of the map from inside one of its `read` closures.
//!
//! Its own test binary: it installs a panic hook that records where these panics point.

use std::panic::{self, AssertUnwindSafe};
use std::sync::{Mutex, MutexGuard, Once};
use std::thread;

use ldnr_hashmap::ReplicatedHashMap;
use ldnr_testkit::{watchdog, LIMIT};

/// The message and the file and line of every panic whose message starts with `ldnr`.
static SEEN: Mutex<Vec<(String, String, u32)>> = Mutex::new(Vec::new());

/// Held by each test while it runs: the tests share `SEEN`, so one test's panics must
/// not land between another's count before and after (they failed together when the
/// harness ran them at the same moment).
static SERIAL: Mutex<()> = Mutex::new(());

/// Records this crate's (and LD-NR's) panics instead of printing them; any other panic
/// goes to the default hook. Returns the guard that keeps the other tests of this file
/// out until the caller's test is done.
fn record_panics() -> MutexGuard<'static, ()> {
    let serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    static HOOK: Once = Once::new();
    HOOK.call_once(|| {
        let default = panic::take_hook();
        panic::set_hook(Box::new(move |info| {
            let msg = ldnr_testkit::message(info.payload());
            match info.location() {
                Some(at) if msg.starts_with("ldnr") => {
                    let mut seen = SEEN.lock().unwrap_or_else(|e| e.into_inner());
                    seen.push((msg, at.file().to_owned(), at.line()));
                }
                _ => default(info),
            }
        }));
    });
    serial
}

/// Runs `f`, which must panic, and returns the recorded message and line.
fn panic_of<R>(f: impl FnOnce() -> R) -> (String, u32) {
    let before = SEEN.lock().unwrap().len();
    assert!(
        panic::catch_unwind(AssertUnwindSafe(f)).is_err(),
        "expected a panic"
    );
    let seen = SEEN.lock().unwrap();
    assert_eq!(seen.len(), before + 1, "one recorded panic");
    let (msg, file, line) = seen[before].clone();
    assert!(
        file.ends_with("panics.rs"),
        "the panic points into the crate, not at the caller: {file}:{line}: {msg}"
    );
    (msg, line)
}

#[test]
fn methods_without_a_handle_panic_at_the_caller_past_the_thread_limit() {
    let _serial = record_panics();
    watchdog("thread limit", LIMIT, || {
        let map = ReplicatedHashMap::<String, u32>::builder()
            .max_threads(1)
            .build()
            .expect("a valid configuration");
        map.insert("k".into(), 1); // this thread takes the one slot
        thread::scope(|s| {
            s.spawn(|| {
                let calls: Vec<Box<dyn Fn() + '_>> = vec![
                    Box::new(|| {
                        let _ = map.get("k");
                    }),
                    Box::new(|| {
                        let _ = map.contains_key("k");
                    }),
                    Box::new(|| {
                        let _ = map.read(|m| m.len());
                    }),
                    Box::new(|| {
                        let _ = map.len();
                    }),
                    Box::new(|| {
                        let _ = map.is_empty();
                    }),
                    Box::new(|| {
                        let _ = map.insert("k".into(), 2);
                    }),
                    Box::new(|| {
                        let _ = map.remove("k");
                    }),
                    Box::new(|| {
                        let _ = map.get_or_insert("k".into(), 2);
                    }),
                    Box::new(|| map.extend([("j".to_string(), 2)])),
                    Box::new(|| map.retain(|_, _| false)),
                    Box::new(|| map.clear()),
                ];
                for call in calls {
                    let (msg, _) = panic_of(call);
                    assert_eq!(
                        msg,
                        "ldnr-hashmap: this thread cannot use the map: too many threads \
                         registered: the limit is 1 (`ReplicatedHashMap::handle` returns this \
                         as an error)"
                    );
                }
                let (_, line) = panic_of(|| map.len());
                assert_eq!(line, line!() - 1, "the caller's own line");
                // Debug does not panic: it says why it cannot show the entries.
                assert_eq!(
                    format!("{map:?}"),
                    "ReplicatedHashMap { unreadable: \"too many threads registered: the \
                     limit is 1\", .. }"
                );
            })
            .join()
            .expect("the checks passed");
        });
        assert_eq!(map.get("k"), Some(1), "nothing changed");
    });
}

#[test]
fn calling_the_map_inside_its_read_closure_panics_at_the_inner_call() {
    let _serial = record_panics();
    watchdog("re-entry", LIMIT, || {
        let map = ReplicatedHashMap::<u32, u32>::new().expect("a valid configuration");
        let h = map.handle().expect("below the thread limit");
        h.insert(1, 1);
        let (msg, line) = panic_of(|| map.read(|_| map.len()));
        assert!(msg.starts_with("ldnr: re-entrant call"), "{msg}");
        assert_eq!(line, line!() - 2, "the inner call's line");
        let (msg, _) = panic_of(|| h.read(|_| h.insert(2, 2)));
        assert!(msg.starts_with("ldnr: re-entrant call"), "{msg}");
        // The read lock was released and the map goes on.
        assert_eq!(h.insert(2, 2), None);
        assert_eq!(map.read(|m| m.len()), 2);
    });
}
