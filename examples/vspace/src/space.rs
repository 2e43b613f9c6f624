//! The sequential address space: page-granular mappings in a `BTreeMap`, kept canonical.
//!
//! Each [`Mapping`] is a run of virtual pages backed by a run of physical pages of the same
//! length, with one protection. The map is keyed by the first virtual address of each
//! mapping. Three invariants hold after every operation (the tests check them through
//! [`AddressSpace::iter`]):
//!
//! - **S1** mappings do not overlap, and each is non-empty and page-aligned;
//! - **S2** canonical form: two mappings that touch in virtual memory are never also
//!   contiguous in physical memory with the same protection (they would have been merged
//!   into one), so equal contents mean equal maps, whatever sequence of operations
//!   produced them;
//! - **S3** [`mapped_bytes`](AddressSpace::mapped_bytes) is the sum of the mappings'
//!   lengths.
//!
//! ```text
//!   protect(B..C, r)          split at B and C, set r, merge neighbours that now match
//!   [A ........ rw ........ D)   ->   [A .. rw .. B)[B .. r .. C)[C .. rw .. D)
//!   protect(B..C, rw)         ->   [A ........ rw ........ D)     (S2: one mapping again)
//! ```
//!
//! Every write is deterministic (the same state and arguments give the same state and
//! result), as [`ldnr::Dispatch`] requires of every replica's copy: physical pages come
//! from a counter in the structure, not from a global allocator.

use core::fmt;
use core::ops::{BitOr, BitOrAssign};
use std::collections::BTreeMap;

/// The size of a page: every mapping starts and ends on a multiple of it.
pub const PAGE_SIZE: u64 = 4096;

/// The end of the virtual address space (exclusive): 2^47 bytes, the lower half of an
/// x86-64 four-level address space, where user processes live.
pub const VA_END: u64 = 1 << 47;

/// The end of the pretend physical memory (exclusive): 2^52 bytes, x86-64's limit.
pub const PA_END: u64 = 1 << 52;

/// Access rights of a mapping: any combination of read, write and execute.
///
/// # Examples
///
/// ```
/// use ldnr_vspace::Prot;
///
/// let rw = Prot::READ | Prot::WRITE;
/// assert!(rw.contains(Prot::READ) && !rw.contains(Prot::EXEC));
/// assert_eq!(rw.to_string(), "rw-");
/// assert_eq!(Prot::from_bits(rw.bits()), Some(rw));
/// assert_eq!(Prot::from_bits(8), None);
/// ```
#[derive(Clone, Copy, PartialEq, Eq, Hash, Default, PartialOrd, Ord)]
pub struct Prot(u8);

impl Prot {
    /// No access (a reserved range: mapped, but every access faults).
    pub const NONE: Prot = Prot(0);
    /// Readable.
    pub const READ: Prot = Prot(1);
    /// Writable.
    pub const WRITE: Prot = Prot(2);
    /// Executable.
    pub const EXEC: Prot = Prot(4);

    /// The protection with these bits (read 1, write 2, execute 4), or `None` if other
    /// bits are set.
    ///
    /// # Examples
    ///
    /// ```
    /// use ldnr_vspace::Prot;
    /// assert_eq!(Prot::from_bits(5), Some(Prot::READ | Prot::EXEC));
    /// ```
    pub const fn from_bits(bits: u8) -> Option<Prot> {
        if bits & !7 == 0 {
            Some(Prot(bits))
        } else {
            None
        }
    }

    /// The bits: read 1, write 2, execute 4.
    ///
    /// # Examples
    ///
    /// ```
    /// assert_eq!(ldnr_vspace::Prot::WRITE.bits(), 2);
    /// ```
    pub const fn bits(self) -> u8 {
        self.0
    }

    /// Whether every right in `other` is also in `self`.
    ///
    /// # Examples
    ///
    /// ```
    /// use ldnr_vspace::Prot;
    /// assert!((Prot::READ | Prot::EXEC).contains(Prot::EXEC));
    /// assert!(Prot::READ.contains(Prot::NONE));
    /// ```
    pub const fn contains(self, other: Prot) -> bool {
        self.0 & other.0 == other.0
    }
}

impl BitOr for Prot {
    type Output = Prot;

