//! `LinuxAffinity` under a seccomp filter that refuses the memory-policy system calls
//! with an error number, as Docker's default profile does without `CAP_SYS_NICE`, and as
//! systemd's `SystemCallFilter=~@resources` does with `SystemCallErrorNumber=`. It must
//! run as one node, say which call was refused, and never make LD-NR fail.
//!
//! Each case runs in a child process (a filter stays on the thread that installs it and
//! on every thread that thread starts; the test harness's other threads must not get it).
//! Where the kernel refuses the filter, the case prints why and passes.
#![cfg(target_os = "linux")]

mod common;

use std::sync::Arc;

use common::{after, finish, fixture, is_child, skipped, spawn_child, Counter};
use ldnr::{AffinityError, AffinityManager, NodeId, NodeReplicated, SavedPolicy};
use ldnr_affinity::{LinuxAffinity, MemoryPolicy, Topology};

const EPERM: u32 = 1;

#[test]
fn refusing_set_mempolicy() {
    case(
        "refusing_set_mempolicy",
        &[libc::SYS_set_mempolicy],
        "set_mempolicy",
    );
}

#[test]
fn refusing_get_mempolicy() {
    case(
        "refusing_get_mempolicy",
        &[libc::SYS_get_mempolicy],
        "get_mempolicy",
    );
}

/// Docker's default profile: get, set and `mbind`, `move_pages` too.
#[test]
fn refusing_all_memory_policy_calls() {
    case(
        "refusing_all_memory_policy_calls",
        &[
            libc::SYS_get_mempolicy,
            libc::SYS_set_mempolicy,
            libc::SYS_mbind,
            libc::SYS_move_pages,
        ],
        "get_mempolicy",
    );
}

/// Without a filter, on this host, a pretend four-node tree steers memory (node 0 exists
/// everywhere): the one-node outcome in the cases above is the filter's doing.
#[test]
fn without_a_filter_the_same_tree_steers() {
    if MemoryPolicy::current().is_err() {
        println!("skipped: no memory policies on this host");
        return;
    }
    let four = LinuxAffinity::with_topology(Topology::from_sysfs(fixture("four_nodes")).unwrap());
    assert_eq!(four.degraded(), None);
    assert_eq!(four.nodes(), (0..4).map(NodeId).collect::<Vec<_>>());
    assert!(four.steers_memory());
}

fn case(test: &str, calls: &[libc::c_long], refused: &str) {
    if is_child("seccomp") {
        return child(calls, refused);
    }
    let (status, out) = finish(spawn_child(test, "seccomp", &[]));
    if let Some(why) = skipped(&out) {
        println!("skipped: {why}");
        return;
    }
    assert!(status.success(), "child failed:\n{out}");
    assert!(out.contains("CHECKED"), "child did not check:\n{out}");
    println!("degraded: {}", after(&out, "DEGRADED ").unwrap_or_default());
}

