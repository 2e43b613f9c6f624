//! The reader-writer lock.

use super::*;

/// A replica's lock, the reader slots of every thread, and data with the invariant
/// `a == b` that a writer breaks temporarily.
struct Guarded {
    lock: RwLock,
    readers: Vec<ReaderSlot>,
    a: UnsafeCell<u64>,
    b: UnsafeCell<u64>,
}

impl Guarded {
    fn new(readers: usize) -> Self {
        Self {
            lock: RwLock::new(),
            readers: (0..readers).map(|_| ReaderSlot::new()).collect(),
            a: UnsafeCell::new(0),
            b: UnsafeCell::new(0),
        }
    }

    /// Takes the write lock of replica slot 0, increments both cells, one at a time, and
    /// stamps the lock with their new value (as a combiner publishes its position).
    fn write(&self) {
        let mut w = self.lock.write(0, || self.readers.iter());
        // SAFETY: the write lock (the model's claim, checked by loom's cell tracking)
        // excludes every reader of slot 0, and there is one writer.
        let a = self.a.with_mut(|p| unsafe {
            *p += 1;
            *p
        });
        // SAFETY: as above.
        self.b.with_mut(|p| unsafe { *p += 1 });
        w.publish(a as usize);
    }

    /// Takes the read lock of slot 0 with reader slot `me`, hoping for the stamp of the
    /// first write (so that both the read lock's early return and its writer test are
    /// explored), and returns the cells.
    fn read(&self, me: usize) -> u64 {
        let (_r, _, stamped) = self.lock.read(&self.readers[me], 0, RwLock::stamp(1));
        let a = self.cells();
        if stamped {
            assert_eq!(a, 1, "the stamp hoped for does not describe the data");
        }
        a
    }

    /// The cells, read by a thread that holds the read lock of slot 0.
    fn cells(&self) -> u64 {
        // SAFETY: the read lock excludes the writer (checked by loom).
        let a = self.a.with(|p| unsafe { *p });
        // SAFETY: as above.
        let b = self.b.with(|p| unsafe { *p });
        assert_eq!(a, b, "a reader saw a half-applied write");
        a
    }
}

/// The readers' common case, [`RwLock::try_read`]: one writer (two write sections) and
/// one reader that hopes for the stamp of each write in turn and reads only where the
/// word is that stamp, then waits for the writer.
///
/// Asserts: a read lock `try_read` returns excludes the writer (loom panics on the
/// concurrent cell access; the reader checks `a == b`) and holds the data its stamp
/// says; a refused `try_read` leaves no announcement behind (the writer would wait for
/// it forever while the reader waits for the writer: loom reports the deadlock).
#[test]
fn rwlock_try_read_excludes_the_writer() {
    check(Some(3), || {
        let g = Arc::new(Guarded::new(1));
        let w = g.clone();
        let writer = thread::spawn(move || {
            w.write();
            w.write();
        });
        for hoped in [1, 2] {
            if let Some(_r) = g.lock.try_read(&g.readers[0], 0, RwLock::stamp(hoped)) {
                let a = g.cells();
                assert_eq!(a as usize, hoped, "the stamp does not describe the data");
            }
        }
        writer.join().unwrap();
        assert_eq!(g.read(0), 2);
    });
}

/// One writer (two write sections) and one reader (two read sections).
///
/// Asserts: no read section overlaps a write section (loom panics on the concurrent
/// cell access, and the reader checks `a == b`); the reader's values never go back.
#[test]
fn rwlock_one_writer_one_reader() {
    check(Some(4), || {
        let g = Arc::new(Guarded::new(1));
        let w = g.clone();
        let writer = thread::spawn(move || {
            w.write();
            w.write();
        });
        let first = g.read(0);
        let second = g.read(0);
        assert!(first <= second && second <= 2);
        writer.join().unwrap();
        assert_eq!(g.read(0), 2);
    });
}

