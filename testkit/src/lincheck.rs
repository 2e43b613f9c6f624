//! A Wing–Gong–Lowe (WGL) linearizability checker: `ldnr`'s linearizability tests' and
//! the soak's ([`crate::soak`]).
//!
//! A history is a set of [`Event`]s, each an operation with its observed
//! return value and the interval `[invoke, response]` in which it ran
//! (timestamps from one shared [`Clock`]). The history is linearizable if
//! the events can be put in one total order that respects real time (if `a`
//! responded before `b` was invoked, `a` comes first) and in which every
//! event returns what the sequential specification ([`Spec`]) returns.
//!
//! The algorithm (Wing & Gong, improved by Lowe): all invocations and
//! responses are put in one list sorted by time. The search scans that list
//! from the front; every invocation met before the first response belongs to
//! a *minimal* event (one that may come next in the order). For each such
//! candidate it applies the operation to the current state; if the result
//! matches the observed return value and the pair (set of linearized events,
//! new state) has not been seen before, the event is "lifted" out of the list
//! (both entries unlinked, dancing-links style), pushed on an explicit stack
//! and the scan restarts. Reaching a response entry means that the pending
//! event could not be placed: the search backtracks by popping the stack,
//! re-linking the event and trying the next candidate. The history is
//! linearizable when the list becomes empty, and not when the stack is
//! empty at a backtrack. Memoizing (bitset, state) pairs (Lowe) keeps the
//! search close to linear for histories with little concurrency per object.
//!
//! [`check_map_by_key`] uses P-compositionality: a key-value map history is
//! linearizable iff each per-key sub-history is linearizable against a
//! single register.
//!
//! # Examples
//!
//! ```
//! use ldnr_testkit::lincheck::{check_map_by_key, Event, MapOp};
//!
//! // Two overlapping writes, then a read: either order explains the read of 2.
//! let ev = |thread, op, ret, invoke, response| Event { thread, op, ret, invoke, response };
//! let ok = [
//!     ev(0, MapOp::Insert(5, 1), None, 0, 3),
//!     ev(1, MapOp::Insert(5, 2), Some(1), 1, 2),
//!     ev(0, MapOp::Get(5), Some(2), 4, 5),
//! ];
//! assert_eq!(check_map_by_key(&ok), Ok(1));
//! // A read of a value that was never written is a violation.
//! let bad = [ev(0, MapOp::Insert(5, 1), None, 0, 1), ev(1, MapOp::Get(5), Some(7), 2, 3)];
//! assert_eq!(check_map_by_key(&bad).unwrap_err().key, Some(5));
//! ```

use std::collections::{BTreeMap, HashSet};
use std::fmt;
use std::hash::Hash;
use std::sync::atomic::{AtomicU64, Ordering};

/// A sequential specification: the state of an object and its operations.
///
/// `Hash + Eq` are required so that visited states can be memoized.
pub trait Spec: Clone + Hash + Eq {
    /// An operation (with its arguments).
    type Op: Clone + fmt::Debug;
    /// The value an operation returns.
    type Ret: Clone + PartialEq + fmt::Debug;
    /// Applies `op` to the state and returns what the object returns.
    fn apply(&mut self, op: &Self::Op) -> Self::Ret;
}

/// One completed operation of a concurrent history.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Event<O, R> {
    /// The thread that ran the operation (for diagnostics only).
    pub thread: usize,
    /// The operation.
    pub op: O,
    /// The value the operation returned.
    pub ret: R,
    /// Clock tick taken before the call.
    pub invoke: u64,
    /// Clock tick taken after the call returned (`invoke < response`; equal
    /// timestamps of different events count as overlapping).
    pub response: u64,
}

/// A shared logical clock; every tick is a unique, increasing timestamp.
#[derive(Debug, Default)]
pub struct Clock(AtomicU64);

impl Clock {
    /// Creates a clock starting at 0.
    pub fn new() -> Self {
        Clock(AtomicU64::new(0))
    }

    /// Returns the next timestamp (`fetch_add`, `SeqCst`).
    pub fn tick(&self) -> u64 {
        self.0.fetch_add(1, Ordering::SeqCst)
    }
}

/// Runs `f(&op)` between two ticks of `clock` and returns the event.
pub fn record<O, R>(clock: &Clock, thread: usize, op: O, f: impl FnOnce(&O) -> R) -> Event<O, R> {
    let invoke = clock.tick();
    let ret = f(&op);
    let response = clock.tick();
    Event {
        thread,
        op,
        ret,
        invoke,
        response,
    }
}

/// Why a history is not linearizable, with an excerpt to debug it.
///
/// Event labels are `#index tTHREAD [invoke..response] op -> ret`, where the
/// index is the position in the history passed to the checker.
#[derive(Clone, PartialEq, Eq)]
pub struct Violation {
    /// The key whose sub-history failed (set by [`check_map_by_key`]).
    pub key: Option<u64>,
    /// How many events were checked (the sub-history for one key).
    pub history_len: usize,
    /// The longest linearizable prefix found, in linearization order.
    pub prefix: Vec<String>,
    /// The events that could have come next after that prefix but could not
    /// be placed, each with what the specification would have returned.
    pub unplaceable: Vec<String>,
    /// The event whose response forced one of the candidates to come next.
    pub blocking: String,
}

