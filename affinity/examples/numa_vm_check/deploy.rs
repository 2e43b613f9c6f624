//! Deployment checks on a real multi-node kernel (issue 18): a CPU-less memory node, an
//! inherited `MPOL_BIND` (what `numactl --membind` leaves behind), and a cpuset cgroup
//! holding one node's CPUs (a pod pinned to one socket), run in a child process.
//!
//! Output: `MEMONLY ...`, `INHERIT ...` and `CPUSET ...` lines, each ending in `ok=1` or
//! `ok=0`; every `ok=0` is also a failure.

use std::fs;
use std::io::{BufRead, Read, Write};
use std::process::{Command, ExitCode, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use ldnr::{AffinityError, AffinityGuard, AffinityManager, Error, NodeId, NodeReplicated};
use ldnr_affinity::placement::{page_size, PageCensus};
use ldnr_affinity::{
    allowed_cpus, allowed_memory_nodes, parse_cpulist, Binding, LinuxAffinity, MemoryPolicy,
    PolicyMode, SimulatedAffinity, Topology, SYSFS_NODE_DIR,
};

use super::{Read as StoreRead, Store};

/// A fresh anonymous mapping, touched page by page on the calling thread: where its
/// pages are is where the thread's policy (or cpuset) put them.
struct Fresh {
    addr: usize,
    len: usize,
}

impl Fresh {
    fn touched(len: usize) -> Self {
        // SAFETY: a new anonymous mapping at an address the kernel picks; nothing else
        // refers to that memory.
        let addr = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
                -1,
                0,
            )
        };
        assert_ne!(addr, libc::MAP_FAILED, "mmap");
        let addr = addr as usize;
        for page in (0..len).step_by(page_size()) {
            // SAFETY: inside the live, writable mapping made above.
            unsafe { ((addr + page) as *mut u8).write_volatile(1) };
        }
        Self { addr, len }
    }

    fn census(&self) -> Result<PageCensus, AffinityError> {
        let pages: Vec<usize> = (0..self.len)
            .step_by(page_size())
            .map(|o| self.addr + o)
            .collect();
        PageCensus::of_pages(&pages)
    }
}

impl Drop for Fresh {
    fn drop(&mut self) {
        // SAFETY: unmaps exactly the mapping `touched` made; nothing refers into it.
        unsafe { libc::munmap(self.addr as *mut libc::c_void, self.len) };
    }
}

/// Memory-only nodes as sysfs lists them, read here without `Topology`: an online node
/// in `has_memory` whose `cpulist` is empty.
fn memory_only_in_sysfs() -> Vec<NodeId> {
    let read = |f: &str| fs::read_to_string(format!("{SYSFS_NODE_DIR}/{f}")).unwrap_or_default();
    let online = parse_cpulist(&read("online")).unwrap_or_default();
    let memory = parse_cpulist(&read("has_memory")).unwrap_or_default();
    online
        .into_iter()
        .filter(|n| memory.contains(n) && read(&format!("node{n}/cpulist")).trim().is_empty())
        .map(NodeId)
        .collect()
}

/// A CPU-less memory node: reported apart, never offered for replicas, never a thread's
/// node (also under `SimulatedAffinity` of the same topology), refused by `pin_to_node`
/// and `add_replica`, and still reachable on request (a guard puts fresh pages there).
pub(crate) fn memory_only(linux: &Arc<LinuxAffinity>, failures: &mut Vec<String>) {
    let expect = memory_only_in_sysfs();
    let reported = linux.memory_only_nodes();
    let mut problems = Vec::new();
    if reported != expect {
        problems.push(format!("reported {reported:?}, sysfs says {expect:?}"));
    }
    let sim = SimulatedAffinity::from_topology(linux.topology().clone());
    let threads = 3 * linux.topology().thread_nodes().len();
    let handed: Vec<NodeId> = (0..threads)
        .map(|_| std::thread::scope(|s| s.spawn(|| sim.current_node()).join().unwrap()))
        .collect();
    let nr = NodeReplicated::builder(Store::Hash(Default::default()))
        .replicas(&linux.nodes())
        .affinity(linux.clone())
        .build();
    for &m in &expect {
        let mut line = format!("MEMONLY node={}", m.0);
        if linux.nodes().contains(&m) {
            problems.push(format!("{m} offered for replicas"));
        }
        if sim.nodes().contains(&m) || handed.contains(&m) {
            problems.push(format!("{m} handed to a simulated thread"));
        }
        match linux.pin_to_node(m) {
            Err(AffinityError::NoUsableCpus(n)) if n == m => line += " pin=refused",
            other => problems.push(format!("pin_to_node({m}): {other:?}")),
        }
        match nr.as_ref().map(|nr| nr.add_replica(m)) {
            Ok(Err(Error::UnknownNode(n))) if n == m => line += " add_replica=refused",
            other => problems.push(format!(
                "add_replica({m}): {:?}",
                other.map(|r| r.map(|_| ()))
            )),
        }
        // On request, memory does go there.
        let placed = {
            let _on = AffinityGuard::new(&**linux, m);
            Fresh::touched(8 << 20).census()
        };
        match placed {
            Ok(c) => {
                line += &format!(" guard_pages={}/{}", c.on(m), c.pages());
                if c.share_on(m) < 0.99 {
                    problems.push(format!("a guard for {m} placed {c}"));
                }
            }
            Err(e) => problems.push(format!("page query: {e}")),
        }
        println!(
            "{line} threads_on_it=0/{threads} ok={}",
            u8::from(problems.is_empty())
        );
    }
    if expect.is_empty() {
        println!("MEMONLY none in this guest");
    }
    if !problems.is_empty() {
        println!(
            "MEMONLY ok=0 problems={}",
            problems.join(";").replace(' ', "_")
        );
        failures.push(format!("memory-only nodes: {}", problems.join("; ")));
    }
}

