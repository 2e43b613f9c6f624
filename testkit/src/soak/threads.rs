//! The soak's threads — workers, coordinator, checker, churner — and the final check.

use std::sync::atomic::{Ordering::Relaxed, Ordering::SeqCst};
use std::sync::mpsc;
use std::time::Duration;

use ldnr::{ReplicaId, ReplicaInfo, ThreadToken};

use super::{Kind, RoundOut, Sample, Shared};
use super::{HOT, OWN, REGISTER, SCRATCH, SCRATCH_PER_WORKER};
use crate::heap;
use crate::lincheck::{check_map_by_key, record, MapEvent, MapOp};
use crate::map::{MapRead, MapWrite};
use crate::rng::Rng;

/// A worker's state across rounds.
struct Worker<'a> {
    sh: &'a Shared,
    t: usize,
    tkn: ThreadToken,
    rng: Rng,
    /// Operations run, over the whole soak.
    i: u64,
    writes: u64,
    /// The value before this worker's last increment of each hot key.
    last_hot: Vec<Option<u64>>,
    own: u64,
    /// This worker's increments of each cold key.
    cold: Vec<u32>,
    scratch: Vec<Option<u64>>,
    out: RoundOut,
}

/// What a worker leaves behind for the final check.
pub(super) struct WorkerEnd {
    /// The worker's index, which its own keys are derived from. (The ends are collected
    /// in the order the workers finish, not by index.)
    pub(super) t: usize,
    pub(super) writes: u64,
    pub(super) own: u64,
    pub(super) cold: Vec<u32>,
    pub(super) scratch: Vec<Option<u64>>,
}