/// How many events of the prefix [`Violation`]'s `Display` shows.
const SHOWN_PREFIX: usize = 16;

impl fmt::Display for Violation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.key {
            Some(k) => writeln!(f, "history of key {k} is not linearizable")?,
            None => writeln!(f, "history is not linearizable")?,
        }
        writeln!(
            f,
            "  {} events; longest linearizable prefix found: {} events",
            self.history_len,
            self.prefix.len()
        )?;
        let skip = self.prefix.len().saturating_sub(SHOWN_PREFIX);
        if skip > 0 {
            writeln!(f, "    ... {skip} earlier events omitted")?;
        }
        for e in &self.prefix[skip..] {
            writeln!(f, "    {e}")?;
        }
        writeln!(f, "  no pending event can be placed after that prefix:")?;
        for e in &self.unplaceable {
            writeln!(f, "    {e}")?;
        }
        write!(
            f,
            "  yet one must precede the response of {}",
            self.blocking
        )
    }
}

impl fmt::Debug for Violation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

impl std::error::Error for Violation {}

const NIL: usize = usize::MAX;
const HEAD: usize = 0;

/// The time-ordered list of invocation/response entries (node 0 is a head
/// sentinel), with O(1) unlink/relink of an event's two entries.
struct EntryList {
    next: Vec<usize>,
    prev: Vec<usize>,
    /// The history index of each node's event.
    event: Vec<usize>,
    /// For an invocation node, its response node; `NIL` for responses.
    partner: Vec<usize>,
}

impl EntryList {
    fn new<O, R>(history: &[Event<O, R>]) -> Self {
        // Ties sort invocations first, so equal timestamps count as overlapping.
        let mut order: Vec<(u64, bool, usize)> = Vec::with_capacity(2 * history.len());
        for (i, e) in history.iter().enumerate() {
            assert!(
                e.invoke <= e.response,
                "event #{i} responds before it is invoked"
            );
            order.push((e.invoke, false, i));
            order.push((e.response, true, i));
        }
        order.sort_unstable();
        let nodes = order.len() + 1;
        let mut list = EntryList {
            next: (1..=nodes)
                .map(|n| if n == nodes { NIL } else { n })
                .collect(),
            prev: (0..nodes)
                .map(|n| n.checked_sub(1).unwrap_or(NIL))
                .collect(),
            event: vec![NIL; nodes],
            partner: vec![NIL; nodes],
        };
        let mut call_node = vec![NIL; history.len()];
        for (pos, &(_, is_response, i)) in order.iter().enumerate() {
            let node = pos + 1;
            list.event[node] = i;
            if is_response {
                list.partner[call_node[i]] = node;
            } else {
                call_node[i] = node;
            }
        }
        list
    }

    fn unlink(&mut self, n: usize) {
        let (p, x) = (self.prev[n], self.next[n]);
        self.next[p] = x;
        if x != NIL {
            self.prev[x] = p;
        }
    }

    fn relink(&mut self, n: usize) {
        let (p, x) = (self.prev[n], self.next[n]);
        self.next[p] = n;
        if x != NIL {
            self.prev[x] = n;
        }
    }

    /// Removes invocation node `call` and its response from the list.
    fn lift(&mut self, call: usize) {
        self.unlink(call);
        self.unlink(self.partner[call]);
    }

    /// Undoes [`EntryList::lift`] (must be called in reverse lift order).
    fn unlift(&mut self, call: usize) {
        self.relink(self.partner[call]);
        self.relink(call);
    }
}

/// The deepest point where the search got stuck (history indices).
struct DeadEnd<R> {
    /// The linearized events, in order.
    prefix: Vec<usize>,
    /// The minimal events at that point, with what the spec returns for each.
    candidates: Vec<(usize, R)>,
    /// The pending event whose response ended the scan.
    blocker: usize,
}

/// Checks that `history` is linearizable with respect to the sequential
/// specification starting in state `initial`. The order of `history` does
/// not matter; only the timestamps do.
pub fn check<S: Spec>(initial: S, history: &[Event<S::Op, S::Ret>]) -> Result<(), Violation> {
    check_labelled(initial, history, None)
}