fn child(calls: &[libc::c_long], refused: &str) {
    if let Err(why) = install_filter(calls) {
        println!("SKIP: the kernel refuses a seccomp filter: {why}");
        return;
    }
    // The filter is in force on this thread.
    if calls.contains(&libc::SYS_set_mempolicy) {
        assert_eq!(
            MemoryPolicy::default_policy().apply(),
            Err(AffinityError::Os(EPERM as i32))
        );
    }

    let linux = LinuxAffinity::new();
    let why = linux.degraded().expect("degraded under the filter");
    println!("\nDEGRADED {why}");
    assert!(why.contains(refused), "{why}");
    assert!(why.contains("runs as one node"), "{why}");
    assert!(!linux.steers_memory());
    assert_eq!(linux.nodes().len(), 1);
    assert_eq!(linux.current_node(), linux.nodes()[0]);
    assert!(linux.memory_only_nodes().is_empty());

    // A four-node machine (a pretend one) runs as one node too: its nodes cannot be
    // steered to, so `nodes()` must not offer them.
    let four = LinuxAffinity::with_topology(Topology::from_sysfs(fixture("four_nodes")).unwrap());
    assert_eq!(four.nodes().len(), 1, "{:?}", four.degraded());
    assert!(four.degraded().unwrap().contains(refused));
    let only = four.nodes()[0];
    assert_eq!(four.set_memory_node(only), Ok(SavedPolicy::UNCHANGED));
    let other = NodeId((only.0 + 1) % 4);
    assert_eq!(
        four.set_memory_node(other),
        Err(AffinityError::UnknownNode(other))
    );
    for _ in 0..4 {
        assert_eq!(four.current_node(), only);
    }

    // LD-NR runs: one replica per node offered, another added, threads operating.
    for manager in [Arc::new(linux), Arc::new(four)] {
        let nr = NodeReplicated::builder(Counter::default())
            .replicas(&manager.nodes())
            .affinity(manager.clone())
            .build()
            .expect("build under the filter");
        nr.add_replica(manager.nodes()[0])
            .expect("add_replica under the filter");
        std::thread::scope(|s| {
            for _ in 0..2 {
                let nr = &nr;
                s.spawn(move || {
                    let tkn = nr.register().unwrap();
                    for _ in 0..100 {
                        nr.execute_mut(1, tkn);
                    }
                });
            }
        });
        let tkn = nr.register().unwrap();
        assert_eq!(nr.execute((), tkn), 200);
    }
    println!("CHECKED");
}

/// Installs, on the calling thread, a filter that fails each of `calls` with `EPERM`
/// and allows everything else.
fn install_filter(calls: &[libc::c_long]) -> Result<(), String> {
    #[cfg(target_arch = "x86_64")]
    const ARCH: u32 = 0xc000_003e; // AUDIT_ARCH_X86_64
    #[cfg(target_arch = "aarch64")]
    const ARCH: u32 = 0xc000_00b7; // AUDIT_ARCH_AARCH64
    #[cfg(not(any(target_arch = "x86_64", target_arch = "aarch64")))]
    {
        let _ = calls;
        return Err("no audit architecture number for this target in the test".into());
    }

    #[cfg(any(target_arch = "x86_64", target_arch = "aarch64"))]
    {
        let stmt = |code: u32, k: u32| libc::sock_filter {
            code: code as u16,
            jt: 0,
            jf: 0,
            k,
        };
        let jeq = |k: u32, jt: u8, jf: u8| libc::sock_filter {
            code: (libc::BPF_JMP | libc::BPF_JEQ | libc::BPF_K) as u16,
            jt,
            jf,
            k,
        };
        let load = libc::BPF_LD | libc::BPF_W | libc::BPF_ABS;
        let ret = libc::BPF_RET | libc::BPF_K;
        // struct seccomp_data: nr at offset 0, arch at offset 4.
        let mut program = vec![
            stmt(load, 4),
            jeq(ARCH, 1, 0),
            stmt(ret, libc::SECCOMP_RET_ALLOW),
            stmt(load, 0),
        ];
        for &call in calls {
            program.push(jeq(call as u32, 0, 1));
            program.push(stmt(ret, libc::SECCOMP_RET_ERRNO | EPERM));
        }
        program.push(stmt(ret, libc::SECCOMP_RET_ALLOW));
        let fprog = libc::sock_fprog {
            len: program.len() as u16,
            filter: program.as_mut_ptr(),
        };
        // SAFETY: `prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0)` takes no pointers.
        if unsafe { libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) } != 0 {
            return Err(format!(
                "PR_SET_NO_NEW_PRIVS: {}",
                std::io::Error::last_os_error()
            ));
        }
        // SAFETY: the kernel copies the `fprog.len` instructions `fprog.filter` points to
        // (`program`, alive until after the call) and keeps no pointer to them.
        let r = unsafe {
            libc::prctl(
                libc::PR_SET_SECCOMP,
                libc::SECCOMP_MODE_FILTER,
                &fprog as *const libc::sock_fprog,
            )
        };
        if r != 0 {
            return Err(format!(
                "PR_SET_SECCOMP: {}",
                std::io::Error::last_os_error()
            ));
        }
        Ok(())
    }
}
