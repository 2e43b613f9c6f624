//! The closed-loop workload every harness runs: operations on uniform random keys of a
//! pre-filled map, a write with a given probability.

use ldnr_testkit::rng::Rng;

/// One operation of the workload: a `put(key, value)` if `write`, else a `get(key)`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Op {
    /// Whether this is a write.
    pub write: bool,
    /// The key, uniform below the run's key count.
    pub key: u64,
    /// The value a write stores.
    pub value: u64,
}

/// A batch of operations, generated on the fly from a worker's generator.
#[derive(Debug)]
pub(crate) struct Ops<'a> {
    rng: &'a mut Rng,
    left: u64,
    keys: u64,
    write_pct: u64,
}

impl<'a> Ops<'a> {
    /// `count` operations on keys below `keys` (at least one), each a write with
    /// probability `write_pct`%, drawn from `rng`.
    #[inline]
    pub(crate) fn new(rng: &'a mut Rng, count: u64, keys: u64, write_pct: u32) -> Self {
        Ops {
            rng,
            left: count,
            keys: keys.max(1),
            write_pct: u64::from(write_pct),
        }
    }
}

impl Iterator for Ops<'_> {
    type Item = Op;

    #[inline]
    fn next(&mut self) -> Option<Op> {
        if self.left == 0 {
            return None;
        }
        self.left -= 1;
        let r = self.rng.next_u64();
        // The key from the high bits (multiply-shift: no division), the coin from the low.
        let key = ((u128::from(r) * u128::from(self.keys)) >> 64) as u64;
        let write = ((r & 0xffff) * 100) >> 16 < self.write_pct;
        Some(Op {
            write,
            key,
            value: r,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ops_follow_keys_and_write_ratio() {
        let mut rng = Rng::new(3);
        let ops: Vec<Op> = Ops::new(&mut rng, 100_000, 1000, 10).collect();
        assert_eq!(ops.len(), 100_000);
        assert!(ops.iter().all(|o| o.key < 1000));
        let writes = ops.iter().filter(|o| o.write).count();
        assert!((9_000..11_000).contains(&writes), "{writes} writes");
        let mut rng = Rng::new(3);
        assert_eq!(
            Ops::new(&mut rng, 10_000, 10, 0)
                .filter(|o| o.write)
                .count(),
            0
        );
        let mut rng = Rng::new(3);
        let all = Ops::new(&mut rng, 10_000, 10, 100);
        assert_eq!(all.filter(|o| o.write).count(), 10_000);
    }
}
