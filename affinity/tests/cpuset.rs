//! `LinuxAffinity` in a cpuset cgroup, as in a container or a Kubernetes pod pinned to
//! part of the machine: the cpuset gets one CPU (the last this process may use, so not
//! CPU 0) and the memory nodes of the parent, and a child process is moved into it.
//!
//! Needs root and a writable cpuset hierarchy (cgroup v1 `cpuset`, or v2 with the
//! `cpuset` controller); where there is none, the test prints why and passes. CI runs as
//! root. The multi-node VM test checks the memory side (`cpuset.mems` of one node).
#![cfg(target_os = "linux")]

mod common;

use std::fs;
use std::io::{BufRead, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use common::{after, finish, is_child, skipped, spawn_child, Counter};
use ldnr::{AffinityManager, NodeId, NodeReplicated};
use ldnr_affinity::{allowed_cpus, allowed_memory_nodes, LinuxAffinity, Topology};

const CPU: &str = "LDNR_CPUSET_CPU";

#[test]
fn a_cpuset_of_one_cpu() {
    if is_child("cpuset") {
        return child();
    }
    let cpus = allowed_cpus().expect("this process's CPUs");
    let cpu = *cpus.last().expect("at least one CPU");
    let group = match Group::create(cpu) {
        Ok(g) => g,
        Err(why) => {
            println!("skipped: no cpuset cgroup can be made here: {why}");
            return;
        }
    };
    let mut child = spawn_child("a_cpuset_of_one_cpu", "cpuset", &[(CPU, cpu.to_string())]);
    let moved = group.add(child.id());
    if moved.is_err() {
        let _ = child.kill();
    } else {
        // The child waits for this line before it looks at anything.
        let stdin = child.stdin.as_mut().expect("piped");
        stdin.write_all(b"go\n").expect("signal the child");
    }
    let (status, out) = finish(child);
    drop(group);
    if let Err(why) = moved {
        println!("skipped: the child cannot be moved into the cpuset: {why}");
        return;
    }
    if let Some(why) = skipped(&out) {
        println!("skipped: {why}");
        return;
    }
    assert!(status.success(), "child failed:\n{out}");
    assert!(out.contains("CHECKED"), "child did not check:\n{out}");
    println!("{}", after(&out, "cpuset child: ").unwrap_or_default());
}

fn child() {
    let mut line = String::new();
    std::io::stdin().lock().read_line(&mut line).expect("stdin");
    if line.trim() != "go" {
        println!("SKIP: the parent did not move this process");
        return;
    }
    let cpu: usize = std::env::var(CPU).unwrap().parse().unwrap();
    // The cpuset is in force.
    assert_eq!(allowed_cpus().unwrap(), [cpu]);

    // The one-node fallback (no sysfs) is built from the allowed CPUs.
    assert_eq!(Topology::single_node().cpus_of(NodeId(0)), [cpu]);

    let linux = Arc::new(LinuxAffinity::new());
    println!(
        "\ncpuset child: cpu {cpu}, nodes {:?}, memory-only {:?}, degraded {:?}",
        linux.nodes(),
        linux.memory_only_nodes(),
        linux.degraded()
    );
    for node in linux.topology().nodes() {
        assert!(node.cpus.iter().all(|&c| c == cpu), "{node:?}");
    }
    if let Ok(mems) = allowed_memory_nodes() {
        assert!(linux.nodes().iter().all(|n| mems.contains(n)));
    }
    // Pinning stays inside the cpuset: never wider than the one CPU.
    std::thread::scope(|s| {
        for node in linux.nodes() {
            let linux = &linux;
            s.spawn(move || {
                linux.pin_to_node(node).expect("pin inside the cpuset");
                assert_eq!(allowed_cpus().unwrap(), [cpu]);
                assert_eq!(linux.current_node(), node);
            });
        }
    });
    // The README's one replica per node works, and add_replica too.
    let nr = NodeReplicated::builder(Counter::default())
        .replicas(&linux.nodes())
        .affinity(linux.clone())
        .build()
        .expect("build in the cpuset");
    nr.add_replica(linux.nodes()[0])
        .expect("add_replica in the cpuset");
    let tkn = nr.register().unwrap();
    for _ in 0..100 {
        nr.execute_mut(1, tkn);
    }
    assert_eq!(nr.execute((), tkn), 100);
    println!("CHECKED");
}

/// A cpuset cgroup made for one test, removed when dropped.
struct Group {
    dir: PathBuf,
}

impl Group {
    /// A cpuset of `cpu` and the parent's memory nodes, under the cpuset hierarchy's
    /// root (v1) or the cgroup2 root (v2, with the controller enabled for children).
    fn create(cpu: usize) -> Result<Self, String> {
        let (root, v2) = cpuset_hierarchy()?;
        if v2 {
            let control = root.join("cgroup.subtree_control");
            let enabled = fs::read_to_string(&control).map_err(|e| format!("{control:?}: {e}"))?;
            if !enabled.split_whitespace().any(|c| c == "cpuset") {
                fs::write(&control, "+cpuset").map_err(|e| format!("enable cpuset: {e}"))?;
            }
        }
        let dir = root.join(format!("ldnr-affinity-test-{}", std::process::id()));
        fs::create_dir(&dir).map_err(|e| format!("mkdir {dir:?}: {e}"))?;
        let group = Group { dir };
        let mems = fs::read_to_string(root.join("cpuset.mems.effective"))
            .or_else(|_| fs::read_to_string(root.join("cpuset.mems")))
            .map_err(|e| format!("the parent's memory nodes: {e}"))?;
        group.write("cpuset.cpus", &cpu.to_string())?;
        group.write("cpuset.mems", mems.trim())?;
        Ok(group)
    }

    fn write(&self, file: &str, value: &str) -> Result<(), String> {
        fs::write(self.dir.join(file), value).map_err(|e| format!("{file} = {value}: {e}"))
    }

    /// Moves process `pid` (all its threads) in.
    fn add(&self, pid: u32) -> Result<(), String> {
        self.write("cgroup.procs", &pid.to_string())
    }
}

impl Drop for Group {
    fn drop(&mut self) {
        // Empty by now: the child has exited.
        let _ = fs::remove_dir(&self.dir);
    }
}

/// The mount point of the cpuset hierarchy, and whether it is cgroup v2.
fn cpuset_hierarchy() -> Result<(PathBuf, bool), String> {
    let info = fs::read_to_string("/proc/self/mountinfo").map_err(|e| e.to_string())?;
    let mut v2 = None;
    for line in info.lines() {
        // "... mount-point options ... - fstype source super-options"
        let Some((left, right)) = line.split_once(" - ") else {
            continue;
        };
        let mount = left.split_whitespace().nth(4).unwrap_or_default();
        let mut right = right.split_whitespace();
        let (fstype, options) = (right.next(), right.nth(1).unwrap_or_default());
        match fstype {
            Some("cgroup") if options.split(',').any(|o| o == "cpuset") => {
                return Ok((PathBuf::from(mount), false));
            }
            Some("cgroup2") => v2 = Some(PathBuf::from(mount)),
            _ => {}
        }
    }
    let root = v2.ok_or("no cgroup hierarchy with the cpuset controller is mounted")?;
    let controllers = fs::read_to_string(Path::new(&root).join("cgroup.controllers"))
        .map_err(|e| e.to_string())?;
    if controllers.split_whitespace().any(|c| c == "cpuset") {
        Ok((root, true))
    } else {
        Err(format!(
            "the cgroup2 hierarchy at {root:?} has no cpuset controller"
        ))
    }
}
