//! Running part of a test in a child process: a seccomp filter or a cgroup must not
//! reach the test harness's other threads. The test binary re-runs itself with only the
//! one test and [`CHILD`] set; that test sees the variable and runs its child part.

#![allow(dead_code)] // each test file uses some of these

use std::io::Read;
use std::path::PathBuf;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use ldnr::Dispatch;

/// A counter the tests replicate: writes add, reads return the total.
#[derive(Clone, Default)]
pub(crate) struct Counter(pub(crate) u64);

impl Dispatch for Counter {
    type ReadOperation = ();
    type WriteOperation = u64;
    type Response = u64;
    fn dispatch(&self, _: ()) -> u64 {
        self.0
    }
    fn dispatch_mut(&mut self, by: u64) -> u64 {
        self.0 += by;
        self.0
    }
}

/// Set (to the part's name) in a re-run test binary.
pub(crate) const CHILD: &str = "LDNR_AFFINITY_TEST_CHILD";

/// How long a child may take before it is killed and the test fails.
pub(crate) const LIMIT: Duration = Duration::from_secs(120);

/// Whether this process is a child running `part`.
pub(crate) fn is_child(part: &str) -> bool {
    std::env::var(CHILD).is_ok_and(|p| p == part)
}

/// Starts this test binary again, running only `test` with [`CHILD`] = `part` and the
/// extra variables `env`; stdin, stdout and stderr piped.
pub(crate) fn spawn_child(test: &str, part: &str, env: &[(&str, String)]) -> Child {
    let mut cmd = Command::new(std::env::current_exe().expect("the test binary's path"));
    cmd.args([test, "--exact", "--nocapture", "--test-threads=1"])
        .env(CHILD, part)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd.spawn().expect("re-run the test binary")
}

/// Waits for `child` (killing it and failing the test after [`LIMIT`]) and returns its
/// status and its stdout and stderr together.
pub(crate) fn finish(mut child: Child) -> (ExitStatus, String) {
    drop(child.stdin.take());
    // Read while it runs, so a full pipe cannot stall it.
    let read = |mut pipe: Box<dyn Read + Send>| {
        std::thread::spawn(move || {
            let mut text = String::new();
            let _ = pipe.read_to_string(&mut text);
            text
        })
    };
    let out = read(Box::new(child.stdout.take().expect("piped")));
    let err = read(Box::new(child.stderr.take().expect("piped")));
    let deadline = Instant::now() + LIMIT;
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait for the child") {
            break status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("the child did not finish in {LIMIT:?}");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let text = out.join().expect("stdout reader") + &err.join().expect("stderr reader");
    (status, text)
}

/// What follows `marker` on the first line that has it (the harness may print the
/// test's name before it on the same line).
pub(crate) fn after<'a>(output: &'a str, marker: &str) -> Option<&'a str> {
    output
        .lines()
        .find_map(|l| l.split_once(marker).map(|(_, rest)| rest.trim()))
}

/// The reason a child printed for skipping (`SKIP: reason`), if it did.
pub(crate) fn skipped(output: &str) -> Option<&str> {
    after(output, "SKIP: ")
}

/// A copy of a sysfs node directory in `tests/fixtures`.
pub(crate) fn fixture(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name)
}