impl Worker<'_> {
    fn fail(&self, what: std::fmt::Arguments<'_>) {
        self.sh.fail(format!(
            "worker {} (replica {:?}), operation #{}: {what}",
            self.t,
            self.sh.nr.replica_of(self.tkn),
            self.i
        ));
    }

    fn get(&self, kind: Kind, key: u64) -> Option<u64> {
        self.sh.workers[self.t]
            .doing
            .store(kind.encode(key), Relaxed);
        self.sh.nr.execute(MapRead::Get(key), self.tkn)
    }

    fn write(&mut self, kind: Kind, key: u64, op: MapWrite) -> Option<u64> {
        self.sh.workers[self.t]
            .doing
            .store(kind.encode(key), Relaxed);
        self.writes += 1;
        self.sh.nr.execute_mut(op, self.tkn)
    }

    /// A value no other write of this round stores: non-zero, the worker in the high
    /// half.
    fn unique(&self) -> u64 {
        ((self.t as u64 + 1) << 32) | (self.i & 0xffff_ffff)
    }

    /// One random operation, checked.
    fn step(&mut self) {
        let r = self.rng.next_u64();
        let pick = r % 100;
        let x = r >> 8;
        let t = self.t as u64;
        match pick {
            0..25 => self.register_op(x),
            25..40 => {
                let h = x % self.sh.config.hot_keys;
                let got = self.write(Kind::HotIncrement, HOT + h, MapWrite::Increment(HOT + h));
                match (got, self.last_hot[h as usize]) {
                    (Some(v), Some(last)) if v <= last => self.fail(format_args!(
                        "hot key {h}: increment returned {v} after {last} (not increasing)"
                    )),
                    (None, _) => self.fail(format_args!("hot key {h}: increment returned None")),
                    _ => {}
                }
                let v = got.unwrap_or(0);
                self.last_hot[h as usize] = Some(v);
                self.out.hot.push((h, v));
            }
            40..45 => {
                let h = x % self.sh.config.hot_keys;
                let got = self.get(Kind::HotGet, HOT + h);
                let least = self.last_hot[h as usize].map_or(0, |v| v + 1);
                if got.is_none_or(|v| v < least) {
                    self.fail(format_args!(
                        "hot key {h}: read {got:?} after own increment to {least}"
                    ));
                }
            }
            45..50 => {
                let got = self.write(Kind::OwnIncrement, OWN + t, MapWrite::Increment(OWN + t));
                if got != Some(self.own) {
                    self.fail(format_args!(
                        "own counter: increment returned {got:?}, expected Some({})",
                        self.own
                    ));
                }
                self.own += 1;
            }
            50..52 => {
                let got = self.get(Kind::OwnGet, OWN + t);
                if got != Some(self.own) {
                    self.fail(format_args!(
                        "own counter: read {got:?}, expected Some({})",
                        self.own
                    ));
                }
            }
            52..65 => {
                let k = x % self.sh.config.keys;
                let got = self.write(Kind::ColdIncrement, k, MapWrite::Increment(k));
                let mine = u64::from(self.cold[k as usize]);
                if got.is_none_or(|v| v < mine) {
                    self.fail(format_args!(
                        "cold key {k}: increment returned {got:?}, below this worker's {mine} increments"
                    ));
                }
                self.cold[k as usize] += 1;
            }
            65..88 => {
                let k = x % self.sh.config.keys;
                let got = self.get(Kind::ColdGet, k);
                let mine = u64::from(self.cold[k as usize]);
                if got.is_none_or(|v| v < mine) {
                    self.fail(format_args!(
                        "cold key {k}: read {got:?}, below this worker's {mine} increments"
                    ));
                }
            }
            _ => self.scratch_op(x),
        }
        self.i += 1;
    }

    /// An operation on this worker's scratch keys, checked against its model.
    fn scratch_op(&mut self, x: u64) {
        let s = x % SCRATCH_PER_WORKER;
        let key = SCRATCH + self.t as u64 * SCRATCH_PER_WORKER + s;
        let (what, got, want) = match (x >> 8) % 3 {
            0 => {
                let v = self.unique();
                let got = self.write(Kind::ScratchInsert, key, MapWrite::Insert(key, v));
                (
                    Kind::ScratchInsert,
                    got,
                    self.scratch[s as usize].replace(v),
                )
            }
            1 => {
                let got = self.write(Kind::ScratchRemove, key, MapWrite::Remove(key));
                (Kind::ScratchRemove, got, self.scratch[s as usize].take())
            }
            _ => (
                Kind::ScratchGet,
                self.get(Kind::ScratchGet, key),
                self.scratch[s as usize],
            ),
        };
        if got != want {
            self.fail(format_args!(
                "scratch key {key:#x}: {what:?} returned {got:?}, the worker's model says {want:?}"
            ));
        }
    }

    /// A recorded operation on a register key (40% get, 40% insert, 20% remove).
    fn register_op(&mut self, x: u64) {
        let key = REGISTER + x % self.sh.config.register_keys;
        let (kind, op) = match (x >> 16) % 10 {
            0..4 => (Kind::RegisterGet, MapOp::Get(key)),
            4..8 => (Kind::RegisterInsert, MapOp::Insert(key, self.unique())),
            _ => (Kind::RegisterRemove, MapOp::Remove(key)),
        };
        let (sh, tkn) = (self.sh, self.tkn);
        sh.workers[self.t].doing.store(kind.encode(key), Relaxed);
        let event = record(&sh.clock, self.t, op, |op| match *op {
            MapOp::Get(k) => sh.nr.execute(MapRead::Get(k), tkn),
            MapOp::Insert(k, v) => sh.nr.execute_mut(MapWrite::Insert(k, v), tkn),
            MapOp::Remove(k) => sh.nr.execute_mut(MapWrite::Remove(k), tkn),
        });
        if kind != Kind::RegisterGet {
            self.writes += 1;
        }
        self.out.events.push(event);
    }
}