    fn bitor(self, rhs: Prot) -> Prot {
        Prot(self.0 | rhs.0)
    }
}

impl BitOrAssign for Prot {
    fn bitor_assign(&mut self, rhs: Prot) {
        self.0 |= rhs.0;
    }
}

impl fmt::Display for Prot {
    /// `rwx`, with `-` for a missing right (as in `/proc/self/maps`).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let flag = |right: Prot, c: char| if self.contains(right) { c } else { '-' };
        write!(
            f,
            "{}{}{}",
            flag(Prot::READ, 'r'),
            flag(Prot::WRITE, 'w'),
            flag(Prot::EXEC, 'x')
        )
    }
}

impl fmt::Debug for Prot {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Prot({self})")
    }
}

/// Why a [`map`](AddressSpace::map), [`unmap`](AddressSpace::unmap) or
/// [`protect`](AddressSpace::protect) did nothing.
///
/// # Examples
///
/// ```
/// use ldnr_vspace::{AddressSpace, MapError, Prot, PAGE_SIZE};
///
/// let mut space = AddressSpace::new();
/// assert_eq!(space.map(100, PAGE_SIZE, Prot::READ), Err(MapError::Unaligned { va: 100, len: PAGE_SIZE }));
/// space.map(0, 2 * PAGE_SIZE, Prot::READ)?;
/// assert_eq!(
///     space.map(PAGE_SIZE, PAGE_SIZE, Prot::READ),
///     Err(MapError::Overlaps { va: PAGE_SIZE })
/// );
/// assert_eq!(
///     MapError::Overlaps { va: PAGE_SIZE }.to_string(),
///     "the page at 0x1000 is already mapped"
/// );
/// # Ok::<(), MapError>(())
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum MapError {
    /// The address or the length is not a multiple of [`PAGE_SIZE`].
    Unaligned {
        /// The address asked for.
        va: u64,
        /// The length asked for.
        len: u64,
    },
    /// The length is zero.
    Empty,
    /// The range does not end at or below [`VA_END`].
    OutOfRange {
        /// The address asked for.
        va: u64,
        /// The length asked for.
        len: u64,
    },
    /// `map`: a page of the range is mapped already (the first such page).
    Overlaps {
        /// The first mapped page of the range.
        va: u64,
    },
    /// `protect`: a page of the range is not mapped (the first such page).
    NotMapped {
        /// The first unmapped page of the range.
        va: u64,
    },
    /// `map`: the pretend physical memory ([`PA_END`] bytes) is used up.
    OutOfMemory,
}

impl fmt::Display for MapError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            MapError::Unaligned { va, len } => write!(
                f,
                "address {va:#x} or length {len:#x} is not a multiple of the page size"
            ),
            MapError::Empty => f.write_str("the length is zero"),
            MapError::OutOfRange { va, len } => write!(
                f,
                "the range {va:#x} + {len:#x} ends beyond the address space ({VA_END:#x})"
            ),
            MapError::Overlaps { va } => write!(f, "the page at {va:#x} is already mapped"),
            MapError::NotMapped { va } => write!(f, "the page at {va:#x} is not mapped"),
            MapError::OutOfMemory => f.write_str("physical memory is used up"),
        }
    }
}

impl std::error::Error for MapError {}

/// One mapping: `len` bytes of virtual memory from `va`, backed by physical memory from
/// `pa`, with one protection.
///
/// # Examples
///
/// ```
/// use ldnr_vspace::{AddressSpace, Prot, PAGE_SIZE};
///
/// let mut space = AddressSpace::new();
/// let pa = space.map(4 * PAGE_SIZE, 2 * PAGE_SIZE, Prot::READ)?;
/// let m = space.iter().next().unwrap();
/// assert_eq!((m.va(), m.len(), m.pa(), m.prot()), (4 * PAGE_SIZE, 2 * PAGE_SIZE, pa, Prot::READ));
/// assert_eq!(m.end(), 6 * PAGE_SIZE);
/// # Ok::<(), ldnr_vspace::MapError>(())
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Mapping {
    va: u64,
    len: u64,
    pa: u64,
    prot: Prot,
}

impl Mapping {
    /// The first virtual address.
    pub const fn va(&self) -> u64 {
        self.va
    }

