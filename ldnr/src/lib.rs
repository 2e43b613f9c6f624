//! LD-NR: live, dynamically replicated, NUMA-aware concurrent data structures.
//!
//! LD-NR turns any sequential data structure that implements [`Dispatch`] into a
//! linearizable concurrent one, replicated once per NUMA node (or as you choose):
//!
//! - reads run in parallel on the calling thread's local replica;
//! - writes go through one shared **operation log** that every replica applies in order;
//! - per replica, one thread at a time (the **combiner**) appends the pending writes of
//!   all threads served by that replica as one batch (flat combining).
//!
//! # Trade-offs
//!
//! - Reads scale with cores and stay NUMA-local; they never append to the log.
//! - Writes are serialized through the log: write-heavy workloads scale by batching, not
//!   by parallel mutation. A bare concurrent map may beat LD-NR at low thread counts with
//!   many writes; LD-NR wins with read-mostly work on large machines.
//! - Memory: one full copy of the structure per replica, plus the log
//!   (`log_capacity × size_of::<WriteOperation>()` and a word per entry).
//! - Every write is applied once per replica, so `dispatch_mut` must be deterministic.
//!
//! # How it works
//!
//! ```text
//!   thread ──register──> dispatcher ──matches──> replica (on the thread's node)
//!   execute_mut(op):  put op in own context ─> try combiner lock
//!       got it:  collect pending ops ─> reserve log range ─> write ops
//!                ─> take write lock ─> apply log up to batch end ─> publish position, ctail
//!                ─> hand out responses
//!       missed:  publish op on the replica's pending stack; wait for DONE,
//!                retrying the combiner lock whenever it is free
//!   execute(op):      wait until own replica's position ≥ ctail (or combine to get there)
//!                ─> take own reader slot ─> dispatch
//! ```
//!
//! When the log is full because a replica lags (no thread drives it), the combiner that
//! needs space applies the log to that replica itself if it can take its combiner lock
//! without waiting (cross-combining), under that replica's memory policy. An idle replica
//! therefore never stalls the others.
//!
//! Module docs (`log`, `replica` with `replica::{combiner, context, rwlock}`,
//! `dispatcher`, `reconfigure`) describe each algorithm with the numbered invariants that
//! the `SAFETY` comments cite; `ARCHITECTURE.md` at the repository root follows one
//! operation through them:
//!
//! - log **L1–L5**: exclusive reservation, GC never passes an active replica, liveness by
//!   logical index, the clone lock, drop-exactly-once; **L8**: logical indices wrap
//!   around `usize` and are compared by their wrapping difference, so they never
//!   overflow, on 32-bit targets either;
//! - replica **P1–P3**: who may touch the data and the batch buffer;
//! - reader-writer lock **R1**: the Dekker pair of SeqCst fences; **R3**: the lock's word
//!   stamps a live replica's log position, so a reader checks one word;
//! - contexts **C1–C2**: the operation slot state machine and the pending stack;
//! - dispatcher **D1–D3**: registration order, serialized reconfiguration, the
//!   matching epoch behind consistent snapshots;
//! - replica shells **P4–P6** (in `replica`): data installed and taken only under both
//!   locks; reconfigurations cannot be starved of a combiner lock; stand-ins for a frozen
//!   clone source;
//! - reconfiguration **I2, I3, I7, I8**: exactly once across a removal, a joining
//!   replica is never passed by garbage collection, nothing reachable is freed, a
//!   panicking callback changes nothing.
//!
//! The log's invariants **L6** (the only live replica skips the atomic read-modify-writes
//! of catching up), **L7** (a garbage collection that overlapped a replica joining
//! is redone) and **L9** (the only live replica applies writes directly, without the
//! log) are what make dynamic replicas cheap and safe.
//!
//! # Reads and writes
//!
//! A write is a [`WriteOperation`](Dispatch::WriteOperation) value: it is appended to the
//! log and every replica applies it with [`dispatch_mut`](Dispatch::dispatch_mut). While
//! an instance has one replica, there is nobody to replay the log to, so writes skip it:
//! the combiner applies them to the replica directly, and a replica added later starts
//! from a clone that already holds them. A single-replica instance costs a lock and flat
//! combining, not a log. A read
//! runs on the calling thread's replica only, never touches the log, and sees every write
//! that completed before it started. Reads come in two forms:
//!
//! - **Closure reads**, [`NodeReplicated::read`]`(tkn, |d| …)`: any code over `&D`,
//!   returning any type that does not borrow from `D`. The closure may borrow from the
//!   caller (look a `String`-keyed map up by `&str`), runs once under the replica's read
//!   lock, and needs no read enum. The natural choice for new code.
//! - **Operation reads**, [`NodeReplicated::execute`]`(op, tkn)`: a
//!   [`ReadOperation`](Dispatch::ReadOperation) value answered by
//!   [`dispatch`](Dispatch::dispatch) with the structure's one `Response` type. Use them
//!   where reads must be data (recorded, replayed, generated by a test) or for a
//!   `Dispatch` impl written for NR.
//!
//! For writes, [`operations!`] turns a structure's `&mut self` methods into the write
//! enum, the [`Dispatch`] impl (with closure reads only) and a trait of typed methods on
//! `NodeReplicated<T>` that return each method's own type, so no response enum has to be
//! matched. Write `Dispatch` by hand for a generic structure or to have operation reads.
//!
//! ```
//! use std::collections::BTreeMap;
//! use ldnr::NodeReplicated;
//!
//! #[derive(Clone, Default)]
//! struct Scores(BTreeMap<String, u64>);
//!
//! ldnr::operations! {
//!     trait ScoreWrites for Scores, enum ScoreWrite {
//!         fn add(&mut self, name: String, points: u64) -> u64 {
//!             let score = self.0.entry(name).or_default();
//!             *score += points;
//!             *score
//!         }
//!     }
//! }
//!
//! let scores = NodeReplicated::builder(Scores::default()).build()?;
//! let tkn = scores.thread_token()?;
//! assert_eq!(scores.add(tkn, "ada".to_string(), 3), 3); // a typed write
//! assert_eq!(scores.add(tkn, "ada".to_string(), 4), 7);
//! // A closure read: borrows the key, returns what it likes.
//! assert_eq!(scores.read(tkn, |s| s.0.get("ada").copied()), Some(7));
//! # Ok::<(), ldnr::Error>(())
//! ```
//!
//! # The dispatcher
//!
//! [`NodeReplicated::register`] asks the [`AffinityManager`] for the calling thread's node
//! and matches the thread to a replica on that node (the one serving the fewest threads);
//! with no replica there, to the nearest one by NUMA distance, again the fewest threads.
//!
//! # Threads that come, go and move
//!
//! - **Registrations end.** [`NodeReplicated::deregister`] gives a thread's slot back;
//!   later registrations reuse it. Tokens carry a generation: a deregistered token is
//!   refused (a panic on an operation, [`Error::StaleToken`] from `deregister`), never
//!   taken for the slot's next owner (generations never wrap: a slot given back about
//!   2^48 times, on any target, is retired instead of reused).
//! - **Tokens without bookkeeping** (with `std`): [`NodeReplicated::thread_token`] returns
//!   the calling thread's token, registering it on first use and giving it back when the
//!   thread exits — for thread pools, per-task threads, and code that cannot pass a token
//!   around. The limit ([`Builder::max_threads`]) counts the threads registered *at once*.
//! - **Async code**: a token is `!Send`, so a future that holds one across an `.await`
//!   is not `Send` either. Take `thread_token()` in the synchronous part of each
//!   operation (the token is cached per thread, so this costs a thread-local lookup).
//! - **A write pays for its own replica's readers only.** A replica's write lock waits for
//!   the threads in its reader set (the threads that read it), not for every registered
//!   thread.
//! - **Threads that move are matched again.** When the affinity manager knows more than
//!   one node, a thread asks it where it runs once every 1,024 of its operations and, if
//!   it moved, is matched to the nearest replica of its new node (the same rules as
//!   registration). A thread that stays pays a countdown per operation.
//!
//! # Changing the replica set
//!
//! [`NodeReplicated::add_replica`] clones the most advanced replica onto a node while
//! operations go on (only the clone source pauses its writes) and moves the threads of that
//! node to it; [`NodeReplicated::remove_replica`] moves a replica's threads to the nearest
//! remaining one, runs every operation they were waiting on exactly once, and frees the
//! replica's data. Both take `&self` and may be called from any thread; they serialize
//! among themselves. See the `reconfigure` module docs for the protocol.
//!
//! Replica *slots* (a few hundred bytes of locks and queues each, up to [`MAX_REPLICAS`])
//! live as long as the instance and are reused, so that a thread still holding a reference
//! from before a removal never touches freed memory; the data, the big part, is freed at
//! once.
//!
//! Who calls them is the [`Policy`] ([`Builder::policy`]): the application
//! ([`Policy::manual`], the default), or the instance itself ([`Policy::follow_threads`]: a
//! replica on every node where registered threads are, added by the thread that registers
//! or moves there, removed when the node's last thread leaves). A policy run happens only
//! in a thread outside every lock and callback of the instance, so it is an ordinary
//! `add_replica` / `remove_replica` with the guarantees above. [`NodeReplicated::stats`]
//! reports what the policy and each replica's combiners did.
//!
//! # Example
//!
//! ```
//! use std::collections::HashMap;
//! use ldnr::{Dispatch, NodeReplicated};
//!
//! #[derive(Clone, Default)]
//! struct Map(HashMap<u64, u64>);
//!
//! enum Read { Get(u64) }
//! #[derive(Clone)]
//! enum Write { Put(u64, u64) }
//!
//! impl Dispatch for Map {
//!     type ReadOperation = Read;
//!     type WriteOperation = Write;
//!     type Response = Option<u64>;
//!
//!     fn dispatch(&self, op: Read) -> Option<u64> {
//!         match op { Read::Get(k) => self.0.get(&k).copied() }
//!     }
//!     fn dispatch_mut(&mut self, op: Write) -> Option<u64> {
//!         match op { Write::Put(k, v) => self.0.insert(k, v) }
//!     }
//! }
//!
//! // One replica (the default). On a NUMA machine, ask for one per node:
//! // `.replicas(&manager.nodes()).affinity(manager)` with a manager of `ldnr-affinity`.
//! let map = NodeReplicated::builder(Map::default()).build()?;
//!
//! std::thread::scope(|s| {
//!     for t in 0..4u64 {
//!         let map = &map;
//!         s.spawn(move || {
//!             let tkn = map.register().unwrap();
//!             for k in 0..100 {
//!                 map.execute_mut(Write::Put(t * 1000 + k, k), tkn);
//!             }
//!             assert_eq!(map.execute(Read::Get(t * 1000 + 7), tkn), Some(7));
//!         });
//!     }
//! });
//! assert_eq!(map.replicas().iter().map(|r| r.threads).sum::<usize>(), 4);
//! # Ok::<(), ldnr::Error>(())
//! ```
//!
//! # Panics
//!
//! With the default `std` feature, a panic in user code is isolated to the operation that
//! raised it:
//!
//! - **`dispatch_mut`** (or the `Clone` of a `WriteOperation`) panics: the combiner that
//!   applies the entry catches the panic and goes on with the rest of its batch. The
//!   thread that *submitted* the operation gets the panic, resumed in its own thread by
//!   its `execute_mut` (with the original payload). Every other replica applies the same
//!   entry later, panics the same way (operations are deterministic) and goes on, so all
//!   replicas keep the same partial effect — whatever `dispatch_mut` did before it
//!   panicked; there is no rollback and no poisoning. No lock stays held, no other thread
//!   waits for it, and later operations work on every replica. NR 0.1.1, by contrast,
//!   leaves the other threads waiting forever.
//! - **`dispatch`**, or a [`read`](NodeReplicated::read) closure, panics: the panic
//!   unwinds out of that thread's `execute`/`read`; its read lock is released on the
//!   way. Nothing else is affected.
//! - **`Clone` of `D`** panics in [`NodeReplicated::add_replica`]: the panic unwinds out
//!   of `add_replica`; the clone source is unfrozen and the replica set is unchanged.
//! - **`Drop` of a `WriteOperation`** panics: the log drops each operation when its slot
//!   is reused a lap later, in whichever thread is combining then, after that thread's
//!   batch is complete and its locks are released. The panic is caught and resumed from
//!   that thread's `execute_mut`/`execute`/`read` once its own operation has finished (that
//!   operation ran, once; its response is dropped). A call that dropped several resumes
//!   the first panic and drops the others. No operation is lost or run twice, and the
//!   instance is not poisoned. When the instance is dropped, an operation still in the
//!   log that panics makes the drop panic; everything else is still dropped. While the
//!   instance has one replica the log is skipped and `dispatch_mut` consumes the
//!   operation itself, so its `Drop` runs there: a panic in it is that operation's own
//!   (as if `dispatch_mut` panicked, its effect kept).
//! - **`Drop` of a `Response`** panics where LD-NR drops one (each replica computes a
//!   response for every operation; only the owner's replica's is returned): caught and
//!   ignored, the operation was applied in full.
//! - **`Drop` of `D`** panics: in [`NodeReplicated::remove_replica`] it unwinds from
//!   there, the replica removed; when the instance is dropped, from the drop, with the
//!   other replicas still dropped.
//! - **The [`AffinityManager`]** panics anywhere but around a batch: the panic unwinds
//!   from the call that asked it, and nothing changes — `current_node` (`register`,
//!   `build`), `nodes` (`build`, `add_replica`), `distance` (`register`, `add_replica`,
//!   `remove_replica`: the operation paths never ask for distances), `set_memory_node`
//!   and `restore_memory_policy` in `build` and `add_replica` (the clone is dropped, the
//!   source unfrozen).
//!
//! A panic that escapes the combining path anyway — always without `std` (nothing can
//! catch it there, a panicking `Drop` of a displaced operation included), or from
//! `set_memory_node`/`restore_memory_policy` around a batch — leaves a replica part-way
//! through a batch. The instance is then **poisoned**: the panic unwinds out of the thread
//! that was combining, and every later `execute`/`execute_mut` on any thread (including
//! threads waiting for that batch) panics with a message saying so, while
//! `add_replica`/`remove_replica` return [`Error::Poisoned`]. Nothing hangs, no replica
//! applies anything again, and dropping the instance drops every operation exactly once
//! (responses computed for waiting threads that never took them are leaked). With
//! `panic = "abort"` none of this matters.
//!
//! # Misuse and what happens
//!
//! | Misuse | Outcome |
//! |---|---|
//! | [`Builder::replicas`] with an empty list | `build` returns [`Error::NoReplicas`] |
//! | a node the affinity manager does not list (`replicas`, `add_replica`) | [`Error::UnknownNode`] |
//! | more than [`MAX_REPLICAS`] replicas (`replicas`, `add_replica`) | [`Error::TooManyReplicas`] |
//! | [`Builder::log_capacity`] not a power of two in `MIN_LOG_CAPACITY..=MAX_LOG_CAPACITY` | [`Error::InvalidLogCapacity`] |
//! | [`Builder::max_threads`] of 0 or above [`MAX_THREADS`] | [`Error::InvalidThreadLimit`] |
//! | the affinity manager fails to set a memory policy in `build` or `add_replica` | [`Error::Affinity`]; nothing changes |
//! | the affinity manager fails to restore the previous memory policy in `build` or `add_replica` | [`Error::Affinity`]; nothing changes (the clone is dropped); the manager says what policy the thread is left with |
//! | the affinity manager fails to set or restore a memory policy around a batch | the operations complete (they are done; that batch's memory may come from the thread's own policy); the manager reports it its own way |
//! | [`NodeReplicated::register`] beyond the thread limit | [`Error::TooManyThreads`]; existing tokens keep working |
//! | more threads registered at once than [`Builder::max_threads`] | [`Error::TooManyThreads`]; slots given back (`deregister`, or the exit of a thread that used `thread_token`) are reused |
//! | a token used after `deregister` (also a copy of it, also after its slot was reused) | panics: "a ThreadToken that was deregistered"; `deregister` of it returns [`Error::StaleToken`] |
//! | `register` per short-lived thread without `deregister` | its slot stays taken until the instance is dropped: use [`NodeReplicated::thread_token`], or `deregister` |
//! | `thread_token` from a thread-local's destructor (the thread is exiting) | [`Error::ThreadExiting`] (nothing could give that registration back); a copy of the thread's token kept from before is refused as deregistered: its registration was retired when the thread's token list was destroyed, and may belong to another thread by then |
//! | `thread_token` threads at the thread limit, joined only by the end of `std::thread::scope` | a thread's slot is given back when its thread-locals are destroyed, which `scope` does not wait for: a new thread may briefly get [`Error::TooManyThreads`]. Join the threads (`join` waits for that), or keep headroom in the limit |
//! | a [`ThreadToken`] of another instance (also of a dropped one) | panics: "a ThreadToken of another NodeReplicated instance" |
//! | sending a `ThreadToken` to another thread | does not compile (`ThreadToken: !Send + !Sync`) |
//! | `read`, `execute`, `execute_mut`, `register`, `deregister`, `add_replica` or `remove_replica` (or `thread_token` when it has to register) from inside user code that the instance runs on the calling thread (a `read` closure, `dispatch`, `dispatch_mut`, `Clone` of `D` or of an operation, `Drop` of an operation, the affinity manager), with any token, also through another instance's callbacks (up to 8 nested instances) | panics: "re-entrant call" (inside `dispatch_mut` that is the operation's panic; inside a `Drop`, resumed by the combining call; see above). Without `std`, only `execute`/`execute_mut` with the token of the thread running `dispatch`/`dispatch_mut` are detected; the others may deadlock. Calling back into the instance from `dispatch_mut` breaks the determinism contract anyway |
//! | a `WriteOperation` whose `Drop` panics (the log drops it when its slot is reused) | the call that was combining then panics with it, after its own operation ran (once); nothing lost or run twice, not poisoned. With one replica (no log), the operation's own call panics with it, its effect kept. Without `std`: poisoned |
//! | the same, for an operation still in the log when the instance is dropped | the drop panics; everything else is still dropped |
//! | a `Response` whose `Drop` panics (LD-NR drops every replica's response but the owner's) | caught and ignored; the operation was applied in full |
//! | a panic payload whose `Drop` panics (from `dispatch_mut`, or a second drop panic in one call) | the owner gets it as usual; where no one gets it, it is forgotten (leaked) rather than dropped |
//! | `D`'s `Drop` panics | from `remove_replica`, after the removal; from the instance's drop, with every other replica still dropped |
//! | `AffinityManager::current_node` panics | from `register` or `build`; nothing changes |
//! | `AffinityManager::nodes` panics | from `build` or `add_replica`; nothing changes |
//! | `AffinityManager::distance` panics | from `register`, `add_replica` or `remove_replica`; nothing changes (operations never ask for distances) |
//! | `AffinityManager::set_memory_node` or `restore_memory_policy` panics in `build` or `add_replica` | from there; nothing changes (a clone made is dropped, the source unfrozen) |
//! | the same around a batch (every batch when the manager lists several nodes) | the instance is poisoned (see [Panics](#panics)) |
//! | [`NodeReplicated::remove_replica`] of an id that is not live (removed, never existed) | [`Error::UnknownReplica`]; nothing changes |
//! | `remove_replica` of the last replica | [`Error::LastReplica`] |
//! | a `ReplicaId` of another instance | ids are per instance: it names this instance's replica with that number if one is live, else [`Error::UnknownReplica`] |
//! | a `dispatch_mut` that is not deterministic | replicas diverge, undetected (see [`Dispatch`]) |
//! | a panicking `dispatch`, `dispatch_mut`, `Clone`, or affinity manager | see [Panics](#panics) |
//! | any operation on a poisoned instance | panics ("poisoned"); reconfiguration returns [`Error::Poisoned`]. A re-entrant call (the row above) that is detected panics with the re-entry instead, reconfiguration included |
//!
//! Each row has a test in the crate's `tests/`: `errors.rs`, `dynamic_replicas/errors.rs`
//! (`add_and_remove_errors_change_nothing`), `misuse.rs`, `panics.rs`, `drop_panics.rs`,
//! `affinity_panics/` (`topology.rs`, `memory_policy.rs`), `panic_no_std.rs`, and
//! the `compile_fail` example on [`ThreadToken`].
//!
//! # Unsafe code
//!
//! `unsafe` is confined to four places, each resting on invariants stated in its module
//! docs and cited by a `// SAFETY:` comment at every block (`clippy::undocumented_unsafe_blocks`
//! and `missing_safety_doc` are denied; every `unsafe fn` has a `# Safety` section):
//!
//! - `replica::context`: the operation and response slots of a thread's context — **C1** (one
//!   owner at a time, handed over by the state machine `EMPTY → PENDING → CLAIMED → DONE`
//!   with Release/Acquire) and **C2** (a context is on at most one pending stack, once);
//! - `log`: entry slots — **L1** (a reserved range belongs to one combiner), **L2** (GC
//!   never passes an active replica's position, so a slot is not overwritten while a
//!   replica still needs it), **L3** (an entry is live iff its state holds its logical
//!   index), **L4** (replicas clone an entry one at a time under its clone-lock bit),
//!   **L5** (each operation is dropped exactly once, never between a reservation and its
//!   write), **L6** (the only live replica may skip the clone lock), **L7** (a GC that
//!   overlapped a replica joining is redone), **L8** (indices compared by wrapping
//!   difference), **L9** (the only live replica applies writes directly: a replica
//!   added later is cloned from it under its combiner lock);
//! - `replica`: the replica's data — **P1** (mutation needs the combiner lock and the
//!   write lock), **P2** (readers hold the read lock), **P4** (data is installed and taken
//!   out only under both locks, in shells that are never freed);
//! - `Send`/`Sync` for the instance's shared state (`shared`) and the log: why `D: Send + Sync`,
//!   `WriteOperation: Send` and `Response: Send` suffice.
//!
//! The reader-writer lock (**R1**, a Dekker pair of SeqCst fences) and the dispatcher
//! (**D1–D3**) contain no `unsafe` but are what P2 and P4 rely on. The atomics of all of
//! these are model-checked with loom (`--cfg ldnr_loom`) and explored under shuttle
//! (`--cfg ldnr_shuttle`); user callbacks never run while a slot is half-written, and a
//! panic in one unwinds with every lock released by RAII guards.
//!
//! # `no_std`
//!
//! The crate is `#![no_std]` with `alloc`. The default `std` feature adds
//! `std::error::Error` impls, panic isolation (see [Panics](#panics)), detection of every
//! call back into an instance from its user code (a thread-local mark), and lets waiting
//! threads yield their CPU after a short spin; without it they only spin.
#![no_std]
#![cfg_attr(docsrs, feature(doc_cfg))]
// `clippy.toml` lists the atomics, cells and thread functions that only `sync` may name.
#![deny(clippy::disallowed_types, clippy::disallowed_methods)]

extern crate alloc;
#[cfg(feature = "std")]
extern crate std;

mod affinity;
mod dispatch;
mod dispatcher;
mod error;
mod log;
mod node_replicated;
mod operations;
mod poison;
mod policy;
mod reconfigure;
mod replica;
mod shared;
mod sync;
mod threads;

#[cfg(all(test, ldnr_loom))]
// The models count runs and live values with std's atomics, outside what loom explores.
#[allow(clippy::disallowed_types)]
mod loom_models;

pub use affinity::{
    AffinityError, AffinityGuard, AffinityManager, NoAffinity, NodeId, SavedPolicy,
};
pub use dispatch::Dispatch;
pub use dispatcher::{ThreadToken, DEFAULT_MAX_THREADS, MAX_THREADS};
pub use error::Error;
pub use log::{DEFAULT_LOG_CAPACITY, MAX_LOG_CAPACITY, MAX_REPLICAS, MIN_LOG_CAPACITY};
pub use node_replicated::{Builder, NodeReplicated};
pub use policy::Policy;
pub use replica::{ReplicaId, ReplicaInfo, ReplicaStats, Stats};