/// A worker thread: registers on its node, then runs rounds until told to leave.
pub(super) fn worker_main(sh: &Shared, t: usize) -> WorkerEnd {
    sh.placement.enter(t);
    let tkn = sh
        .nr
        .register()
        .expect("max_threads counts every participant");
    let c = &sh.config;
    let mut w = Worker {
        sh,
        t,
        tkn,
        rng: Rng::new(c.seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ (t as u64 + 1)),
        i: 0,
        writes: 0,
        last_hot: vec![None; c.hot_keys as usize],
        own: 0,
        cold: vec![0; c.keys as usize],
        scratch: vec![None; SCRATCH_PER_WORKER as usize],
        out: RoundOut::default(),
    };
    let probe = &sh.workers[t];
    loop {
        probe.doing.store(Kind::AtBarrier.encode(0), Relaxed);
        sh.barrier.wait();
        if sh.last_round.load(SeqCst) {
            break;
        }
        for n in 0..c.ops_per_round {
            w.step();
            probe.ops.fetch_add(1, Relaxed);
            if n % 32 == 31 {
                // Not synchronization: on few cores, giving up the time slice now and
                // then makes the threads interleave more finely.
                std::thread::yield_now();
            }
        }
        probe.doing.store(Kind::AtBarrier.encode(0), Relaxed);
        {
            let mut slot = sh.slot(t);
            slot.events.append(&mut w.out.events);
            slot.hot.append(&mut w.out.hot);
        }
        sh.barrier.wait();
    }
    WorkerEnd {
        t,
        writes: w.writes,
        own: w.own,
        cold: w.cold,
        scratch: w.scratch,
    }
}

/// What the coordinator leaves behind for the final check.
pub(super) struct CoordinatorEnd {
    pub(super) writes: u64,
    /// Every hot counter's checked value.
    pub(super) hot: Vec<u64>,
}

/// The coordinator: starts and ends rounds; between them, with the workers quiescent,
/// checks the hot counters, empties the registers and sends the history on.
pub(super) fn coordinator_main(
    sh: &Shared,
    checker: mpsc::SyncSender<(u64, Vec<MapEvent>)>,
) -> CoordinatorEnd {
    let c = &sh.config;
    let phase = |p: u64| sh.coordinator.store(p, Relaxed);
    // It registers on the first node, as worker 0 does.
    sh.placement.enter_node(sh.placement.node_of(0));
    let tkn = sh
        .nr
        .register()
        .expect("max_threads counts every participant");
    // Per hot key: the value at the round's start, and the round's responses.
    let mut start = vec![0u64; c.hot_keys as usize];
    let mut returned: Vec<Vec<u64>> = vec![Vec::new(); c.hot_keys as usize];
    let mut writes = 0;
    for round in 0.. {
        let last = sh.stop.load(SeqCst);
        sh.last_round.store(last, SeqCst);
        phase(1);
        sh.barrier.wait();
        sh.ready.store(true, SeqCst);
        if last {
            break;
        }
        phase(2);
        sh.barrier.wait();
        phase(3);
        // A quarter of the operations are recorded: room for them all, almost always.
        let mut history = Vec::with_capacity(c.threads * c.ops_per_round * 3 / 10);
        for t in 0..c.threads {
            let mut slot = sh.slot(t);
            history.append(&mut slot.events);
            for &(h, v) in &slot.hot {
                returned[h as usize].push(v);
            }
            slot.hot.clear();
        }
        for (h, got) in returned.iter_mut().enumerate() {
            let from = start[h];
            got.sort_unstable();
            if let Some(i) = (0..got.len()).find(|&i| got[i] != from + i as u64) {
                sh.fail(format!(
                    "exactly once: round {round}, hot key {h}: {} increments should have \
                     returned {from}..{} but sorted position {i} holds {} (around it: {:?})",
                    got.len(),
                    from + got.len() as u64,
                    got[i],
                    &got[i.saturating_sub(2)..(i + 3).min(got.len())]
                ));
            }
            let n = got.len() as u64;
            let now = sh.nr.execute(MapRead::Get(HOT + h as u64), tkn);
            if now != Some(from + n) {
                sh.fail(format!(
                    "exactly once: round {round}, hot key {h}: {from} + {n} increments, \
                     yet it reads {now:?}"
                ));
            }
            // After a finding, go on from what the map holds: one fault, one message.
            start[h] = now.unwrap_or(from + n);
            got.clear();
        }
        sh.events.fetch_add(history.len() as u64, Relaxed);
        sh.rounds.fetch_add(1, SeqCst);
        // The next round's history starts from empty registers.
        for k in 0..c.register_keys {
            sh.nr.execute_mut(MapWrite::Remove(REGISTER + k), tkn);
            writes += 1;
        }
        phase(4);
        if checker.send((round, history)).is_err() {
            sh.fail("the checker is gone".to_string());
        }
    }
    CoordinatorEnd { writes, hot: start }
}