/// R3, the lock's stamp: a writer installs a replica at position 1, advances it to 2,
/// then takes it out; a reader that finds a stamp reads data that matches it, and finds
/// no stamp once the replica is gone.
///
/// Asserts: whenever the word a read lock returns is a stamp, the data is there and is
/// the stamped position (so a reader may trust the stamp without looking further); after
/// the writer is done, the word sends readers to the full checks.
#[test]
fn rwlock_stamp_describes_the_data() {
    check(Some(3), || {
        struct Stamped {
            lock: RwLock,
            readers: [ReaderSlot; 1],
            data: UnsafeCell<Option<usize>>,
        }
        impl Stamped {
            fn set(&self, data: Option<usize>) {
                let mut w = self.lock.write(0, || self.readers.iter());
                // SAFETY: the write lock excludes the reader (checked by loom).
                self.data.with_mut(|p| unsafe { *p = data });
                match data {
                    Some(position) => w.publish(position),
                    None => w.retire(),
                }
            }
            fn read(&self) -> Option<usize> {
                let (_r, word, stamped) = self.lock.read(&self.readers[0], 0, RwLock::stamp(1));
                assert_eq!(stamped, word == RwLock::stamp(1));
                // SAFETY: the read lock excludes the writer (checked by loom).
                let data = self.data.with(|p| unsafe { *p });
                [1, 2]
                    .into_iter()
                    .find(|&position| word == RwLock::stamp(position))
                    .inspect(|&position| {
                        assert_eq!(
                            data,
                            Some(position),
                            "a stamp that does not describe the data"
                        );
                    })
            }
        }
        let s = Arc::new(Stamped {
            lock: RwLock::new(),
            readers: [ReaderSlot::new()],
            data: UnsafeCell::new(None),
        });
        let w = s.clone();
        let writer = thread::spawn(move || {
            w.set(Some(1));
            w.set(Some(2));
            w.set(None);
        });
        let first = s.read();
        let second = s.read();
        // Stamps only move forward while the replica lives.
        assert!(!matches!((first, second), (Some(2), Some(1))));
        writer.join().unwrap();
        assert_eq!(s.read(), None, "a retired replica keeps no stamp");
    });
}

/// One writer and two readers with their own reader slots.
///
/// Asserts: as `rwlock_one_writer_one_reader`, with two readers inside at once allowed.
///
/// Preemption bound 1: see the module docs (tokio-rs/loom#53).
#[test]
fn rwlock_one_writer_two_readers() {
    check(Some(1), || {
        let g = Arc::new(Guarded::new(2));
        let w = g.clone();
        let writer = thread::spawn(move || w.write());
        let r = g.clone();
        let reader = thread::spawn(move || r.read(1));
        let v0 = g.read(0);
        let v1 = reader.join().unwrap();
        writer.join().unwrap();
        assert!(v0 <= 1 && v1 <= 1);
        assert_eq!(g.read(0), 1);
    });
}

/// A writer of replica slot 0 does not wait for a reader of slot 1 (the lock is per
/// replica, the reader slots are shared): the reader stays inside its read section of
/// slot 1 until the writer is done, so a writer that waited for it would spin forever
/// (loom would report the exceeded branch limit).
#[test]
fn rwlock_writer_ignores_readers_of_other_replicas() {
    // Exhaustive: 46 executions.
    check(None, || {
        struct Two {
            locks: [RwLock; 2],
            readers: [ReaderSlot; 1],
            written: crate::sync::AtomicBool,
        }
        let s = Arc::new(Two {
            locks: [RwLock::new(), RwLock::new()],
            readers: [ReaderSlot::new()],
            written: crate::sync::AtomicBool::new(false),
        });
        let w = s.clone();
        let writer = thread::spawn(move || {
            drop(w.locks[0].write(0, || w.readers.iter()));
            w.written.store(true, Ordering::Release);
        });
        {
            let _r = s.locks[1].read(&s.readers[0], 1, RwLock::stamp(0));
            while !s.written.load(Ordering::Acquire) {
                thread::yield_now();
            }
        }
        writer.join().unwrap();
    });
}