    /// The length in bytes (a non-zero multiple of [`PAGE_SIZE`]).
    #[allow(clippy::len_without_is_empty)] // a mapping is never empty (S1)
    pub const fn len(&self) -> u64 {
        self.len
    }

    /// The first physical address.
    pub const fn pa(&self) -> u64 {
        self.pa
    }

    /// The protection.
    pub const fn prot(&self) -> Prot {
        self.prot
    }

    /// The virtual address just past the mapping.
    pub const fn end(&self) -> u64 {
        self.va + self.len
    }

    /// Whether `next` continues this mapping: it starts where this one ends, in virtual
    /// and in physical memory, with the same protection (S2 merges such pairs).
    fn continued_by(&self, next: &Mapping) -> bool {
        self.end() == next.va && self.pa + self.len == next.pa && self.prot == next.prot
    }
}

/// A process's virtual address space: page-granular mappings with protections, and
/// translation of virtual to physical addresses.
///
/// A plain sequential structure: use it directly in one thread, or replicate it with
/// LD-NR ([`AddressSpace::replicated`]), where its writes
/// ([`map`](Self::map), [`unmap`](Self::unmap), [`protect`](Self::protect)) are the log's
/// operations and [`translate`](Self::translate) runs on the local replica.
///
/// Physical memory is pretend: `map` takes fresh physical pages from a counter, in order,
/// and never hands them out again. That is what a page table needs to record and what
/// makes every write deterministic.
///
/// # Examples
///
/// ```
/// use ldnr_vspace::{AddressSpace, Prot, PAGE_SIZE};
///
/// let mut space = AddressSpace::new();
/// let heap = 0x10_0000;
/// let pa = space.map(heap, 4 * PAGE_SIZE, Prot::READ | Prot::WRITE)?;
/// assert_eq!(space.translate(heap + 5), Some((pa + 5, Prot::READ | Prot::WRITE)));
///
/// // A guard page in the middle splits the mapping in three.
/// space.protect(heap + PAGE_SIZE, PAGE_SIZE, Prot::NONE)?;
/// assert_eq!(space.len(), 3);
/// // Unmapping the last two pages leaves two mappings, one page each.
/// assert_eq!(space.unmap(heap + 2 * PAGE_SIZE, 2 * PAGE_SIZE)?, 2 * PAGE_SIZE);
/// assert_eq!(space.translate(heap + 3 * PAGE_SIZE), None);
/// assert_eq!((space.len(), space.mapped_bytes()), (2, 2 * PAGE_SIZE));
/// # Ok::<(), ldnr_vspace::MapError>(())
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AddressSpace {
    /// Invariants S1, S2: disjoint, non-empty, page-aligned, canonical; keyed by `va`.
    mappings: BTreeMap<u64, Mapping>,
    /// The next fresh physical address (`map` takes pages from here up).
    next_pa: u64,
    /// Invariant S3: the sum of the mappings' lengths.
    mapped: u64,
}

impl AddressSpace {
    /// An empty address space.
    ///
    /// # Examples
    ///
    /// ```
    /// let space = ldnr_vspace::AddressSpace::new();
    /// assert!(space.is_empty());
    /// assert_eq!(space.translate(0), None);
    /// ```
    pub fn new() -> Self {
        Self::default()
    }

    /// The physical address and protection of virtual address `va` (any byte, aligned or
    /// not), or `None` if its page is not mapped.
    ///
    /// # Examples
    ///
    /// ```
    /// use ldnr_vspace::{AddressSpace, Prot, PAGE_SIZE};
    /// let mut space = AddressSpace::new();
    /// let pa = space.map(PAGE_SIZE, PAGE_SIZE, Prot::EXEC)?;
    /// assert_eq!(space.translate(PAGE_SIZE + 7), Some((pa + 7, Prot::EXEC)));
    /// assert_eq!(space.translate(2 * PAGE_SIZE), None);
    /// # Ok::<(), ldnr_vspace::MapError>(())
    /// ```
    #[inline]
    pub fn translate(&self, va: u64) -> Option<(u64, Prot)> {
        self.containing(va).map(|m| (m.pa + (va - m.va), m.prot))
    }

