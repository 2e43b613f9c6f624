//! `AddressSpace` against a per-page model (proptest), and the replicated address space
//! against the sequential one.
//!
//! The model keeps one entry per mapped page (physical address, protection) and takes
//! fresh physical pages from a counter, as the specification says. Random `map`, `unmap`
//! and `protect` calls — aligned or not, empty, crossing the end of the address space,
//! overlapping, partial — must return what the model returns; after every call each page
//! of the window, and a byte inside it, must translate as in the model, the mappings must
//! expand to exactly the model's pages, and the invariants S1–S3 (disjoint, aligned,
//! canonical, counted) must hold.

use std::collections::BTreeMap;

use ldnr_testkit::{watchdog, LIMIT};
use ldnr_vspace::{
    AddressSpace, MapError, Prot, SpaceReads, SpaceWrites, PAGE_SIZE, PA_END, VA_END,
};
use proptest::prelude::*;

/// Pages `0..WINDOW` of the low end, and as many below `VA_END`, are where calls land.
const WINDOW: u64 = 48;

/// The specification: one entry per mapped page.
#[derive(Debug, Default)]
struct PageModel {
    pages: BTreeMap<u64, (u64, Prot)>,
    next_pa: u64,
}

impl PageModel {
    fn check(va: u64, len: u64) -> Result<(), MapError> {
        if va % PAGE_SIZE != 0 || len % PAGE_SIZE != 0 {
            Err(MapError::Unaligned { va, len })
        } else if len == 0 {
            Err(MapError::Empty)
        } else if va.checked_add(len).is_none_or(|end| end > VA_END) {
            Err(MapError::OutOfRange { va, len })
        } else {
            Ok(())
        }
    }

    fn pages_of(va: u64, len: u64) -> impl Iterator<Item = u64> {
        (0..len / PAGE_SIZE).map(move |i| va + i * PAGE_SIZE)
    }

    fn map(&mut self, va: u64, len: u64, prot: Prot) -> Result<u64, MapError> {
        Self::check(va, len)?;
        if let Some(p) = Self::pages_of(va, len).find(|p| self.pages.contains_key(p)) {
            return Err(MapError::Overlaps { va: p });
        }
        let pa = self.next_pa;
        self.next_pa += len;
        for (i, p) in Self::pages_of(va, len).enumerate() {
            self.pages.insert(p, (pa + i as u64 * PAGE_SIZE, prot));
        }
        Ok(pa)
    }

    fn unmap(&mut self, va: u64, len: u64) -> Result<u64, MapError> {
        Self::check(va, len)?;
        Ok(Self::pages_of(va, len)
            .filter(|p| self.pages.remove(p).is_some())
            .count() as u64
            * PAGE_SIZE)
    }

    fn protect(&mut self, va: u64, len: u64, prot: Prot) -> Result<(), MapError> {
        Self::check(va, len)?;
        if let Some(p) = Self::pages_of(va, len).find(|p| !self.pages.contains_key(p)) {
            return Err(MapError::NotMapped { va: p });
        }
        for p in Self::pages_of(va, len) {
            self.pages.get_mut(&p).expect("checked above").1 = prot;
        }
        Ok(())
    }

    fn translate(&self, va: u64) -> Option<(u64, Prot)> {
        let page = va - va % PAGE_SIZE;
        self.pages
            .get(&page)
            .map(|&(pa, prot)| (pa + va % PAGE_SIZE, prot))
    }
}

/// One call.
#[derive(Debug, Clone, Copy)]
enum Call {
    Map(u64, u64, Prot),
    Unmap(u64, u64),
    Protect(u64, u64, Prot),
}

/// An address near the low end or near `VA_END`, sometimes off a page boundary.
fn address() -> impl Strategy<Value = u64> {
    prop_oneof![
        12 => (0..WINDOW).prop_map(|p| p * PAGE_SIZE),
        2 => (1..=WINDOW).prop_map(|p| VA_END - p * PAGE_SIZE),
        1 => 0..WINDOW * PAGE_SIZE,
    ]
}

/// A length of up to a dozen pages: sometimes zero or off a page multiple.
fn length() -> impl Strategy<Value = u64> {
    prop_oneof![
        12 => (1..=12u64).prop_map(|p| p * PAGE_SIZE),
        1 => Just(0),
        1 => 1..4 * PAGE_SIZE,
    ]
}

