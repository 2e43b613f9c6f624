//! The paired-rounds harness of this benchmark (DESIGN.md §8; the main file's docs say
//! how it measures): options, timed phases, rounds in rotating order, medians and
//! interquartile ranges, ratios and verdicts.

use std::hint::black_box;
use std::time::{Duration, Instant};

use ldnr::{NodeReplicated, ThreadToken};
use ldnr_hashmap::{MapRead, MapWrite, U64Map};
use ldnr_testkit::rng::Rng;

/// Keys in the map.
pub(crate) const KEYS: u64 = 1 << 16;
/// Pre-generated keys (a power of two).
pub(crate) const KEY_STREAM: usize = 1 << 16;
/// Operations between two looks at the clock.
pub(crate) const CHUNK: usize = 256;
/// A phase is timed in slices of about this long; its cost is the median slice's, so
/// that a slice in which the thread was preempted (this VM has two cores and neighbours)
/// does not count.
pub(crate) const SLICE: Duration = Duration::from_millis(1);

pub(crate) struct Opts {
    pub(crate) test: bool,
    pub(crate) rounds: usize,
    pub(crate) phase: Duration,
    pub(crate) sections: Vec<String>,
}

impl Opts {
    pub(crate) fn parse() -> Self {
        let args: Vec<String> = std::env::args().skip(1).collect();
        let test = args.iter().any(|a| a == "--test");
        let mut rounds = if test { 2 } else { 100 };
        let mut phase_ms = if test { 1 } else { 5 };
        let mut sections = Vec::new();
        let mut it = args.iter();
        while let Some(a) = it.next() {
            match a.as_str() {
                "--rounds" => rounds = it.next().and_then(|v| v.parse().ok()).expect("--rounds N"),
                "--phase-ms" => {
                    phase_ms = it
                        .next()
                        .and_then(|v| v.parse().ok())
                        .expect("--phase-ms N")
                }
                s if s.starts_with("--") => {} // --bench, --test
                s => sections.push(s.to_owned()),
            }
        }
        Self {
            test,
            rounds: rounds.max(1),
            phase: Duration::from_millis(phase_ms),
            sections,
        }
    }

    pub(crate) fn wants(&self, section: &str) -> bool {
        self.sections.is_empty() || self.sections.iter().any(|s| s == section)
    }

    /// Registered-thread counts of the write-cost sections.
    pub(crate) fn counts(&self) -> &'static [usize] {
        if self.test {
            &[16, 64]
        } else {
            &[16, 256, 1024, 4096]
        }
    }

    pub(crate) fn short_lived(&self) -> usize {
        if self.test {
            200
        } else {
            20_000
        }
    }
}

pub(crate) fn key_stream(seed: u64) -> Vec<u64> {
    let mut rng = Rng::new(seed);
    (0..KEY_STREAM).map(|_| rng.below(KEYS)).collect()
}

/// ns per call of `op`: the median over slices of whole chunks lasting at least [`SLICE`],
/// run until `phase` passed.
pub(crate) fn timed(phase: Duration, mut op: impl FnMut()) -> f64 {
    let start = Instant::now();
    let mut slices = Vec::new();
    while slices.is_empty() || start.elapsed() < phase {
        let t = Instant::now();
        let mut n = 0u64;
        loop {
            for _ in 0..CHUNK {
                op();
            }
            n += CHUNK as u64;
            let e = t.elapsed();
            if e >= SLICE {
                slices.push(e.as_nanos() as f64 / n as f64);
                break;
            }
        }
    }
    median(slices)
}

/// One variant of a paired section: runs one phase and returns ns per operation.
pub(crate) type Phase<'a> = Box<dyn FnMut(Duration) -> f64 + 'a>;

pub(crate) struct Variant<'a> {
    pub(crate) name: String,
    pub(crate) run: Phase<'a>,
}

pub(crate) fn variant<'a>(
    name: impl Into<String>,
    run: impl FnMut(Duration) -> f64 + 'a,
) -> Variant<'a> {
    Variant {
        name: name.into(),
        run: Box::new(run),
    }
}

/// Timed writes of `nr` with `tkn`.
pub(crate) fn writes<'a>(
    nr: &'a NodeReplicated<U64Map>,
    tkn: ThreadToken,
    keys: &'a [u64],
) -> Phase<'a> {
    let (mut i, mut v) = (0usize, 0u64);
    Box::new(move |phase| {
        timed(phase, || {
            let k = keys[i & (KEY_STREAM - 1)];
            i = i.wrapping_add(1);
            v = v.wrapping_add(1);
            black_box(nr.execute_mut(MapWrite::Insert(black_box(k), v), tkn));
        })
    })
}