    /// The mapping that holds virtual address `va`, if any.
    ///
    /// # Examples
    ///
    /// ```
    /// use ldnr_vspace::{AddressSpace, Prot, PAGE_SIZE};
    /// let mut space = AddressSpace::new();
    /// space.map(0, 3 * PAGE_SIZE, Prot::READ)?;
    /// assert_eq!(space.mapping_at(2 * PAGE_SIZE + 1).map(|m| m.len()), Some(3 * PAGE_SIZE));
    /// # Ok::<(), ldnr_vspace::MapError>(())
    /// ```
    #[inline]
    pub fn mapping_at(&self, va: u64) -> Option<&Mapping> {
        self.containing(va)
    }

    /// The mappings in address order.
    ///
    /// # Examples
    ///
    /// ```
    /// use ldnr_vspace::{AddressSpace, Prot, PAGE_SIZE};
    /// let mut space = AddressSpace::new();
    /// space.map(8 * PAGE_SIZE, PAGE_SIZE, Prot::READ)?;
    /// space.map(0, PAGE_SIZE, Prot::WRITE)?;
    /// let starts: Vec<u64> = space.iter().map(|m| m.va()).collect();
    /// assert_eq!(starts, [0, 8 * PAGE_SIZE]);
    /// # Ok::<(), ldnr_vspace::MapError>(())
    /// ```
    pub fn iter(&self) -> impl DoubleEndedIterator<Item = &Mapping> + ExactSizeIterator + '_ {
        self.mappings.values()
    }

    /// How many mappings there are (maximal runs: see the module's invariant S2).
    ///
    /// # Examples
    ///
    /// ```
    /// use ldnr_vspace::{AddressSpace, Prot, PAGE_SIZE};
    /// let mut space = AddressSpace::new();
    /// space.map(0, PAGE_SIZE, Prot::READ)?;
    /// // Contiguous in virtual and physical memory, same protection: one mapping.
    /// space.map(PAGE_SIZE, PAGE_SIZE, Prot::READ)?;
    /// assert_eq!(space.len(), 1);
    /// # Ok::<(), ldnr_vspace::MapError>(())
    /// ```
    pub fn len(&self) -> usize {
        self.mappings.len()
    }

    /// Whether nothing is mapped.
    ///
    /// # Examples
    ///
    /// ```
    /// assert!(ldnr_vspace::AddressSpace::new().is_empty());
    /// ```
    pub fn is_empty(&self) -> bool {
        self.mappings.is_empty()
    }

    /// How many bytes are mapped.
    ///
    /// # Examples
    ///
    /// ```
    /// use ldnr_vspace::{AddressSpace, Prot, PAGE_SIZE};
    /// let mut space = AddressSpace::new();
    /// space.map(0, 3 * PAGE_SIZE, Prot::READ)?;
    /// space.unmap(PAGE_SIZE, PAGE_SIZE)?;
    /// assert_eq!(space.mapped_bytes(), 2 * PAGE_SIZE);
    /// # Ok::<(), ldnr_vspace::MapError>(())
    /// ```
    pub fn mapped_bytes(&self) -> u64 {
        self.mapped
    }

    /// The mapping whose range holds `va`.
    #[inline]
    fn containing(&self, va: u64) -> Option<&Mapping> {
        self.mappings
            .range(..=va)
            .next_back()
            .map(|(_, m)| m)
            .filter(|m| va < m.end())
    }

    /// `va .. va + len` as a valid range: both page multiples, non-empty, within the
    /// address space. Returns its end.
    fn range_end(va: u64, len: u64) -> Result<u64, MapError> {
        if va % PAGE_SIZE != 0 || len % PAGE_SIZE != 0 {
            return Err(MapError::Unaligned { va, len });
        }
        if len == 0 {
            return Err(MapError::Empty);
        }
        match va.checked_add(len) {
            Some(end) if end <= VA_END => Ok(end),
            _ => Err(MapError::OutOfRange { va, len }),
        }
    }

    /// The first mapped address in `va .. end`.
    fn first_mapped(&self, va: u64, end: u64) -> Option<u64> {
        if self.containing(va).is_some() {
            return Some(va);
        }
        self.mappings.range(va..end).next().map(|(&start, _)| start)
    }

    /// The first unmapped page in `va .. end`.
    fn first_hole(&self, va: u64, end: u64) -> Option<u64> {
        let mut at = va;
        while at < end {
            match self.containing(at) {
                Some(m) => at = m.end(),
                None => return Some(at),
            }
        }
        None
    }

    /// Makes `at` the start of a mapping if a mapping spans it (S1 holds after; S2 may
    /// not, until [`merge`](Self::merge)).
    fn split_at(&mut self, at: u64) {
        let Some(m) = self.containing(at).copied() else {
            return;
        };
        if m.va == at {
            return;
        }
        let head = at - m.va;
        self.mappings.insert(m.va, Mapping { len: head, ..m });
        self.mappings.insert(
            at,
            Mapping {
                va: at,
                len: m.len - head,
                pa: m.pa + head,
                prot: m.prot,
            },
        );
    }

    /// Restores S2 for the mappings from the one ending at `lo` (or the first at or after
    /// `lo`) to the one starting at `hi`: every pair that continues each other becomes
    /// one mapping. S2 holds outside that stretch already.
    fn merge(&mut self, lo: u64, hi: u64) {
        let before = lo
            .checked_sub(1)
            .and_then(|last| self.containing(last))
            .map(|m| m.va);
        let Some(mut cur) = before.or_else(|| self.mappings.range(lo..).next().map(|(&k, _)| k))
        else {
            return;
        };
        while let Some((&next_va, &next)) = self.mappings.range(cur + 1..).next() {
            if next_va > hi {
                break;
            }
            let m = self.mappings.get_mut(&cur).expect("the current mapping");
            if m.continued_by(&next) {
                m.len += next.len;
                self.mappings.remove(&next_va);
            } else {
                cur = next_va;
            }
        }
    }

    /// `map`'s work (see the method's docs in [`SpaceWrites`](crate::SpaceWrites)).
    fn map_range(&mut self, va: u64, len: u64, prot: Prot) -> Result<u64, MapError> {
        let end = Self::range_end(va, len)?;
        if let Some(taken) = self.first_mapped(va, end) {
            return Err(MapError::Overlaps { va: taken });
        }
        let pa = self.next_pa;
        self.next_pa = match pa.checked_add(len) {
            Some(next) if next <= PA_END => next,
            _ => return Err(MapError::OutOfMemory),
        };
        self.mappings.insert(va, Mapping { va, len, pa, prot });
        self.mapped += len;
        self.merge(va, end);
        Ok(pa)
    }

    /// `unmap`'s work.
    fn unmap_range(&mut self, va: u64, len: u64) -> Result<u64, MapError> {
        let end = Self::range_end(va, len)?;
        self.split_at(va);
        self.split_at(end);
        let mut removed = 0;
        while let Some((&start, m)) = self.mappings.range(va..end).next() {
            removed += m.len;
            self.mappings.remove(&start);
        }
        self.mapped -= removed;
        // Removing a stretch leaves no two new neighbours: S2 holds as before.
        Ok(removed)
    }

    /// `protect`'s work.
    fn protect_range(&mut self, va: u64, len: u64, prot: Prot) -> Result<(), MapError> {
        let end = Self::range_end(va, len)?;
        if let Some(hole) = self.first_hole(va, end) {
            return Err(MapError::NotMapped { va: hole });
        }
        self.split_at(va);
        self.split_at(end);
        for m in self.mappings.range_mut(va..end).map(|(_, m)| m) {
            m.prot = prot;
        }
        self.merge(va, end);
        Ok(())
    }
}