/// Few protections, so that neighbours often match and merge.
fn prot() -> impl Strategy<Value = Prot> {
    prop_oneof![
        Just(Prot::READ),
        Just(Prot::READ | Prot::WRITE),
        Just(Prot::NONE)
    ]
}

fn call() -> impl Strategy<Value = Call> {
    prop_oneof![
        3 => (address(), length(), prot()).prop_map(|(a, l, p)| Call::Map(a, l, p)),
        2 => (address(), length()).prop_map(|(a, l)| Call::Unmap(a, l)),
        3 => (address(), length(), prot()).prop_map(|(a, l, p)| Call::Protect(a, l, p)),
    ]
}

/// What a call returned, comparable between the structure and the model.
#[derive(Debug, PartialEq, Eq)]
enum Answer {
    Map(Result<u64, MapError>),
    Unmap(Result<u64, MapError>),
    Protect(Result<(), MapError>),
}

fn on_model(m: &mut PageModel, c: Call) -> Answer {
    match c {
        Call::Map(va, len, p) => Answer::Map(m.map(va, len, p)),
        Call::Unmap(va, len) => Answer::Unmap(m.unmap(va, len)),
        Call::Protect(va, len, p) => Answer::Protect(m.protect(va, len, p)),
    }
}

fn on_space(s: &mut AddressSpace, c: Call) -> Answer {
    match c {
        Call::Map(va, len, p) => Answer::Map(s.map(va, len, p)),
        Call::Unmap(va, len) => Answer::Unmap(s.unmap(va, len)),
        Call::Protect(va, len, p) => Answer::Protect(s.protect(va, len, p)),
    }
}

/// S1–S3, and the mappings expand to exactly the model's pages.
fn assert_agrees(space: &AddressSpace, model: &PageModel) {
    let mut pages = BTreeMap::new();
    let mut prev: Option<ldnr_vspace::Mapping> = None;
    let mut bytes = 0;
    for m in space.iter() {
        assert!(m.len() > 0 && m.va() % PAGE_SIZE == 0 && m.len() % PAGE_SIZE == 0);
        assert!(m.end() <= VA_END && m.pa() % PAGE_SIZE == 0, "S1: {m:?}");
        if let Some(p) = prev {
            assert!(p.end() <= m.va(), "S1: {p:?} overlaps {m:?}");
            let continues = p.end() == m.va() && p.pa() + p.len() == m.pa() && p.prot() == m.prot();
            assert!(!continues, "S2: {p:?} and {m:?} should be one mapping");
        }
        for (i, page) in PageModel::pages_of(m.va(), m.len()).enumerate() {
            pages.insert(page, (m.pa() + i as u64 * PAGE_SIZE, m.prot()));
        }
        bytes += m.len();
        prev = Some(*m);
    }
    assert_eq!(space.mapped_bytes(), bytes, "S3");
    assert_eq!(space.is_empty(), bytes == 0);
    assert_eq!(
        pages, model.pages,
        "the mappings expand to the model's pages"
    );
    let window = (0..WINDOW).map(|p| p * PAGE_SIZE);
    let top = (1..=WINDOW).map(|p| VA_END - p * PAGE_SIZE);
    for page in window.chain(top) {
        for va in [page, page + PAGE_SIZE / 2 + 1] {
            assert_eq!(
                space.translate(va),
                model.translate(va),
                "translate({va:#x})"
            );
            assert_eq!(
                space
                    .mapping_at(va)
                    .map(|m| (m.pa() + (va - m.va()), m.prot())),
                model.translate(va)
            );
        }
    }
}