/// The checker: checks each round's history; on a violation, records it with the
/// failing key's whole sub-history.
pub(super) fn checker_main(sh: &Shared, histories: mpsc::Receiver<(u64, Vec<MapEvent>)>) {
    for (round, history) in histories {
        if let Err(v) = check_map_by_key(&history) {
            let mut what = format!(
                "linearizability: round {round} (seed {}): {v}\n  the key's whole \
                 sub-history (#index in the round's history):\n",
                sh.config.seed
            );
            let mut events: Vec<(usize, &MapEvent)> = history
                .iter()
                .enumerate()
                .filter(|(_, e)| Some(e.op.key()) == v.key)
                .collect();
            events.sort_by_key(|(_, e)| e.invoke);
            for (i, e) in events {
                what += &format!(
                    "    #{i} t{} [{}..{}] {:?} -> {:?}\n",
                    e.thread, e.invoke, e.response, e.op, e.ret
                );
            }
            sh.fail(what);
        }
        sh.histories.fetch_add(1, SeqCst);
    }
}

/// The churner: one replica change per `ops_per_change` worker operations, keeping
/// `1..=replicas_max` live; after a change, a heap sample when one is due.
pub(super) fn churner_main(sh: &Shared) {
    let c = &sh.config;
    while !sh.ready.load(SeqCst) {
        if sh.stop.load(SeqCst) {
            return;
        }
        std::thread::sleep(Duration::from_millis(1));
    }
    let mut rng = Rng::new(c.seed.wrapping_mul(0xD1B5_4A32_D192_ED03) ^ 0xC4);
    let mut last_sample: Option<Duration> = None;
    let mut sample = |replicas: usize| {
        let at = sh.start.elapsed();
        // From the third round on: by then the round buffers have reached their size.
        let warm = sh.rounds.load(Relaxed) >= 2;
        if heap::installed() && warm && last_sample.is_none_or(|l| at >= l + c.sample_every) {
            last_sample = Some(at);
            let live = heap::live_bytes();
            let mut samples = sh.samples.lock().unwrap_or_else(|p| p.into_inner());
            samples.push(Sample { at, replicas, live });
        }
    };
    let mut changes = 0u64;
    while !sh.stop.load(SeqCst) {
        let before = sh.nr.replicas();
        let live = before.len();
        let doing = |what: String| *sh.churning() = Some((what, sh.start.elapsed()));
        let result = if live == 1 || (live < c.replicas_max && rng.next_u64() % 2 == 0) {
            let nodes = sh.placement.nodes();
            let node = nodes[(rng.next_u64() % nodes.len() as u64) as usize];
            doing(format!("add_replica({node:?})"));
            sh.nr.add_replica(node).map(|_| &sh.adds)
        } else {
            let victim = pick_victim(&before, changes, &mut rng);
            doing(format!("remove_replica({victim:?})"));
            sh.nr.remove_replica(victim).map(|()| &sh.removes)
        };
        *sh.churning() = None;
        let after = sh.nr.replicas();
        match result {
            Ok(counter) => {
                counter.fetch_add(1, SeqCst);
            }
            Err(e) => sh.fail(format!("replica change from {before:?} failed: {e}")),
        }
        let threads: usize = after.iter().map(|r| r.threads).sum();
        if after.len().abs_diff(live) != 1 || threads != c.participants() {
            sh.fail(format!(
                "replica change: {before:?} -> {after:?} ({} participants)",
                c.participants()
            ));
        }
        changes += 1;
        sample(after.len());
        let since = sh.ops();
        while !sh.stop.load(SeqCst) && sh.ops() < since + c.ops_per_change {
            std::thread::sleep(Duration::from_micros(200));
        }
    }
}

/// The replica to remove, by turns: the least advanced (maybe idle, holding the log
/// back), the one serving the most threads (all of them move), a random one.
fn pick_victim(infos: &[ReplicaInfo], change: u64, rng: &mut Rng) -> ReplicaId {
    let by = |f: fn(&ReplicaInfo) -> usize| infos.iter().max_by_key(|r| f(r)).map(|r| r.id);
    match change % 3 {
        0 => by(|r| usize::MAX - r.applied),
        1 => by(|r| r.threads),
        _ => None,
    }
    .unwrap_or(infos[(rng.next_u64() % infos.len() as u64) as usize].id)
}

