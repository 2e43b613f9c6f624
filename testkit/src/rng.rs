//! The one deterministic random generator of the tests, the soak and the benchmarks: a
//! xorshift64* generator, so a run is reproducible from its seed and nothing needs a
//! random-number crate.

/// A xorshift64* generator (Vigna, "An experimental exploration of Marsaglia's xorshift
/// generators, scrambled", 2016): a 64-bit xorshift state, output multiplied by an odd
/// constant. Deterministic per seed, and any seed is fine (0 included).
///
/// Cheap enough for a benchmark's inner loop: the multiply is off the state's dependency
/// chain, so it adds no latency from one value to the next.
///
/// # Examples
///
/// ```
/// use ldnr_testkit::rng::Rng;
///
/// let (mut a, mut b) = (Rng::new(7), Rng::new(7));
/// assert_eq!(a.next_u64(), b.next_u64());
/// assert!(a.below(10) < 10);
/// ```
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    /// A generator seeded with `seed`. The seed is spread over the state's bits (a
    /// multiply by the golden ratio), so neighbouring seeds give unrelated streams, and
    /// the state is never zero.
    pub fn new(seed: u64) -> Self {
        Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
    }

    /// The next pseudo-random value.
    #[inline]
    pub fn next_u64(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    /// A pseudo-random value in `0..n`.
    ///
    /// # Panics
    ///
    /// If `n` is 0.
    #[inline]
    pub fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n
    }
}