/// Timed reads of `nr` with `tkn`.
pub(crate) fn reads<'a>(
    nr: &'a NodeReplicated<U64Map>,
    tkn: ThreadToken,
    keys: &'a [u64],
) -> Phase<'a> {
    let mut i = 0usize;
    Box::new(move |phase| {
        timed(phase, || {
            let k = keys[i & (KEY_STREAM - 1)];
            i = i.wrapping_add(1);
            black_box(nr.execute(MapRead::Get(black_box(k)), tkn));
        })
    })
}

pub(crate) fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    let n = v.len();
    if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    }
}

/// A value over the rounds: its median and interquartile range.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Spread {
    pub(crate) median: f64,
    pub(crate) q1: f64,
    pub(crate) q3: f64,
}

pub(crate) fn spread(mut v: Vec<f64>) -> Spread {
    v.sort_by(f64::total_cmp);
    let at = |q: f64| v[((v.len() - 1) as f64 * q).round() as usize];
    Spread {
        median: median(v.clone()),
        q1: at(0.25),
        q3: at(0.75),
    }
}

/// What a paired section measured: ns per operation, per variant and round.
pub(crate) struct Measured {
    pub(crate) ns: Vec<Vec<f64>>,
}

impl Measured {
    /// Variant `i`'s ns per operation over the rounds.
    pub(crate) fn ns(&self, i: usize) -> Spread {
        spread(self.ns[i].clone())
    }

    /// Per round, the mean of variants `num` over the mean of variants `den` (several
    /// instances of one configuration pool their layouts); over the rounds.
    pub(crate) fn ratio(&self, num: &[usize], den: &[usize]) -> Spread {
        let mean = |of: &[usize], r: usize| {
            of.iter().map(|&i| self.ns[i][r]).sum::<f64>() / of.len() as f64
        };
        spread(
            (0..self.ns[0].len())
                .map(|r| mean(num, r) / mean(den, r))
                .collect(),
        )
    }
}

/// Runs `variants` in paired rounds; prints each one's median ns and its per-round ratio
/// to the variants `base` (pooled), with interquartile ranges.
pub(crate) fn paired(
    opts: &Opts,
    title: &str,
    variants: &mut [Variant<'_>],
    base: &[usize],
) -> Measured {
    let k = variants.len();
    let mut ns: Vec<Vec<f64>> = vec![Vec::new(); k];
    for r in 0..=opts.rounds {
        let mut order: Vec<usize> = (0..k).collect();
        order.rotate_left(r % k);
        if (r / k) % 2 == 1 {
            order.reverse();
        }
        let mut this = vec![0.0; k];
        for &i in &order {
            this[i] = (variants[i].run)(opts.phase);
        }
        if r > 0 {
            for (i, x) in this.into_iter().enumerate() {
                ns[i].push(x);
            }
        }
    }
    let m = Measured { ns };
    println!(
        "\n== {title}\n   ({} rounds of {} ms phases; medians, [interquartile range]; ratio: per round, to {})",
        opts.rounds,
        opts.phase.as_millis(),
        base.iter().map(|&i| variants[i].name.as_str()).collect::<Vec<_>>().join(" + ")
    );
    println!(
        "{:<56} {:>9} {:>19} {:>8} {:>17}",
        "variant", "ns/op", "", "ratio", ""
    );
    for (i, v) in variants.iter().enumerate() {
        let (n, r) = (m.ns(i), m.ratio(&[i], base));
        println!(
            "{:<56} {:>9.1} [{:>7.1} – {:>7.1}] {:>7.3}x [{:.3} – {:.3}]",
            v.name, n.median, n.q1, n.q3, r.median, r.q1, r.q3
        );
    }
    m
}

/// A summary line: `ratio` against `target` (none: reported only).
pub(crate) fn verdict(what: &str, ratio: Spread, ns: Spread, target: Option<f64>) -> String {
    let met = match target {
        None => "(no target)".to_owned(),
        Some(t) if ratio.median <= t => format!("MET (≤ {t})"),
        Some(t) => format!("MISSED (> {t})"),
    };
    format!(
        "{what:<58} {:>7.3}x [{:.3} – {:.3}] {:>8.1} ns  {met}",
        ratio.median, ratio.q1, ratio.q3, ns.median
    )
}