proptest! {
    // The failing case is printed; no regression files in the source tree.
    #![proptest_config(ProptestConfig {
        cases: 256,
        failure_persistence: None,
        ..ProptestConfig::default()
    })]

    /// Every call returns what the per-page model returns, and the structure holds the
    /// model's pages in canonical form after each.
    #[test]
    fn address_space_matches_the_page_model(calls in proptest::collection::vec(call(), 1..80)) {
        let mut space = AddressSpace::new();
        let mut model = PageModel::default();
        for c in calls {
            let before = space.clone();
            let got = on_space(&mut space, c);
            prop_assert_eq!(&got, &on_model(&mut model, c), "{:?}", c);
            if matches!(got, Answer::Map(Err(_)) | Answer::Unmap(Err(_)) | Answer::Protect(Err(_))) {
                prop_assert_eq!(&space, &before, "an error changes nothing: {:?}", c);
            }
            assert_agrees(&space, &model);
        }
    }

    /// The same calls through `NodeReplicated` (two replicas, a log of 16 entries that
    /// wraps many times) return what the sequential structure returns, and every replica
    /// ends equal to it.
    #[test]
    fn replicated_space_matches_the_sequential_one(calls in proptest::collection::vec(call(), 1..60)) {
        let (got, want) = watchdog("replicated model", LIMIT, move || {
            let nr = AddressSpace::new()
                .replicated()
                .policy(ldnr::Policy::manual())
                .replicas(&[ldnr::NodeId(0), ldnr::NodeId(0)])
                .log_capacity(16)
                .build()
                .unwrap();
            let tkn = nr.register().unwrap();
            let mut plain = AddressSpace::new();
            let mut got = Vec::new();
            let mut want = Vec::new();
            for c in calls {
                got.push(match c {
                    Call::Map(va, len, p) => Answer::Map(nr.map(tkn, va, len, p)),
                    Call::Unmap(va, len) => Answer::Unmap(nr.unmap(tkn, va, len)),
                    Call::Protect(va, len, p) => Answer::Protect(nr.protect(tkn, va, len, p)),
                });
                want.push(on_space(&mut plain, c));
                for va in (0..WINDOW).map(|p| p * PAGE_SIZE + 1) {
                    assert_eq!(nr.translate(tkn, va), plain.translate(va));
                }
            }
            // Each replica, read through a thread matched to it.
            for replica in nr.replicas() {
                let copy = std::thread::scope(|s| {
                    s.spawn(|| loop {
                        let t = nr.register().unwrap();
                        if nr.replica_of(t) == Some(replica.id) {
                            return nr.read(t, AddressSpace::clone);
                        }
                    })
                    .join()
                    .unwrap()
                });
                assert_eq!(copy, plain, "replica {:?}", replica.id);
            }
            (got, want)
        });
        prop_assert_eq!(got, want);
    }
}

/// The pretend physical memory runs out after `PA_END` bytes: `map` then fails and
/// changes nothing.
#[test]
fn physical_memory_runs_out() {
    let mut space = AddressSpace::new();
    let big = VA_END / 2;
    for i in 0..PA_END / big {
        assert_eq!(space.map(0, big, Prot::READ), Ok(i * big));
        assert_eq!(space.unmap(0, big), Ok(big));
    }
    assert_eq!(
        space.map(0, PAGE_SIZE, Prot::READ),
        Err(MapError::OutOfMemory)
    );
    assert!(space.is_empty());
}

/// Splits and merges at the ends of a mapping and in its middle, by hand.
#[test]
fn partial_unmap_and_protect_split_and_merge() {
    let p = PAGE_SIZE;
    let mut s = AddressSpace::new();
    let pa = s.map(0, 8 * p, Prot::READ).unwrap();
    s.protect(0, p, Prot::WRITE).unwrap();
    s.protect(7 * p, p, Prot::WRITE).unwrap();
    s.protect(3 * p, 2 * p, Prot::EXEC).unwrap();
    let runs: Vec<(u64, u64, Prot)> = s
        .iter()
        .map(|m| (m.va() / p, m.len() / p, m.prot()))
        .collect();
    assert_eq!(
        runs,
        [
            (0, 1, Prot::WRITE),
            (1, 2, Prot::READ),
            (3, 2, Prot::EXEC),
            (5, 2, Prot::READ),
            (7, 1, Prot::WRITE)
        ]
    );
    // Back to one protection: one mapping again, translating as before.
    s.protect(0, 8 * p, Prot::READ).unwrap();
    assert_eq!(s.len(), 1);
    assert_eq!(s.translate(5 * p + 3), Some((pa + 5 * p + 3, Prot::READ)));
    // A hole in the middle, then the hole mapped again: fresh physical pages, so two
    // mappings stay apart from the third.
    assert_eq!(s.unmap(2 * p, 2 * p), Ok(2 * p));
    assert_eq!(s.len(), 2);
    let again = s.map(2 * p, 2 * p, Prot::READ).unwrap();
    assert_eq!(again, pa + 8 * p);
    assert_eq!(s.len(), 3);
    assert_eq!(s.translate(2 * p), Some((again, Prot::READ)));
    assert_eq!(s.translate(4 * p), Some((pa + 4 * p, Prot::READ)));
}
