//! What the opt-in `LinuxAffinity::fix_mmap_threshold` costs a program that allocates
//! and frees large buffers, and that `LinuxAffinity::new` alone costs nothing: 1 MiB
//! allocated, touched and freed `ROUNDS` times (default 20,000), each setting in a fresh
//! process (malloc's settings are the whole process's).
//!
//! ```text
//! cargo run --release -p ldnr-affinity --example alloc_cost [-- ROUNDS]
//! ```
//!
//! Prints one line per setting: wall time and minor page faults of the loop.

use std::process::{Command, ExitCode};
use std::time::Instant;

use ldnr_affinity::LinuxAffinity;

// `ru_minflt` is a C `long`: 32 bits on 32-bit targets, where the conversion is needed.
#[allow(clippy::useless_conversion)]
fn minor_faults() -> i64 {
    #[cfg(target_os = "linux")]
    {
        // SAFETY: `getrusage` writes one `rusage` through the pointer, to a live local.
        let usage = unsafe {
            let mut usage = std::mem::zeroed::<libc::rusage>();
            libc::getrusage(libc::RUSAGE_SELF, &mut usage);
            usage
        };
        i64::from(usage.ru_minflt)
    }
    #[cfg(not(target_os = "linux"))]
    0
}

/// The loop, in this process, after making the manager `setting` asks for.
fn measure(setting: &str, rounds: u64) {
    let manager = match setting {
        "none" => None,
        "new" => Some(LinuxAffinity::new()),
        _ => Some(LinuxAffinity::new().fix_mmap_threshold()),
    };
    let (t, faults) = (Instant::now(), minor_faults());
    for i in 0..rounds {
        let block = vec![(i as u8) | 1; 1 << 20];
        std::hint::black_box(&block);
    }
    println!(
        "{:<42} {:>8.2} s {:>10} minor faults",
        match setting {
            "none" => "no manager",
            "new" => "LinuxAffinity::new()",
            _ => "LinuxAffinity::new().fix_mmap_threshold()",
        },
        t.elapsed().as_secs_f64(),
        minor_faults() - faults
    );
    drop(manager);
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().collect();
    if let (Some("--child"), Some(setting), Some(rounds)) = (
        args.get(1).map(String::as_str),
        args.get(2),
        args.get(3).and_then(|r| r.parse().ok()),
    ) {
        measure(setting, rounds);
        return ExitCode::SUCCESS;
    }
    let rounds: u64 = args.get(1).and_then(|r| r.parse().ok()).unwrap_or(20_000);
    println!("allocate, touch and free 1 MiB, {rounds} times:");
    for setting in ["none", "new", "fixed"] {
        let exe = std::env::current_exe().expect("own path");
        let status = Command::new(exe)
            .args(["--child", setting, &rounds.to_string()])
            .status()
            .expect("run a child");
        if !status.success() {
            return ExitCode::FAILURE;
        }
    }
    ExitCode::SUCCESS
}
