//! The paired-round harness the programs of this folder share (`old-vs-new.sh` copies it
//! next to the program it runs): each round runs every variant for one short phase, in an
//! order rotated every round and reversed every other cycle (DESIGN.md §8); a phase's cost
//! is the median of its ~1 ms slices' ns per operation; ratios are taken per round and
//! given as medians with [interquartile ranges].

use std::time::{Duration, Instant};

const CHUNK: usize = 256;
/// A phase is timed in slices of about this long; its cost is the median slice's, so
/// that a slice in which the thread was preempted (this VM has two cores and neighbours)
/// does not count.
const SLICE: Duration = Duration::from_millis(1);

/// One variant: runs for about the given time and returns its ns per operation.
pub type Phase<'a> = Box<dyn FnMut(Duration) -> f64 + 'a>;

/// The median slice's ns per call of `op`, over slices filling `phase`.
pub fn timed(phase: Duration, mut op: impl FnMut()) -> f64 {
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

/// `len` (a power of two) xorshift keys below `keys`, from `seed`.
pub fn key_stream(seed: u64, len: usize, keys: u64) -> Vec<u64> {
    assert!(len.is_power_of_two());
    let mut x = seed | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x % keys
        })
        .collect()
}

/// A phase calling `op(key, counter)` on the keys in order (wrapping around) with a
/// counter that grows by one per call.
pub fn stream<'a>(keys: &'a [u64], mut op: impl FnMut(u64, u64) + 'a) -> Phase<'a> {
    let mask = keys.len() - 1;
    let (mut i, mut v) = (0usize, 0u64);
    Box::new(move |phase| {
        timed(phase, || {
            let k = keys[i & mask];
            i = i.wrapping_add(1);
            v = v.wrapping_add(1);
            op(k, v);
        })
    })
}

/// The command line: `[sections] [--rounds N] [--phase-ms N]`.
pub struct Opts {
    pub rounds: usize,
    pub phase: Duration,
    pub sections: Vec<String>,
}

impl Opts {
    /// Parsed from the program's arguments (defaults: 40 rounds of 5 ms, every section).
    pub fn from_args() -> Self {
        let args: Vec<String> = std::env::args().skip(1).collect();
        let mut o = Opts {
            rounds: 40,
            phase: Duration::from_millis(5),
            sections: vec![],
        };
        let mut it = args.iter();
        while let Some(a) = it.next() {
            match a.as_str() {
                "--rounds" => o.rounds = it.next().unwrap().parse().unwrap(),
                "--phase-ms" => {
                    o.phase = Duration::from_millis(it.next().unwrap().parse().unwrap())
                }
                s => o.sections.push(s.into()),
            }
        }
        o
    }

    /// Whether section `s` runs (every section when none was named).
    pub fn wants(&self, s: &str) -> bool {
        self.sections.is_empty() || self.sections.iter().any(|x| x == s)
    }

    /// Runs `section(self, true)` if the `write` section is wanted, then
    /// `section(self, false)` if `read` is. (Not every program uses it.)
    #[allow(dead_code)]
    pub fn write_and_read(&self, mut section: impl FnMut(&Opts, bool)) {
        if self.wants("write") {
            section(self, true);
        }
        if self.wants("read") {
            section(self, false);
        }
    }
}

impl Opts {
    /// Prints a section's heading: `title`, then how many rounds of how long.
    pub fn heading(&self, title: &str) {
        println!(
            "\n== {title}; {} rounds x {} ms",
            self.rounds,
            self.phase.as_millis()
        );
    }
}

/// Prints a Markdown table's header row and the separator row under it.
pub fn table_header(columns: &[&str]) {
    println!("| {} |", columns.join(" | "));
    println!("|{}", "---|".repeat(columns.len()));
}

pub fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    let n = v.len();
    if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    }
}

/// The interquartile range.
pub fn iqr(v: &[f64]) -> (f64, f64) {
    let mut v = v.to_vec();
    v.sort_by(f64::total_cmp);
    let at = |q: f64| v[((v.len() - 1) as f64 * q).round() as usize];
    (at(0.25), at(0.75))
}

/// ns[variant][round], rotated order, one uncounted warm-up round.
pub fn paired(o: &Opts, vs: &mut [Phase<'_>]) -> Vec<Vec<f64>> {
    let k = vs.len();
    let mut ns = vec![Vec::new(); k];
    for r in 0..=o.rounds {
        let mut order: Vec<usize> = (0..k).collect();
        order.rotate_left(r % k);
        if (r / k) % 2 == 1 {
            order.reverse();
        }
        let mut this = vec![0.0; k];
        for &i in &order {
            this[i] = (vs[i])(o.phase);
        }
        if r > 0 {
            for i in 0..k {
                ns[i].push(this[i]);
            }
        }
    }
    ns
}

/// Per round, the mean of variants `a` over the mean of variants `b`: median [IQR].
pub fn pooled(ns: &[Vec<f64>], a: &[usize], b: &[usize]) -> String {
    let r: Vec<f64> = (0..ns[0].len())
        .map(|r| mean(ns, a, r) / mean(ns, b, r))
        .collect();
    let (lo, hi) = iqr(&r);
    format!("{:.3}x [{:.3}–{:.3}]", median(r), lo, hi)
}

/// Per round, the mean ns of variants `a`: median [IQR].
pub fn ns_of(ns: &[Vec<f64>], a: &[usize]) -> String {
    let v: Vec<f64> = (0..ns[0].len()).map(|r| mean(ns, a, r)).collect();
    let (lo, hi) = iqr(&v);
    format!("{:.1} [{:.1}–{:.1}]", median(v), lo, hi)
}

fn mean(ns: &[Vec<f64>], of: &[usize], r: usize) -> f64 {
    of.iter().map(|&i| ns[i][r]).sum::<f64>() / of.len() as f64
}

/// The two commits compared, as `old-vs-new.sh` recorded them.
pub fn commits() -> String {
    format!(
        "old = {}, new = {}",
        include_str!("../../old/COMMIT").trim(),
        include_str!("../../new/COMMIT").trim()
    )
}