/// `numactl --membind=<first node>`: a manager made by a thread with that policy offers
/// only that node, and binds when it steers.
pub(crate) fn inherited(linux: &LinuxAffinity, failures: &mut Vec<String>) {
    let nodes = linux.nodes();
    if nodes.len() < 2 {
        return;
    }
    let first = nodes[0];
    let (offered, binding, during) = std::thread::scope(|s| {
        s.spawn(|| {
            MemoryPolicy::new(PolicyMode::Bind, 0, &[first])
                .apply()
                .expect("bind to the first node");
            let bound = LinuxAffinity::new();
            let during = {
                let _g = AffinityGuard::new(&bound, first).expect("steer under the bind");
                MemoryPolicy::current().ok()
            };
            let after = MemoryPolicy::current().ok();
            assert_eq!(
                after,
                Some(MemoryPolicy::new(PolicyMode::Bind, 0, &[first])),
                "the inherited policy is restored"
            );
            MemoryPolicy::default_policy().apply().unwrap();
            (bound.nodes(), bound.binding_mode(), during)
        })
        .join()
        .expect("inherit thread")
    });
    let ok = offered == [first]
        && binding == Binding::Bind
        && during
            .as_ref()
            .is_some_and(|p| p.mode() == PolicyMode::Bind && p.nodes() == [first]);
    println!(
        "INHERIT policy=bind:{} nodes={offered:?} binding={binding:?} ok={}",
        first.0,
        u8::from(ok)
    );
    if !ok {
        failures.push(format!(
            "inherited MPOL_BIND: nodes {offered:?}, binding {binding:?}, steering {during:?}"
        ));
    }
}

/// A cpuset cgroup of the last node's CPUs, and memory on the last node and the
/// memory-only ones: a child process moved into it checks what `LinuxAffinity::new`
/// makes of it (`--cpuset-child`).
pub(crate) fn cpuset(linux: &LinuxAffinity, failures: &mut Vec<String>) {
    let nodes = linux.nodes();
    if nodes.len() < 2 {
        return;
    }
    let last = *nodes.last().expect("two nodes");
    let mut mems = vec![last];
    mems.extend(linux.memory_only_nodes());
    let list = |v: Vec<usize>| v.iter().map(usize::to_string).collect::<Vec<_>>().join(",");
    let cpus = list(linux.topology().cpus_of(last).to_vec());
    let mems_list = list(mems.iter().map(|n| n.0).collect());
    match run_in_cpuset(&cpus, &mems_list, last, &mems[1..]) {
        Ok(lines) => {
            for line in &lines {
                println!("{line}");
            }
            if !lines
                .iter()
                .any(|l| l.starts_with("CPUSET ") && l.ends_with("ok=1"))
            {
                failures.push(format!("cpuset: {}", lines.join(" / ")));
            }
        }
        Err(e) => {
            println!("CPUSET ok=0 setup={}", e.replace(' ', "_"));
            failures.push(format!("cpuset: {e}"));
        }
    }
}