ldnr::operations! {
    /// The writes of an [`AddressSpace`] as methods of `NodeReplicated<AddressSpace>`:
    /// each takes the calling thread's token first, goes through the shared log and
    /// returns what the same method of [`AddressSpace`] returns.
    ///
    /// # Examples
    ///
    /// ```
    /// use ldnr_vspace::{AddressSpace, Prot, SpaceReads, SpaceWrites, PAGE_SIZE};
    ///
    /// let space = AddressSpace::new().replicated().build()?;
    /// let tkn = space.thread_token()?;
    /// let pa = space.map(tkn, 0, PAGE_SIZE, Prot::READ).unwrap();
    /// assert_eq!(space.translate(tkn, 42), Some((pa + 42, Prot::READ)));
    /// space.protect(tkn, 0, PAGE_SIZE, Prot::NONE).unwrap();
    /// assert_eq!(space.unmap(tkn, 0, PAGE_SIZE), Ok(PAGE_SIZE));
    /// assert_eq!(space.translate(tkn, 42), None);
    /// # Ok::<(), ldnr::Error>(())
    /// ```
    pub trait SpaceWrites for AddressSpace, #[derive(Debug, PartialEq, Eq)] pub enum SpaceWrite {
        /// Maps `len` bytes from virtual address `va` to fresh physical memory with
        /// protection `prot`; returns the physical address `va` now translates to.
        ///
        /// `len` and `va` are page multiples. The new mapping merges with neighbours
        /// that continue it (invariant S2).
        ///
        /// # Errors
        ///
        /// [`MapError::Unaligned`], [`MapError::Empty`], [`MapError::OutOfRange`] for a
        /// bad range; [`MapError::Overlaps`] if a page of the range is mapped
        /// (nothing is replaced); [`MapError::OutOfMemory`]. Nothing changes on error.
        ///
        /// # Examples
        ///
        /// ```
        /// use ldnr_vspace::{AddressSpace, Prot, PAGE_SIZE};
        /// let mut space = AddressSpace::new();
        /// let a = space.map(0, PAGE_SIZE, Prot::READ)?;
        /// let b = space.map(8 * PAGE_SIZE, PAGE_SIZE, Prot::READ)?;
        /// assert_eq!(b, a + PAGE_SIZE, "fresh physical pages, in order");
        /// # Ok::<(), ldnr_vspace::MapError>(())
        /// ```
        pub fn map(&mut self, va: u64, len: u64, prot: Prot) -> Result<u64, MapError> {
            self.map_range(va, len, prot)
        }
        /// Unmaps every mapped page of `va .. va + len` (pages not mapped are skipped, as
        /// `munmap` does); returns how many bytes were mapped there. Mappings that
        /// straddle the range's ends keep their outer parts.
        ///
        /// # Errors
        ///
        /// [`MapError::Unaligned`], [`MapError::Empty`], [`MapError::OutOfRange`] for a
        /// bad range. Nothing changes on error.
        ///
        /// # Examples
        ///
        /// ```
        /// use ldnr_vspace::{AddressSpace, Prot, PAGE_SIZE};
        /// let mut space = AddressSpace::new();
        /// space.map(0, 4 * PAGE_SIZE, Prot::READ)?;
        /// assert_eq!(space.unmap(PAGE_SIZE, 8 * PAGE_SIZE)?, 3 * PAGE_SIZE);
        /// assert_eq!(space.unmap(PAGE_SIZE, PAGE_SIZE)?, 0);
        /// # Ok::<(), ldnr_vspace::MapError>(())
        /// ```
        pub fn unmap(&mut self, va: u64, len: u64) -> Result<u64, MapError> {
            self.unmap_range(va, len)
        }
        /// Sets the protection of every page of `va .. va + len`, which must all be
        /// mapped (as `mprotect` requires). Mappings are split at the range's ends and
        /// merged again where neighbours now match (invariant S2).
        ///
        /// # Errors
        ///
        /// [`MapError::Unaligned`], [`MapError::Empty`], [`MapError::OutOfRange`] for a
        /// bad range; [`MapError::NotMapped`] if a page of the range is not mapped.
        /// Nothing changes on error.
        ///
        /// # Examples
        ///
        /// ```
        /// use ldnr_vspace::{AddressSpace, MapError, Prot, PAGE_SIZE};
        /// let mut space = AddressSpace::new();
        /// space.map(0, 2 * PAGE_SIZE, Prot::READ)?;
        /// assert_eq!(
        ///     space.protect(PAGE_SIZE, 2 * PAGE_SIZE, Prot::WRITE),
        ///     Err(MapError::NotMapped { va: 2 * PAGE_SIZE })
        /// );
        /// space.protect(PAGE_SIZE, PAGE_SIZE, Prot::WRITE)?;
        /// assert_eq!(space.len(), 2);
        /// space.protect(PAGE_SIZE, PAGE_SIZE, Prot::READ)?;
        /// assert_eq!(space.len(), 1);
        /// # Ok::<(), MapError>(())
        /// ```
        pub fn protect(&mut self, va: u64, len: u64, prot: Prot) -> Result<(), MapError> {
            self.protect_range(va, len, prot)
        }
    }
}