/// With every thread done and the replica set still: every replica holds exactly what
/// the workers issued, and has applied exactly the writes issued.
pub(super) fn final_check(sh: &Shared, workers: &[WorkerEnd], coordinator: &CoordinatorEnd) {
    let c = &sh.config;
    let tokens = match tokens_on_every_replica(sh) {
        Ok(tokens) => tokens,
        Err(e) => return sh.fail(e),
    };
    let mut expected: Vec<(u64, Option<u64>)> = (0..c.keys)
        .map(|k| {
            let issued = workers.iter().map(|w| u64::from(w.cold[k as usize])).sum();
            (k, Some(issued))
        })
        .collect();
    for w in workers {
        let t = w.t as u64;
        expected.push((OWN + t, Some(w.own)));
        let base = SCRATCH + t * SCRATCH_PER_WORKER;
        expected.extend((base..).zip(w.scratch.iter().copied()));
    }
    expected.extend((HOT..).zip(coordinator.hot.iter().map(|&v| Some(v))));
    expected.extend((0..c.register_keys).map(|k| (REGISTER + k, None)));
    let len = expected.iter().filter(|(_, v)| v.is_some()).count() as u64;
    for (id, tkn) in &tokens {
        let wrong: Vec<_> = expected
            .iter()
            .filter_map(|&(key, want)| {
                let got = sh.nr.execute(MapRead::Get(key), *tkn);
                (got != want).then_some((key, got, want))
            })
            .collect();
        let got_len = sh.nr.execute(MapRead::Len, *tkn);
        if !wrong.is_empty() || got_len != Some(len) {
            sh.fail(format!(
                "final state of replica {id:?}: {} key(s) differ from what was issued \
                 (key, read, issued), first ones {:?}; Len {got_len:?}, expected {len}",
                wrong.len(),
                &wrong[..wrong.len().min(8)]
            ));
        }
    }
    let issued = workers.iter().map(|w| w.writes).sum::<u64>() + coordinator.writes;
    for info in sh.nr.replicas() {
        if info.applied as u64 != issued {
            sh.fail(format!(
                "replica {:?} applied {} log entries; {issued} writes were issued",
                info.id, info.applied
            ));
        }
    }
}

/// Registers tokens (on the calling thread) until one is matched to each live replica.
/// A registration goes to the replica of the thread's node that serves the fewest
/// threads, so a bounded number of them, made from a replica's node, reaches it: the
/// other replicas of that node must each catch up with it (and pass it on a tie), so
/// at most `(replicas - 1) * (participants + 1) + 1`, and no more than that plus one
/// per other replica in all. (Each worker stays registered: with three replicas on one
/// node serving 7, 1 and 1 threads, the 7-thread one is reached only at the 13th
/// registration or later. The bound was checked exhaustively for up to 4 replicas and 6
/// participants, every distribution, node assignment and slot order.)
fn tokens_on_every_replica(sh: &Shared) -> Result<Vec<(ReplicaId, ThreadToken)>, String> {
    let infos = sh.nr.replicas();
    let mut out: Vec<(ReplicaId, ThreadToken)> = Vec::new();
    let has = |out: &[(ReplicaId, ThreadToken)], id| out.iter().any(|(i, _)| *i == id);
    for info in &infos {
        sh.placement.enter_node(info.node);
        for _ in 0..=(infos.len() - 1) * (sh.config.participants() + 1) {
            if has(&out, info.id) {
                break;
            }
            let tkn = sh.nr.register().map_err(|e| format!("final check: {e}"))?;
            match sh.nr.replica_of(tkn) {
                Some(id) if !has(&out, id) => out.push((id, tkn)),
                _ => {}
            }
        }
        if !has(&out, info.id) {
            return Err(format!(
                "final check: no registration on {:?} reached replica {:?}: {infos:?}",
                info.node, info.id
            ));
        }
    }
    Ok(out)
}