fn run_in_cpuset(
    cpus: &str,
    mems: &str,
    node: NodeId,
    memory_only: &[NodeId],
) -> Result<Vec<String>, String> {
    const ROOT: &str = "/sys/fs/cgroup";
    if !std::path::Path::new(&format!("{ROOT}/cgroup.controllers")).exists() {
        let (src, target, fstype) = (c"none", c"/sys/fs/cgroup", c"cgroup2");
        // SAFETY: three NUL-terminated strings that outlive the call, no data argument.
        let r = unsafe {
            libc::mount(
                src.as_ptr(),
                target.as_ptr(),
                fstype.as_ptr(),
                0,
                std::ptr::null(),
            )
        };
        if r != 0 {
            return Err(format!(
                "mount cgroup2: {}",
                std::io::Error::last_os_error()
            ));
        }
    }
    let write = |file: &str, value: &str| {
        fs::write(format!("{ROOT}/{file}"), value).map_err(|e| format!("{file} = {value}: {e}"))
    };
    write("cgroup.subtree_control", "+cpuset")?;
    let group = "ldnr-pod";
    let _ = fs::create_dir(format!("{ROOT}/{group}"));
    write(&format!("{group}/cpuset.cpus"), cpus)?;
    write(&format!("{group}/cpuset.mems"), mems)?;
    let only: Vec<String> = memory_only.iter().map(|n| n.0.to_string()).collect();
    let mut child = Command::new(std::env::current_exe().map_err(|e| e.to_string())?)
        .args(["--cpuset-child", &node.0.to_string(), &only.join(",")])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .map_err(|e| format!("spawn: {e}"))?;
    let moved = write(&format!("{group}/cgroup.procs"), &child.id().to_string());
    let mut stdin = child.stdin.take().expect("piped");
    if moved.is_ok() {
        let _ = stdin.write_all(b"go\n");
    }
    drop(stdin);
    let mut out = String::new();
    let _ = child.stdout.take().expect("piped").read_to_string(&mut out);
    let deadline = Instant::now() + Duration::from_secs(120);
    let status = loop {
        if let Some(status) = child.try_wait().map_err(|e| e.to_string())? {
            break status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            return Err("the child did not finish in 120 s".into());
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let _ = fs::remove_dir(format!("{ROOT}/{group}"));
    moved?;
    let mut lines: Vec<String> = out.lines().map(str::to_owned).collect();
    if !status.success() {
        lines.push(format!("CPUSET child exit {status} ok=0"));
    }
    Ok(lines)
}

/// The child's side: wait to be moved, then check. Prints one `CPUSET ... ok=` line.
pub(crate) fn cpuset_child(node: &str, memory_only: &str) -> ExitCode {
    let mut go = String::new();
    let _ = std::io::stdin().lock().read_line(&mut go);
    if go.trim() != "go" {
        println!("CPUSET child was not moved into the cpuset ok=0");
        return ExitCode::FAILURE;
    }
    let node = NodeId(node.parse().expect("node"));
    let memory_only: Vec<NodeId> = parse_cpulist(memory_only)
        .expect("memory-only list")
        .into_iter()
        .map(NodeId)
        .collect();
    let linux = Arc::new(LinuxAffinity::new());
    let mut problems = Vec::new();
    let mut line = format!(
        "CPUSET node={} cpus={:?} mems={:?} nodes={:?} memory_only={:?}",
        node.0,
        allowed_cpus().unwrap_or_default(),
        allowed_memory_nodes().unwrap_or_default(),
        linux.nodes(),
        linux.memory_only_nodes()
    );
    if linux.nodes() != [node] {
        problems.push("nodes");
    }
    if linux.memory_only_nodes() != memory_only {
        problems.push("memory_only");
    }
    if linux.degraded().is_some() {
        problems.push("degraded");
    }
    // The README's one replica per node, and add_replica: these failed with EINVAL when
    // nodes() listed nodes outside the cpuset.
    match NodeReplicated::builder(Store::Hash((0..1000).map(|k| (k, k)).collect()))
        .replicas(&linux.nodes())
        .affinity(linux.clone())
        .build()
    {
        Ok(nr) => {
            line += " build=ok";
            match nr.add_replica(node) {
                Ok(_) => line += " add_replica=ok",
                Err(e) => {
                    line += &format!(" add_replica={}", e.to_string().replace(' ', "_"));
                    problems.push("add_replica");
                }
            }
            let tkn = nr.register().expect("register");
            let super::Response::Value(len) = nr.execute(StoreRead::Len, tkn) else {
                unreachable!()
            };
            if len != Some(1000) {
                problems.push("len");
            }
        }
        Err(e) => {
            line += &format!(" build={}", e.to_string().replace(' ', "_"));
            problems.push("build");
        }
    }
    // The machine's whole topology, not cut to the cpuset, with a replica on a node
    // outside it (what the reporter did): the round trip finds the node refused,
    // so the manager runs as one node and `build` still works.
    if let Ok(machine) = Topology::from_sysfs(SYSFS_NODE_DIR) {
        let whole = Arc::new(LinuxAffinity::with_topology(machine));
        let r = NodeReplicated::builder(Store::Hash(Default::default()))
            .replicas(&whole.nodes())
            .affinity(whole.clone())
            .build();
        line += &format!(
            " whole_machine_nodes={:?} whole_machine_build={}",
            whole.nodes().iter().map(|n| n.0).collect::<Vec<_>>(),
            r.map_or_else(|e| e.to_string().replace(' ', "_"), |_| "ok".into())
        );
    }
    // Memory lands on the cpuset's node, and pins stay inside it.
    match Fresh::touched(8 << 20).census() {
        Ok(c) => {
            line += &format!(" pages_on_node={}/{}", c.on(node), c.pages());
            if c.share_on(node) < 0.99 {
                problems.push("pages");
            }
        }
        Err(_) => problems.push("census"),
    }
    let before = allowed_cpus().unwrap_or_default();
    if linux.pin_to_node(node).is_err() || allowed_cpus().unwrap_or_default() != before {
        problems.push("pin");
    }
    println!(
        "{line}{} ok={}",
        if problems.is_empty() {
            String::new()
        } else {
            format!(" problems={}", problems.join(","))
        },
        u8::from(problems.is_empty())
    );
    if problems.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}