/// [`check`], labelling event `i` in messages as `ids[i]` when given.
fn check_labelled<S: Spec>(
    initial: S,
    history: &[Event<S::Op, S::Ret>],
    ids: Option<&[usize]>,
) -> Result<(), Violation> {
    let mut list = EntryList::new(history);
    let mut linearized = vec![0u64; history.len().div_ceil(64)];
    let mut seen: HashSet<(Vec<u64>, S)> = HashSet::new();
    // Each frame: the lifted invocation node and the state before it.
    let mut stack: Vec<(usize, S)> = Vec::new();
    let mut deepest: Option<DeadEnd<S::Ret>> = None;
    let mut state = initial;
    let mut entry = list.next[HEAD];

    while list.next[HEAD] != NIL {
        let ev = list.event[entry];
        if list.partner[entry] != NIL {
            // An invocation: try to linearize this event now.
            let mut after = state.clone();
            if after.apply(&history[ev].op) == history[ev].ret {
                linearized[ev / 64] |= 1 << (ev % 64);
                if seen.insert((linearized.clone(), after.clone())) {
                    stack.push((entry, std::mem::replace(&mut state, after)));
                    list.lift(entry);
                    entry = list.next[HEAD];
                    continue;
                }
                linearized[ev / 64] &= !(1 << (ev % 64));
            }
            entry = list.next[entry];
        } else {
            // A response of a pending event: nothing left to try here.
            let deeper = match &deepest {
                Some(d) => stack.len() > d.prefix.len(),
                None => true,
            };
            if deeper {
                let prefix = stack.iter().map(|(n, _)| list.event[*n]).collect();
                let mut candidates = Vec::new();
                let mut n = list.next[HEAD];
                while n != entry {
                    let e = list.event[n];
                    candidates.push((e, state.clone().apply(&history[e].op)));
                    n = list.next[n];
                }
                deepest = Some(DeadEnd {
                    prefix,
                    candidates,
                    blocker: ev,
                });
            }
            let Some((call, before)) = stack.pop() else {
                return Err(violation(history, ids, deepest.expect("recorded above")));
            };
            let e = list.event[call];
            linearized[e / 64] &= !(1 << (e % 64));
            state = before;
            list.unlift(call);
            entry = list.next[call];
        }
    }
    Ok(())
}

fn label<O: fmt::Debug, R: fmt::Debug>(
    history: &[Event<O, R>],
    ids: Option<&[usize]>,
    i: usize,
) -> String {
    let e = &history[i];
    let id = ids.map_or(i, |ids| ids[i]);
    format!(
        "#{id} t{} [{}..{}] {:?} -> {:?}",
        e.thread, e.invoke, e.response, e.op, e.ret
    )
}

fn violation<O: fmt::Debug, R: PartialEq + fmt::Debug>(
    history: &[Event<O, R>],
    ids: Option<&[usize]>,
    dead_end: DeadEnd<R>,
) -> Violation {
    let unplaceable = dead_end
        .candidates
        .into_iter()
        .map(|(i, expected)| {
            let why = if expected == history[i].ret {
                "spec agrees, but every continuation fails".to_string()
            } else {
                format!("spec returns {expected:?}")
            };
            format!("{}   <- {why}", label(history, ids, i))
        })
        .collect();
    Violation {
        key: None,
        history_len: history.len(),
        prefix: dead_end
            .prefix
            .into_iter()
            .map(|i| label(history, ids, i))
            .collect(),
        unplaceable,
        blocking: label(history, ids, dead_end.blocker),
    }
}

/// An operation on a `u64 -> u64` key-value map.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum MapOp {
    /// Reads a key; returns the current value.
    Get(u64),
    /// Writes a value; returns the previous value.
    Insert(u64, u64),
    /// Removes a key; returns the removed value.
    Remove(u64),
}

impl MapOp {
    /// The key the operation acts on.
    pub fn key(&self) -> u64 {
        match *self {
            MapOp::Get(k) | MapOp::Insert(k, _) | MapOp::Remove(k) => k,
        }
    }
}

/// The return value of a [`MapOp`].
pub type MapRet = Option<u64>;

/// An event of a map history.
pub type MapEvent = Event<MapOp, MapRet>;

/// The specification of one key of a map: a register holding an optional
/// value (keys in the operations are ignored).
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash)]
pub struct RegisterSpec(pub Option<u64>);

impl Spec for RegisterSpec {
    type Op = MapOp;
    type Ret = MapRet;

    fn apply(&mut self, op: &MapOp) -> MapRet {
        match *op {
            MapOp::Get(_) => self.0,
            MapOp::Insert(_, v) => self.0.replace(v),
            MapOp::Remove(_) => self.0.take(),
        }
    }
}

/// Checks a map history key by key, each key against a [`RegisterSpec`]
/// starting empty. Returns the number of keys checked; a [`Violation`]
/// carries the failing key, and its event indices refer to `history`.
pub fn check_map_by_key(history: &[MapEvent]) -> Result<usize, Violation> {
    // Per key: the events' indices in `history`, and the events.
    let mut by_key: BTreeMap<u64, (Vec<usize>, Vec<MapEvent>)> = BTreeMap::new();
    for (i, e) in history.iter().enumerate() {
        let (ids, events) = by_key.entry(e.op.key()).or_default();
        ids.push(i);
        events.push(e.clone());
    }
    for (key, (ids, events)) in &by_key {
        check_labelled(RegisterSpec(None), events, Some(ids)).map_err(|mut v| {
            v.key = Some(*key);
            v
        })?;
    }
    Ok(by_key.len())
}
