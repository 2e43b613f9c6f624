//! What stops a single thread's hash-map writes from overlapping (issue 16): a bare
//! `HashMap<u64, u64>` insert loop with N extra instructions per insert, in paired
//! rounds (rotating order, reversed every other cycle; medians [IQR] of 60 rounds).
//! x86-64 only (inline assembly).
//!
//! Run: `AB_MAIN=store_queue.rs bench/ab/old-vs-new.sh [keys] [w|r] [nop|store]` (the
//! scratch crate's `ldnr` dependencies go unused). `nop`: 100–700 `nop`s per insert
//! (instructions that fill the reorder window only); `store`: 10–120 stores to one L1
//! line (entries of the store queue).
//!
//! Measured on the development VM (AMD EPYC, 2 cores), 64K / 1M keys, writes:
//! 450 `nop`s cost 18.5 -> 24.5 ns / 127.5 -> 136.6 ns, but 70 stores cost 15.8 -> 37.4 ns
//! / 71.9 -> 126.6 ns (40 stores: 21.3 / 72.2 ns). An LD-NR write executes ~114 stores
//! (callgrind with `--cache-sim=yes`, `Dw` of `Shared::write` per call; the insert
//! itself 6): the store queue, not the fences, is what keeps one insert's miss from
//! overlapping the next.

use std::collections::HashMap;
use std::hint::black_box;
use std::time::Instant;

static mut BUF: [u64; 16] = [0; 16];

macro_rules! nops {
    ($n:literal) => {
        // SAFETY: `nop`s only.
        unsafe {
            core::arch::asm!(
                concat!(".rept ", stringify!($n), "\nnop\n.endr"),
                options(nomem, nostack, preserves_flags)
            )
        }
    };
}

macro_rules! stores {
    ($n:literal) => {
        // SAFETY: stores into `BUF`, which nothing reads.
        unsafe {
            let p = core::ptr::addr_of_mut!(BUF) as *mut u64;
            core::arch::asm!(
                concat!(".rept ", stringify!($n), "\nmov qword ptr [{p}], {p}\n.endr"),
                p = in(reg) p,
                options(nostack, preserves_flags)
            )
        }
    };
}

const NAMES_NOP: [&str; 6] = ["bare", "+100 nop", "+200 nop", "+300 nop", "+450 nop", "+700 nop"];
const NAMES_STORE: [&str; 6] = ["bare", "+10 st", "+20 st", "+40 st", "+70 st", "+120 st"];

fn run(map: &mut HashMap<u64, u64>, keys: &[u64], f: u32, store: bool, write: bool) -> f64 {
    let iters = 50_000;
    let t = Instant::now();
    let mut v = 0u64;
    for i in 0..iters {
        let k = keys[i & (keys.len() - 1)];
        v = v.wrapping_add(1);
        if write {
            black_box(map.insert(black_box(k), v));
        } else {
            black_box(map.get(&black_box(k)));
        }
        match (store, f) {
            (_, 0) => {}
            (false, 1) => nops!(100),
            (false, 2) => nops!(200),
            (false, 3) => nops!(300),
            (false, 4) => nops!(450),
            (false, _) => nops!(700),
            (true, 1) => stores!(10),
            (true, 2) => stores!(20),
            (true, 3) => stores!(40),
            (true, 4) => stores!(70),
            (true, _) => stores!(120),
        }
    }
    t.elapsed().as_nanos() as f64 / iters as f64
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let n: u64 = args.first().map(|s| s.parse().unwrap()).unwrap_or(1 << 16);
    let write = args.get(1).map(|s| s != "r").unwrap_or(true);
    let store = args.get(2).map(|s| s == "store").unwrap_or(true);
    let mut x = 0x5eed_0016u64 | 1;
    let keys: Vec<u64> = (0..1 << 20)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x % n
        })
        .collect();
    let mut map: HashMap<u64, u64> = HashMap::with_capacity(n as usize);
    map.extend((0..n).map(|k| (k, k)));
    let names = if store { NAMES_STORE } else { NAMES_NOP };
    let mut ns = vec![Vec::new(); 6];
    for r in 0..60 {
        let mut order: Vec<u32> = (0..6).collect();
        order.rotate_left(r % 6);
        if (r / 6) % 2 == 1 {
            order.reverse();
        }
        for &f in &order {
            ns[f as usize].push(run(&mut map, &keys, f, store, write));
        }
    }
    println!("{n} keys, {}", if write { "insert" } else { "get" });
    for (i, v) in ns.iter_mut().enumerate() {
        v.sort_by(f64::total_cmp);
        println!("{:9} {:6.1} ns [{:.1}-{:.1}]", names[i], v[30], v[15], v[45]);
    }
}
